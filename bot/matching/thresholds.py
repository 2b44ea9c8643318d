"""Per known item (or per imported list) thresholds: ``matching.thresholds`` hold some known media to a
stricter bar than the global one, so a noisy third-party hash list cannot flood the desk while the
desk's own curated items keep the default.

The matcher applies the global thresholds; :func:`tier_under_rules` then re-tiers each of its matches under
the first rule that names the matched item or its source: a PDQ match farther than the rule's
``pdq_match`` becomes a suggestion, farther than its ``pdq_suggest`` no match at all; the same for local
feature matches with fewer inliers than ``min_inliers_match`` / ``min_inliers_suggest``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from bot.config import ThresholdOverride

if TYPE_CHECKING:
    from bot.matching.matcher import Match


def rule_for(rules: Sequence[ThresholdOverride], known: dict[str, Any], known_item: str) -> ThresholdOverride | None:
    """The first rule naming this item (by the item or the entry id) or a prefix of its source."""
    source = known.get("source") or ""
    for rule in rules:
        if rule.item is not None and rule.item in (known_item, known.get("id")):
            return rule
        if rule.source is not None and isinstance(source, str) and source.startswith(rule.source):
            return rule
    return None


def tier_under_rules(
    rules: Sequence[ThresholdOverride],
    known: dict[str, Any],
    known_item: str,
    tier: str,
    signal: str,
    distance: float | None,
    inliers: int | None,
) -> str | None:
    """The tier of a match once the item's rule applies: ``match``, ``suggest``, or None (below its bar)."""
    rule = rule_for(rules, known, known_item)
    if rule is None:
        return tier
    if signal == "orb":
        value, match_bar, suggest_bar = inliers, rule.min_inliers_match, rule.min_inliers_suggest
        passes = lambda bar: bar is None or (value is not None and value >= bar)  # noqa: E731
    else:
        value, match_bar, suggest_bar = distance, rule.pdq_match, rule.pdq_suggest
        passes = lambda bar: bar is None or (value is not None and value <= bar)  # noqa: E731
    if not passes(suggest_bar):
        return None
    if tier == "match" and not passes(match_bar):
        return "suggest"
    return tier


def apply_rules(matches: Sequence[Match], rules: Sequence[ThresholdOverride]) -> list[Match]:
    """The matcher's results under the rules (``afterimage check`` and the console's check answer as the
    pipeline decides): re-tiered, those below their item's bar dropped, ``match`` tier first."""
    if not rules:
        return list(matches)
    out = []
    for m in matches:
        known = {"id": m.known.id, "source": m.known.source}
        tier = tier_under_rules(rules, known, m.known.item, m.tier, m.signal, m.distance, m.inliers)
        if tier is not None:
            out.append(m if tier == m.tier else replace(m, tier=tier))
    return sorted(out, key=lambda m: m.tier != "match")
