"""The known-media service: add files, videos and URLs, list and remove items, import/export hash lists,
remember what watchers saw.

Used by ``afterimage known ...`` and by the pipeline. Every added image is archived (content-addressed)
so its local features can be recomputed at any time, and its signals go into the store, where the
:class:`~bot.matching.matcher.Matcher` picks them up on its next refresh.

An **item** is what a person added: an image is one entry; a video is one entry per keyframe, sharing the
video file's SHA-256 as ``group``; rows of an imported list that name the same group are one item too. An item
goes into the store in one transaction (:meth:`~bot.store.known_media.KnownMediaStore.add_known_many`), so an interrupted
add leaves nothing half-stored, and is listed, shown and removed as a whole.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from PIL import Image

from bot.archive import Archive
from bot.errors import MediaError
from bot.hashing.decode import decode_image, prepare
from bot.hashing.signals import SIGNAL_TYPES, PdqSignal, SignalType
from bot.hashing.stage import compute_signals
from bot.media.fetch import MediaFetcher
from bot.media.keyframes import ShotScan, iter_shot_frames
from bot.media.pages import download
from bot.media.sniff import SNIFF_BYTES, sniff
from bot.models import iso, parse_iso
from bot.store.known_media import KnownMediaStore
from bot.store.records import KnownKind, KnownMedia

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".webm", ".mov", ".m4v", ".mkv"}
#: keyframes closer than this PDQ distance to the last kept frame are near-duplicates (static shots)
FRAME_DUPLICATE_DISTANCE = 40
#: a video gets a frame at every shot change and at least one every this many seconds
DEFAULT_EVERY = 10.0
#: at most this many frames per video: a 10-minute trailer cutting every second stays under it
DEFAULT_MAX_FRAMES = 1000
#: our hash-list columns; the first four are the older (and ThreatExchange-like) layout
CSV_FIELDS = [
    "signal_type", "signal", "label", "source", "id", "group", "frame_ts", "note", "file_name", "sha256", "added_at",
    "quality", "extra_signals",
]


# ----------------------------------------------------------------------------- items


def item_label(entry: KnownMedia) -> str:
    """The label a person gave: a keyframe's label without its `` @ 12.5s`` suffix."""
    suffix = f" @ {entry.frame_ts:.1f}s" if entry.frame_ts is not None else ""
    return entry.label[: -len(suffix)] if suffix and entry.label.endswith(suffix) else entry.label


@dataclass
class KnownItem:
    """One thing a person added (an image, a video with its keyframes, a group of imported hashes)."""

    entries: list[KnownMedia]

    @property
    def first(self) -> KnownMedia:
        return self.entries[0]

    @property
    def id(self) -> str:
        """The item's id: its first entry's (``known show``/``remove`` take it, or any of its entry ids)."""
        return self.first.id

    @property
    def key(self) -> str:
        """What names the item among those of its kind: its group (a video's SHA-256), else its entry's id."""
        return self.first.item

    @property
    def label(self) -> str:
        return item_label(self.first)

    @property
    def media(self) -> str:
        """``video`` (keyframes), ``image`` (an archived file) or ``hashes`` (an imported hash list row)."""
        if any(e.frame_ts is not None for e in self.entries):
            return "video"
        return "image" if any(e.archive_path for e in self.entries) else "hashes"

    @property
    def sha256(self) -> str | None:
        """The added file's SHA-256: the video's for keyframes (their group), else the entry's."""
        return self.first.group if self.media == "video" else self.first.sha256

    def to_json(self) -> dict[str, Any]:
        first = self.first
        posted = first.origin.get("posted_at") if first.origin else None
        return {
            "id": self.id,
            "kind": first.kind.value,
            "media": self.media,
            "label": item_label(first),
            "source": first.source,
            "file_name": first.file_name,
            "sha256": self.sha256,
            "group": first.group,
            "entries": len(self.entries),
            "frames": len(self.entries) if self.media == "video" else 0,
            "added_at": iso(first.added_at),
            "first_seen": iso(parse_iso(posted)) if isinstance(posted, str) and posted else None,
        }


