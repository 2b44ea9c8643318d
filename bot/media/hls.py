"""HLS: turn a playlist URL (what Bluesky gives for a video) into one video file that can be archived and sampled.

:func:`fetch_attachment` fetches a posted media URL; when the body is an HLS playlist (``#EXTM3U`` first),
it follows the playlist to one video file:

1. A **master** playlist lists variants; one is chosen (:func:`choose_variant`): the highest ``BANDWIDTH``
   whose ``RESOLUTION`` is at most :data:`MAX_VARIANT_SIDE` pixels on its longer side, else the lowest
   ``BANDWIDTH``. Keyframes are downscaled to 1280 px for matching anyway, so a larger rendition only costs
   bytes against the size cap (and a 4K rendition could exceed it) without matching any better; the lowest
   one is the variant most likely to fit when none is known to be small enough.
2. Its **media** playlist lists the segments (and an ``EXT-X-MAP`` init section for fragmented MP4). URIs
   are resolved against the URL the playlist was finally served from.
3. Every segment is fetched through the same :class:`~bot.media.fetch.MediaFetcher` (same address policy,
   trusted hosts, timeouts, retries), the running total held to ``media.max_bytes``, at most
   ``max_segments`` segments and ``max_seconds`` for them all (each download has its own deadline, but a
   host dripping a thousand segments one after another would otherwise hold a worker for hours), then
   concatenated: MPEG-TS segments give one ``.ts`` file, an init section
   followed by fMP4 segments a fragmented ``.mp4``. The joined file is sniffed again like any download, so
   :mod:`bot.media.keyframes` demuxes it with its usual forced demuxer (FFmpeg's HLS demuxer is never used).

The parser is small and strict, because playlists are untrusted input that chooses URLs: UTF-8 text, a URI
only after ``#EXTINF`` (media) or ``#EXT-X-STREAM-INF`` (master), no ``.``/``..`` path segments, http(s)
only, no byte ranges, one init section. Unknown tags are ignored, as the HLS specification requires.
A live playlist (no ``EXT-X-ENDLIST``) is taken as listed: the video is what had been published so far.

Errors are :class:`~bot.errors.MediaError`; a segment's own failure keeps its reason (``timeout``,
``unavailable``, ``private_address``...) with the segment named in the message, plus:
``hls_malformed`` (not a playlist this parser accepts), ``hls_encrypted`` (``EXT-X-KEY`` or
``EXT-X-SESSION-KEY`` with a method other than NONE: the segments would be ciphertext),
``hls_unsupported`` (byte ranges, several init sections, a master playlist where a media playlist should be),
``hls_segment_missing`` (404 or 410 for a segment the playlist lists: the host contradicts itself, as while an
upload is still being processed, so the pipeline retries it like a timeout), ``timeout`` (past ``max_seconds``),
``too_many_segments`` and
``too_large`` (segments over ``media.max_bytes`` in total, or a playlist over :data:`MAX_PLAYLIST_BYTES`).
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from bot.errors import MediaError
from bot.media.fetch import MEDIA, Expected, FetchedMedia, MediaFetcher
from bot.net.policy import display_url
from bot.media.sniff import MOV, MP4, MPEGTS, SniffedType, sniff

log = logging.getLogger(__name__)

#: segments one video may have (a 3-minute Bluesky video has a few dozen)
MAX_SEGMENTS = 1000
#: seconds all the segments of one video may take to download
MAX_SECONDS = 600.0
#: a playlist larger than this is refused (thousands of segments fit in a tenth of it)
MAX_PLAYLIST_BYTES = 1_000_000
#: the longer side of the largest variant chosen when there is one that small (see the module documentation)
MAX_VARIANT_SIDE = 1280

PLAYLIST = SniffedType("application/vnd.apple.mpegurl", "m3u8", "playlist")
#: an fMP4 media segment: a box other than ``ftyp`` first, so not a file of its own
FMP4_SEGMENT = SniffedType("video/iso.segment", "m4s", "segment")

PLAYLIST_TYPES = frozenset(
    {"application/vnd.apple.mpegurl", "application/x-mpegurl", "audio/mpegurl", "audio/x-mpegurl"}
)
_BINARY_TYPES = frozenset({"application/octet-stream", "binary/octet-stream"})
# boxes an fMP4 media segment may start with (ISO/IEC 23009-1 and RFC 8216 section 3.3)
_SEGMENT_BOXES = frozenset({b"styp", b"moof", b"sidx", b"emsg", b"prft"})
_MISSING = {"http_404", "http_410"}
_ATTRIBUTE = re.compile(r'([A-Z0-9-]+)=("[^"\r\n]*"|[^",\s]*)(?:,|$)')
_RESOLUTION = re.compile(r"^(\d{1,6})x(\d{1,6})$")


@dataclass(frozen=True)
class Attachment:
    """A fetched attachment: the media file, and the playlists it was assembled from (empty for a plain file).

    The playlists are kept as evidence: they say which rendition and which segments make up ``media``."""

    media: FetchedMedia
    playlists: tuple[FetchedMedia, ...] = ()


@dataclass(frozen=True)
class Variant:
    uri: str  # absolute
    bandwidth: int
    resolution: tuple[int, int] | None


@dataclass(frozen=True)
class MediaPlaylist:
    segments: tuple[str, ...]  # absolute URIs, in order
    init: str | None  # EXT-X-MAP URI, absolute
    ended: bool  # EXT-X-ENDLIST seen (False: a live playlist, taken as listed)


# ----------------------------------------------------------------------------- what a fetch may return


def sniff_playlist(head: bytes) -> SniffedType | None:
    """PLAYLIST when ``head`` starts with ``#EXTM3U`` (RFC 8216: the first line of every playlist)."""
    return PLAYLIST if head.startswith(b"#EXTM3U") and head[7:8] in (b"\r", b"\n", b"") else None


