"""Known-media matches of a post's archived media, for the deletion log exports.

The store has no match table. What the matching stage found is durable in two places:

1. the known-media store itself, for exact copies: an entry with the same SHA-256 as an archived attachment
   (a ``known`` image, or a ``seen`` entry from another post: a recycled image);
2. the alert outbox, which keeps sent alerts: the ``match`` / ``recycled`` alerts of a post carry the
   perceptual matches (PDQ/pHash distance, keypoint inliers) with the known entry's id; and the post's
   cases (:mod:`bot.cases`), which hold every match, also those that paged no chat. A dismissed case is left
   out (a reviewer said the picture is not that item).

This helper uses both: (2) through the read-only ``store.list_alerts(platform, post_id, kinds)`` (an indexed
look-up of the post's alerts, pending or sent), (1) for exact copies that raised no alert. The export never
writes to the store or re-runs the matcher.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.store.base import StoreReader
from bot.store.records import KnownKind, KnownMedia
from bot.store.review import CaseQuery

MATCH_ALERT_KINDS = ("match", "recycled")


def _entry(media_sha256: str, known: KnownMedia | None, known_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "media_sha256": media_sha256,
        "known_id": known_id,
        "label": known.label if known else extra.get("label"),
        "kind": (
            "recycled"
            if (known is not None and known.kind == KnownKind.SEEN) or extra.get("kind") == "recycled"
            else "match"
        ),
        "method": extra.get("method", "sha256"),
        "distance": extra.get("distance", 0),
        "known_sha256": known.sha256 if known else None,
        "known_archive_path": known.archive_path if known else None,
        "source": (known.source if known else None) or ((known.origin or {}).get("url") if known else None),
    }


def _from_alert(store: StoreReader, payload: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """A match alert payload (as the matching stage writes it; tolerant of its exact field names)."""
    known_id = payload.get("known_id") or (payload.get("known") or {}).get("id")
    media_sha = payload.get("media_sha256") or payload.get("sha256")
    if not known_id or not media_sha:
        return None
    known = store.get_known(str(known_id))
    return _entry(
        media_sha,
        known,
        str(known_id),
        label=payload.get("label"),
        kind=kind,
        method=payload.get("signal") or payload.get("method") or "perceptual",
        distance=payload.get("distance"),
    )


def known_media_matches(store: StoreReader, platform: str, post_id: str, media_sha256: Sequence[str]) -> list[dict[str, Any]]:
    """Known media matched by the archived attachments of one post (deduplicated by media and known id)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    # every match is a case (bot.cases), also those that paged no chat (suggestions, a post's other cases);
    # a dismissed case is a reviewer saying the picture is not that item: left out, with its alert
    cases = store.list_cases(CaseQuery(platform=platform, post_id=post_id, limit=10_000))
    dismissed = {(c.media_sha256, c.known.get("id")) for c in cases if c.status == "dismissed"}
    payloads = [(alert.payload, alert.kind) for alert in store.list_alerts(platform, post_id, kinds=MATCH_ALERT_KINDS)]
    payloads += [(c.payload, c.kind) for c in cases if c.status != "dismissed"]
    for payload, kind in payloads:
        entry = _from_alert(store, payload, kind)
        if entry is not None and (entry["media_sha256"], entry["known_id"]) not in dismissed:
            found.setdefault((entry["media_sha256"], entry["known_id"]), entry)
    for sha in media_sha256:
        for known in store.find_known_by_sha256(sha):
            origin = known.origin or {}
            if known.kind == KnownKind.SEEN and origin.get("platform") == platform and str(origin.get("post_id")) == post_id:
                continue  # the post's own "seen" entry is not a match
            found.setdefault((sha, known.id), _entry(sha, known, known.id))
    return list(found.values())



def live_match_rows(store: StoreReader, filters: Any, event_rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Posts with known-media matches (match/recycled alerts in the report's period and filters) that are not
    gone (their last confirmed state) and have no card among the report's events (which show their matches):
    the report's "matches" section. Newest alert first, one row per post."""
    from datetime import datetime, timezone

    from bot.deletions.tracker import GONE_KINDS
    from bot.models import iso

    shown = {(r["platform"], r["post_id"]) for r in event_rows}
    since = filters.since if filters is not None and filters.since else datetime(1970, 1, 1, tzinfo=timezone.utc)
    until = filters.until if filters is not None and filters.until else datetime(9999, 1, 1, tzinfo=timezone.utc)
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for alert in reversed(store.alerts_between(since, until, kinds=MATCH_ALERT_KINDS)):
        platform, post_id = str(alert.payload.get("platform")), str(alert.payload.get("post_id"))
        if (platform, post_id) in shown or (platform, post_id) in rows:
            continue
        if filters is not None and filters.platform and platform != filters.platform:
            continue
        stored = store.get_post(platform, post_id)
        if stored is None or stored.status in GONE_KINDS:
            continue
        if filters is not None and filters.account and stored.post.account != filters.account:
            continue
        links = [link for link in store.get_post_media(platform, post_id) if link.sha256]
        shas = [link.sha256 for link in links]
        paths = []
        for sha in shas:
            record = store.get_media(sha)
            paths.append(record.archive_path if record else None)
        rows[(platform, post_id)] = {
            "platform": platform,
            "account": stored.post.account,
            "post_id": post_id,
            "post_url": stored.post.url,
            "post_text": stored.post.text,
            "posted_at": iso(stored.post.created_at),
            "first_seen": iso(stored.first_seen),
            "alerted_at": iso(alert.created_at),
            "version": stored.version,
            "raw_sha256": stored.post.raw_sha256(),
            "media_sha256": shas,
            "media_archive_paths": paths,
            "known_matches": known_media_matches(store, platform, post_id, shas),
        }
    return list(rows.values())
