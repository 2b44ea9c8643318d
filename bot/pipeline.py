"""The post pipeline: what happens to a post between a watcher finding it and an alert leaving.

One direction, each step idempotent, so a crash at any point is repaired by running the step again:

1. ``ingest``: persist the posts (raw payload kept) and the cursor in one write, and archive each post
   version's raw JSON. Nothing else happens before the post is safe.
2. ``process_pending``: for each post whose latest version is not processed yet: schedule its re-checks,
   download each attachment (safe fetcher; an HLS playlist is followed and its segments joined into one
   video file, :mod:`bot.media.hls`), archive it (sha256, atomic), record it, hash and match it against
   known and previously seen media, open a case per match (:mod:`bot.cases`), enqueue the post's alert (one
   message for all its cases) in the persistent outbox (idempotence keys), remember the image as seen, and
   only then mark the version processed.

Transient failures (disk full, store hiccup, a media host timing out) leave the post pending for the next
run (a full disk and an unreachable store for as long as they last, a media host ``MAX_ATTEMPTS`` runs, and
so does an HLS segment that its playlist lists but its host answers 404 for); permanent ones (not an image,
404, refused address, encrypted or malformed playlist) are recorded on the attachment and the post moves
on. Delivery of alerts is the sender's job (:mod:`bot.alerts`), never this module's.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from PIL import Image

from bot.alerts.payloads import match_alert
from bot.archive import Archive
from bot.cases import CaseDesk
from bot.config import Config
from bot.deletions.tracker import RecheckTracker
from bot.errors import ArchiveError, MediaError, StoreError
from bot.hashing.pool import InlineHasher
from bot.hashing.stage import HashedImage
from bot.known import remember_seen
from bot.matching.matcher import Match, Matcher
from bot.media.fetch import FetchedMedia, MediaFetcher
from bot.media.hls import fetch_attachment
from bot.media.keyframes import extract_keyframes
from bot.models import Media, MediaKind, Post, utcnow
from bot.store.base import StateStore
from bot.store.known_media import KnownMediaStore
from bot.store.media import MediaStore
from bot.store.outbox import OutboxStore
from bot.store.posts import AccountPoll, PostStore
from bot.store.review import CaseStore
from bot.store.records import KnownMedia, MediaRecord, OutboxAlert, PostChange, PostMediaLink, StoredPost
from watchers.base import PollResult

log = logging.getLogger(__name__)

#: media errors worth retrying on the next run; every other reason is final for that attachment. A segment
#: missing from an HLS playlist that lists it is the host contradicting itself (an upload still being
#: processed, a CDN catching up), unlike a 404 for the posted URL itself
TRANSIENT_MEDIA_ERRORS = frozenset({"timeout", "unavailable", "hls_segment_missing"})
#: how many runs a post may stay pending because of transient errors before it is finished with errors
MAX_ATTEMPTS = 5
#: per-post and per-file locks, striped: two posts share a lock 1 time in this many (only a short wait)
_LOCK_STRIPES = 256


@dataclass(frozen=True)
class Still:
    """One still image of an attachment: the photo itself, or a video frame archived as PNG."""

    image: Image.Image
    sha256: str
    archive_path: str
    frame_ts: float | None = None
    #: the archived photo file (matched at working size; regions are reported in its upright pixels, and
    #: embedded pictures are cut from a sharper decode of it)
    data: bytes | None = None
    #: the still hashed already (a photo is decoded and hashed in one step)
    hashed: HashedImage | None = None


class RetryLater(Exception):
    """A step failed in a way that may pass (disk full, timeout): keep the post pending."""


@dataclass
class ProcessReport:
    """What one ``process_pending`` run did (for logs, status and tests)."""

    posts: int = 0
    media_archived: int = 0
    alerts_enqueued: int = 0
    retry_later: int = 0
    errors: list[str] = field(default_factory=list)


class PipelineStore(PostStore, MediaStore, KnownMediaStore, OutboxStore, CaseStore, Protocol):
    """The store roles the pipeline uses: the posts it records and processes, their media, the known media
    it remembers seen images in, the outbox its alerts go to and the cases its matches open."""


@dataclass(eq=False, repr=False)
class Pipeline:
    """Ingests polls and processes their posts (see the module docstring for the steps).

    ``hasher``: where stills are decoded and hashed (:mod:`bot.hashing.pool`; default: the calling thread);
    ``cases``: the desk that opens a case per match (default: one with the default thresholds); ``stop``:
    set to stop between posts."""

    store: PipelineStore
    archive: Archive
    fetcher: MediaFetcher
    matcher: Matcher
    tracker: RecheckTracker
    _: KW_ONLY
    video_keyframes: int = 8
    clock: Callable[[], datetime] = utcnow
    stop: threading.Event = field(default_factory=threading.Event)
    cases: CaseDesk = None  # type: ignore[assignment]  # None: __post_init__ makes the default desk
    hasher: InlineHasher = field(default_factory=InlineHasher)

    def __post_init__(self) -> None:
        if self.cases is None:
            self.cases = CaseDesk(self.store, self.archive, clock=self.clock)
        self._attempts: dict[str, int] = {}
        # worker threads process posts in parallel (the matcher is safe for concurrent checks); one post is
        # processed by one thread at a time (two queued versions of it must not interleave)
        self._post_locks = [threading.Lock() for _ in range(_LOCK_STRIPES)]
        # the same file in two posts processed at once is matched and remembered by one after the other, so
        # the second still finds the first as recycled (taken inside a post lock, never the other way round)
        self._media_locks = [threading.Lock() for _ in range(_LOCK_STRIPES)]

    # ------------------------------------------------------------------ step 1
    def ingest(self, platform: str, account: str, result: PollResult) -> list[PostChange]:
        """Persist one poll's posts and cursor (one atomic write), then archive each raw version.

        The store write comes first: a full disk must not lose a post. Archiving the raw JSON here is an early
        copy; ``process`` archives it again (idempotent) and keeps the post pending until that succeeds."""
        now = self.clock()
        changes = self.store.record_poll(AccountPoll(platform, account, result.posts, result.cursor, result.rejected, now))
        for post_id in result.still_listed:  # a sighting alive: the lifetime of a later deletion runs to it
            self.store.mark_seen_alive(platform, post_id, now)
        for change in changes:
            self.tracker.record_edit(change, now)  # an edit seen by polling goes to the deletion log too
            if change.change.value != "unchanged":
                try:
                    self.archive.put(change.post.raw_bytes(), "json")
                except ArchiveError as e:
                    log.error("%s: raw post not archived yet (kept pending for retry): %s", change.post.key, e)
        for item in result.rejected:
            log.warning("%s/%s: kept a malformed item without processing it: %s", platform, account, item.error)
        return changes

    # ------------------------------------------------------------------ step 2
    def process_pending(self, limit: int = 100) -> ProcessReport:
        report = ProcessReport()
        for stored in self.store.pending_posts(limit):
            if self.stop.is_set():
                break
            self.process(stored, report)
        return report

    def process(self, stored: StoredPost, report: ProcessReport | None = None) -> None:
        report = report if report is not None else ProcessReport()
        post = stored.post
        with self._post_locks[hash(post.key) % _LOCK_STRIPES]:
            try:
                self.archive.put(post.raw_bytes(), "json")  # again: a crash may have come between persist and archive
                self.tracker.schedule_new(post, self.clock())
                paged: list[OutboxAlert] = []  # the post's alerts, sent as one chat message (bot.cases)
                for index, media in enumerate(post.media):
                    if self.stop.is_set():
                        raise RetryLater("stopping")
                    report.media_archived += self._process_media(post, index, media, paged)
                message = self.cases.post_message(paged)
                if message is not None and self.store.enqueue_alert(message):
                    report.alerts_enqueued += 1
                    log.info("%s: %s alert queued (%d case(s))", post.key, message.kind, len(paged))
            except (RetryLater, ArchiveError, StoreError) as e:
                attempts = self._attempts.get(post.key, 0) + 1
                self._attempts[post.key] = attempts
                # a full disk or an unreachable store says nothing about the post: retried for as long as it
                # lasts (giving up would mark the post processed with its media never archived)
                if attempts < MAX_ATTEMPTS or isinstance(e, (StoreError, ArchiveError)) or str(e) == "stopping":
                    report.retry_later += 1
                    log.warning("%s: kept pending for retry (attempt %d): %s", post.key, attempts, e)
                    return
                report.errors.append(f"{post.key}: gave up after {attempts} attempts: {e}")
                log.error("%s: gave up after %d attempts, last error: %s", post.key, attempts, e)
            self._attempts.pop(post.key, None)
            self.store.mark_processed(post.platform, post.post_id, stored.version)
            report.posts += 1

    def retry_media(self, stored: StoredPost, indexes: list[int], report: ProcessReport) -> None:
        """Fetch again attachments of a processed post that were refused or given up (``afterimage reprocess``,
        e.g. after a host was added to ``media.trusted_hosts``): the steps of a first run, so an alert is not
        queued twice and a file already archived is not written again. A transient failure is counted in
        ``report.retry_later``; the post stays processed and can be reprocessed later."""
        with self._post_locks[hash(stored.post.key) % _LOCK_STRIPES]:
            paged: list[OutboxAlert] = []
            for index in indexes:
                try:
                    report.media_archived += self._process_media(stored.post, index, stored.post.media[index], paged)
                except RetryLater as e:
                    report.retry_later += 1
                    report.errors.append(f"{stored.post.key}: attachment {index}: {e}")
            message = self.cases.post_message(paged)
            if message is not None and self.store.enqueue_alert(message):
                report.alerts_enqueued += 1

    def _process_media(self, post: Post, index: int, media: Media, paged: list[OutboxAlert]) -> int:
        """Fetch, archive, record, match one attachment. Returns the number of files archived.

        The playlists of an HLS video are archived and recorded (as media records of their own, under their own
        URLs) next to the joined video file, as a video's frames are: they are the evidence of which rendition
        and which segments the archived file was made of."""
        archived = 0
        for url, role in _urls_to_fetch(media):
            try:
                attachment = fetch_attachment(self.fetcher, url)
            except MediaError as e:
                if e.reason in TRANSIENT_MEDIA_ERRORS:
                    raise RetryLater(f"{url}: {e}") from e
                log.warning("%s: attachment %d (%s) not archived (%s): %s", post.key, index, role, e.reason, e)
                if role == "main":
                    self.store.link_post_media(PostMediaLink(post.platform, post.post_id, index, url, None, f"{e.reason}: {e}"))
                continue
            fetched = attachment.media
            record = self._archive(fetched.data, fetched.ext, fetched.content_type, fetched.url,
                                   linked=(post, index, url) if role == "main" else None)
            for playlist in attachment.playlists:
                self._archive(playlist.data, playlist.ext, playlist.content_type, playlist.url)
            archived += 1
            with self._media_locks[int(record.sha256[:8], 16) % _LOCK_STRIPES]:  # see __init__
                for still in self._stills_of(fetched, record, post, index):
                    self._match_and_remember(post, record, still, paged)
        return archived

    def _archive(
        self, data: bytes, ext: str, content_type: str, url: str, linked: tuple[Post, int, str] | None = None
    ) -> MediaRecord:
        """Archive a file and record it; ``linked``: the post, attachment index and posted URL it is the file
        of (linked in the same store write)."""
        stored = self.archive.put(data, ext)
        record = MediaRecord(
            sha256=stored.sha256,
            size=stored.size,
            content_type=content_type,
            archive_path=stored.relpath,
            first_url=url,
            first_seen=self.clock(),
        )
        link = None
        if linked is not None:
            post, index, posted_url = linked
            link = PostMediaLink(post.platform, post.post_id, index, posted_url, stored.sha256)
        return self.store.put_media(record, link)

    def _stills_of(self, fetched: FetchedMedia, record: MediaRecord, post: Post, index: int) -> list[Still]:
        """The still images to match: the picture itself, or sampled frames of a video. A frame is archived
        as a PNG of its own, so a later reuse of it can be verified and shown side by side."""
        try:
            if fetched.kind != "video":
                hashed = self.hasher.file(fetched.data)
                return [Still(hashed.image, record.sha256, record.archive_path, data=fetched.data, hashed=hashed)]
            stills = []
            for ts, frame in extract_keyframes(fetched.data, max_frames=self.video_keyframes):
                png = io.BytesIO()
                frame.save(png, "PNG")  # keyframes are RGB already
                frame_record = self._archive(png.getvalue(), "png", "image/png", f"{fetched.url}#t={ts:.2f}")
                stills.append(Still(frame, frame_record.sha256, frame_record.archive_path, ts))
            return stills
        except MediaError as e:
            log.warning("%s: attachment %d archived but not decodable (%s): %s", post.key, index, e.reason, e)
            return []

    def _match_and_remember(self, post: Post, record: MediaRecord, still: Still, paged: list[OutboxAlert]) -> None:
        """Hash one still of an attachment (``record``) once, keep its signals on its media record, match it,
        remember the still as seen with the same signals, and open a case per match (adding to ``paged`` what
        the desk lets page the chat).

        Matched before it is remembered: the still's own entry in the indexes would take the nearest-neighbour
        slots of its hashes and descriptors from the entries it should find. Two posts of one file processed
        at the same instant (two daemons) then both match before either is remembered; remembering is an
        atomic insert-or-get, so exactly one becomes the file's first appearance and the other learns it
        here and reports the recycling."""
        image = still.image
        hashed = still.hashed or self.hasher.image(image)
        self.store.set_media_signals(still.sha256, hashed.record_signals)
        started = utcnow()
        # only this post's own "seen" entry is excluded: the same file in another post is a recycled image,
        # and an exact copy of a known file is the clearest match of all
        origin = {"platform": post.platform, "post_id": post.post_id}
        matches = self.matcher.match(hashed, exclude_origin=origin)
        seen = remember_seen(
            self.store,
            self.archive,
            sha256=still.sha256,
            archive_path=still.archive_path,
            group=record.sha256 if still.frame_ts is not None else None,
            frame_ts=still.frame_ts,
            image=image,
            signals=hashed.signals,
            origin={
                "platform": post.platform,
                "account": post.account,
                "post_id": post.post_id,
                "url": post.url,
                "posted_at": post.created_at.isoformat(),
            },
        )
        if _remembered_meanwhile(seen, origin, started) and all(m.known.id != seen.id for m in matches):
            # another post of this very file (another daemon, at the same instant) was remembered after the
            # matcher looked and before this still was (remembering is an atomic insert-or-get): the same
            # bytes are the same picture, so this post recycles it
            matches.append(Match(seen, "match", "pdq", 0, None))
        # the alert key names the known item (a whole trailer), so the outbox keeps the best, first match of
        # an item for this attachment and refuses the other frames' matches, in this run and any rerun
        for match in matches:
            alert = match_alert(
                post,
                media_sha256=record.sha256,
                media_archive_path=record.archive_path,
                media_url=record.first_url,
                known=match.known,
                tier=match.tier,
                signal=match.signal,
                distance=match.distance,
                inliers=match.inliers,
                region=match.region,
                known_region=match.known_region,
                media_frame_ts=still.frame_ts,
                created_at=self.clock(),
            )
            # every match is a case; only what the desk lets through pages the chat (see bot.cases)
            alert = self.cases.admit(alert, known_item=match.known.item, image=image, still_sha256=still.sha256)
            if alert is not None and all(a.key != alert.key for a in paged):
                paged.append(alert)


def build_pipeline(
    config: Config,
    store: StateStore,
    archive: Archive,
    *,
    clock: Callable[[], datetime] = utcnow,
    stop: threading.Event | None = None,
    hasher: InlineHasher | None = None,
) -> Pipeline:
    """The pipeline as the configuration describes it: its fetcher, matcher, re-check tracker and case desk.
    The daemon and ``afterimage reprocess`` both build theirs here, so a reprocessed attachment is matched,
    judged and scheduled exactly as the daemon would have."""
    return Pipeline(
        store,
        archive,
        MediaFetcher(config.media),
        Matcher(store, archive, config.matching),
        RecheckTracker(store, {p: s.recheck for p, s in config.watchers.enabled().items()}),
        video_keyframes=config.media.video_keyframes,
        clock=clock,
        stop=stop or threading.Event(),
        hasher=hasher or InlineHasher(),
        cases=CaseDesk(
            store,
            archive,
            base_url=config.web.base_url,
            suggest_to_chat=config.alerts.suggest_to_chat,
            thresholds=config.matching.thresholds,
            clock=clock,
        ),
    )


#: clock difference between two daemons' machines tolerated when telling whether a seen entry is newer than
#: a match (an older one was in the store when the matcher looked, and the matcher decided about it)
_CLOCK_SLACK = timedelta(seconds=2)


def _remembered_meanwhile(seen: KnownMedia, origin: dict[str, str], started: datetime) -> bool:
    """Whether ``seen``, the file's first seen entry, is another post's and was added after ``started``."""
    theirs = (str(seen.origin.get("platform")), str(seen.origin.get("post_id"))) != (origin["platform"], origin["post_id"])
    return theirs and seen.added_at >= started - _CLOCK_SLACK


def _urls_to_fetch(media: Media) -> list[tuple[str, str]]:
    """Photos: the photo. Videos and GIFs: the video file (keyframes) and its preview still."""
    urls = [(media.url, "main")]
    if media.kind in (MediaKind.VIDEO, MediaKind.GIF) and media.preview_url and media.preview_url != media.url:
        urls.append((media.preview_url, "preview"))
    return urls