def _media_or_playlist(head: bytes) -> SniffedType | None:
    return sniff(head) or sniff_playlist(head)


def _segment(head: bytes) -> SniffedType | None:
    """An MPEG-TS segment, an MP4 init section, or an fMP4 media segment; nothing else (no images)."""
    sniffed = sniff(head)
    if sniffed in (MPEGTS, MP4, MOV):
        return sniffed
    return FMP4_SEGMENT if len(head) >= 8 and head[4:8] in _SEGMENT_BOXES else None


def _playlist_type_ok(declared: str) -> bool:
    return declared in PLAYLIST_TYPES or declared in _BINARY_TYPES


#: a posted URL: media as usual, or a playlist to follow
MEDIA_OR_PLAYLIST = Expected(
    _media_or_playlist,
    lambda declared: MEDIA.declared_ok(declared) or _playlist_type_ok(declared),
    f"{MEDIA.what} or an HLS playlist",
)
PLAYLIST_ONLY = Expected(sniff_playlist, _playlist_type_ok, "an HLS playlist")
SEGMENT = Expected(_segment, MEDIA.declared_ok, "an MPEG-TS or MP4 segment")


# ----------------------------------------------------------------------------- fetching


def fetch_attachment(
    fetcher: MediaFetcher, url: str, *, max_segments: int = MAX_SEGMENTS, max_seconds: float = MAX_SECONDS
) -> Attachment:
    """The media file at ``url``; an HLS playlist there is followed and its segments joined into one file."""
    first = fetcher.fetch(url, MEDIA_OR_PLAYLIST)
    if first.kind != "playlist":
        return Attachment(first)
    playlists = [first]
    parsed = parse_playlist(first.data, first.final_url)
    if isinstance(parsed, list):
        variant = choose_variant(parsed)
        log.info("hls: %s: variant %s (%d b/s)", display_url(url), display_url(variant.uri), variant.bandwidth)
        second = fetcher.fetch(variant.uri, PLAYLIST_ONLY, max_bytes=MAX_PLAYLIST_BYTES)
        playlists.append(second)
        parsed = parse_playlist(second.data, second.final_url)
        if isinstance(parsed, list):
            raise MediaError("hls_unsupported", f"{display_url(variant.uri)} is a master playlist inside a master playlist")
    video = _join(fetcher, url, playlists[-1].final_url, parsed, max_segments, time.monotonic() + max_seconds)
    return Attachment(video, tuple(playlists))


def _join(
    fetcher: MediaFetcher, url: str, playlist_url: str, playlist: MediaPlaylist, max_segments: int, deadline: float
) -> FetchedMedia:
    """Fetch the init section and every segment, within the size cap and the deadline, and concatenate them."""
    shown = display_url(playlist_url)
    count = len(playlist.segments)
    if count > max_segments:
        raise MediaError("too_many_segments", f"{shown} lists {count} segments, over the limit of {max_segments}")
    cap = fetcher.config.max_bytes
    parts: list[bytes] = []
    total = 0
    uris = ([playlist.init] if playlist.init else []) + list(playlist.segments)
    for number, uri in enumerate(uris, start=0 if playlist.init else 1):
        what = "the init section" if number == 0 else f"segment {number} of {count}"
        if total >= cap:
            raise MediaError("too_large", f"the video of {shown} is over the limit of {cap} bytes at {what}")
        if time.monotonic() > deadline:
            raise MediaError("timeout", f"the segments of {shown} took too long to download, stopped at {what}")
        data = _fetch_part(fetcher, uri, what, shown, cap - total)
        parts.append(data)
        total += len(data)
    if not playlist.ended:
        log.info("hls: %s is live (no EXT-X-ENDLIST): joined the %d segments listed so far", shown, count)
    return _joined_file(url, playlist_url, b"".join(parts), shown)