def items_of(entries: Iterable[KnownMedia]) -> list[KnownItem]:
    """Entries gathered into items (by kind and group; an entry without a group is an item of its own),
    in the order their first entries were added."""
    items: dict[tuple[str, str], KnownItem] = {}
    for entry in entries:
        key = (entry.kind.value, entry.group or f"id:{entry.id}")
        if key in items:
            items[key].entries.append(entry)
        else:
            items[key] = KnownItem([entry])
    return list(items.values())


def find_item(store: KnownMediaStore, ref: str) -> KnownItem | None:
    """The item with an entry id ``ref`` (any of its entries), or whose group (a video's SHA-256) is ``ref``."""
    entry = store.get_known(ref)
    if entry is not None:
        if not entry.group:
            return KnownItem([entry])
        return KnownItem(store.find_known_by_group(entry.group, entry.kind))
    items = items_of(store.find_known_by_group(ref))
    if len(items) > 1:  # a known video also seen in a post: the group names the known item
        items = [i for i in items if i.first.kind == KnownKind.KNOWN]
    return items[0] if len(items) == 1 else None


def remove_item(store: KnownMediaStore, item: KnownItem) -> int:
    """Remove every entry of ``item`` (one transaction for a group). Returns the entries removed."""
    if item.first.group:
        return store.remove_known_group(item.first.group, item.first.kind)
    return int(store.remove_known(item.id))


def _known_item_for_file(store: KnownMediaStore, sha256: str) -> KnownItem | None:
    """The known item a file already is: an image entry with this SHA-256 or a video whose group it is.
    Hash-only entries (an imported list) are :class:`HashOnlyEntries`' business: the file is attached to them."""
    for entry in store.find_known_by_sha256(sha256):
        if entry.kind == KnownKind.KNOWN and entry.archive_path:
            return find_item(store, entry.id)
    frames = [e for e in store.find_known_by_group(sha256, KnownKind.KNOWN) if e.archive_path]
    return KnownItem(frames) if frames else None


# ----------------------------------------------------------------------------- adding


@dataclass(frozen=True)
class AddOptions:
    """How files and URLs are added: what a person says of them (``label``, ``source``, ``note``; a label or
    source left None is taken from each file or page) and how a video is sampled (a frame at every shot
    change and at least one every ``every`` seconds, at most ``max_frames``; ``frame_progress`` is told as
    the scan goes). ``hash_only``: the imported hash-only entries a new file may attach to (None: read from
    the store once per add)."""

    label: str | None = None
    source: str | None = None
    note: str | None = None
    every: float = DEFAULT_EVERY
    max_frames: int = DEFAULT_MAX_FRAMES
    frame_progress: Callable[[ShotScan], None] | None = None
    hash_only: HashOnlyEntries | None = None


@dataclass
class Added:
    """What happened to one input of an add: added as ``item``, already known as ``known_as``, or ``error``.
    ``attached``: ``known_as`` was a hash-only entry and now holds the file; ``note`` says more about it."""

    input: str
    item: KnownItem | None = None
    known_as: KnownItem | None = None
    error: str | None = None
    warning: str | None = None
    attached: bool = False
    note: str | None = None


class HashOnlyEntries:
    """The known entries that are hashes without a file (rows of an imported list), looked up by the PDQ hash
    or SHA-256 of a file being added: that file is the picture such an entry describes, so it is attached to
    the entry (which gains the file and its local features) instead of becoming a second entry of the same
    picture. The PDQ look-up table is read once, on first use, for a whole add command."""

    def __init__(self, store: StateStore):
        self.store = store
        self._by_pdq: dict[str, KnownMedia] | None = None

    def match(self, sha256: str, pdq: str | None) -> KnownMedia | None:
        """The hash-only entry with this SHA-256, else with exactly this PDQ hash (oldest first)."""
        for entry in self.store.find_known_by_sha256(sha256):
            if entry.kind == KnownKind.KNOWN and not entry.archive_path:
                return entry
        if not pdq:
            return None
        if self._by_pdq is None:
            self._by_pdq = {}
            for entry in self.store.iter_known(KnownKind.KNOWN):
                value = entry.signals.get("pdq")
                if value and not entry.archive_path:
                    self._by_pdq.setdefault(value.lower(), entry)
        return self._by_pdq.get(pdq.lower())

    def attached(self, entry: KnownMedia) -> None:
        """``entry`` holds a file now: it is no longer hash-only."""
        if self._by_pdq is not None:
            self._by_pdq = {k: v for k, v in self._by_pdq.items() if v.id != entry.id}


