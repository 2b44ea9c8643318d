"""Redis-only behaviour: URL handling, password redaction, key prefixes, connection errors, atomic versioning
with several clients. Needs a real redis-server (``redis_url`` fixture)."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import pytest
import redis

from bot.errors import StoreError
from bot.models import Post
from bot.redact import redact
from bot.store import open_store
from bot.store.common import BUDGET_KEEP_MINUTES
from bot.store.records import Change, KnownMedia, OutboxAlert
from bot.store.redis import RedisStore, parse_store_url
from tests.redis_keys import delete_prefix, prefix_of
from bot.store.posts import AccountPoll

pytestmark = pytest.mark.redis

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)


def post(post_id: str, text: str = "t") -> Post:
    return Post("x", "gov", post_id, f"https://x/{post_id}", text, T0, raw={"id": post_id})


def raw_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url.split("?", 1)[0], decode_responses=True)


@pytest.fixture
def cleanup():
    """Delete every key under the prefixes a test registers."""
    urls: list[str] = []
    yield urls.append
    for url in urls:
        delete_prefix(url)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- URL handling (no server needed)


def test_prefix_is_stripped_and_redis_options_pass_through():
    url, prefix, password = parse_store_url(
        "rediss://:s3cr%40t@redis.example.org:6380/2?prefix=team1&ssl_cert_reqs=none&ssl_ca_certs=/etc/ca.pem"
    )
    assert prefix == "team1" and password == "s3cr@t"
    assert "prefix" not in url
    kwargs = redis.Redis.from_url(url).connection_pool.connection_kwargs
    assert kwargs["ssl_cert_reqs"] == "none" and kwargs["ssl_ca_certs"] == "/etc/ca.pem"
    assert kwargs["password"] == "s3cr@t" and kwargs["db"] == 2 and kwargs["port"] == 6380


def test_default_prefix_and_unix_socket_url():
    url, prefix, password = parse_store_url("unix:///run/redis/redis.sock?db=3")
    assert prefix == "afterimage" and password is None
    assert url == "unix:///run/redis/redis.sock?db=3"
    assert redis.Redis.from_url(url).connection_pool.connection_kwargs["path"] == "/run/redis/redis.sock"


@pytest.mark.parametrize("bad", ["http://localhost:6379", "redis://localhost?prefix=", "redis://localhost?prefix=a%20b"])
def test_bad_urls_are_store_errors(bad):
    with pytest.raises(StoreError):
        parse_store_url(bad)


def test_unreachable_server_is_a_fast_store_error_without_the_password():
    port = free_port()  # nothing listens there
    started = time.monotonic()
    with pytest.raises(StoreError) as info:
        RedisStore(f"redis://:hunter2-pw@127.0.0.1:{port}/0?socket_connect_timeout=0.5&prefix=p")
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert "hunter2-pw" not in message
    assert "cannot reach" in message and f"127.0.0.1:{port}" in message
    assert redact("leaked hunter2-pw") == "leaked ***"  # the password was registered as a secret


# --------------------------------------------------------------------------- against the test server


def test_open_store_url_and_redacted_url(redis_url, cleanup):
    cleanup(redis_url)
    store = open_store(redis_url)
    assert isinstance(store, RedisStore)
    assert store.url.endswith(f"?prefix={prefix_of(redis_url)}")
    store.close()


def test_password_in_url_is_used_and_redacted(redis_url, cleanup):
    cleanup(redis_url)
    admin = raw_client(redis_url)
    user, password = f"afterimage-test-{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    prefix = prefix_of(redis_url)
    admin.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys=[f"{prefix}:*"], commands=["+@all"])
    try:
        parts = urlsplit(redis_url)
        url = f"redis://{user}:{password}@{parts.hostname}:{parts.port}{parts.path}?prefix={prefix}"
        store = RedisStore(url)
        assert password not in store.url and f"{user}:***@" in store.url
        assert redact(f"url was {url}") == f"url was {url.replace(password, '***')}"
        store.record_poll(AccountPoll("x", "gov", [post("1")], cursor="c"))
        assert store.get_cursor("x", "gov") == "c"
        store.close()

        with pytest.raises(StoreError) as info:
            RedisStore(url.replace(password, "wrong-password-123"))
        assert "wrong-password-123" not in str(info.value)
    finally:
        admin.acl_deluser(user)
        admin.close()


def test_every_key_is_under_the_prefix_and_prefixes_are_isolated(redis_url, cleanup):
    other_url = redis_url.rsplit("prefix=", 1)[0] + f"prefix=other-{uuid.uuid4().hex[:8]}"
    cleanup(redis_url)
    cleanup(other_url)
    client = raw_client(redis_url)
    before = set(client.scan_iter(match="*"))
    a, b = RedisStore(redis_url), RedisStore(other_url)
    a.record_poll(AccountPoll("x", "gov", [post("1")], cursor="a"))
    a.enqueue_alert(OutboxAlert(key="k", kind="match", payload={}))
    a.acquire_lock("l", "me", 30)
    assert b.get_post("x", "1") is None and b.get_cursor("x", "gov") is None
    assert b.count_posts() == 0 and b.outbox_size() == 0
    assert b.enqueue_alert(OutboxAlert(key="k", kind="match", payload={})) is True
    assert b.acquire_lock("l", "other", 30) is True

    written = set(client.scan_iter(match="*")) - before
    prefix, other = prefix_of(redis_url), prefix_of(other_url)
    assert any(k.startswith(f"{prefix}:post:") for k in written)
    assert any(k.startswith(f"{other}:outbox") for k in written)
    assert all(k.startswith((f"{prefix}:", f"{other}:")) for k in written)
    client.close()
    a.close()
    b.close()


def test_budget_is_one_hash_per_name_that_expires_when_left_alone(redis_url, cleanup):
    cleanup(redis_url)
    store = RedisStore(redis_url)
    keep = BUDGET_KEEP_MINUTES  # a UTC day and an hour: daily budgets read back to midnight
    for minute in (0, 30, 60, keep + 30, keep + 45):
        store.spend_budget("recheck:x", T0 + timedelta(minutes=minute))
    client = raw_client(redis_url)
    key = f"{prefix_of(redis_url)}:budget:recheck:x"
    assert client.hlen(key) == 3  # the minutes within BUDGET_KEEP_MINUTES of the latest spend (60 on), and its own
    assert 0 < client.pttl(key) <= keep * 60_000  # a budget nobody spends on any more goes on its own
    client.close()
    store.close()


def test_alerts_enqueued_before_the_per_post_index_are_indexed_at_open(redis_url, cleanup):
    base = redis_url.rsplit("prefix=", 1)[0]
    tag = uuid.uuid4().hex[:8]
    url, other_url = f"{base}prefix=g*{tag}", f"{base}prefix=g-other{tag}"  # a glob character in the prefix
    cleanup(url)
    cleanup(other_url)
    store, other = RedisStore(url), RedisStore(other_url)

    def match(key: str, post_id: str) -> OutboxAlert:
        return OutboxAlert(key=key, kind="match", payload={"platform": "x", "post_id": post_id}, created_at=T0)

    store.enqueue_alert(match("m1", "1"))
    store.enqueue_alert(match("m2", "2"))
    store.enqueue_alert(match("m3", "1"))
    store.mark_alert_sent("m1", T0)
    other.enqueue_alert(match("theirs", "1"))
    store.close()
    client = raw_client(url)  # make it look like a store written before the index existed
    client.delete(f"g*{tag}:alerts:post:x:1", f"g*{tag}:alerts:post:x:2", f"g*{tag}:alerts:indexed")
    client.close()

    reopened = RedisStore(url)
    assert [a.key for a in reopened.list_alerts("x", "1")] == ["m1", "m3"]
    assert [a.key for a in reopened.list_alerts("x", "2")] == ["m2"]
    assert [a.key for a in other.list_alerts("x", "1")] == ["theirs"]
    reopened.close()
    other.close()


def test_alerts_enqueued_before_the_creation_time_index_are_indexed_at_open(redis_url, cleanup):
    base = redis_url.rsplit("prefix=", 1)[0]
    tag = uuid.uuid4().hex[:8]
    url, other_url = f"{base}prefix=c*{tag}", f"{base}prefix=c-other{tag}"
    cleanup(url)
    cleanup(other_url)
    store, other = RedisStore(url), RedisStore(other_url)

    def alert(key: str, seconds: float, kind: str = "match") -> OutboxAlert:
        return OutboxAlert(key=key, kind=kind, payload={"platform": "x", "post_id": "1"}, created_at=T0 + timedelta(seconds=seconds))

    store.enqueue_alert(alert("late", 30))
    store.enqueue_alert(alert("m1", 10))
    store.enqueue_alert(alert("d1", 15, kind="deleted"))
    store.enqueue_alert(alert("until", 20))
    store.mark_alert_sent("m1", T0)
    other.enqueue_alert(alert("theirs", 10))
    store.close()
    client = raw_client(url)  # a store written before the creation-time index existed (per-post index kept)
    client.delete(f"c*{tag}:alerts:created", f"c*{tag}:alerts:created:indexed")
    client.close()

    reopened = RedisStore(url)
    window = (T0 + timedelta(seconds=10), T0 + timedelta(seconds=20))
    assert [a.key for a in reopened.alerts_between(*window)] == ["m1", "d1"]
    assert [a.key for a in reopened.alerts_between(*window, kinds=["match"])] == ["m1"]
    assert [a.key for a in reopened.list_alerts("x", "1")] == ["late", "m1", "d1", "until"]  # not indexed twice
    assert [a.key for a in other.alerts_between(*window)] == ["theirs"]
    reopened.close()
    other.close()


def test_errors_during_use_are_store_errors(redis_url, cleanup):
    cleanup(redis_url)
    store = RedisStore(redis_url)
    store.record_poll(AccountPoll("x", "gov", [post("1")], cursor=None))
    retry = store._r.get_retry()  # the store's own short retry policy
    store._r.close()
    store._r = redis.Redis(port=free_port(), socket_connect_timeout=0.5, decode_responses=True, retry=retry)
    started = time.monotonic()
    with pytest.raises(StoreError, match="cannot reach"):
        store.get_post("x", "1")
    with pytest.raises(StoreError):
        store.record_poll(AccountPoll("x", "gov", [post("2")], cursor=None))
    with pytest.raises(StoreError):
        list(store.iter_posts())
    assert time.monotonic() - started < 5  # the daemon gets the error quickly and does its own waiting
    store.close()


def test_concurrent_clients_version_one_post_atomically(redis_url, cleanup):
    cleanup(redis_url)
    stores = [RedisStore(redis_url) for _ in range(6)]
    results: list[tuple[Change, int]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(stores))

    def worker(n: int) -> None:
        try:
            barrier.wait()
            for i in range(10):
                (change,) = stores[n].record_poll(AccountPoll("x", "gov", [post("1", text=f"{n}-{i}")], cursor=None))
                results.append((change.change, change.version))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    versions = stores[0].get_versions("x", "1")
    assert [v.version for v in versions] == list(range(1, 61))  # no version lost or duplicated
    assert sorted(v for _, v in results) == list(range(1, 61))
    assert sum(1 for c, _ in results if c is Change.NEW) == 1
    assert stores[0].get_post("x", "1").version == 60
    for s in stores:
        s.close()


def test_known_entries_stored_before_the_group_index_are_indexed_at_open(redis_url, cleanup):
    base = redis_url.rsplit("prefix=", 1)[0]
    url = f"{base}prefix=kg{uuid.uuid4().hex[:8]}"
    cleanup(url)
    store = RedisStore(url)
    frames = store.add_known_many(
        [KnownMedia(label=f"f{i}", signals={"pdq": "0" * 64}, group="v" * 64, frame_ts=float(i)) for i in range(3)]
    )
    store.add_known(KnownMedia(label="photo", signals={"pdq": "1" * 64}))
    store.close()
    client = raw_client(url)  # a store written before the group index existed
    client.delete(f"{prefix_of(url)}:known:group:{'v' * 64}", f"{prefix_of(url)}:known:group:indexed")
    client.close()

    reopened = RedisStore(url)
    assert [e.id for e in reopened.find_known_by_group("v" * 64)] == [e.id for e in frames]
    assert reopened.remove_known_group("v" * 64) == 3 and [e.label for e in reopened.iter_known()] == ["photo"]
    reopened.close()
