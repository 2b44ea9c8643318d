"""``afterimage reprocess``: fetch again the attachments that a post's first run could not archive.

An attachment refused for good (``not_https`` or ``private_address`` before its host was added to
``media.trusted_hosts``, a 404, a size limit raised since) or given up after repeated timeouts is recorded and
the post moves on: nothing ever fetches it again by itself. This selects such posts (by post id, platform,
account, posting time or the recorded reason) and runs the pipeline's media steps again for the failed
attachments only (:meth:`bot.pipeline.Pipeline.retry_media`). The steps are idempotent: an alert already
queued is not queued again, a file already in the archive is not written again, and a second reprocess
finds nothing left to do.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from bot.models import as_utc
from bot.pipeline import Pipeline, ProcessReport
from bot.store.coordination import CoordinationStore
from bot.store.media import MediaReader
from bot.store.posts import PostReader
from bot.store.records import StoredPost
from watchers import same_account

#: the reason of an attachment with no record at all: the pipeline gave up on it after transient errors
UNFINISHED = "unfinished"
#: how long to wait for another reprocess run to finish (it holds the ``pipeline`` lock)
LOCK_WAIT_SECONDS = 60.0


class ReprocessSource(PostReader, MediaReader, Protocol):
    """What selecting posts reads: the posts and the recorded outcome of each attachment."""


class ReprocessStore(MediaReader, CoordinationStore, Protocol):
    """What a reprocess run uses besides the pipeline: the attachments' outcomes and the ``pipeline`` lock."""


@dataclass(frozen=True)
class Selection:
    """Which posts to reprocess; every given criterion must hold. Times are the posts' publication times."""

    post_ids: tuple[str, ...] = ()
    platform: str | None = None
    account: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class FailedPost:
    stored: StoredPost
    failures: dict[int, str]  # attachment index -> reason recorded (e.g. not_https)


@dataclass
class Outcome:
    """What reprocessing one post did: attachment index -> "archived", or the reason it still fails."""

    post: FailedPost
    results: dict[int, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # transient failures this time (timeouts...)


def failed_attachments(store: MediaReader, stored: StoredPost) -> dict[int, str]:
    """Attachments of the post's latest version not archived, with the reason recorded for each."""
    post = stored.post
    links = {link.index: link for link in store.get_post_media(post.platform, post.post_id)}
    failures = {}
    for index in range(len(post.media)):
        link = links.get(index)
        if link is None:
            failures[index] = UNFINISHED
        elif not link.sha256:
            failures[index] = (link.error or UNFINISHED).split(":", 1)[0].strip()
    return failures


def _wanted(stored: StoredPost, selection: Selection) -> bool:
    post = stored.post
    if stored.pending:  # the pipeline has not finished this version: it fetches the media itself
        return False
    if selection.post_ids and post.post_id not in selection.post_ids:
        return False
    if selection.account is not None and not same_account(post.platform, post.account, selection.account):
        return False
    if selection.since is not None and as_utc(post.created_at) < as_utc(selection.since):
        return False
    return selection.until is None or as_utc(post.created_at) < as_utc(selection.until)


def select(store: ReprocessSource, selection: Selection, reasons_seen: Counter[str] | None = None) -> Iterator[FailedPost]:
    """Posts matching ``selection`` with failed attachments (of the reasons asked for). ``reasons_seen``
    counts the reasons of every failed attachment of the matching posts, whatever ``selection.reasons``
    says, so a reason filter that matches nothing can say which reasons there are."""
    for stored in store.iter_posts(platform=selection.platform):
        if not _wanted(stored, selection):
            continue
        failures = failed_attachments(store, stored)
        if reasons_seen is not None:
            reasons_seen.update(failures.values())
        if selection.reasons:
            failures = {i: r for i, r in failures.items() if r in selection.reasons}
        if failures:
            yield FailedPost(stored, failures)


def reprocess(pipeline: Pipeline, store: ReprocessStore, posts: list[FailedPost], owner: str) -> list[Outcome]:
    """Fetch the failed attachments of ``posts`` again, under the store's ``pipeline`` lock, so two reprocess
    runs never work at once (daemons' workers only take posts still pending, which reprocess leaves alone).
    Raises TimeoutError if the lock stays taken."""
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while not store.acquire_lock("pipeline", owner, ttl_seconds=300):
        if time.monotonic() > deadline:
            raise TimeoutError(f"another reprocess run kept the pipeline lock for {LOCK_WAIT_SECONDS:.0f} s; try again")
        time.sleep(0.5)
    outcomes = []
    try:
        for failed in posts:
            report = ProcessReport()
            pipeline.retry_media(failed.stored, sorted(failed.failures), report)
            still = failed_attachments(store, failed.stored)
            outcome = Outcome(failed, errors=report.errors)
            for index in sorted(failed.failures):
                outcome.results[index] = still[index] if index in still else "archived"
            outcomes.append(outcome)
    finally:
        store.release_lock("pipeline", owner)
    return outcomes