def _attach(input: str, store: StateStore, twin: KnownMedia, file_entry: KnownMedia, hash_only: HashOnlyEntries) -> Added:
    """Give the hash-only entry ``twin`` the file of ``file_entry`` (archived, with its signals), keeping the
    entry's id, label, source, note and group; the outcome names it. An entry that names another file (its
    SHA-256 differs: the same picture encoded otherwise) keeps what it has."""
    if twin.sha256 and twin.sha256 != file_entry.sha256:
        return Added(input, known_as=KnownItem([twin]),
                     note="a hash-only entry of another file with the same picture (PDQ hash); the file was not attached")
    entry = replace(twin, sha256=file_entry.sha256, archive_path=file_entry.archive_path,
                    signals={**twin.signals, **file_entry.signals}, file_name=twin.file_name or file_entry.file_name)
    stored = store.add_known(entry)  # the same id: replaced in place
    hash_only.attached(stored)
    return Added(input, known_as=KnownItem([stored]), attached=True,
                 note="it was a hash-only entry: the file is attached to it now (archived, local features added)")


@dataclass
class AddReport:
    """Every input's outcome, in order."""

    outcomes: list[Added] = field(default_factory=list)

    @property
    def added(self) -> list[KnownMedia]:
        """Every entry added (a video's keyframes each)."""
        return [e for o in self.outcomes if o.item for e in o.item.entries]

    @property
    def duplicates(self) -> list[tuple[str, KnownItem]]:
        return [(o.input, o.known_as) for o in self.outcomes if o.known_as is not None]

    @property
    def errors(self) -> list[tuple[str, str]]:
        return [(o.input, o.error) for o in self.outcomes if o.error is not None]


