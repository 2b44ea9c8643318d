"""The posts role of the store: what the watchers saw. Posts with their versions (a new version when the
content fingerprint changes), each account's poll cursor, the raw items a poll rejected, each post's last
confirmed status, and which version the pipeline has finished (the pending posts).

Implemented by :mod:`bot.store.sqlite_posts` and :mod:`bot.store.redis_posts`; contract in
``tests/store/test_posts_contract.py``."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Protocol
from collections.abc import Iterator, Sequence
from datetime import datetime

from bot.models import Post, RejectedItem
from bot.store.records import PostChange, PostVersion, StoredPost


@dataclass(frozen=True)
class AccountPoll:
    """What one poll of one account brings the store: the posts seen, the account's new cursor (None: keep
    the old one), the raw items that could not be normalized, and when (None: now)."""

    platform: str
    account: str
    posts: Sequence[Post]
    cursor: str | None = None
    rejected: Sequence[RejectedItem] = ()
    at: datetime | None = None


class PostReader(Protocol):
    """Reading posts, their versions, cursors and rejected items."""

    @abstractmethod
    def get_post(self, platform: str, post_id: str) -> StoredPost | None: ...

    @abstractmethod
    def get_versions(self, platform: str, post_id: str) -> list[PostVersion]:
        """All observed versions, oldest first."""

    @abstractmethod
    def iter_posts(self, platform: str | None = None, account: str | None = None) -> Iterator[StoredPost]: ...

    @abstractmethod
    def count_posts(self, platform: str | None = None, account: str | None = None) -> int: ...

    @abstractmethod
    def pending_posts(self, limit: int = 100) -> list[StoredPost]:
        """Posts whose latest version the pipeline has not finished, oldest first seen first."""

    @abstractmethod
    def list_rejected(self, limit: int = 100) -> list[RejectedItem]: ...

    @abstractmethod
    def get_cursor(self, platform: str, account: str) -> str | None: ...


class PostStore(PostReader, Protocol):
    """Posts as the watchers and re-checks record them, and the pipeline's progress through them."""

    @abstractmethod
    def record_poll(self, poll: AccountPoll) -> list[PostChange]:
        """Persist one poll atomically: every post (new, or a new version if its content fingerprint
        changed), the account's new cursor (unchanged when ``poll.cursor`` is None) and the rejected raw
        items. A new or edited post becomes pending for the pipeline. Returns one change per post, in order."""

    @abstractmethod
    def save_post_version(self, post: Post, at: datetime | None = None) -> PostChange:
        """Save a post observed outside a poll (a re-check that found it alive). Same versioning rules as
        ``record_poll``; also sets ``last_seen_alive``."""

    @abstractmethod
    def mark_seen_alive(self, platform: str, post_id: str, at: datetime) -> None: ...

    @abstractmethod
    def set_post_status(self, platform: str, post_id: str, status: str) -> None:
        """Record the last confirmed state of a post (alive, deleted, author_suspended, ...)."""

    @abstractmethod
    def mark_processed(self, platform: str, post_id: str, version: int) -> None:
        """The pipeline finished ``version`` of this post (a later version stays pending)."""