def _fetch_part(fetcher: MediaFetcher, uri: str, what: str, shown: str, budget: int) -> bytes:
    try:
        return fetcher.fetch(uri, SEGMENT, max_bytes=budget).data
    except MediaError as e:
        if e.reason == "too_large":
            cap = fetcher.config.max_bytes
            raise MediaError("too_large", f"the video of {shown} is over the limit of {cap} bytes at {what}") from e
        reason = "hls_segment_missing" if e.reason in _MISSING else e.reason
        raise MediaError(reason, f"{what} of {shown} failed: {e}") from e


def _joined_file(url: str, playlist_url: str, data: bytes, shown: str) -> FetchedMedia:
    """The joined bytes as a video download, typed by their magic bytes like any other."""
    sniffed = sniff(data)
    if sniffed not in (MPEGTS, MP4, MOV):
        hint = " (fMP4 segments need an EXT-X-MAP init section)" if data[4:8] in _SEGMENT_BOXES else ""
        raise MediaError("not_media", f"the segments of {shown} do not join into an MPEG-TS or MP4 file{hint}")
    return FetchedMedia(url, playlist_url, data, sniffed.content_type, sniffed.ext, sniffed.kind)


# ----------------------------------------------------------------------------- parsing


def parse_playlist(data: bytes, base_url: str) -> list[Variant] | MediaPlaylist:
    """A master playlist's variants, or a media playlist; URIs resolved against ``base_url``."""
    shown = display_url(base_url)
    if len(data) > MAX_PLAYLIST_BYTES:
        raise MediaError("too_large", f"playlist {shown} is {len(data)} bytes, over {MAX_PLAYLIST_BYTES}")
    lines = _lines(data, shown)
    tags = {line.split(":", 1)[0] for line in lines if line.startswith("#EXT")}
    master = "#EXT-X-STREAM-INF" in tags
    if master and "#EXTINF" in tags:
        raise MediaError("hls_malformed", f"playlist {shown} mixes variants and segments")
    if "#EXT-X-SESSION-KEY" in tags or "#EXT-X-KEY" in tags:
        _refuse_encryption(lines, shown)
    return _parse_master(lines, base_url, shown) if master else _parse_media(lines, base_url, shown)


def _lines(data: bytes, shown: str) -> list[str]:
    """The non-blank lines after ``#EXTM3U``; refuses anything but printable UTF-8 text."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise MediaError("hls_malformed", f"playlist {shown} is not UTF-8 text") from None
    lines = [line.rstrip("\r") for line in text.split("\n")]
    if not lines or lines[0] != "#EXTM3U":
        raise MediaError("hls_malformed", f"playlist {shown} does not start with #EXTM3U")
    for number, line in enumerate(lines, start=1):
        if any(ord(c) < 0x20 and c != "\t" or ord(c) == 0x7F for c in line):
            raise MediaError("hls_malformed", f"playlist {shown} has control characters on line {number}")
    return [line.strip() for line in lines[1:] if line.strip()]


def _refuse_encryption(lines: list[str], shown: str) -> None:
    for line in lines:
        tag, _, value = line.partition(":")
        if tag in ("#EXT-X-KEY", "#EXT-X-SESSION-KEY") and _attributes(value, shown).get("METHOD") != "NONE":
            raise MediaError("hls_encrypted", f"playlist {shown} is encrypted ({line[:80]}): refused")


def _parse_master(lines: list[str], base_url: str, shown: str) -> list[Variant]:
    variants: list[Variant] = []
    pending: dict[str, str] | None = None
    for line in lines:
        if line.startswith("#"):
            if line.startswith("#EXT-X-STREAM-INF:"):
                pending = _attributes(line.split(":", 1)[1], shown)
            continue
        if pending is None:
            raise MediaError("hls_malformed", f"playlist {shown}: {line[:80]!r} follows no #EXT-X-STREAM-INF")
        variants.append(_variant(pending, _resolve(line, base_url, shown), shown))
        pending = None
    if not variants:
        raise MediaError("hls_malformed", f"master playlist {shown} lists no variant")
    return variants


def _variant(attributes: dict[str, str], uri: str, shown: str) -> Variant:
    bandwidth = attributes.get("BANDWIDTH", "")
    if not bandwidth.isdigit():
        raise MediaError("hls_malformed", f"playlist {shown}: a variant has no valid BANDWIDTH")
    resolution = None
    if "RESOLUTION" in attributes:
        match = _RESOLUTION.match(attributes["RESOLUTION"])
        if match is None:
            raise MediaError("hls_malformed", f"playlist {shown}: bad RESOLUTION {attributes['RESOLUTION']!r}")
        resolution = (int(match.group(1)), int(match.group(2)))
    return Variant(uri, int(bandwidth), resolution)


def _parse_media(lines: list[str], base_url: str, shown: str) -> MediaPlaylist:
    segments: list[str] = []
    init: str | None = None
    in_segment = False  # an #EXTINF is waiting for its URI
    ended = False
    for line in lines:
        tag, _, value = line.partition(":")
        if tag == "#EXTINF":
            _check_duration(value, shown)
            in_segment = True
        elif tag in ("#EXT-X-BYTERANGE", "#EXT-X-I-FRAMES-ONLY"):
            raise MediaError("hls_unsupported", f"playlist {shown} uses byte ranges ({tag}): not supported")
        elif tag == "#EXT-X-MAP":
            init = _init_section(value, init, base_url, shown)
        elif tag == "#EXT-X-ENDLIST":
            ended = True
        elif line.startswith("#"):
            continue  # another tag (ignored, as the specification requires) or a comment
        elif not in_segment:
            raise MediaError("hls_malformed", f"playlist {shown}: {line[:80]!r} follows no #EXTINF")
        else:
            segments.append(_resolve(line, base_url, shown))
            in_segment = False
    if not segments:
        raise MediaError("hls_malformed", f"playlist {shown} lists no segment")
    return MediaPlaylist(tuple(segments), init, ended)


def _check_duration(value: str, shown: str) -> None:
    """An #EXTINF value must start with a finite, non-negative number of seconds (else the line is garbage)."""
    try:
        duration = float(value.split(",", 1)[0])
    except ValueError:
        raise MediaError("hls_malformed", f"playlist {shown}: bad #EXTINF duration {value[:40]!r}") from None
    if not math.isfinite(duration) or duration < 0:
        raise MediaError("hls_malformed", f"playlist {shown}: bad #EXTINF duration {value[:40]!r}")


