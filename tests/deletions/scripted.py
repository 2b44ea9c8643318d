"""Test doubles and builders shared by tests/deletions and tests/export."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from bot.config import RecheckConfig
from bot.models import Media, Post, PostStatus
from bot.store.base import StateStore
from bot.store.sqlite import SqliteStore
from watchers.base import PollResult, Watcher

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def make_post(post_id: str = "100", *, platform: str = "x", account: str = "MinistryOfInfo", text: str = "Official photo",
              created_at: datetime = T0, media: Sequence[str] = ("m1",)) -> Post:
    return Post(
        platform=platform,
        account=account,
        post_id=post_id,
        url=f"https://x.com/{account}/status/{post_id}" if platform == "x" else f"https://{platform}.example/@{account}/{post_id}",
        text=text,
        created_at=created_at,
        media=tuple(Media(url=f"https://pbs.example/{m}.jpg", media_id=m) for m in media),
        raw={"id": post_id, "text": text, "media": list(media)},
    )


class ScriptedWatcher(Watcher):
    """Answers look-ups from a script: ``script[post_id]`` is a list of answers consumed one per look-up
    (the last one repeats), or a callable ``(post_id, call_no) -> PostStatus | object``. Records every call."""

    platform = "x"
    lookup_batch_size = 100

    def __init__(self, script: dict[str, Any] | None = None, batch_size: int | None = None, default: Any = None):
        super().__init__(config=None)
        self.script: dict[str, Any] = dict(script or {})
        self.calls: list[list[str]] = []
        self.authors: dict[str, str | None] = {}  # the author hints the tracker passed
        self.default = default
        self._seen: dict[str, int] = {}
        if batch_size is not None:
            self.lookup_batch_size = batch_size

    def poll(self, account: str, cursor: str | None) -> PollResult:
        return PollResult([], None)

    def _lookup_batch(self, post_ids: list[str], authors: Mapping[str, str | None], state: Any) -> dict[str, PostStatus]:
        self.calls.append(list(post_ids))
        self.authors.update(authors)
        out: dict[str, Any] = {}
        for pid in post_ids:
            n = self._seen.get(pid, 0)
            self._seen[pid] = n + 1
            entry = self.script.get(pid, self.default)
            if entry is None:
                continue  # id missing from the answer
            if callable(entry):
                out[pid] = entry(pid, n)
            else:
                out[pid] = entry[min(n, len(entry) - 1)]
        return out


def recheck_config(**overrides: Any) -> RecheckConfig:
    return RecheckConfig(**overrides)


def open_store_factory(tmp_path: Path) -> Callable[[], StateStore]:
    """A function that opens "the" store of a test (SQLite); calling it again simulates a restart."""
    path = tmp_path / "state.db"
    return lambda: SqliteStore(str(path))
