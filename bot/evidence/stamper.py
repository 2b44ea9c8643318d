"""The daemon's evidence job: copy new deletion-log events and case decisions into the hash chain, then
timestamp what waits.

Each run (every ``evidence.every``, default a minute):

1. events of the store's deletion log not yet in the chain are appended to it, in detection order, with the
   post's media hashes and its rendered post card(s) (deletions: the last version; edits: before and after),
   which go into the archive like any other evidence file;
2. the history lines of the review cases (opened, confirmed, dismissed, reopened, suppressed: who, when, the
   note) not yet in the chain are appended as ``case`` entries, each naming its case, post and known item.
   A line is identified by its case and its place in the case's history (``<case id>/<n>``), so it is
   chained once, also across restarts: the chain itself says what it already holds;
3. the queue (new archived files, new chain entries) is cut into batches of at most ``MAX_BATCH`` items;
   each batch's Merkle root is sent to the TSAs (the first that answers with a token that verifies wins),
   and the token, the batch and each item's audit path are written beside the archive.

A TSA that is down or answers with a token that does not verify leaves the queue as it is (logged once per
outage, and once when it recovers): timestamps are late, never lost, and nothing else waits for them.
The store is only read here; a single daemon runs the job at a time (store lock ``evidence``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bot.archive import Archive
from bot.evidence import merkle
from bot.evidence.ledger import EvidenceLedger, QueuedItem
from bot.evidence.tsa import TsaClient, TsaError
from bot.models import iso, parse_iso, utcnow
from bot.redact import redact
from bot.store.base import StateStore
from bot.store.deletion_log import EventFilter
from bot.store.review import Case, CaseEvent, CaseStore

log = logging.getLogger(__name__)

MAX_BATCH = 4096  # items per timestamp request: a backlog catches up in a few requests, each small
MAX_BATCHES_PER_RUN = 50
RUN_SECONDS = 300.0  # a run stops sending batches after this long (slow TSAs): the rest goes next run
EVENT_LOOKBACK = timedelta(hours=6)  # re-read events this far behind the last chained one (late writers, clock skew)


@dataclass
class StampReport:
    """What one run did: events chained, items stamped in how many batches, items still waiting, the TSA
    error that stopped it (None: all went out) and the batch roots written."""

    chained: int = 0
    stamped: int = 0
    batches: int = 0
    waiting: int = 0
    error: str | None = None
    roots: list[str] = field(default_factory=list)


@dataclass(eq=False, repr=False)
class Stamper:
    """``client`` None: events are still chained and cards made, nothing is sent to a TSA. ``cases``: the
    store's case role, whose history is chained too (None: no review loop, only deletion-log events)."""

    ledger: EvidenceLedger
    client: TsaClient | None
    store: StateStore
    archive: Archive
    clock: Callable[[], datetime] = utcnow
    cases: CaseStore | None = None
    _outage: str | None = field(default=None, init=False)
    #: sha256 -> batch root, read incrementally from the index
    _stamped: dict[str, str] = field(default_factory=dict, init=False)
    _index_offset: int = field(default=0, init=False)
    #: event id -> detected_at, read incrementally from the chain
    _chained: dict[str, datetime | None] = field(default_factory=dict, init=False)
    _chain_offset: int = field(default=0, init=False)
    #: case history line id -> its time
    _chained_cases: dict[str, datetime | None] = field(default_factory=dict, init=False)

    def stamped(self) -> dict[str, str]:
        self._stamped, self._index_offset = self.ledger.stamped(self._stamped, self._index_offset)
        return self._stamped

    def run(self) -> StampReport:
        report = StampReport()
        report.chained = self.sync_events() + self.sync_cases()
        if self.client is not None:
            self.stamp_queue(report)
        report.waiting = len(self.ledger.queued())
        return report

    # ------------------------------------------------------------------ chain
    def sync_events(self) -> int:
        """Append the store's events the chain does not hold yet; returns how many."""
        from bot.evidence.card import cards_for_event

        self._read_chain()
        last = max((t for t in self._chained.values() if t is not None), default=None)
        since = last - EVENT_LOOKBACK if last else None
        added = 0
        for event in self.store.list_events(EventFilter(since=since)):
            if event.id in self._chained:
                continue
            record: dict[str, Any] = {
                "event_id": event.id,
                "platform": event.platform,
                "account": event.account,
                "post_id": event.post_id,
                "detected_at": iso(event.detected_at),
                "details": event.details,
                "media_sha256": [m.sha256 for m in self.store.get_post_media(event.platform, event.post_id) if m.sha256],
            }
            try:
                record["cards"] = cards_for_event(self.store, self.archive, event)
            except Exception:  # a card is a picture of the evidence, not the evidence: chain the event anyway
                log.exception("cannot render the post card of event %s", event.id)
                record["cards"] = []
            self.ledger.append_chain(event.kind, record, at=self.clock())
            added += 1
        return added

    def _read_chain(self) -> None:
        """Learn what the chain holds from the entries appended since the last read (all of it after a start)."""
        entries, self._chain_offset = self.ledger.chain_since(self._chain_offset)
        for e in entries:
            record = e.get("record") or {}
            if record.get("event_id"):
                self._chained[str(record["event_id"])] = parse_iso(record.get("detected_at"))
            if record.get("case_event_id"):
                self._chained_cases[str(record["case_event_id"])] = parse_iso(record.get("at"))

    def sync_cases(self) -> int:
        """Append the case history lines the chain does not hold yet, oldest first; returns how many."""
        if self.cases is None:
            return 0
        self._read_chain()
        last = max((t for t in self._chained_cases.values() if t is not None), default=None)
        new: list[tuple[datetime, str, Case, CaseEvent]] = []
        for case in self.cases.cases_changed_since(last - EVENT_LOOKBACK if last else None):
            for n, line in enumerate(case.history):
                line_id = case_event_id(case.id, n)
                if line_id not in self._chained_cases:
                    new.append((line.at, line_id, case, line))
        for _, line_id, case, line in sorted(new, key=lambda x: x[0]):  # stable: ties keep the store's order
            self.ledger.append_chain("case", case_record(case, line_id, line), at=self.clock())
            self._chained_cases[line_id] = line.at
        return len(new)

    # ------------------------------------------------------------------ timestamps
    def stamp_queue(self, report: StampReport) -> None:
        assert self.client is not None
        stamped = self.stamped()
        deadline = time.monotonic() + RUN_SECONDS
        for _ in range(MAX_BATCHES_PER_RUN):
            if time.monotonic() > deadline:
                return
            queued = self.ledger.queued()
            already = [i for i in queued if i.sha256 in stamped]
            if already:
                self.ledger.dequeue(already)
            todo = list({i.sha256: i for i in queued if i.sha256 not in stamped}.values())[:MAX_BATCH]
            if not todo:
                return
            try:
                root = self.stamp_batch(todo)
            except TsaError as e:
                report.error = redact(str(e))
                if self._outage is None:
                    log.warning("timestamping delayed (%d item(s) wait): %s", len(queued), report.error)
                self._outage = report.error
                self.ledger.record_attempt(report.error, at=self.clock())
                return
            self.ledger.record_attempt(None, at=self.clock())
            if self._outage is not None:
                log.info("timestamping works again")
                self._outage = None
            stamped = self.stamped()
            report.batches += 1
            report.stamped += len(todo)
            report.roots.append(root)

    def stamp_batch(self, items: list[QueuedItem]) -> str:
        """Timestamp one batch and write it; returns its root (hex). Raises TsaError."""
        assert self.client is not None
        digests = [bytes.fromhex(i.sha256) for i in items]
        root, paths = merkle.root_and_paths(digests)
        url, token, info = self.client.stamp(root)
        batch = {
            "root": root.hex(),
            "tree": "RFC 6962 Merkle tree hash over the items' SHA-256 digests, in this order",
            "message": "the token's message is the 32 bytes of the root; its imprint is SHA-256 of them",
            "tsa_url": url,
            "token": info.to_dict(),
            "requested_at": iso(self.clock()),
            "items": [
                {**i.to_dict(), "path": merkle.path_to_json(path)} for i, path in zip(items, paths, strict=True)
            ],
        }
        self.ledger.save_batch(batch, token)
        log.info("timestamped %d item(s) at %s (batch %s…)", len(items), url, root.hex()[:12])
        return root.hex()

    def sweep_archive(self) -> int:
        """Queue archived files that have no timestamp and are not queued (e.g. archived before timestamps
        were configured, or by a process killed between the write and the queue). Returns how many."""
        known = set(self.stamped()) | {i.sha256 for i in self.ledger.queued()}
        missing = []
        for path in archive_files(self.archive.root):
            sha = path.name.split(".", 1)[0]
            if sha not in known:
                missing.append(QueuedItem("file", path.relative_to(self.archive.root).as_posix(), sha, self.clock()))
        self.ledger.enqueue(missing)
        return len(missing)


def case_event_id(case_id: str, n: int) -> str:
    """The identity of the ``n``-th line of a case's history (history lines are only ever appended)."""
    return f"{case_id}/{n}"


def case_record(case: Case, line_id: str, line: CaseEvent) -> dict[str, Any]:
    """A case history line as chained: the decision (who, when, what, the note), the case, the post and the
    known item it is about."""
    known = case.known
    return {
        "case_event_id": line_id,
        "case_id": case.id,
        "action": line.action,
        "by": line.by,
        "at": iso(line.at),
        "note": line.note,
        "scope": line.scope,
        "case_kind": case.kind,
        "tier": case.tier,
        "platform": case.platform,
        "account": case.account,
        "post_id": case.post_id,
        "media_sha256": case.media_sha256,
        "known_item": case.known_item,
        "known_label": known.get("label"),
        "known_source": known.get("source"),
    }


def archive_files(root: Path) -> list[Path]:
    """The final files of the archive (``ab/cd/<sha256>.<ext>``), never temporary ones."""
    return sorted(p for p in root.glob("??/??/*.*") if not p.name.startswith(".") and p.is_file())
