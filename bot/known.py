"""The known-media service: add files and videos, import/export hash lists, remember what watchers saw.

Used by ``afterimage known ...`` and by the pipeline. Every added image is archived (content-addressed)
so its local features can be recomputed at any time, and its signals go into the store, where the
:class:`~bot.matching.matcher.Matcher` picks them up on its next refresh.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from PIL import Image

from bot.archive import Archive
from bot.errors import MediaError
from bot.hashing.decode import decode_image, prepare
from bot.hashing.signals import SIGNAL_TYPES, PdqSignal, SignalType
from bot.hashing.stage import compute_signals
from bot.media.sniff import SNIFF_BYTES, sniff
from bot.models import parse_iso
from bot.store.base import StateStore
from bot.store.records import KnownKind, KnownMedia

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".webm", ".mov", ".m4v", ".mkv"}
#: keyframes closer than this PDQ distance to the last kept frame are near-duplicates (static shots)
FRAME_DUPLICATE_DISTANCE = 40
CSV_FIELDS = ["signal_type", "signal", "label", "source"]


@dataclass
class AddReport:
    """What an add did: entries added, files skipped as already known, and per-file errors."""

    added: list[KnownMedia] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)


def iter_media_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Files named, and image/video files under named folders (recursive, sorted)."""
    for p in map(Path, paths):
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES:
                    yield f
        else:
            yield p


def add_image(
    store: StateStore,
    archive: Archive,
    data: bytes,
    *,
    label: str,
    source: str | None = None,
    note: str | None = None,
    kind: KnownKind = KnownKind.KNOWN,
    frame_ts: float | None = None,
    origin: dict[str, Any] | None = None,
    image: Image.Image | None = None,
    group: str | None = None,
) -> KnownMedia | None:
    """Archive ``data``, hash it and add an entry. None when the same file is already known (same kind).

    ``image`` is the decoded working image when the caller already has it (saves a decode)."""
    sha = hashlib.sha256(data).hexdigest()
    if any(e.kind == kind for e in store.find_known_by_sha256(sha)):
        return None
    work = prepare(image) if image is not None else decode_image(data)
    kind_ext = sniff(data[:SNIFF_BYTES])
    archived = archive.put(data, kind_ext.ext if kind_ext else "bin")
    entry = KnownMedia(
        label=label,
        signals=compute_signals(work),
        kind=kind,
        source=source,
        note=note,
        sha256=sha,
        archive_path=archived.relpath,
        frame_ts=frame_ts,
        origin=dict(origin or {}),
        group=group,
    )
    return store.add_known(entry)


def add_video(
    store: StateStore,
    archive: Archive,
    path: str | Path | bytes,
    *,
    label: str,
    source: str | None = None,
    note: str | None = None,
    max_frames: int = 64,
    min_interval: float = 1.0,
) -> list[KnownMedia]:
    """Sample keyframes (PyAV), drop near-duplicate frames, add each kept frame with its timestamp.

    Frames are archived as PNG so the exact pixels that were hashed can be shown and re-verified."""
    from bot.media.keyframes import extract_keyframes

    # the keyframes of one video are one item (one alert per post, not one per frame): grouped by the file
    if isinstance(path, bytes):
        group = hashlib.sha256(path).hexdigest()
    else:
        with open(path, "rb") as f:
            group = hashlib.file_digest(f, "sha256").hexdigest()
    added: list[KnownMedia] = []
    last: str | None = None
    for ts, frame in extract_keyframes(path, max_frames=max_frames, min_interval=min_interval):
        pdq = PdqSignal.compute(frame)
        if last is not None and PdqSignal.distance(pdq, last) < FRAME_DUPLICATE_DISTANCE:
            continue
        last = pdq
        buf = io.BytesIO()
        frame.convert("RGB").save(buf, "PNG")
        entry = add_image(
            store, archive, buf.getvalue(), label=f"{label} @ {ts:.1f}s", source=source, note=note, frame_ts=ts,
            group=group,
        )
        if entry is not None:
            added.append(entry)
    return added


def add_paths(
    store: StateStore,
    archive: Archive,
    paths: Iterable[str | Path],
    *,
    label: str | None = None,
    source: str | None = None,
    note: str | None = None,
    progress: Callable[[Path], None] | None = None,
) -> AddReport:
    """Add image and video files (folders recursively). A file that fails is reported, the rest go on.

    Without ``label`` each entry is labelled with its file name; without ``source`` with its path."""
    report = AddReport()
    for f in iter_media_files(paths):
        try:
            data = f.read_bytes()
            head = sniff(data[:SNIFF_BYTES])
            name = label or f.name
            src = source or str(f)
            if head is not None and head.kind == "video" or (head is None and f.suffix.lower() in VIDEO_SUFFIXES):
                frames = add_video(store, archive, data, label=name, source=src, note=note)
                report.added.extend(frames)
            else:
                entry = add_image(store, archive, data, label=name, source=src, note=note)
                if entry is None:
                    report.duplicates.append(str(f))
                else:
                    report.added.append(entry)
        except (MediaError, OSError) as e:
            report.errors.append((str(f), str(e)))
        if progress is not None:
            progress(f)
    return report


