"""The one small interface every platform watcher implements.

A watcher turns one platform into normalized :class:`bot.models.Post` objects and answers "is this post
still there?". It knows nothing of hashing, alerts or storage: the daemon hands it an account and a cursor
and persists what comes back.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from bot.models import Post, PostStatus, RejectedItem


@dataclass
class PollResult:
    """What one poll of one account found.

    ``posts`` are only those newer than the cursor given, across all pages, oldest first. ``cursor`` is the
    value to pass next time (None: keep the old one, e.g. nothing new was found). ``rejected`` holds items
    that could not be normalized, raw, so the store keeps them as evidence. ``still_listed`` names posts seen
    before that this answer still lists (a feed re-lists its items at every poll): each is a sighting of the
    post alive, so a later deletion's lifetime runs to this poll, not to the post's first sighting.
    """

    posts: list[Post]
    cursor: str | None
    rejected: list[RejectedItem] = field(default_factory=list)
    still_listed: list[str] = field(default_factory=list)

    def __iter__(self):  # allows ``posts, cursor = watcher.poll(...)``
        return iter((self.posts, self.cursor))


class Watcher(ABC):
    """Base of all platform watchers.

    Contract:
    - ``poll`` raises :class:`bot.errors.RateLimited` on 429 (with the reset time when the platform gave one)
      and :class:`bot.errors.PlatformError` on any other failure of the request as a whole; a malformed
      single item goes to ``PollResult.rejected`` and never loses the other items.
    - ``lookup`` never raises for a platform failure: a post it cannot decide is ``PostStatus.unknown``.
      Rate limits, timeouts, 5xx and malformed answers are ``unknown``, never ``deleted``.
    """

    platform: ClassVar[str]
    #: how many ids one lookup request may carry
    lookup_batch_size: ClassVar[int] = 100

    def __init__(self, config: Any):
        self.config = config

    @abstractmethod
    def poll(self, account: str, cursor: str | None) -> PollResult: ...

    @abstractmethod
    def lookup(self, post_ids: Sequence[str], authors: Mapping[str, str | None] | None = None) -> dict[str, PostStatus]:
        """Status of each id given. Every id given is a key of the answer.

        ``authors`` maps post ids to the author id stored with them (``Post.author_id``): a hint for platforms
        that refuse to name the author of a post they no longer show (X), so that a suspended or protected
        author is not mistaken for a deletion after a restart. Watchers that do not need it ignore it."""

    def close(self) -> None:
        """Release network resources (sessions)."""

    @classmethod
    def account_key(cls, account: str) -> str:
        """``account`` as the platform compares it: handles are case-insensitive (X usernames, page names,
        Mastodon and Bluesky handles), a leading ``@`` is not part of them. Two spellings of one account have
        the same key, so ``--account ministryofdefence`` finds ``MinistryOfDefence``'s events."""
        return account.strip().lstrip("@").casefold()
