"""The work queue contract, on both backends (SQLite leased rows, Redis Streams with a consumer group):
items handed out one by one, never twice at once, kept until acknowledged, taken over after a lease runs
out unless extended, one copy of an item at a time, and the backlog counted."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

from bot.store import open_work_queue
from bot.store.queue import parse_post_item, post_item


def queue_of(store, lease_seconds: float = 30.0):
    return open_work_queue(store, lease_seconds)


def test_items_are_handed_out_oldest_first_and_kept_until_acknowledged(store_opener):
    q = queue_of(store_opener())
    assert q.put("posts", ["a", "b", "c"]) == 3
    first = q.claim("posts", "w1", count=2)
    assert [c.item for c in first] == ["a", "b"]
    assert all(c.deliveries == 1 and c.topic == "posts" for c in first)
    assert [c.item for c in q.claim("posts", "w2", count=5)] == ["c"]
    assert q.claim("posts", "w3") == []  # everything is claimed
    q.ack(first[0])
    backlog = q.backlog("posts")
    assert (backlog.waiting, backlog.in_progress) == (0, 2)
    assert backlog.claims == {"w1": 1, "w2": 1}
    # a reopened store (another daemon) sees the same queue
    other = queue_of(store_opener())
    assert other.backlog("posts").in_progress == 2


def test_an_item_queued_or_claimed_is_not_queued_twice(store):
    q = queue_of(store)
    assert q.put("posts", ["a"]) == 1
    assert q.put("posts", ["a", "b"]) == 1
    (claim,) = q.claim("posts", "w1")
    assert q.put("posts", ["a"]) == 0  # being worked on: still one copy
    q.ack(claim)
    assert q.put("posts", ["a"]) == 1  # finished: may be queued again (a retry)
    assert q.put("other", ["a"]) == 1  # topics are separate


def test_a_dead_workers_claim_is_taken_over_after_its_lease(store):
    q = queue_of(store, lease_seconds=0.3)
    q.put("posts", ["a"])
    (dead,) = q.claim("posts", "dead")
    assert q.claim("posts", "alive") == []  # leased
    time.sleep(0.45)
    (taken,) = q.claim("posts", "alive")
    assert (taken.item, taken.deliveries) == ("a", 2)
    assert q.extend(dead, "dead") is False  # the dead worker (if it wakes up) learns it lost the claim
    assert q.extend(taken, "alive") is True
    q.ack(taken)
    assert q.backlog("posts").in_progress == 0 and q.claim("posts", "alive") == []


def test_claims_of_a_consumer_known_dead_are_claimable_at_once(store):
    q = queue_of(store, lease_seconds=60)
    q.put("posts", ["a", "b", "c"])
    dead = q.claim("posts", "host:1:dead/w0", count=2)
    q.claim("posts", "host:2:alive/w0")
    assert q.expire_claims("posts", "host:1:dead/w0") == 2
    taken = q.claim("posts", "host:3:new/w0", count=5)
    assert sorted(c.item for c in taken) == sorted(c.item for c in dead)  # not the live consumer's "c"
    assert q.backlog("posts").claims == {"host:2:alive/w0": 1, "host:3:new/w0": 2}


def test_extending_a_lease_keeps_the_claim(store):
    q = queue_of(store, lease_seconds=0.4)
    q.put("posts", ["slow"])
    (claim,) = q.claim("posts", "w1")
    for _ in range(4):  # 0.8 s in all, twice the lease, extended every 0.2 s
        time.sleep(0.2)
        assert q.extend(claim, "w1")
        assert q.claim("posts", "w2") == []
    q.ack(claim)


def test_concurrent_workers_never_get_the_same_item(store_opener):
    queues = [queue_of(store_opener()) for _ in range(4)]
    items = [f"i{n}" for n in range(60)]
    queues[0].put("posts", items)
    got: list[str] = []
    lock = threading.Lock()

    def worker(k: int) -> None:
        while True:
            claims = queues[k].claim("posts", f"w{k}", count=3)
            if not claims:
                return
            for c in claims:
                with lock:
                    got.append(c.item)
                queues[k].ack(c)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(got) == sorted(items)  # each exactly once


def test_a_waiting_worker_claims_an_item_queued_by_another_process_at_once(store_opener):
    """An idle worker waits on the queue: an item another daemon queues is claimed as soon as it is there,
    not at the worker's next look (an idle daemon used to wait up to half a second per post)."""
    waiting, other = queue_of(store_opener()), queue_of(store_opener())
    other.put("posts", ["first"])  # creates the topic, as a daemon's first poll does
    other.ack(waiting.claim("posts", "w0")[0])
    got: list = []
    worker = threading.Thread(target=lambda: got.append((waiting.claim_waiting("posts", "w1", wait=5.0), time.monotonic())))
    worker.start()
    time.sleep(0.3)  # the worker is waiting
    queued_at = time.monotonic()
    other.put("posts", ["new"])
    worker.join(6)
    (claims, claimed_at) = got[0]
    assert [(c.item, c.deliveries) for c in claims] == [("new", 1)]
    assert claimed_at - queued_at < 0.2  # not the 5 s wait
    assert other.backlog("posts").claims == {"w1": 1}  # a claim like any other: acknowledged, extended, taken over
    assert other.extend(claims[0], "w1")


