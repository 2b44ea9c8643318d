"""Writers of the deletion log: CSV (RFC 4180), JSON Lines, the HTML report, and the checksum manifest."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bot import __version__
from bot.export.rows import COLUMNS, JSON_COLUMNS, LIST_COLUMNS, ExportFilters, ReadOnlyStore, deletion_log_rows
from bot.files import atomic_write
from bot.models import iso, utcnow
from bot.store.base import StoreReader

FORMATS = ("csv", "jsonl", "html")


def _csv_cell(column: str, value: Any) -> str:
    if value is None:
        return ""
    if column in LIST_COLUMNS:
        return " ".join("" if v is None else str(v) for v in value)
    if column in JSON_COLUMNS:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def render_csv(rows: Sequence[dict[str, Any]]) -> str:
    """RFC 4180: header row, CRLF line ends, fields with comma, quote or line break quoted, quotes doubled."""
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL, doublequote=True)
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([_csv_cell(c, row.get(c)) for c in COLUMNS])
    return buf.getvalue()


def render_jsonl(rows: Sequence[dict[str, Any]]) -> str:
    """One JSON object per line with exactly the keys of COLUMNS, in that order."""
    return "".join(json.dumps({c: row.get(c) for c in COLUMNS}, ensure_ascii=False) + "\n" for row in rows)


def render(fmt: str, store: StoreReader, filters: ExportFilters | None = None, archive_root: str | os.PathLike[str] | None = None,
           now: Any = None, **report: Any) -> tuple[str, int]:
    """The export as text, and the number of rows in it. ``report``: the HTML report's ``evidence_dir``,
    ``title`` and ``organisation``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r} (use {', '.join(FORMATS)})")
    store = ReadOnlyStore(store)
    rows = deletion_log_rows(store, filters)
    if fmt == "csv":
        return render_csv(rows), len(rows)
    if fmt == "jsonl":
        return render_jsonl(rows), len(rows)
    from bot.export.html import render_html

    return render_html(rows, store, archive_root=archive_root, filters=filters, now=now, **report), len(rows)


def manifest_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    return p.with_name(p.name + ".manifest.json")


def export_to_file(
    fmt: str,
    store: StoreReader,
    path: str | os.PathLike[str],
    filters: ExportFilters | None = None,
    archive_root: str | os.PathLike[str] | None = None,
    now: Any = None,
    **report: Any,
) -> dict[str, Any]:
    """Write the export to ``path`` and its manifest next to it (``<path>.manifest.json``); returns the
    manifest. The manifest lists the SHA-256 and size of every exported file, so a recipient can check
    that the report they got is the one that was written."""
    now = now or utcnow()
    text, count = render(fmt, store, filters, archive_root=archive_root, now=now, **report)
    data = text.encode("utf-8")
    out = Path(path)
    atomic_write(out, data)
    manifest = {
        "tool": f"afterimage {__version__}",
        "generated_at": iso(now),
        "format": fmt,
        "rows": count,
        "columns": list(COLUMNS),
        "filters": (filters or ExportFilters()).to_dict(),
        "files": [{"name": out.name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}],
    }
    atomic_write(manifest_path(out), (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    return manifest


def verify_manifest(manifest_file: str | os.PathLike[str]) -> list[str]:
    """Problems found re-hashing the files a manifest lists (empty: all intact)."""
    mpath = Path(manifest_file)
    manifest = json.loads(mpath.read_text(encoding="utf-8"))
    problems = []
    for entry in manifest.get("files", []):
        f = mpath.parent / entry["name"]
        if not f.exists():
            problems.append(f"{entry['name']}: missing")
            continue
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        if digest != entry["sha256"]:
            problems.append(f"{entry['name']}: sha256 {digest} differs from the manifest")
    return problems
