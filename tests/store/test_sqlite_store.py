"""SQLite-only behaviour: schema migrations, WAL readers in other processes, thread safety."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bot.errors import StoreError
from bot.models import Post
from bot.store import open_store
from bot.store.common import BUDGET_KEEP_MINUTES, alert_post, dumps
from bot.store.records import Change, KnownMedia, OutboxAlert
from bot.store.sqlite import MIGRATIONS, SCHEMA_VERSION, SqliteStore, _split_statements
from bot.store.posts import AccountPoll

REPO_ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)


def post(post_id: str, text: str = "t", account: str = "gov") -> Post:
    return Post("x", account, post_id, f"https://x/{post_id}", text, T0, raw={"id": post_id})


def user_version(path) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA user_version").fetchone()[0]
    finally:
        conn.close()


def test_new_database_is_at_current_version_in_wal_mode(tmp_path):
    path = tmp_path / "a" / "b" / "state.db"
    store = SqliteStore(str(path))
    store.close()
    assert user_version(path) == SCHEMA_VERSION
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_open_store_url(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    assert isinstance(store, SqliteStore)
    assert store.url == f"sqlite:///{tmp_path}/s.db"
    store.close()


def database_at_version(path, version: int) -> sqlite3.Connection:
    """A database file as version ``version`` of the schema left it (open, for rows of that version)."""
    conn = sqlite3.connect(path)
    conn.create_function("afterimage_micros", 1, lambda v: 0)  # migration 4 backfills (empty tables here)
    for step in MIGRATIONS[:version]:
        for statement in _split_statements(step):
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {version}")
    return conn


def test_older_database_is_migrated_keeping_its_data(tmp_path):
    path = tmp_path / "state.db"
    conn = database_at_version(path, 1)
    conn.execute("INSERT INTO cursors (platform, account, cursor) VALUES ('x', 'gov', 'old-cursor')")
    conn.commit()
    conn.close()
    assert SCHEMA_VERSION > 1

    store = SqliteStore(str(path))
    assert user_version(path) == SCHEMA_VERSION
    assert store.get_cursor("x", "gov") == "old-cursor"
    assert store.acquire_lock("l", "me", 10)  # the table version 2 added
    store.close()
    SqliteStore(str(path)).close()  # reopening a current database changes nothing
    assert user_version(path) == SCHEMA_VERSION


def test_outbox_of_a_version_2_database_is_indexed_for_list_alerts(tmp_path):
    path = tmp_path / "state.db"
    conn = database_at_version(path, 2)

    def old_row(alert: OutboxAlert) -> None:  # what enqueue_alert wrote at version 2
        conn.execute(
            "INSERT INTO outbox (key, sent, data) VALUES (?, ?, ?)",
            (alert.key, 1 if alert.sent_at else 0, dumps(alert.to_dict())),
        )

    def payload(post_id, platform="x"):
        return {"platform": platform, "post_id": post_id, "media_sha256": "a" * 64}

    old_row(OutboxAlert("m1", "match", payload("1"), created_at=T0, sent_at=T0))
    old_row(OutboxAlert("d1", "deleted", payload("1"), created_at=T0))
    old_row(OutboxAlert("o1", "match", payload("2"), created_at=T0))
    old_row(OutboxAlert("digest:2026-03-01", "digest", {"date": "2026-03-01"}, created_at=T0))
    old_row(OutboxAlert("r1", "recycled", payload(1), created_at=T0))  # numeric post id
    old_row(OutboxAlert("odd", "match", payload(["1"]), created_at=T0))  # not indexable: never listed
    conn.commit()
    conn.close()

    store = SqliteStore(str(path))
    assert user_version(path) == SCHEMA_VERSION
    store.enqueue_alert(OutboxAlert("m2", "match", payload("1"), created_at=T0))
    assert [a.key for a in store.list_alerts("x", "1")] == ["m1", "d1", "r1", "m2"]
    assert [a.key for a in store.list_alerts("x", "1", kinds=["match", "recycled"])] == ["m1", "r1", "m2"]
    assert store.list_alerts("x", "1")[0].sent_at == T0
    assert [a.key for a in store.list_alerts("x", "2")] == ["o1"]
    assert store.outbox_size() == 6  # 7 rows, m1 sent
    store.close()
    store = SqliteStore(str(path))  # reopened: same answers, nothing migrated twice
    assert [a.key for a in store.list_alerts("x", "1")] == ["m1", "d1", "r1", "m2"]
    plan = store._query(
        "EXPLAIN QUERY PLAN SELECT seq, data FROM outbox WHERE platform = ? AND post_id = ? ORDER BY seq", ("x", "1")
    )
    assert "outbox_post" in " ".join(str(row) for row in plan)  # an index look-up, not a scan of the outbox
    store.close()


def test_outbox_of_a_version_3_database_is_indexed_for_alerts_between(tmp_path):
    path = tmp_path / "state.db"
    conn = database_at_version(path, 3)

    def old_row(alert: OutboxAlert) -> None:  # what enqueue_alert wrote at version 3
        platform, post_id = alert_post(alert.payload) or (None, None)
        conn.execute(
            "INSERT INTO outbox (key, sent, kind, platform, post_id, data) VALUES (?, ?, ?, ?, ?, ?)",
            (alert.key, 1 if alert.sent_at else 0, alert.kind, platform, post_id, dumps(alert.to_dict())),
        )

    def at(seconds: float) -> datetime:
        return T0 + timedelta(seconds=seconds)

    payload = {"platform": "x", "post_id": "1"}
    old_row(OutboxAlert("late", "match", payload, created_at=at(30)))
    old_row(OutboxAlert("m1", "match", payload, created_at=at(10), sent_at=at(11)))
    old_row(OutboxAlert("before", "match", payload, created_at=at(10 - 1e-6)))
    old_row(OutboxAlert("r1", "recycled", payload, created_at=at(20 - 1e-6)))
    old_row(OutboxAlert("d1", "deleted", payload, created_at=at(15)))
    old_row(OutboxAlert("until", "match", payload, created_at=at(20)))
    old_row(OutboxAlert("digest:2026-03-01", "digest", {"date": "2026-03-01"}, created_at=at(12)))
    conn.execute(  # a created_at written with an explicit offset is the same instant
        "UPDATE outbox SET data = json_set(data, '$.created_at', '2026-02-28T17:00:12.500000-07:00') WHERE key = 'd1'"
    )
    conn.commit()
    conn.close()

    store = SqliteStore(str(path))
    assert user_version(path) == SCHEMA_VERSION
    store.enqueue_alert(OutboxAlert("m2", "match", payload, created_at=at(19)))

    def keys(since: float, until: float, **kw):
        return [a.key for a in store.alerts_between(at(since), at(until), **kw)]

    assert keys(10, 20) == ["m1", "r1", "d1", "digest:2026-03-01", "m2"]
    assert keys(10, 20, kinds=["match", "recycled"]) == ["m1", "r1", "m2"]
    assert store.alerts_between(at(10), at(20))[0].sent_at == at(11)
    assert keys(0, 100) == ["late", "m1", "before", "r1", "d1", "until", "digest:2026-03-01", "m2"]
    assert keys(12.5, 12.5 + 1e-6) == ["d1"]
    store.close()
    store = SqliteStore(str(path))  # reopened: same answers, nothing migrated twice
    assert keys(10, 20) == ["m1", "r1", "d1", "digest:2026-03-01", "m2"]
    plan = store._query(
        "EXPLAIN QUERY PLAN SELECT seq, data FROM outbox WHERE created_us >= ? AND created_us < ? ORDER BY seq",
        (0, 1),
    )
    assert "outbox_created" in " ".join(str(row) for row in plan)  # an index range, not a scan of the outbox
    store.close()


def test_outbox_of_a_version_5_database_keeps_its_queue_and_can_park(tmp_path):
    path = tmp_path / "state.db"
    conn = database_at_version(path, 5)
    for key, sent_at in (("a1", None), ("a2", T0), ("a3", None), ("a4", None)):  # rows as version 5 wrote them
        data = OutboxAlert(key, "match", {"platform": "x", "post_id": "1"}, created_at=T0, sent_at=sent_at).to_dict()
        del data["parked"]  # the field did not exist
        conn.execute(
            "INSERT INTO outbox (key, sent, kind, platform, post_id, created_us, data) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (key, 1 if sent_at else 0, "match", "x", "1", 0, dumps(data)),
        )
    conn.commit()
    conn.close()

    store = SqliteStore(str(path))
    assert user_version(path) == SCHEMA_VERSION
    assert [a.key for a in store.due_alerts(T0)] == ["a1", "a3", "a4"] and store.outbox_size() == 3
    assert store.parked_alerts() == [] and not store.get_alert("a1").parked
    assert store.park_alert("a3", "400") is True
    assert [a.key for a in store.due_alerts(T0)] == ["a1", "a4"] and store.outbox_size() == 2
    assert [a.key for a in store.parked_alerts()] == ["a3"]
    plan = store._query("EXPLAIN QUERY PLAN SELECT seq, data FROM outbox WHERE parked = 1 AND sent = 0 ORDER BY seq")
    assert "outbox_parked" in " ".join(str(row) for row in plan)  # parked alerts are read from an index
    store.close()


def test_a_version_6_database_gets_budgets_keeping_its_data(tmp_path):
    path = tmp_path / "state.db"
    conn = database_at_version(path, 6)
    data = OutboxAlert("a1", "match", {"platform": "x", "post_id": "1"}, created_at=T0).to_dict()
    conn.execute(
        "INSERT INTO outbox (key, sent, kind, platform, post_id, created_us, data) VALUES (?, 0, ?, ?, ?, ?, ?)",
        ("a1", "match", "x", "1", 0, dumps(data)),
    )
    conn.commit()
    conn.close()

    store = SqliteStore(str(path))
    assert user_version(path) == SCHEMA_VERSION
    assert [a.key for a in store.due_alerts(T0)] == ["a1"]  # what version 6 wrote is still there
    assert store.budget_spent("recheck:x", T0) == 0
    store.spend_budget("recheck:x", T0, 3)
    store.close()
    store = SqliteStore(str(path))  # reopened: the spend is kept, nothing migrated twice
    assert store.budget_spent("recheck:x", T0) == 3
    store.close()


def test_a_spend_prunes_the_aged_minutes_of_every_budget(tmp_path):
    store = SqliteStore(str(tmp_path / "state.db"))
    keep = BUDGET_KEEP_MINUTES  # a UTC day and an hour: daily budgets read back to midnight
    for minute in (0, 30, 60, 90):  # spend on a budget that is then left alone
        store.spend_budget("recheck:gone", T0 + timedelta(minutes=minute))
    store.spend_budget("recheck:x", T0 + timedelta(minutes=keep + 60))
    rows = store._query("SELECT name, COUNT(*) FROM budget_spend GROUP BY name ORDER BY name")
    assert [tuple(r) for r in rows] == [("recheck:gone", 2), ("recheck:x", 1)]
    store.spend_budget("recheck:x", T0 + timedelta(minutes=2 * keep + 100))
    assert [tuple(r) for r in store._query("SELECT name, minute FROM budget_spend")] == [
        ("recheck:x", (int(T0.timestamp()) + (2 * keep + 100) * 60) // 60)
    ]
    store.close()


def test_newer_database_is_refused(tmp_path):
    path = tmp_path / "state.db"
    SqliteStore(str(path)).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        SqliteStore(str(path))


def test_not_a_database_is_a_store_error(tmp_path):
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError):
        SqliteStore(str(path))


READER = """
import sys, time
from bot.store.sqlite import SqliteStore
store = SqliteStore(sys.argv[1])
counts = []
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    counts.append(store.count_posts())
    store.outbox_size()
    if counts[-1] >= int(sys.argv[2]):
        break
