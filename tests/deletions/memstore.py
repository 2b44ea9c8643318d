"""An in-memory StateStore for the deletion and export tests, used only while the real SQLite backend
(branch ``store``) is not merged. It follows the contract of :mod:`bot.store.base` for the methods the
tracker and the exports use; the fixtures prefer ``bot.store.sqlite.SqliteStore`` whenever it exists."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from bot.models import Post, RejectedItem, as_utc, utcnow
from bot.store.base import StateStore
from bot.store.common import alert_post, status_for_event
from bot.store.records import (
    AccountState,
    Change,
    KnownKind,
    KnownMedia,
    MediaRecord,
    OutboxAlert,
    PostChange,
    PostEvent,
    PostMediaLink,
    PostVersion,
    Recheck,
    StoredPost,
)


class MemoryStore(StateStore):
    url = "memory://"

    def __init__(self) -> None:
        self.posts: dict[tuple[str, str], StoredPost] = {}
        self.versions: dict[tuple[str, str], list[PostVersion]] = {}
        self.media: dict[str, MediaRecord] = {}
        self.links: dict[tuple[str, str], dict[int, PostMediaLink]] = {}
        self.known: dict[str, KnownMedia] = {}
        self.generation = 0
        self.alerts: dict[str, OutboxAlert] = {}
        self.rechecks: dict[tuple[str, str], Recheck] = {}
        self.events: list[PostEvent] = []
        self.accounts: dict[tuple[str, str], AccountState] = {}
        self.cursors: dict[tuple[str, str], str] = {}
        self.rejected: list[RejectedItem] = []
        self._seq = itertools.count(1)
        self.writes = 0

    # posts
    def _save(self, post: Post, at: datetime, seen_alive: bool) -> PostChange:
        self.writes += 1
        key = (post.platform, post.post_id)
        fp = post.content_fingerprint()
        stored = self.posts.get(key)
        if stored is None:
            self.posts[key] = StoredPost(post, 1, at, at, 0)
            self.versions[key] = [PostVersion(1, at, post, fp, post.raw_sha256())]
            return PostChange(post, Change.NEW, 1)
        last_alive = max(stored.last_seen_alive, at) if seen_alive else stored.last_seen_alive
        if stored.post.content_fingerprint() != fp:
            version = stored.version + 1
            self.versions[key].append(PostVersion(version, at, post, fp, post.raw_sha256()))
            self.posts[key] = replace(stored, post=post, version=version, last_seen_alive=last_alive)
            return PostChange(post, Change.EDITED, version)
        self.posts[key] = replace(stored, last_seen_alive=last_alive)
        return PostChange(stored.post, Change.UNCHANGED, stored.version)

    def record_poll(self, platform, account, posts: Sequence[Post], cursor, rejected=(), at=None):
        at = as_utc(at or utcnow())
        out = [self._save(p, at, True) for p in posts]
        if cursor is not None:
            self.cursors[(platform, account)] = cursor
        self.rejected.extend(rejected)
        return out

    def save_post_version(self, post: Post, at: datetime | None = None) -> PostChange:
        return self._save(post, as_utc(at or utcnow()), True)

    def get_post(self, platform, post_id):
        return self.posts.get((platform, post_id))

    def get_versions(self, platform, post_id):
        return list(self.versions.get((platform, post_id), []))

    def iter_posts(self, platform=None, account=None) -> Iterator[StoredPost]:
        for p in list(self.posts.values()):
            if (platform is None or p.post.platform == platform) and (account is None or p.post.account == account):
                yield p

    def count_posts(self, platform=None, account=None):
        return sum(1 for _ in self.iter_posts(platform, account))

    def mark_seen_alive(self, platform, post_id, at):
        self.writes += 1
        s = self.posts[(platform, post_id)]
        self.posts[(platform, post_id)] = replace(s, last_seen_alive=max(s.last_seen_alive, at))

    def set_post_status(self, platform, post_id, status):
        self.writes += 1
        key = (platform, post_id)
        if key in self.posts:
            self.posts[key] = replace(self.posts[key], status=status)

    def pending_posts(self, limit=100):
        return [p for p in self.posts.values() if p.pending][:limit]

    def mark_processed(self, platform, post_id, version):
        self.writes += 1
        s = self.posts[(platform, post_id)]
        self.posts[(platform, post_id)] = replace(s, processed_version=max(s.processed_version, version))

    def list_rejected(self, limit=100):
        return self.rejected[:limit]

    def get_cursor(self, platform, account):
        return self.cursors.get((platform, account))

    # media
    def put_media(self, record: MediaRecord) -> MediaRecord:
        self.writes += 1
        existing = self.media.get(record.sha256)
        if existing is None:
            self.media[record.sha256] = record
            return record
        merged = replace(existing, signals={**existing.signals, **record.signals})
        self.media[record.sha256] = merged
        return merged

    def get_media(self, sha256):
        return self.media.get(sha256)

    def set_media_signals(self, sha256, signals):
        self.writes += 1
        m = self.media[sha256]
        self.media[sha256] = replace(m, signals={**m.signals, **signals})

    def link_post_media(self, link: PostMediaLink) -> None:
        self.writes += 1
        self.links.setdefault((link.platform, link.post_id), {})[link.index] = link

    def get_post_media(self, platform, post_id):
        links = self.links.get((platform, post_id), {})
        return [links[i] for i in sorted(links)]

    # known media
    def add_known(self, entry: KnownMedia) -> KnownMedia:
        self.writes += 1
        if not entry.id:
            entry = replace(entry, id=f"k{len(self.known) + 1}")
        self.known[entry.id] = entry
        self.generation += 1
        return entry

    def get_known(self, known_id):
        return self.known.get(known_id)

    def find_known_by_sha256(self, sha256):
        return [k for k in self.known.values() if k.sha256 == sha256]

    def list_known(self, kind: KnownKind | None = None, limit=None, offset=0):
        items = [k for k in self.known.values() if kind is None or k.kind == kind][offset:]
        return items if limit is None else items[:limit]

    def iter_known(self, kind=None):
        return iter(self.list_known(kind))

    def count_known(self, kind=None):
        return len(self.list_known(kind))

    def remove_known(self, known_id):
        self.writes += 1
        self.generation += 1
        return self.known.pop(known_id, None) is not None

    def known_generation(self):
        return self.generation

    # outbox
    def enqueue_alert(self, alert: OutboxAlert) -> bool:
        self.writes += 1
        return self._enqueue(alert)

    def _enqueue(self, alert: OutboxAlert) -> bool:
        if alert.key in self.alerts:
            return False
        self.alerts[alert.key] = replace(alert, seq=next(self._seq))
        return True

    def due_alerts(self, now, limit=50):
        return [a for a in sorted(self.alerts.values(), key=lambda a: a.seq) if a.sent_at is None][:limit]

    def mark_alert_sent(self, key, at):
        self.writes += 1
        self.alerts[key] = replace(self.alerts[key], sent_at=at)

    def mark_alert_failed(self, key, error, next_attempt_at):
        self.writes += 1
        a = self.alerts[key]
        self.alerts[key] = replace(a, attempts=a.attempts + 1, last_error=error, next_attempt_at=next_attempt_at)

    def get_alert(self, key):
        return self.alerts.get(key)

    def outbox_size(self):
        return sum(1 for a in self.alerts.values() if a.sent_at is None)

    def list_alerts(self, platform, post_id, kinds: Iterable[str] | None = None):
        kinds = set(kinds) if kinds is not None else None
        post_id = str(post_id)
        return [
            a
            for a in sorted(self.alerts.values(), key=lambda a: a.seq)
            if (kinds is None or a.kind in kinds) and alert_post(a.payload) == (platform, post_id)
        ]

    def alerts_between(self, since, until, kinds: Iterable[str] | None = None):
        kinds = set(kinds) if kinds is not None else None
        return [
            a
            for a in sorted(self.alerts.values(), key=lambda a: a.seq)
            if (kinds is None or a.kind in kinds) and as_utc(since) <= as_utc(a.created_at) < as_utc(until)
        ]

    # re-checks
    def schedule_recheck(self, recheck: Recheck) -> None:
        self.writes += 1
        self.rechecks[(recheck.platform, recheck.post_id)] = recheck

    def get_recheck(self, platform, post_id):
        return self.rechecks.get((platform, post_id))

    def due_rechecks(self, platform, now, limit=1000):
        due = [r for r in self.rechecks.values() if r.platform == platform and r.due_at <= now]
        return sorted(due, key=lambda r: r.due_at)[:limit]

    def count_rechecks(self, platform=None):
        return sum(1 for r in self.rechecks.values() if platform is None or r.platform == platform)

    def remove_recheck(self, platform, post_id):
        self.writes += 1
        self.rechecks.pop((platform, post_id), None)

    # deletion log
    def record_event(
        self, event: PostEvent, next_recheck: Recheck | None, alert: OutboxAlert | None = None
    ) -> PostEvent:
        self.writes += 1
        event = replace(event, id=event.id or f"e{len(self.events) + 1}", details=copy.deepcopy(event.details))
        if all(e.id != event.id for e in self.events):  # an id is logged once
            self.events.append(event)
        status = status_for_event(event.kind)
        if status is not None:
            self.set_post_status(event.platform, event.post_id, status)
        if next_recheck is None:
            self.rechecks.pop((event.platform, event.post_id), None)
        else:
            self.rechecks[(event.platform, event.post_id)] = next_recheck
        if alert is not None:
            self._enqueue(alert)
        return event

    def list_events(self, since=None, until=None, platform=None, account=None, kinds: Iterable[str] | None = None):
        kinds = set(kinds) if kinds is not None else None
        return [
            e
            for e in self.events
            if (since is None or e.detected_at >= since)
            and (until is None or e.detected_at < until)
            and (platform is None or e.platform == platform)
            and (account is None or e.account == account)
            and (kinds is None or e.kind in kinds)
        ]

    # accounts
    def update_account_state(self, platform, account, **fields: Any):
        self.writes += 1
        state = self.accounts.get((platform, account), AccountState(platform, account))
        state = replace(state, **fields)
        self.accounts[(platform, account)] = state
        return state

    def get_account_states(self):
        return list(self.accounts.values())

    def acquire_lock(self, name, owner, ttl_seconds):
        return True

    def release_lock(self, name, owner):
        pass

    def close(self):
        pass
