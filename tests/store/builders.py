"""Builders the store contract tests share: posts, media records, known entries, alerts, re-checks and
events at fixed times."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from bot.models import Media, MediaKind, Post
from bot.store.records import KnownKind, KnownMedia, MediaRecord, OutboxAlert, PostEvent, Recheck


T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def make_post(post_id: str = "1", text: str = "hello", media=(), account: str = "gov", platform: str = "x", **raw):
    return Post(
        platform=platform,
        account=account,
        post_id=post_id,
        url=f"https://example.org/{account}/{post_id}",
        text=text,
        created_at=T0 - timedelta(hours=1),
        media=tuple(media),
        raw={"id": post_id, "text": text, "zeta": 1, "alpha": [1, 2, {"b": None, "a": "é"}], **raw},
        author_id="42",
    )


def photo(url: str = "https://cdn.example.org/a.jpg?sig=1", media_id: str | None = None) -> Media:
    return Media(url=url, kind=MediaKind.PHOTO, alt_text="alt", media_id=media_id)


def assert_aware(value: datetime | None) -> None:
    assert value is not None and value.tzinfo is not None and value.utcoffset() == timedelta(0)


def media_record(sha: str = "a" * 64, **kw) -> MediaRecord:
    fields = dict(size=10, content_type="image/jpeg", archive_path=f"media/{sha[:2]}/{sha}.jpg",
                  first_url="https://cdn/a.jpg", first_seen=at(0))
    fields.update(kw)
    return MediaRecord(sha256=sha, **fields)


def known(label: str, kind=KnownKind.KNOWN, sha: str | None = None, **kw) -> KnownMedia:
    return KnownMedia(label=label, signals={"pdq": f"pdq-{label}"}, kind=kind, sha256=sha, added_at=at(0), **kw)


def alert(key: str, **kw) -> OutboxAlert:
    return OutboxAlert(key=key, kind="match", payload={"post": key, "score": 0.9}, created_at=at(0), **kw)


def post_alert(key: str, kind: str = "match", platform: str = "x", post_id="1", **kw) -> OutboxAlert:
    payload = {"platform": platform, "post_id": post_id, "media_sha256": "a" * 64, "known": {"id": "k1"}}
    return OutboxAlert(key=key, kind=kind, payload=payload, created_at=at(0), **kw)


def recheck(post_id: str, due: float, platform: str = "x", **kw) -> Recheck:
    return Recheck(platform=platform, post_id=post_id, account="gov", posted_at=at(-3600), due_at=at(due), **kw)


def event(kind: str, post_id: str = "1", detected: float = 0, platform: str = "x", account: str = "gov", **details):
    return PostEvent(platform=platform, account=account, post_id=post_id, kind=kind, detected_at=at(detected),
                     details=details)