def _init_section(value: str, previous: str | None, base_url: str, shown: str) -> str:
    attributes = _attributes(value, shown)
    if "BYTERANGE" in attributes:
        raise MediaError("hls_unsupported", f"playlist {shown} uses byte ranges (EXT-X-MAP BYTERANGE): not supported")
    if "URI" not in attributes:
        raise MediaError("hls_malformed", f"playlist {shown}: EXT-X-MAP without URI")
    uri = _resolve(attributes["URI"], base_url, shown)
    if previous is not None and previous != uri:
        raise MediaError("hls_unsupported", f"playlist {shown} changes its init section (several EXT-X-MAP)")
    return uri


def _attributes(value: str, shown: str) -> dict[str, str]:
    """An attribute list (``KEY=value,KEY="quoted"``), quotes removed; anything else is malformed."""
    attributes: dict[str, str] = {}
    position = 0
    while position < len(value):
        match = _ATTRIBUTE.match(value, position)
        if match is None:
            raise MediaError("hls_malformed", f"playlist {shown}: bad attribute list {value[:80]!r}")
        attributes[match.group(1)] = match.group(2).strip('"')
        position = match.end()
    return attributes


def _resolve(uri: str, base_url: str, shown: str) -> str:
    """``uri`` made absolute against ``base_url``; refuses what no CDN playlist needs (dot segments, schemes
    other than http(s), spaces), so a playlist cannot walk paths or point anywhere but at a web URL."""
    if any(c.isspace() for c in uri) or len(uri) > 4096:
        raise MediaError("hls_malformed", f"playlist {shown}: {uri[:80]!r} is not a URI")
    path = urlsplit(uri).path
    if any(part in (".", "..") for part in path.split("/")):
        raise MediaError("hls_malformed", f"playlist {shown}: {uri[:80]!r} has . or .. path segments: refused")
    absolute = urljoin(base_url, uri)
    if urlsplit(absolute).scheme not in ("http", "https"):
        raise MediaError("hls_malformed", f"playlist {shown}: {uri[:80]!r} is not an http(s) URL")
    return absolute


def choose_variant(variants: list[Variant]) -> Variant:
    """The highest bandwidth whose longer side fits :data:`MAX_VARIANT_SIDE`, else the lowest bandwidth
    (a variant without RESOLUTION is not known to fit). Why: see the module documentation."""
    fitting = [v for v in variants if v.resolution is not None and max(v.resolution) <= MAX_VARIANT_SIDE]
    if fitting:
        return max(fitting, key=lambda v: v.bandwidth)
    return min(variants, key=lambda v: v.bandwidth)

