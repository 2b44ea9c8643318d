"""The evidence folder beside the archive: what waits for a timestamp, the hash chain, the stamped batches.

Layout (all plain files, so a copy of the data folder carries its proofs and ``openssl`` can read them):

- ``queue.jsonl``: items waiting for a timestamp, one JSON object a line (``kind``, ``ref``, ``sha256``,
  ``queued_at``).
  ``kind`` is ``file`` (an archived file: media, a raw post version, a post card; ``ref`` is its archive
  path) or ``chain`` (a chain entry; ``ref`` is ``chain:<seq>``). The archive appends as it stores new files
  (:meth:`EvidenceLedger.enqueue_file`), so a TSA outage never holds up the pipeline: the queue just grows.
- ``chain.jsonl``: the tamper-evident log. Each entry holds an event of the deletion log (deleted, edited,
  restored, ...; a ``case`` kind is accepted for review decisions) and ``prev``, the previous entry's hash;
  its own ``hash`` is the SHA-256 of its canonical JSON without ``hash``. Editing any entry breaks its hash,
  removing or reordering one breaks the next entry's ``prev``.
- ``batches/<root>.json`` and ``batches/<root>.tsr``: one timestamped batch. The JSON lists the items (their
  SHA-256 and Merkle audit path), the TSA and what its token says; the ``.tsr`` is the TSA's DER answer, whose
  message imprint is SHA-256 of the 32-byte Merkle root ``<root>``.
- ``index.jsonl``: ``sha256 -> batch root`` for every stamped item (appended with each batch), for look-ups.
- ``state.json``: when the last timestamp request failed (and why) and when one last succeeded, for status.
- ``exports.jsonl``: every export written with a manifest (its path and SHA-256), so ``afterimage verify``
  can re-check them; the manifest's hash is queued for a timestamp too (kind ``export``).

Writers take an exclusive ``flock`` on ``.lock``; daemons sharing the folder over a network file system need
one with working POSIX locks (NFSv4 does).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bot.files import atomic_write
from bot.models import canonical_json, iso, parse_iso, utcnow

GENESIS = "0" * 64
FILE = "file"
CHAIN = "chain"
EXPORT = "export"


def entry_hash(entry: dict[str, Any]) -> str:
    """The hash of a chain entry: SHA-256 of its canonical JSON without the ``hash`` field."""
    return hashlib.sha256(canonical_json({k: v for k, v in entry.items() if k != "hash"})).hexdigest()


@dataclass(frozen=True)
class QueuedItem:
    kind: str  # file | chain | export
    ref: str  # archive path, chain:<seq>, or an export manifest's path
    sha256: str
    queued_at: datetime | None = None  # None: queued by a version that did not record it

    def to_dict(self) -> dict[str, str]:
        d = {"kind": self.kind, "ref": self.ref, "sha256": self.sha256}
        if self.queued_at is not None:
            d["queued_at"] = iso(self.queued_at)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QueuedItem:
        return cls(d["kind"], d["ref"], d["sha256"], parse_iso(d.get("queued_at")))


@dataclass(frozen=True)
class TimestampQueue:
    """What ``afterimage status`` and ``/metrics`` say about timestamping: the items waiting for a token, when
    the oldest was queued, and the last TSA failure (its message names a TSA by scheme and host only) and
    last success, as the evidence job recorded them."""

    waiting: int
    oldest_queued_at: datetime | None
    last_error: str | None = None
    last_error_at: datetime | None = None
    last_stamped_at: datetime | None = None

    @property
    def failing(self) -> bool:
        """The last attempt failed (no success since the last error)."""
        return self.last_error_at is not None and (self.last_stamped_at is None or self.last_stamped_at < self.last_error_at)

    def oldest_seconds(self, now: datetime) -> float:
        return max(0.0, (now - self.oldest_queued_at).total_seconds()) if self.oldest_queued_at else 0.0


@dataclass(frozen=True)
class Proof:
    """Where an item's timestamp is: the batch (root), the item's audit path, and what the token said."""

    sha256: str
    kind: str
    ref: str
    root: str
    path: list[str]
    gen_time: str
    tsa: str
    tsa_url: str
    token_file: Path


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    """``(line number, object or None when the line is not JSON, raw line)`` for each non-empty line."""
    try:
        fh = path.open("r", encoding="utf-8")
    except FileNotFoundError:
        return
    with fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                obj = None
            yield n, obj if isinstance(obj, dict) else None, line


class EvidenceLedger:
    """The evidence folder (see module docstring). Safe to share between threads and processes."""

    def __init__(self, folder: str | os.PathLike[str]):
        self.folder = Path(folder)
        self.queue_file = self.folder / "queue.jsonl"
        self.chain_file = self.folder / "chain.jsonl"
        self.index_file = self.folder / "index.jsonl"
        self.batches = self.folder / "batches"

    # ------------------------------------------------------------------ locking
    @contextmanager
    def locked(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".lock", "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _append(self, path: Path, objects: Sequence[dict[str, Any]]) -> None:
        data = "".join(json.dumps(o, ensure_ascii=False, sort_keys=True) + "\n" for o in objects).encode("utf-8")
        with open(path, "ab") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    # ------------------------------------------------------------------ queue
    def enqueue(self, items: Sequence[QueuedItem]) -> None:
        if not items:
            return
        with self.locked():
            self._append(self.queue_file, [i.to_dict() for i in items])

    def enqueue_file(self, sha256: str, relpath: str) -> None:
        """Queue a newly archived file (the archive's ``on_new`` hook)."""
        self.enqueue([QueuedItem(FILE, relpath, sha256, utcnow())])

    def queued(self) -> list[QueuedItem]:
        return [QueuedItem.from_dict(o) for _, o, _ in _read_jsonl(self.queue_file) if o]

    # ------------------------------------------------------------------ timestamping state
    def record_attempt(self, error: str | None, at: datetime | None = None) -> None:
        """Remember how the last timestamp request went (``error`` None: a token was kept), for status."""
        state = self._state()
        key = "last_error" if error is not None else "last_stamped"
        state[f"{key}_at"] = iso(at or utcnow())
        if error is not None:
            state["last_error"] = error
        atomic_write(self.folder / "state.json", (json.dumps(state, sort_keys=True) + "\n").encode("utf-8"))

    def _state(self) -> dict[str, Any]:
        try:
            state = json.loads((self.folder / "state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def queue_status(self) -> TimestampQueue:
        queued = self.queued()
        times = [i.queued_at for i in queued if i.queued_at is not None]
        state = self._state()
        return TimestampQueue(
            waiting=len(queued),
            oldest_queued_at=min(times, default=None),
            last_error=state.get("last_error"),
            last_error_at=parse_iso(state.get("last_error_at")),
            last_stamped_at=parse_iso(state.get("last_stamped_at")),
        )

    def dequeue(self, done: Sequence[QueuedItem]) -> None:
        """Remove stamped items from the queue (items queued meanwhile stay)."""
        gone = {(i.kind, i.ref, i.sha256) for i in done}
        with self.locked():
            keep = [o for _, o, _ in _read_jsonl(self.queue_file) if o and (o["kind"], o["ref"], o["sha256"]) not in gone]
            atomic_write(self.queue_file, "".join(json.dumps(o, sort_keys=True) + "\n" for o in keep).encode("utf-8"))

    # ------------------------------------------------------------------ chain
    def chain(self) -> list[dict[str, Any]]:
        """Every chain entry as written (unparseable lines come back as ``{"_line": n, "_raw": text}``)."""
        return [o if o is not None else {"_line": n, "_raw": raw} for n, o, raw in _read_jsonl(self.chain_file)]

    def chain_since(self, offset: int) -> tuple[list[dict[str, Any]], int]:
        """The entries appended from byte ``offset`` on, and the new end offset (for a long-running reader)."""
        try:
            with self.chain_file.open("rb") as fh:
                fh.seek(offset)
                data = fh.read()
        except FileNotFoundError:
            return [], offset
        complete = data[: data.rfind(b"\n") + 1]
        entries = []
        for line in complete.splitlines():
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue
        return entries, offset + len(complete)

    def append_chain(self, kind: str, record: dict[str, Any], at: datetime | None = None) -> dict[str, Any]:
        """Append an entry committing to the previous one, queue its hash for a timestamp, return it."""
        with self.locked():
            last = self._last_chain_entry()
            entry = {
                "seq": int(last.get("seq", -1)) + 1 if last else 0,
                "recorded_at": iso(at or utcnow()),
                "kind": kind,
                "record": record,
                "prev": str(last.get("hash", "")) if last else GENESIS,
            }
            entry["hash"] = entry_hash(entry)
            self._append(self.chain_file, [entry])
            self._append(self.queue_file, [QueuedItem(CHAIN, f"chain:{entry['seq']}", entry["hash"], utcnow()).to_dict()])
        return entry

    def _last_chain_entry(self) -> dict[str, Any] | None:
        """The chain's last entry, read from the end of the file (appending stays cheap as the chain grows)."""
        try:
            with self.chain_file.open("rb") as fh:
                size = fh.seek(0, os.SEEK_END)
                block = 1 << 16
                while True:
                    fh.seek(max(0, size - block))
                    lines = [line for line in fh.read().split(b"\n") if line.strip()]
                    if not lines:
                        return None
                    if len(lines) > 1 or block >= size:
                        return json.loads(lines[-1])
                    block *= 4
        except FileNotFoundError:
            return None

    # ------------------------------------------------------------------ exports
    def record_export(self, manifest: Path, at: datetime | None = None) -> None:
        """Remember an export's manifest (absolute path and hash) and queue the hash for a timestamp."""
        manifest = Path(manifest).resolve()
        sha = hashlib.sha256(manifest.read_bytes()).hexdigest()
        with self.locked():
            self._append(self.folder / "exports.jsonl", [{"manifest": str(manifest), "sha256": sha, "at": iso(at or utcnow())}])
            self._append(self.queue_file, [QueuedItem(EXPORT, str(manifest), sha, utcnow()).to_dict()])

    def exports(self) -> list[dict[str, Any]]:
        return [o for _, o, _ in _read_jsonl(self.folder / "exports.jsonl") if o and o.get("manifest")]

    # ------------------------------------------------------------------ batches
    def batch_paths(self, root: str) -> tuple[Path, Path]:
        return self.batches / f"{root}.json", self.batches / f"{root}.tsr"

    def save_batch(self, batch: dict[str, Any], token: bytes) -> None:
        """Write the token and its batch, then index the batch's items (the index is only ever appended)."""
        meta, tsr = self.batch_paths(batch["root"])
        atomic_write(tsr, token)
        atomic_write(meta, (json.dumps(batch, indent=1, sort_keys=True) + "\n").encode("utf-8"))
        with self.locked():
            self._append(self.index_file, [{"sha256": i["sha256"], "kind": i["kind"], "ref": i["ref"], "root": batch["root"]}
                                           for i in batch["items"]])

    def iter_batches(self) -> Iterator[tuple[Path, dict[str, Any] | None]]:
        """``(json path, batch or None when unreadable)`` for every batch file."""
        for meta in sorted(self.batches.glob("*.json")):
            try:
                yield meta, json.loads(meta.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                yield meta, None

    def stamped(self, into: dict[str, str] | None = None, offset: int = 0) -> tuple[dict[str, str], int]:
        """``(sha256 -> batch root, end offset)`` of the stamped items indexed from byte ``offset`` on, added to
        ``into``: a long-running reader keeps the dict and the offset and reads only what was appended since."""
        out = into if into is not None else {}
        try:
            with self.index_file.open("rb") as fh:
                fh.seek(offset)
                data = fh.read()
        except FileNotFoundError:
            return out, offset
        complete = data[: data.rfind(b"\n") + 1]  # a line being appended right now is read next time
        for line in complete.splitlines():
            try:
                o = json.loads(line)
            except ValueError:
                continue
            out.setdefault(o["sha256"], o["root"])
        return out, offset + len(complete)

    def proofs(self, shas: Iterable[str] | None = None) -> dict[str, Proof]:
        """``sha256 -> Proof`` of the stamped items among ``shas`` (all when None): for reports and ``proof``.
        Only the batch files that hold them are read."""
        index, _ = self.stamped()
        wanted = set(index) if shas is None else {s for s in shas if s in index}
        out: dict[str, Proof] = {}
        batches: dict[str, dict[str, Any] | None] = {}
        for sha in wanted:
            root = index[sha]
            if root not in batches:
                meta, _ = self.batch_paths(root)
                try:
                    batches[root] = json.loads(meta.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    batches[root] = None
            batch = batches[root]
            item = next((i for i in (batch or {}).get("items", []) if i.get("sha256") == sha), None)
            if batch is None or item is None:
                continue
            token = batch.get("token") or {}
            out[sha] = Proof(sha256=sha, kind=item["kind"], ref=item["ref"], root=root, path=item["path"],
                             gen_time=token.get("gen_time", ""), tsa=token.get("tsa", ""), tsa_url=batch.get("tsa_url", ""),
                             token_file=self.batch_paths(root)[1])
        return out
