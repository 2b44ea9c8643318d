"""The matches export: every case (match or recycled hit, with the desk's decision) as CSV or JSON Lines,
offered beside the deletion log's exports."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from typing import Any

from bot.models import iso
from bot.store.review import Case

#: columns of the matches export, in order (stable: new columns are only appended)
CASE_COLUMNS: tuple[str, ...] = (
    "case_id", "status", "tier", "kind", "platform", "account", "post_id", "post_url", "posted_at",
    "media_sha256", "known_id", "known_label", "known_source", "signal", "distance", "inliers",
    "created_at", "updated_at", "note", "dismiss_scope",
)
CASE_FORMATS = ("csv", "jsonl")


def case_row(case: Case) -> dict[str, Any]:
    p, known = case.payload, case.known
    return {
        "case_id": case.id, "status": case.status, "tier": case.tier, "kind": case.kind,
        "platform": case.platform, "account": case.account, "post_id": case.post_id,
        "post_url": p.get("post_url"), "posted_at": p.get("posted_at"), "media_sha256": case.media_sha256,
        "known_id": known.get("id"), "known_label": known.get("label"), "known_source": known.get("source"),
        "signal": p.get("signal"), "distance": p.get("distance"), "inliers": p.get("inliers"),
        "created_at": iso(case.created_at), "updated_at": iso(case.updated_at) if case.updated_at else None,
        "note": case.note, "dismiss_scope": case.scope,
    }


def render_cases(fmt: str, cases: Iterable[Case]) -> str:
    """CSV (RFC 4180, header row, CRLF) or JSON Lines of the cases."""
    rows = [case_row(c) for c in cases]
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if fmt != "csv":
        raise ValueError(f"unknown matches export format {fmt!r} (use {', '.join(CASE_FORMATS)})")
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(CASE_COLUMNS)
    for r in rows:
        writer.writerow(["" if r[c] is None else r[c] for c in CASE_COLUMNS])
    return buf.getvalue()
