"""The one small interface every platform watcher implements.

A watcher turns one platform into normalized :class:`bot.models.Post` objects and answers "is this post
still there?". It knows nothing of hashing, alerts or storage: the daemon hands it an account and a cursor
and persists what comes back.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from bot.config_base import WatcherConfig
from bot.models import Media, Post, PostStatus, RejectedItem
from watchers._common import chunks, describe_error, unique

log = logging.getLogger(__name__)


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

    A platform module subclasses it, sets ``platform`` (its key under ``watchers:``) and ``config_model`` (its
    config section), and exposes the class as ``WATCHER`` (see :mod:`watchers`).

    Contract:
    - ``poll`` raises :class:`bot.errors.RateLimited` on 429 (with the reset time when the platform gave one)
      and :class:`bot.errors.PlatformError` on any other failure of the request as a whole; a malformed
      single item goes to ``PollResult.rejected`` and never loses the other items.
    - ``lookup`` never raises: a post it cannot decide is ``PostStatus.unknown``. Rate limits, timeouts, 5xx
      and malformed answers are ``unknown``, never ``deleted``. The base class keeps that promise once for
      every platform: subclasses implement :meth:`_lookup_batch`, and whatever it raises or leaves out is
      ``unknown``.
    """

    platform: ClassVar[str]
    config_model: ClassVar[type[WatcherConfig]]
    #: how many ids one lookup request may carry
    lookup_batch_size: ClassVar[int] = 100

    def __init__(self, config: WatcherConfig):
        self.config = config

    @abstractmethod
    def poll(self, account: str, cursor: str | None) -> PollResult: ...

    def lookup(self, post_ids: Sequence[str], authors: Mapping[str, str | None] | None = None) -> dict[str, PostStatus]:
        """Status of each id given; every id given is a key of the answer, and this never raises.

        ``authors`` maps post ids to the author id stored with them (``Post.author_id``): a hint for platforms
        that refuse to name the author of a post they no longer show (X), so that a suspended or protected
        author is not mistaken for a deletion after a restart. Watchers that do not need it ignore it."""
        ids = unique(post_ids)
        hints = dict(authors or {})
        state = self._lookup_state()
        answer: dict[str, PostStatus] = {}
        for batch in chunks(ids, max(1, self.lookup_batch_size)):
            missing = "no answer for this id"
            try:
                found: Mapping[str, Any] = self._lookup_batch(batch, hints, state)
            except Exception as e:  # the one guard of the lookup contract
                missing = describe_error(e)
                log.warning("%s: lookup of %d id(s) failed: %s", self.platform, len(batch), missing)
                found = {}
            for post_id in batch:
                status = found.get(post_id)
                answer[post_id] = status if isinstance(status, PostStatus) else PostStatus.unknown(missing)
        return answer

    def _lookup_state(self) -> Any:
        """Scratch state shared by the batches of one :meth:`lookup` call (authors checked, rate limit hit)."""
        return {}

    @abstractmethod
    def _lookup_batch(self, batch: list[str], authors: Mapping[str, str | None], state: Any) -> Mapping[str, PostStatus]:
        """Status of the ids of one batch (at most ``lookup_batch_size``, no duplicates). May raise or leave ids
        out: those are ``unknown``."""

    def close(self) -> None:
        """Release network resources (sessions)."""

    @classmethod
    def new_post(
        cls,
        account: str,
        post_id: str,
        url: str,
        text: str,
        created_at: datetime,
        *,
        media: Iterable[Media] = (),
        raw: Any = None,
        author_id: str | None = None,
    ) -> Post:
        """A post of this watcher's platform, found under ``account``: every watcher builds its posts here,
        so none names its platform by hand."""
        return Post(cls.platform, account, post_id, url, text, created_at, tuple(media), raw, author_id)

    @classmethod
    def account_key(cls, account: str) -> str:
        """``account`` as the platform compares it: handles are case-insensitive (X usernames, page names,
        Mastodon and Bluesky handles), a leading ``@`` is not part of them. Two spellings of one account have
        the same key, so ``--account ministryofdefence`` finds ``MinistryOfDefence``'s events."""
        return account.strip().lstrip("@").casefold()