def iter_media_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Files named, and image/video files under named folders (recursive, sorted)."""
    for p in map(Path, paths):
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES:
                    yield f
        else:
            yield p


def _image_entry(
    archive: Archive,
    data: bytes,
    *,
    label: str,
    image: Image.Image | None = None,
    sha256: str | None = None,
    signals: dict[str, str] | None = None,
    **fields: Any,
) -> KnownMedia:
    """Archive ``data`` and build its entry (not stored yet). ``signals``: already computed from ``data``."""
    if signals is None:
        signals = compute_signals(prepare(image) if image is not None else decode_image(data))
    kind_ext = sniff(data[:SNIFF_BYTES])
    archived = archive.put(data, kind_ext.ext if kind_ext else "bin")
    return KnownMedia(
        label=label,
        signals=signals,
        sha256=sha256 or hashlib.sha256(data).hexdigest(),
        archive_path=archived.relpath,
        **fields,
    )


def add_image(
    store: KnownMediaStore,
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
    file_name: str | None = None,
) -> KnownMedia | None:
    """Archive ``data``, hash it and add an entry. None when the same file is already known (same kind).

    ``image`` is the decoded working image when the caller already has it (saves a decode)."""
    sha = hashlib.sha256(data).hexdigest()
    if any(e.kind == kind and e.archive_path for e in store.find_known_by_sha256(sha)):
        return None
    entry = _image_entry(
        archive, data, label=label, image=image, sha256=sha, kind=kind, source=source, note=note,
        frame_ts=frame_ts, origin=dict(origin or {}), group=group, file_name=file_name,
    )
    return store.add_known(entry)


@dataclass
class VideoFrames:
    """The keyframe entries of a video (not stored yet) and what the scan saw."""

    entries: list[KnownMedia]
    scan: ShotScan

    @property
    def warning(self) -> str | None:
        """Said when ``max_frames`` cut the video short."""
        if self.scan.capped_at is None:
            return None
        return (
            f"kept the first {self.scan.kept} frames (up to {self.scan.capped_at:.0f}s of "
            f"{self.scan.duration:.0f}s): the rest of the video was not sampled; raise --max-frames to keep more"
        )


def video_frames(archive: Archive, data: bytes, options: AddOptions, file_name: str | None = None) -> VideoFrames:
    """Keyframes at shot changes (and every ``options.every`` seconds), near-duplicates dropped, each archived
    as PNG (the exact pixels hashed, shown and re-verified later) with its timestamp, grouped by the video's
    SHA-256, labelled ``options.label`` (else the file name) and its time. The video file is archived too."""
    label = options.label or file_name or "video"
    group = hashlib.sha256(data).hexdigest()
    sniffed = sniff(data[:SNIFF_BYTES])
    archive.put(data, sniffed.ext if sniffed else "bin")
    scan = ShotScan()
    entries: list[KnownMedia] = []
    seen: set[str] = set()
    last: str | None = None
    for ts, frame in iter_shot_frames(
        data, every=options.every, max_frames=options.max_frames, scan=scan, progress=options.frame_progress
    ):
        pdq = PdqSignal.compute(frame)
        if last is not None and PdqSignal.distance(pdq, last) < FRAME_DUPLICATE_DISTANCE:
            continue
        last = pdq
        buf = io.BytesIO()
        frame.convert("RGB").save(buf, "PNG")
        png = buf.getvalue()
        sha = hashlib.sha256(png).hexdigest()
        if sha in seen:
            continue
        seen.add(sha)
        entries.append(
            _image_entry(
                archive, png, label=f"{label} @ {ts:.1f}s", image=frame, sha256=sha, source=options.source,
                note=options.note, frame_ts=ts, group=group, file_name=file_name,
            )
        )
    return VideoFrames(entries, scan)


def _is_video(data: bytes, name: str) -> bool:
    head = sniff(data[:SNIFF_BYTES])
    if head is not None:
        return head.kind == "video"
    return Path(name).suffix.lower() in VIDEO_SUFFIXES


def add_media(
    store: KnownMediaStore, archive: Archive, data: bytes, options: AddOptions, *, input: str, file_name: str
) -> Added:
    """Add one file's bytes as one item (an image, or a video's keyframes), stored in one transaction,
    labelled ``options.label`` (else the file name).

    A file already known is not added again: the outcome names the item it is known as. An image whose
    SHA-256 or exact PDQ hash is a hash-only entry's (an imported row) is attached to that entry instead."""
    sha = hashlib.sha256(data).hexdigest()
    known_as = _known_item_for_file(store, sha)
    if known_as is not None:
        return Added(input, known_as=known_as)
    if _is_video(data, file_name):
        frames = video_frames(archive, data, options, file_name)
        return Added(input, item=KnownItem(store.add_known_many(frames.entries)), warning=frames.warning)
    label = options.label or file_name
    signals = compute_signals(decode_image(data))
    hash_only = options.hash_only or HashOnlyEntries(store)
    twin = hash_only.match(sha, signals.get("pdq"))
    if twin is not None and twin.sha256 and twin.sha256 != sha:
        return _attach(input, store, twin, KnownMedia(label, signals, sha256=sha), hash_only)  # nothing archived
    entry = _image_entry(archive, data, label=label, source=options.source, note=options.note, file_name=file_name,
                         sha256=sha, signals=signals)
    if twin is not None:
        return _attach(input, store, twin, entry, hash_only)
    return Added(input, item=KnownItem([store.add_known(entry)]))


