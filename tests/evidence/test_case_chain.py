"""Review decisions are evidence too: every line of a case's history (opened, confirmed, dismissed, reopened:
who, when, the note) goes into the hash chain once, is timestamped with the rest, and ``afterimage verify``
names an edited case entry exactly. On both store backends, with a local TSA."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from bot.archive import Archive
from bot.cases import CaseDesk
from bot.evidence.ledger import EvidenceLedger
from bot.evidence.stamper import Stamper
from bot.evidence.tsa import TsaClient, load_roots
from bot.evidence.verify import verify_all
from bot.store.base import StateStore
from bot.store.review import Case, CaseEvent
from tests.evidence.local_tsa import start_tsa

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def any_store(request: pytest.FixtureRequest, tmp_path) -> Iterator[StateStore]:
    if request.param == "sqlite":
        from bot.store.sqlite import SqliteStore

        store: StateStore = SqliteStore(str(tmp_path / "state.db"))
    else:
        from bot.store.redis import RedisStore

        store = RedisStore(request.getfixturevalue("redis_url"))
    yield store
    store.close()


def _case(post_id: str, item: str) -> Case:
    known = {"id": item, "label": f"{item} trailer", "source": "https://example.org/trailer"}
    return Case(kind="match", tier="match", platform="x", account="gov", post_id=post_id, media_sha256=post_id * 64,
                known_item=item, payload={"known": known}, created_at=T0, updated_at=T0,
                history=(CaseEvent(T0, "afterimage", "opened"),))


def _case_entries(ledger: EvidenceLedger) -> list[dict]:
    return [e for e in ledger.chain() if e["kind"] == "case"]


def test_case_decisions_are_chained_once_timestamped_and_an_edit_is_named(any_store, tmp_path, httpserver):
    store = any_store
    tsa = start_tsa(httpserver, tmp_path / "pki")
    ledger = EvidenceLedger(tmp_path / "evidence")
    archive = Archive(tmp_path / "archive")
    roots = load_roots(tsa.pki["ca"])

    def stamper() -> Stamper:  # a new one is a restarted daemon
        return Stamper(ledger, TsaClient([tsa.url], tsa.pki["ca"]), store, archive, cases=store)

    first, _ = store.open_case(_case("1", "gunship"))
    second, _ = store.open_case(_case("2", "stock"))
    assert any("2 case decision(s) are not in the chain yet" in n
               for n in verify_all(archive.root, ledger, roots, store=store).notes)

    job = stamper()
    assert job.run().chained == 2
    assert [(e["record"]["case_id"], e["record"]["action"]) for e in _case_entries(ledger)] == [
        (first.id, "opened"), (second.id, "opened")]

    clock = iter(T0 + timedelta(minutes=m) for m in (5, 6, 7))
    desk = CaseDesk(store, clock=lambda: next(clock))
    desk.decide(first.id, "confirm", "ana", "the 2015 trailer, frame 0:42")
    desk.decide(second.id, "dismiss", "bo", "a stock photo", scope="global")
    desk.decide(second.id, "reopen", "ana", "the stock photo is the trailer's poster")
    report = job.run()
    assert report.chained == 3 and report.error is None
    entries = _case_entries(ledger)
    confirm = entries[2]
    assert confirm["record"] == {
        "case_event_id": f"{first.id}/1", "case_id": first.id, "action": "confirmed", "by": "ana",
        "at": "2026-03-01T12:05:00Z", "note": "the 2015 trailer, frame 0:42", "scope": None, "case_kind": "match",
        "tier": "match", "platform": "x", "account": "gov", "post_id": "1", "media_sha256": "1" * 64,
        "known_item": "gunship", "known_label": "gunship trailer", "known_source": "https://example.org/trailer",
    }
    assert [(e["record"]["action"], e["record"]["by"], e["record"]["scope"]) for e in entries[3:]] == [
        ("dismissed", "bo", "global"), ("reopened", "ana", None)]
    # chained once: again, and after a restart, nothing is added
    assert job.run().chained == 0
    assert stamper().run().chained == 0
    assert len(_case_entries(ledger)) == 5
    proofs = ledger.proofs()
    assert all(proofs[e["hash"]].ref == f"chain:{e['seq']}" for e in entries)  # every decision timestamped
    result = verify_all(archive.root, ledger, roots, store=store)
    assert result.ok, result.problems
    assert not any("case decision" in n for n in result.notes)

    # someone rewrites the confirmation's note afterwards
    lines = ledger.chain_file.read_text().splitlines()
    seq = confirm["seq"]
    edited = json.loads(lines[seq])
    edited["record"]["note"] = "not the trailer after all"
    lines[seq] = json.dumps(edited, sort_keys=True)
    ledger.chain_file.write_text("\n".join(lines) + "\n")
    problems = verify_all(archive.root, ledger, roots, store=store).problems
    assert problems == [  # that entry, and nothing else
        f"chain entry {seq} (case {first.id} confirmed by ana, x/gov post 1): content does not match its hash (the entry was edited)",
    ]


def test_without_a_case_role_only_the_deletion_log_is_chained(tmp_path):
    from bot.store.sqlite import SqliteStore

    store = SqliteStore(str(tmp_path / "state.db"))
    store.open_case(_case("1", "gunship"))
    ledger = EvidenceLedger(tmp_path / "evidence")
    assert Stamper(ledger, None, store, Archive(tmp_path / "archive")).run().chained == 0
    assert Stamper(ledger, None, store, Archive(tmp_path / "archive"), cases=store).run().chained == 1
    store.close()