def remember_seen(
    store: StateStore,
    archive: Archive,
    *,
    sha256: str,
    archive_path: str,
    image: Image.Image,
    origin: dict[str, Any],
    group: str | None = None,
    frame_ts: float | None = None,
    signals: dict[str, str] | None = None,
) -> KnownMedia:
    """Remember an archived image from a watched post (``origin``: platform, account, post_id, url,
    posted_at), so a later reuse is reported as recycled, with where and when it first appeared.
    A frame of a posted video is archived as a still of its own; ``group`` is then the video's SHA-256.

    ``signals``: the image's signals from the hashing stage (:func:`bot.hashing.stage.hash_image`), so a
    posted image is hashed once; computed here when not given. Idempotent: the first post an image
    appeared in stays its origin."""
    for existing in store.find_known_by_sha256(sha256):
        if existing.kind == KnownKind.SEEN:
            return existing
    posted = origin.get("posted_at")
    label = f"seen in {origin.get('platform', '?')}/{origin.get('account', '?')} post {origin.get('post_id', '?')}"
    entry = KnownMedia(
        label=label,
        signals=dict(signals) if signals is not None else compute_signals(image),
        kind=KnownKind.SEEN,
        source=origin.get("url"),
        sha256=sha256,
        archive_path=archive_path,
        frame_ts=frame_ts,
        group=group,
        origin={**origin, "posted_at": posted if isinstance(posted, str) or posted is None else posted.isoformat()},
    )
    return store.add_known(entry)


def export_csv(store: StateStore, out: TextIO, kind: KnownKind | None = KnownKind.KNOWN) -> int:
    """Write ``signal_type,signal,label,source`` rows (PDQ and pHash of each entry). Returns rows written."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    rows = 0
    for entry in store.iter_known(kind):
        for name in SIGNAL_TYPES:
            if entry.signals.get(name):
                writer.writerow([name, entry.signals[name], entry.label, entry.source or ""])
                rows += 1
    return rows


def import_csv(store: StateStore, src: TextIO, *, default_label: str = "imported") -> tuple[int, list[str]]:
    """Read a hash list (ours, or a ThreatExchange-style PDQ list). Returns (entries added, problems).

    Rows sharing label and source become one entry (its PDQ and pHash). Rows with an unknown signal
    type or a malformed hash are reported by line number and skipped. A file without a header is read as
    ``signal_type,signal,label,source``; a bare column of 64-hex hashes is read as PDQ."""
    text = src.read()
    lines = text.splitlines()
    problems: list[str] = []
    has_header = bool(lines) and lines[0].strip().lower().startswith("signal_type")
    reader = csv.reader(io.StringIO(text))
    grouped: dict[tuple[str, str], dict[str, str]] = {}
    for lineno, row in enumerate(reader, start=1):
        if lineno == 1 and has_header:
            continue
        if not row or not "".join(row).strip() or row[0].startswith("#"):
            continue
        if len(row) == 1:
            row = ["pdq", row[0]]
        signal_type, value = row[0].strip().lower(), row[1].strip() if len(row) > 1 else ""
        label = row[2].strip() if len(row) > 2 and row[2].strip() else default_label
        source = row[3].strip() if len(row) > 3 else ""
        signal_type = {"pdq_hash": "pdq", "photo_pdq": "pdq", "hash_pdq": "pdq"}.get(signal_type, signal_type)
        cls: type[SignalType] | None = SIGNAL_TYPES.get(signal_type)
        if cls is None:
            problems.append(f"line {lineno}: unknown signal type {row[0]!r} (known: {', '.join(SIGNAL_TYPES)})")
            continue
        try:
            value = cls.validate(value)
        except ValueError as e:
            problems.append(f"line {lineno}: {e}")
            continue
        grouped.setdefault((label, source), {})[cls.name] = value
    added = 0
    for (label, source), signals in grouped.items():
        store.add_known(KnownMedia(label=label, signals=signals, source=source or None, note="imported hash list"))
        added += 1
    return added, problems


def describe(entry: KnownMedia) -> dict[str, Any]:
    """A JSON-friendly summary for ``known list``."""
    posted = entry.origin.get("posted_at") if entry.origin else None
    return {
        "id": entry.id,
        "kind": entry.kind.value,
        "label": entry.label,
        "source": entry.source,
        "frame_ts": entry.frame_ts,
        "pdq": entry.signals.get("pdq"),
        "added_at": entry.added_at.isoformat() if entry.added_at else None,
        "first_seen": parse_iso(posted).isoformat() if isinstance(posted, str) and posted else None,
    }
