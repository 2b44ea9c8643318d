"""One input's answer to "is this a copy of known media?", as ``afterimage check --json`` prints it; also
what the web console's check page and ``POST /api/v1/check`` answer, so the three never differ.

An image is checked as it is; a video is sampled into keyframes as a posted video is, and the frame with
the best match answers (its time as ``input_frame_ts``). Download and decode failures are one plain
sentence, with the library's text kept as ``detail`` for ``--verbose``."""

from __future__ import annotations

from collections.abc import Callable

from bot.errors import AfterimageError, MediaError
from bot.matching.matcher import Match, Matcher
from bot.matching.thresholds import apply_rules
from bot.media.keyframes import extract_keyframes
from bot.media.sniff import SNIFF_BYTES, sniff

#: largest file a check reads or accepts as an upload (URLs: ``media.max_bytes``)
MAX_BYTES = 50 * 1000**2
#: keyframes sampled from a checked video when the caller does not say (``media.video_keyframes``' default)
DEFAULT_FRAMES = 8

_PLAIN = {
    "tls_error": "no secure (TLS) connection could be made: the server may not speak https on that port, "
    "or its certificate is not trusted",
    "unavailable": "the server could not be reached (connection refused, unknown host or a server error)",
    "timeout": "the server did not answer in time",
    "not_https": "only https URLs are downloaded (http only from hosts listed in media.trusted_hosts)",
    "private_address": "the address is private or local, and downloads from it are refused "
    "(list the host in media.trusted_hosts to allow it)",
    "bad_url": "this is not a usable URL",
    "too_many_redirects": "the URL redirects too many times",
    "too_large": "the file is larger than the download limit (media.max_bytes)",
    "not_media": "the URL is not an image or a video",
    "header_too_large": "the server sent oversized headers",
}


def plain_error(e: MediaError) -> str:
    """One plain sentence for a download or decode failure (the technical text goes under ``--verbose``)."""
    plain = _PLAIN.get(e.reason)
    if plain is None and e.reason.startswith("http_"):
        plain = f"the server answered HTTP {e.reason.removeprefix('http_')}"
    return plain or str(e)


def check_one(
    matcher: Matcher,
    name: str,
    read: Callable[[], bytes],
    *,
    show_all: bool = False,
    verbose: bool = False,
    max_frames: int = DEFAULT_FRAMES,
) -> dict[str, object]:
    """The answer for one input: ``{"input", "match"}``, plus ``matches`` with ``show_all`` and
    ``input_frame_ts`` for a video, or ``error`` (and ``detail`` with ``verbose``)."""
    line: dict[str, object] = {"input": name}
    try:
        found, frame_ts = _best(matcher, read(), max_frames)
        line["match"] = found[0].to_json() if found else None
        if frame_ts is not None:
            line["input_frame_ts"] = frame_ts
        if show_all:
            line["matches"] = [m.to_json() for m in found]
    except MediaError as e:
        line["match"] = None
        line["error"] = f"{e.reason}: {plain_error(e)}"
        if verbose:
            line["detail"] = str(e)
    except (AfterimageError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None)
        line["match"] = None
        line["error"] = f"{reason}: {e}" if reason else str(e)
    return line


def _best(matcher: Matcher, data: bytes, max_frames: int) -> tuple[list[Match], float | None]:
    """Matches of an image, or of the video's sampled frames: those of the frame with the best match, and
    that frame's time. Stricter per-item thresholds (``matching.thresholds``) apply to both."""
    sniffed = sniff(data[:SNIFF_BYTES])
    if sniffed is None or sniffed.kind != "video":
        return apply_rules(matcher.match(data), matcher.config.thresholds), None
    best: tuple[list[Match], float | None] = ([], None)
    for ts, frame in extract_keyframes(data, max_frames=max_frames):
        found = apply_rules(matcher.match(frame), matcher.config.thresholds)
        if found and (not best[0] or _rank(found[0]) < _rank(best[0][0])):
            best = (found, ts)
    return best


def _rank(m: Match) -> tuple[int, int, int]:
    return (0 if m.tier == "match" else 1, -(m.inliers or 0), m.distance if m.distance is not None else 999)