def test_a_waiting_worker_gives_up_after_its_wait_and_still_takes_over_dead_claims(store):
    q = queue_of(store, lease_seconds=0.3)
    start = time.monotonic()
    assert q.claim_waiting("posts", "w1", wait=0.4) == []
    assert 0.35 < time.monotonic() - start < 1.5
    q.put("posts", ["a"])
    q.claim("posts", "dead")
    time.sleep(0.45)
    (taken,) = q.claim_waiting("posts", "w1", wait=5.0)
    assert (taken.item, taken.deliveries) == ("a", 2)


def test_backlog_reports_the_oldest_unfinished_item(store):
    q = queue_of(store)
    empty = q.backlog("posts")
    assert (empty.waiting, empty.in_progress, empty.oldest_enqueued_at) == (0, 0, None)
    before = datetime.now(timezone.utc).replace(microsecond=0)
    q.put("posts", ["a"])
    time.sleep(0.05)
    q.put("posts", ["b"])
    backlog = q.backlog("posts")
    assert backlog.waiting == 2
    oldest = backlog.oldest_enqueued_at
    assert oldest is not None and before <= oldest <= datetime.now(timezone.utc)
    (a,) = q.claim("posts", "w")
    assert q.backlog("posts").oldest_enqueued_at == oldest  # claimed but unfinished still counts
    q.ack(a)
    assert q.backlog("posts").oldest_enqueued_at > oldest


def test_daemons_announce_themselves_until_they_expire_or_withdraw(store):
    q = queue_of(store)
    q.announce("host:1:a", {"workers": 2, "busy": 1}, ttl_seconds=30)
    q.announce("host:2:b", {"workers": 4, "busy": 0}, ttl_seconds=0.2)
    assert [(d.name, d.info["workers"]) for d in q.daemons()] == [("host:1:a", 2), ("host:2:b", 4)]
    time.sleep(0.3)
    assert [d.name for d in q.daemons()] == ["host:1:a"]
    q.announce("host:1:a", {"workers": 2, "busy": 2}, ttl_seconds=30)  # refreshed, not added twice
    assert [d.info["busy"] for d in q.daemons()] == [2]
    q.withdraw("host:1:a")
    assert q.daemons() == []


def test_post_items_carry_the_version():
    item = post_item("x", "18:60", 3)
    assert parse_post_item(item) == ("x", "18:60", 3)
    assert post_item("x", "1", 1) != post_item("x", "1", 2)


def test_idle_consumers_without_claims_are_forgotten(store):
    q = queue_of(store)
    q.put("posts", ["a", "b"])
    (a,) = q.claim("posts", "stopped/w0")
    q.ack(a)
    q.claim("posts", "busy/w0")
    time.sleep(0.2)
    q.prune_consumers("posts", idle_seconds=0.1)
    assert q.backlog("posts").claims == {"busy/w0": 1}  # a consumer holding a claim is kept
    assert [c.item for c in q.claim("posts", "stopped/w0")] == []  # a forgotten name may come back


def test_an_item_failing_every_attempt_is_parked_until_retried(store_opener):
    q = queue_of(store_opener())
    q.put("posts", ["poison"])
    for attempt in range(1, 3):
        (claim,) = q.claim("posts", "w1")
        assert q.fail(claim, f"ValueError: attempt {attempt}", max_attempts=3) is False
        assert q.backlog("posts").waiting == 0  # out of the queue: the next sweep queues it again
        assert q.put("posts", ["poison"]) == 1
    (claim,) = q.claim("posts", "w1")
    assert q.fail(claim, "ValueError: attempt 3", max_attempts=3) is True
    assert q.put("posts", ["poison"]) == 0  # parked: sweeps leave it alone
    assert q.claim("posts", "w1") == []
    (failed,) = queue_of(store_opener()).failed("posts")  # seen by every daemon
    assert (failed.item, failed.attempts, failed.error) == ("poison", 3, "ValueError: attempt 3")
    assert failed.failed_at.tzinfo is not None
    assert q.backlog("posts").failed == 1 and q.backlog("rechecks").failed == 0

    assert q.retry("posts", "poison") is True and q.retry("posts", "poison") is False
    assert q.failed("posts") == [] and q.backlog("posts").failed == 0
    (claim,) = q.claim("posts", "w1")
    assert claim.item == "poison"
    assert q.fail(claim, "ValueError: once more", max_attempts=3) is False  # its count started again


def test_a_success_forgets_earlier_failures(store):
    q = queue_of(store)
    q.put("posts", ["flaky"])
    (claim,) = q.claim("posts", "w1")
    assert q.fail(claim, "TimeoutError", max_attempts=2) is False
    q.put("posts", ["flaky"])
    (claim,) = q.claim("posts", "w1")
    q.ack(claim)
    q.put("posts", ["flaky"])  # a later version of the work, say
    (claim,) = q.claim("posts", "w1")
    assert q.fail(claim, "TimeoutError", max_attempts=2) is False