def add_paths(
    store: KnownMediaStore,
    archive: Archive,
    paths: Iterable[str | Path],
    options: AddOptions = AddOptions(),
    *,
    on_start: Callable[[str], None] | None = None,
    on_outcome: Callable[[Added], None] | None = None,
) -> AddReport:
    """Add image and video files (folders recursively), one item each. A file that fails is reported, the
    rest go on. An interruption (Ctrl-C) propagates: the file being added is not stored at all, the items
    added before it stay (``on_outcome`` has been told about each).

    Without ``options.label`` each entry is labelled with its file name; without ``options.source`` with its
    path."""
    report = AddReport()
    options = replace(options, hash_only=options.hash_only or HashOnlyEntries(store))
    for f in iter_media_files(paths):
        if on_start is not None:
            on_start(str(f))
        try:
            outcome = add_media(
                store, archive, f.read_bytes(), replace(options, source=options.source or str(f)), input=str(f),
                file_name=f.name,
            )
        except MediaError as e:
            outcome = Added(str(f), error=f"{e.reason}: {e}")
        except OSError as e:
            outcome = Added(str(f), error=f"cannot read the file: {e.strerror or e}")
        report.outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)
    return report


def add_url(
    store: KnownMediaStore, archive: Archive, fetcher: MediaFetcher, url: str, options: AddOptions = AddOptions()
) -> Added:
    """Download a direct image/video link or a video page's video (:mod:`bot.media.pages`) and add it; the
    URL given (the page, for a video page) is the source and the page's title the label unless ``options``
    say otherwise."""
    try:
        got = download(fetcher, url)
        given = replace(options, label=options.label or got.title, source=options.source or got.source)
        return add_media(store, archive, got.media.data, given, input=url, file_name=got.file_name)
    except MediaError as e:
        return Added(url, error=f"{e.reason}: {e}")


