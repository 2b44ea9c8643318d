"""What the console and the API show of the store's records: the API's case object, known media as items."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from werkzeug.datastructures import MultiDict

from bot.export.rows import ExportFilters
from bot.models import iso, parse_iso
from bot.store.records import EVENT_KINDS, KnownMedia
from bot.store.review import Case


def case_json(case: Case) -> dict[str, Any]:
    """The case object of ``GET /api/v1/cases`` (documented in README)."""
    p, known = case.payload, case.known
    return {
        "id": case.id,
        "status": case.status,
        "tier": case.tier,
        "kind": case.kind,
        "known": {"id": known.get("id"), "label": known.get("label"), "source": known.get("source")},
        "post": {
            "platform": case.platform,
            "account": case.account,
            "post_id": case.post_id,
            "url": p.get("post_url"),
            "posted_at": p.get("posted_at"),
        },
        "media_sha256": case.media_sha256,
        "signal": p.get("signal"),
        "distance": p.get("distance"),
        "inliers": p.get("inliers"),
        "created_at": iso(case.created_at),
        "note": case.note,
        "scope": case.scope,
        "history": [e.to_dict() for e in case.history],
    }


@dataclass
class KnownItem:
    """What a person adds and removes: one image, or a video with its keyframes (entries sharing a group)."""

    key: str
    entries: list[KnownMedia]

    @property
    def first(self) -> KnownMedia:
        return self.entries[0]

    @property
    def is_video(self) -> bool:
        return len(self.entries) > 1 or self.first.frame_ts is not None

    @property
    def label(self) -> str:
        """The item's label: a video's frames are labelled ``<label> @ <ts>s`` by ``known add``."""
        label = self.first.label
        if self.is_video and " @ " in label:
            label = label.rsplit(" @ ", 1)[0]
        return label


def known_items(entries: Iterable[KnownMedia]) -> list[KnownItem]:
    """Entries grouped into items, in the order their first entry was added."""
    items: dict[str, KnownItem] = {}
    for entry in entries:
        items.setdefault(entry.item, KnownItem(entry.item, [])).entries.append(entry)
    return list(items.values())


def export_filters(args: MultiDict[str, str]) -> ExportFilters:
    """The deletion export's filters from query parameters (``since``, ``until``, ``platform``, ``account``,
    ``kind`` repeatable), for the deletions page and ``GET /api/v1/deletions``. ValueError says what is wrong."""
    try:
        since = parse_iso(args.get("since") or None)
        until = parse_iso(args.get("until") or None)
    except ValueError:
        raise ValueError("since and until are ISO 8601 times (e.g. 2026-03-01 or 2026-03-01T12:00:00Z)") from None
    kinds = tuple(k for k in args.getlist("kind") if k)
    unknown = [k for k in kinds if k not in EVENT_KINDS]
    if unknown:
        raise ValueError(f"unknown event kind {unknown[0]!r} (one of {', '.join(EVENT_KINDS)})")
    return ExportFilters(since=since, until=until, platform=args.get("platform") or None,
                         account=args.get("account") or None, kinds=kinds or None)
