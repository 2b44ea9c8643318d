"""Alert payloads and idempotence keys: what the producers (pipeline, deletion tracker, digest) put in the
outbox, and the only place their shape is defined.

Every payload is plain JSON (the store serializes it as such). Times are ISO 8601 UTC strings (``...Z``).

``match`` / ``recycled`` (built by :func:`match_alert`)::

    {"platform", "account", "post_id", "post_url", "posted_at", "text",
     "media_sha256", "media_archive_path", "media_url",
     "known": {"id", "label", "source", "note", "kind": "known"|"seen", "archive_path", "frame_ts",
               "origin": {"platform", "account", "post_id", "url", "posted_at"}   # for kind "seen"
               "added_at"},
     "tier": "match"|"suggest", "signal", "distance", "inliers",
     "region": [[x, y], [x, y], [x, y], [x, y]] | null,   # the known image's outline, in the posted image's pixels
     "known_region": [[fx, fy], ...] | null,   # the posted image's (or matched region's) outline in the known
                                                # image, as fractions of its width and height: where a crop came from
     "media_frame_ts": seconds | null}                     # when the posted media is a video: the matched frame

  ``recycled`` is a hit on a ``seen`` entry (an image that appeared before on another post), ``match`` a hit
  on a ``known`` entry (game footage, stock photo...). :func:`match_alert` picks the kind from the entry.

``deleted``, ``author_suspended``, ``author_protected``, ``author_deleted``, ``withheld``, ``restored``,
``edited`` (built by :func:`event_alert`, the only builder: the deletion tracker queues what it returns)::

    {"platform", "account", "post_id", "post_url", "posted_at", "text", "detected_at",
     "lifetime_seconds",              # posting to the last sighting alive (PostEvent.lifetime_seconds, as exported)
     "details": {...},                # the event's details; for edited: {"before": {"text", "media"}, "after": {...}}
     "media": [{"sha256", "archive_path"}, ...]}

``digest`` (built by :func:`bot.alerts.digest.build_digest`)::

    {"date": "YYYY-MM-DD", "since", "until",
     "totals": {"match", "recycled", "suggest", "deleted", "edited", "other_events"},
     "accounts": [{"platform", "account", "match", "recycled", "suggest", "deleted", "edited", "other_events"}]}
    # digests queued by older versions may carry "alerts_counted": false (match counts were unavailable)

Idempotence keys (:func:`alert_key`) make enqueuing twice a no-op, so a producer retried after a crash never
raises a second alert for the same finding.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from bot.models import Post, iso, utcnow
from bot.store.records import EVENT_KINDS, KnownKind, KnownMedia, OutboxAlert, PostEvent, StoredPost

MATCH_KINDS = ("match", "recycled")
DIGEST_KIND = "digest"
ALL_KINDS = MATCH_KINDS + EVENT_KINDS + (DIGEST_KIND,)


def alert_key(kind: str, *parts: object) -> str:
    """``kind:part1:part2...``: the idempotence key of an alert.

    - ``alert_key("match", platform, post_id, media_sha256, known_item)`` (also ``recycled``; the item is the
      known entry's group, e.g. a whole trailer, or its id: one alert per attachment per item)
    - ``alert_key("deleted", platform, post_id, event_id)`` (every event kind)
    - ``alert_key("digest", "YYYY-MM-DD")``
    """
    if kind not in ALL_KINDS:
        raise ValueError(f"unknown alert kind {kind!r}")
    if not parts or any(p is None or str(p) == "" for p in parts):
        raise ValueError(f"alert key of {kind!r} needs non-empty parts, got {parts!r}")
    return ":".join([kind, *(str(p) for p in parts)])


def match_key(kind: str, platform: str, post_id: str, media_sha256: str, known_item: str) -> str:
    return alert_key(kind, platform, post_id, media_sha256, known_item)


def event_key(kind: str, platform: str, post_id: str, event_id: str) -> str:
    return alert_key(kind, platform, post_id, event_id)


def digest_key(date: str) -> str:
    return alert_key(DIGEST_KIND, date)


def known_payload(known: KnownMedia) -> dict[str, Any]:
    """The ``known`` part of a match payload."""
    origin = dict(known.origin or {})
    if isinstance(origin.get("posted_at"), datetime):
        origin["posted_at"] = iso(origin["posted_at"])
    return {
        "id": known.id,
        "label": known.label,
        "source": known.source,
        "note": known.note,
        "kind": KnownKind(known.kind).value,
        "archive_path": known.archive_path,
        "frame_ts": known.frame_ts,
        "origin": origin,
        "added_at": iso(known.added_at),
    }


def _region(region: Sequence[Sequence[float]] | None) -> list[list[float]] | None:
    if region is None:
        return None
    points = [[float(p[0]), float(p[1])] for p in region]
    if len(points) < 3:
        raise ValueError(f"a region needs at least 3 points, got {len(points)}")
    return points


def match_payload(
    post: Post,
    *,
    media_sha256: str,
    media_archive_path: str | None,
    media_url: str | None,
    known: KnownMedia,
    tier: str,
    signal: str,
    distance: float | None = None,
    inliers: int | None = None,
    region: Sequence[Sequence[float]] | None = None,
    media_frame_ts: float | None = None,
    known_region: Sequence[Sequence[float]] | None = None,
) -> dict[str, Any]:
    """Payload of a ``match``/``recycled`` alert (see the module docstring)."""
    if tier not in ("match", "suggest"):
        raise ValueError(f"tier must be 'match' or 'suggest', got {tier!r}")
    return {
        "platform": post.platform,
        "account": post.account,
        "post_id": post.post_id,
        "post_url": post.url,
        "posted_at": iso(post.created_at),
        "text": post.text,
        "media_sha256": media_sha256,
        "media_archive_path": media_archive_path,
        "media_url": media_url,
        "known": known_payload(known),
        "tier": tier,
        "signal": signal,
        "distance": distance,
        "inliers": inliers,
        "region": _region(region),
        "known_region": _region(known_region),
        "media_frame_ts": media_frame_ts,
    }


def match_alert(
    post: Post, *, known: KnownMedia, media_sha256: str, created_at: datetime | None = None, **details: Any
) -> OutboxAlert:
    """A ``recycled`` alert when ``known`` is a ``seen`` entry, else a ``match`` alert, whose payload is
    :func:`match_payload` of the same arguments (``details``: its other keyword arguments); key
    ``{kind}:{platform}:{post_id}:{media_sha256}:{known.item}`` (the group of a trailer's keyframes, else the
    entry's id), so the frames of a posted video matching one trailer make one alert, and a rerun that picks
    another frame sends nothing again. ``known.id`` must be set (stored entry)."""
    kind = "recycled" if KnownKind(known.kind) is KnownKind.SEEN else "match"
    payload = match_payload(post, known=known, media_sha256=media_sha256, **details)
    return OutboxAlert(
        key=match_key(kind, post.platform, post.post_id, media_sha256, known.item),
        kind=kind,
        payload=payload,
        created_at=created_at or utcnow(),
    )


def _media_list(media: Iterable[Any]) -> list[dict[str, Any]]:
    """Accepts MediaRecord / PostMediaLink-like objects (``sha256``, ``archive_path``) or dicts."""
    out = []
    for m in media:
        if isinstance(m, dict):
            out.append({"sha256": m.get("sha256"), "archive_path": m.get("archive_path")})
        else:
            out.append({"sha256": getattr(m, "sha256", None), "archive_path": getattr(m, "archive_path", None)})
    return out


def event_payload(event: PostEvent, stored: StoredPost | None, *, media: Iterable[Any] = ()) -> dict[str, Any]:
    """Payload of a deletion-log alert (see the module docstring): the one builder, used by the tracker.

    ``stored`` is the post as the store holds it when the event is recorded (None when the store lost it: the
    alert still goes out, with what the event knows). ``lifetime_seconds`` is :meth:`PostEvent.lifetime_seconds`,
    the same figure the exports show."""
    post = stored.post if stored is not None else None
    details = {k: (iso(v) if isinstance(v, datetime) else v) for k, v in dict(event.details or {}).items()}
    return {
        "platform": event.platform,
        "account": event.account,
        "post_id": event.post_id,
        "post_url": post.url if post else None,
        "posted_at": iso(post.created_at) if post else None,
        "text": post.text if post else None,
        "detected_at": iso(event.detected_at),
        "lifetime_seconds": event.lifetime_seconds(post.created_at if post else None, stored),
        "details": details,
        "media": _media_list(media),
    }


def event_alert(
    event: PostEvent,
    stored: StoredPost | None,
    *,
    media: Iterable[Any] = (),
    created_at: datetime | None = None,
) -> OutboxAlert:
    """Alert for a deletion-log event; key ``{kind}:{platform}:{post_id}:{event.id}``. The event's ``id`` must
    be set: the tracker chooses it before recording the event and its alert in one store transaction."""
    if event.kind not in EVENT_KINDS:
        raise ValueError(f"not an alerting event kind: {event.kind!r}")
    return OutboxAlert(
        key=event_key(event.kind, event.platform, event.post_id, event.id),
        kind=event.kind,
        payload=event_payload(event, stored, media=media),
        created_at=created_at or utcnow(),
    )