def remember_seen(
    store: KnownMediaStore,
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
    appeared in stays its origin, also when two daemons remember the same file at the same instant (one
    atomic insert-or-get in the store); the entry returned is that first one."""
    if signals is None:  # a file seen before needs no hashing (add_seen below finds it too, after hashing)
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
    return store.add_seen(entry)[0]


# ----------------------------------------------------------------------------- hash lists


def export_csv(store: KnownMediaStore, out: TextIO, kind: KnownKind | None = KnownKind.KNOWN) -> int:
    """Write one row per hash of each entry (:data:`CSV_FIELDS`), so :func:`import_csv` gives back the same
    entries: ids, labels, sources, notes, frame times, groups, file names and SHA-256. Returns rows written."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    rows = 0
    for entry in store.iter_known(kind):
        # the PDQ quality and the signals that are not hash rows (a border-stripped PDQ, crop-retrieval
        # descriptors) ride on the entry's first row, so the import restores the entry exactly
        extra = {k: v for k, v in entry.signals.items() if k not in SIGNAL_TYPES and k != PdqSignal.quality_key}
        first = True
        for name in SIGNAL_TYPES:
            if entry.signals.get(name):
                writer.writerow(
                    [
                        name, entry.signals[name], entry.label, entry.source or "", entry.id, entry.group or "",
                        "" if entry.frame_ts is None else repr(entry.frame_ts), entry.note or "",
                        entry.file_name or "", entry.sha256 or "", iso(entry.added_at),
                        entry.signals.get(PdqSignal.quality_key, "") if name == PdqSignal.name else "",
                        json.dumps(extra, sort_keys=True) if first and extra else "",
                    ]
                )
                rows += 1
                first = False
    return rows


#: header names (lower case) of other tools' lists, mapped to ours
_COLUMN_ALIASES = {
    "type": "signal_type", "hash_type": "signal_type", "signal type": "signal_type",
    "indicator_type": "signal_type",
    "hash": "signal", "hash_value": "signal", "signal_value": "signal", "signal_str": "signal", "value": "signal",
    "indicator": "signal",
    "pdq": "signal", "pdq_hash": "signal", "hash_pdq": "signal",
    "name": "label", "description": "label", "title": "label",
    "url": "source", "source_url": "source",
    "group_id": "group", "item": "group",
    "timestamp": "frame_ts", "time": "frame_ts",
    "notes": "note", "comment": "note",
    "filename": "file_name", "file": "file_name",
}
_SIGNAL_ALIASES = {"pdq_hash": "pdq", "photo_pdq": "pdq", "hash_pdq": "pdq", "video_pdq": "pdq"}
_HEX = re.compile(r"[0-9a-fA-F]+")


@dataclass
class ImportReport:
    """What an import did. ``problems`` name every rejected row by line with the reason."""

    added: int = 0
    already: int = 0
    problems: list[str] = field(default_factory=list)


class _RowError(ValueError):
    """A rejected row; the message is the plain reason."""


def _header(row: list[str]) -> dict[str, int] | None:
    """Column positions when ``row`` is a header naming a hash column, else None (a data row)."""
    names = [c.strip().lower().lstrip("\ufeff") for c in row]
    mapped = [n if n in CSV_FIELDS or n == "quality" else _COLUMN_ALIASES.get(n, "") for n in names]
    if "signal" not in mapped or any(_HEX.fullmatch(n) and len(n) >= 16 for n in names):
        return None
    columns: dict[str, int] = {}
    for i, name in enumerate(mapped):
        if name and name not in columns:
            columns[name] = i
    if "signal_type" not in columns and names[columns["signal"]] in ("pdq", "pdq_hash", "hash_pdq"):
        columns["_default_type"] = -1  # a column named "pdq": every row is a PDQ hash
    return columns


def _positional(row: list[str]) -> dict[str, int]:
    """Columns of a row without a header: ``signal_type,signal,label,source`` (ours, older), or a PDQ hash
    first (``hash[,quality[,file name]]`` as Facebook's pdq-photo-hasher writes)."""
    first = row[0].strip()
    if _HEX.fullmatch(first) and len(first) == PdqSignal.bits // 4:
        return {"signal": 0, "quality": 1, "file_name": 2, "_default_type": -1}
    return {"signal_type": 0, "signal": 1, "label": 2, "source": 3}


def _check_hash(cls: type[SignalType], value: str) -> str:
    digits = cls.bits // 4
    if not value:
        raise _RowError(f"the {cls.name} hash is empty")
    if not _HEX.fullmatch(value):
        bad = next(c for c in value if not _HEX.fullmatch(c))
        raise _RowError(f"the {cls.name} hash {value[:80]!r} has a character that is not hexadecimal ({bad!r})")
    if len(value) != digits:
        raise _RowError(f"the {cls.name} hash has {len(value)} hexadecimal characters, a {cls.name} hash has {digits}")
    return cls.validate(value)


def _row_entry(row: list[str], columns: dict[str, int], default_label: str, default_note: str) -> KnownMedia:
    def cell(name: str) -> str | None:
        i = columns.get(name)
        return row[i].strip() if i is not None and i >= 0 and i < len(row) else None

    raw_type = cell("signal_type")
    if raw_type is None or "_default_type" in columns:
        raw_type = "pdq"
    signal_type = _SIGNAL_ALIASES.get(raw_type.lower(), raw_type.lower())
    cls = SIGNAL_TYPES.get(signal_type)
    if cls is None:
        raise _RowError(f"unknown signal type {raw_type!r} (known: {', '.join(SIGNAL_TYPES)})")
    value = _check_hash(cls, cell("signal") or "")
    frame_ts: float | None = None
    if cell("frame_ts"):
        try:
            frame_ts = float(cell("frame_ts"))  # type: ignore[arg-type]
        except ValueError:
            raise _RowError(f"frame_ts {cell('frame_ts')!r} is not a number of seconds") from None
    sha = cell("sha256") or None
    if sha is not None and not (_HEX.fullmatch(sha) and len(sha) == 64):
        raise _RowError(f"sha256 {sha[:80]!r} is not 64 hexadecimal characters")
    fields: dict[str, Any] = {}
    if cell("added_at"):
        try:
            fields["added_at"] = parse_iso(cell("added_at"))
        except ValueError:
            raise _RowError(f"added_at {cell('added_at')!r} is not an ISO 8601 time") from None
    signals = {cls.name: value}
    quality = cell("quality")
    if quality and cls is PdqSignal:
        if not quality.isdigit() or int(quality) > 100:
            raise _RowError(f"quality {quality!r} is not a PDQ quality (a whole number from 0 to 100)")
        signals[PdqSignal.quality_key] = str(int(quality))
    if cell("extra_signals"):
        try:
            extra = json.loads(cell("extra_signals"))  # type: ignore[arg-type]
        except ValueError:
            extra = None
        if not isinstance(extra, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in extra.items()):
            raise _RowError("extra_signals is not a JSON object of texts")
        signals.update({k: v for k, v in extra.items() if k not in SIGNAL_TYPES})
    file_name = cell("file_name") or None
    label = cell("label") or file_name or default_label
    note = cell("note") if "note" in columns else default_note
    return KnownMedia(
        label=label,
        signals=signals,
        id=cell("id") or "",
        source=cell("source") or None,
        note=note or None,
        sha256=sha.lower() if sha else None,
        frame_ts=frame_ts,
        group=cell("group") or None,
        file_name=file_name,
        **fields,
    )


def _row_id(entry: KnownMedia) -> str:
    """A stable id for a row without one: importing the same list again adds nothing twice."""
    key = "\x1f".join(
        [*(f"{k}={v}" for k, v in sorted(entry.signals.items())), entry.label, entry.source or "", entry.group or "",
         repr(entry.frame_ts)]
    )
    return "h" + hashlib.sha256(key.encode()).hexdigest()[:15]


def import_csv(store: KnownMediaStore, src: TextIO, *, default_label: str = "imported", source_name: str = "") -> ImportReport:
    """Read a hash list (ours, a ThreatExchange-style PDQ list, or a bare column of PDQ hashes) and add every
    row, all in one transaction. Returns what was added and every rejected row, by line, with the reason.

    One entry per hash row; rows naming the same ``id`` (our export writes a PDQ and a pHash row per entry) are
    one entry; rows naming the same ``group`` are one item (a video's keyframes). Rows without an id get a
    stable one derived from their content, so importing a list twice adds nothing the second time; ids
    already in the store are left as they are (counted in ``already``)."""
    report = ImportReport()
    default_note = f"imported from {source_name}" if source_name else "imported hash list"
    reader = csv.reader(src)
    columns: dict[str, int] | None = None
    entries: dict[str, KnownMedia] = {}
    where: dict[str, int] = {}  # entry id -> line it was first read from
    try:
        for row in reader:
            lineno = reader.line_num
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            if columns is None:
                columns = _header(row)
                if columns is not None:
                    continue
                columns = _positional(row)
            try:
                entry = _row_entry(row, columns, default_label, default_note)
            except _RowError as e:
                report.problems.append(f"line {lineno}: {e}")
                continue
            entry = entry if entry.id else replace(entry, id=_row_id(entry))
            earlier = entries.get(entry.id)
            if earlier is None:
                entries[entry.id] = entry
                where[entry.id] = lineno
                continue
            name = next(k for k in entry.signals if k in SIGNAL_TYPES)
            if name in earlier.signals:
                same = earlier.signals[name] == entry.signals[name]
                reason = "repeats" if same else f"gives entry {entry.id} a second {name} hash; it already has one from"
                report.problems.append(f"line {lineno}: {reason} line {where[entry.id]}")
                continue
            entries[entry.id] = replace(earlier, signals={**earlier.signals, **entry.signals})
    except csv.Error as e:
        report.problems.append(f"line {reader.line_num}: not readable as CSV ({e}); the rows after it were not read")
    except UnicodeDecodeError:
        report.problems.append(f"after line {reader.line_num}: the file is not UTF-8 text; the rows after it were not read")
    fresh = [e for e in entries.values() if store.get_known(e.id) is None]
    report.already = len(entries) - len(fresh)
    report.added = len(store.add_known_many(fresh))
    return report


def describe(entry: KnownMedia) -> dict[str, Any]:
    """One entry as JSON (``known show --json`` lists an item's entries with it)."""
    return {
        "id": entry.id,
        "kind": entry.kind.value,
        "label": entry.label,
        "source": entry.source,
        "frame_ts": entry.frame_ts,
        "pdq": entry.signals.get("pdq"),
        "sha256": entry.sha256,
        "archive_path": entry.archive_path,
        "added_at": iso(entry.added_at),
    }