print(len(counts), counts[-1], int(all(a <= b for a, b in zip(counts, counts[1:]))))
"""


def test_reader_process_while_daemon_writes(tmp_path):
    path = str(tmp_path / "state.db")
    store = SqliteStore(path)
    total = 150
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, path, str(total)], stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT
    )
    try:
        for i in range(total):
            store.record_poll(AccountPoll("x", "gov", [post(str(i))], cursor=str(i)))
            store.enqueue_alert(OutboxAlert(key=f"k{i}", kind="match", payload={}))
        out, _ = reader.communicate(timeout=30)
    finally:
        if reader.poll() is None:
            reader.kill()
    assert reader.returncode == 0
    reads, last, monotonic = out.split()
    assert int(reads) >= 1 and int(last) == total and monotonic == "1"
    store.close()


def test_several_threads_write_and_read_at_once(tmp_path):
    store = SqliteStore(str(tmp_path / "state.db"))
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(40):
                (change,) = store.record_poll(AccountPoll("x", f"acct{n}", [post(f"{n}-{i}", account=f"acct{n}")], cursor=str(i)))
                assert change.change is Change.NEW
                store.enqueue_alert(OutboxAlert(key=f"{n}-{i}", kind="match", payload={}))
                store.pending_posts(limit=5)
                store.count_posts()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.count_posts() == 240
    assert store.outbox_size() == 240
    assert all(store.get_cursor("x", f"acct{n}") == "39" for n in range(6))
    store.close()


def test_two_store_objects_on_one_file(tmp_path):
    path = str(tmp_path / "state.db")
    a, b = SqliteStore(path), SqliteStore(path)
    a.record_poll(AccountPoll("x", "gov", [post("1", "one")], cursor=None))
    (change,) = b.record_poll(AccountPoll("x", "gov", [post("1", "two")], cursor=None))
    assert change.change is Change.EDITED
    assert a.acquire_lock("l", "a", 30) and not b.acquire_lock("l", "b", 30)
    a.close()
    b.close()


def test_several_processes_creating_the_database_at_once(tmp_path):
    path = str(tmp_path / "fresh.db")
    script = "import sys; from bot.store.sqlite import SqliteStore; SqliteStore(sys.argv[1]).close()"
    procs = [subprocess.Popen([sys.executable, "-c", script, path], cwd=REPO_ROOT) for _ in range(4)]
    assert [p.wait(timeout=30) for p in procs] == [0, 0, 0, 0]
    assert user_version(path) == SCHEMA_VERSION


def test_known_media_of_a_version_7_database_are_grouped_into_items(tmp_path):
    path = tmp_path / "state.db"
    conn = database_at_version(path, 7)
    for i, group in enumerate(["v" * 64, "v" * 64, None]):
        entry = KnownMedia(label=f"e{i}", signals={"pdq": "0" * 64}, id=f"k{i}", group=group, added_at=T0)
        conn.execute("INSERT INTO known (id, kind, sha256, data) VALUES (?, 'known', NULL, ?)", (entry.id, dumps(entry.to_dict())))
    conn.commit()
    conn.close()

    store = SqliteStore(str(path))
    assert user_version(path) == SCHEMA_VERSION
    assert [e.id for e in store.find_known_by_group("v" * 64)] == ["k0", "k1"]
    plan = store._query("EXPLAIN QUERY PLAN SELECT data FROM known WHERE grp = ? ORDER BY seq", ("v" * 64,))
    assert "known_group" in " ".join(str(row) for row in plan)
    assert store.remove_known_group("v" * 64) == 2 and [e.id for e in store.iter_known()] == ["k2"]
    store.close()


def test_cases_of_a_database_without_change_times_are_read_by_the_evidence_job(tmp_path):
    """Cases written before their change time was a column: every one is still read on the first run (no
    ``since``), and deciding one later makes it read as changed then."""
    from bot.store.review import Case, CaseEvent
    from bot.store.sqlite import CASE_CHANGES_MIGRATION

    path = tmp_path / "state.db"
    version = MIGRATIONS.index(CASE_CHANGES_MIGRATION)
    conn = database_at_version(path, version)
    case = Case(kind="match", tier="match", platform="x", account="gov", post_id="1", media_sha256="a" * 64,
                known_item="k1", payload={}, created_at=T0, id="c1", updated_at=T0,
                history=(CaseEvent(T0, "afterimage", "opened"),))
    conn.execute("INSERT INTO cases (id, key, status, tier, platform, post_id, created_us, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                 (case.id, case.key, case.status, case.tier, case.platform, case.post_id, 0, dumps(case.to_dict())))
    conn.commit()
    conn.close()

    store = SqliteStore(str(path))
    assert [c.id for c in store.cases_changed_since(None)] == ["c1"]
    later = T0 + timedelta(hours=1)
    store.update_case(case.with_event(CaseEvent(later, "ana", "confirmed"), status="confirmed"), None)
    assert [c.id for c in store.cases_changed_since(later)] == ["c1"]
    store.close()
