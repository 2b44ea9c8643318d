"""What the console and the API show of the store's records: the API's case object, the export filters."""

from __future__ import annotations

from typing import Any

from werkzeug.datastructures import MultiDict

from bot.export.rows import ExportFilters
from bot.models import iso, parse_iso
from bot.store.records import EVENT_KINDS
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