def test_an_item_whose_workers_keep_dying_is_parked_instead_of_handed_out_again(store_opener):
    """A post that crashes its worker's process never reaches ``fail``: its claim runs out each time. The
    claim after ``max_deliveries`` such deaths parks it, naming the last holder, and hands out the rest."""
    q = queue_of(store_opener(), lease_seconds=0.2)
    q.put("posts", ["deadly", "fine"])
    for n in range(1, 4):
        (claim,) = q.claim("posts", f"host:{n}:d/w0", max_deliveries=3)
        assert (claim.item, claim.deliveries) == ("deadly", n)  # taken over first, each time by a new daemon
        q.expire_claims("posts", f"host:{n}:d/w0")  # its daemon was killed
    (claim,) = q.claim("posts", "host:4:d/w0", max_deliveries=3)
    assert claim.item == "fine"  # the dead item is parked, the claim goes on to the next one
    (failed,) = queue_of(store_opener()).failed("posts")
    assert failed.item == "deadly" and failed.attempts == 3
    assert failed.error == "the worker processing it died 3 time(s); last taken over from host:3:d/w0"
    assert q.backlog("posts").failed == 1 and q.backlog("posts").in_progress == 1
    assert q.put("posts", ["deadly"]) == 0  # sweeps leave it alone

    assert q.retry("posts", "deadly") is True
    (again,) = q.claim("posts", "host:4:d/w0", max_deliveries=3)
    assert (again.item, again.deliveries) == ("deadly", 1)  # its count starts again
    q.ack(again)
    assert q.failed("posts") == []


def test_one_takeover_after_a_dead_daemon_is_a_plain_redelivery(store):
    q = queue_of(store, lease_seconds=0.2)
    q.put("posts", ["a"])
    q.claim("posts", "dead/w0", max_deliveries=2)
    time.sleep(0.3)  # its lease ran out: taken over, under the limit
    (taken,) = q.claim("posts", "alive/w0", max_deliveries=2)
    assert (taken.item, taken.deliveries) == ("a", 2)
    q.ack(taken)
    assert q.failed("posts") == [] and q.backlog("posts").in_progress == 0
    # without a limit (re-check runs) an item is handed out however often its holders died
    q.put("rechecks", ["x"])
    for n in range(1, 5):
        (claim,) = q.claim("rechecks", f"d{n}")
        assert claim.deliveries == n
        q.expire_claims("rechecks", f"d{n}")
    assert q.failed("rechecks") == []


def test_a_dead_item_parked_after_earlier_raises_keeps_one_record(store):
    """Failures by raising and by dying end in the same list, one entry per item, counts reset on retry."""
    q = queue_of(store, lease_seconds=60)
    q.put("posts", ["mixed"])
    (claim,) = q.claim("posts", "w1", max_deliveries=1)
    assert q.fail(claim, "ValueError: bad", max_attempts=5) is False
    q.put("posts", ["mixed"])
    q.claim("posts", "host:9:gone/w0", max_deliveries=1)
    q.expire_claims("posts", "host:9:gone/w0")
    assert q.claim("posts", "w2", max_deliveries=1) == []
    (failed,) = q.failed("posts")
    assert failed.attempts == 1 and "died 1 time(s); last taken over from host:9:gone/w0" in failed.error
    assert q.retry("posts", "mixed")
    (claim,) = q.claim("posts", "w3", max_deliveries=1)
    assert q.fail(claim, "ValueError: bad", max_attempts=2) is False  # the earlier raise was forgotten too


def test_with_a_limit_taken_over_items_go_out_one_at_a_time(store):
    """A crash kills every claim of its daemon: the items it held are retried one by one (fresh items still go
    out beside them), so the next crash is blamed on the one item being retried, not on the bystanders."""
    q = queue_of(store, lease_seconds=60)
    q.put("posts", ["a", "b", "c", "d"])
    q.claim("posts", "host:1:dead/w0", count=2)  # a and b die with their daemon
    q.expire_claims("posts", "host:1:dead/w0")
    first = q.claim("posts", "host:2:new/w0", count=3, max_deliveries=5)
    assert [(c.item, c.deliveries) for c in first] == [("a", 2), ("c", 1), ("d", 1)]  # one takeover, then fresh
    assert q.claim("posts", "host:2:new/w1", max_deliveries=5) == []  # b waits while a is being retried
    q.ack(first[0])
    (b,) = q.claim("posts", "host:2:new/w1", max_deliveries=5)
    assert (b.item, b.deliveries) == ("b", 2)


def test_a_dead_claim_behind_many_live_ones_is_taken_over(store):
    """Many workers' live claims ahead of a dead one (a busy cluster) do not hide it from a claim with a limit."""
    q = queue_of(store, lease_seconds=60)
    q.put("posts", [f"i{n:02d}" for n in range(25)])
    for n in range(24):
        q.claim("posts", f"host:{n}:live/w0")
    q.claim("posts", "host:99:dead/w0")
    q.expire_claims("posts", "host:99:dead/w0")
    (taken,) = q.claim("posts", "host:100:new/w0", max_deliveries=5)
    assert (taken.item, taken.deliveries) == ("i24", 2)
