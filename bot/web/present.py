"""What the console and the API show of the store's records: the API's case object, known media as items."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bot.models import iso
from bot.store.records import KnownMedia
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
