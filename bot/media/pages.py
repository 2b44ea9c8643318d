"""Media from a URL a person gives (``afterimage known add URL``): a direct image or video link, or a video
page that yt-dlp understands (a trailer on a video site, a page with a ``<video>``).

Everything is downloaded by :class:`~bot.media.fetch.MediaFetcher`, under the media address policy (https,
public addresses unless ``media.trusted_hosts``, DNS pinning, size and time limits); HLS is joined by
:mod:`bot.media.hls`. yt-dlp is used as a library only to *read* a page and find its video's URL: every request
it makes is sent by our guarded client (a yt-dlp request handler, the only one it has), so the URL, every
redirect and the address connected to pass the same policy; it never downloads the video itself. The page URL stays the source of what is added.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from bot.errors import MediaError
from bot.media.fetch import FetchedMedia, MediaFetcher
from bot.net.client import GuardedClient, Retryable
from bot.net.policy import display_url
from bot.media.hls import fetch_attachment

log = logging.getLogger(__name__)

#: the highest video a page download picks when it may choose (keyframes are downscaled to 1280 anyway)
MAX_HEIGHT = 720
_PROTOCOLS = {"http", "https", "m3u8", "m3u8_native"}
#: what yt-dlp may read of one page or API answer (the video itself is downloaded by the fetcher, not here)
MAX_PAGE_BYTES = 16 << 20


@dataclass(frozen=True)
class Downloaded:
    """A downloaded media file, the URL it was asked for (the page for a video page) and a file name."""

    media: FetchedMedia
    source: str
    file_name: str
    title: str | None = None


def is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def download(fetcher: MediaFetcher, url: str) -> Downloaded:
    """The media at ``url``: the file itself when the URL is one, else the video of the page (yt-dlp).

    Raises :class:`MediaError` with a plain message: the fetcher's reasons, ``no_video`` (a page with no video
    yt-dlp can find) or ``bad_url``."""
    try:
        fetched = fetch_attachment(fetcher, url).media
        return Downloaded(fetched, url, _file_name(fetched.final_url, fetched.ext))
    except MediaError as e:
        if e.reason != "not_media":
            raise
    info = _page_info(fetcher.client, url)
    video_url = _choose(info, url)
    fetched = fetch_attachment(fetcher, video_url).media
    title = info.get("title")
    name = f"{title}.{fetched.ext}" if title else _file_name(fetched.final_url, fetched.ext)
    return Downloaded(fetched, url, name, title)


def _file_name(url: str, ext: str) -> str:
    name = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    return name or f"download.{ext}"


def _page_info(guard: GuardedClient, url: str) -> dict[str, Any]:
    """What yt-dlp reads from the page, every request it makes sent by ``guard`` (:func:`_guarded_handler`)."""
    import yt_dlp

    refused: list[MediaError] = []
    handler = _guarded_handler(guard, refused)

    class GuardedYoutubeDL(yt_dlp.YoutubeDL):
        def build_request_director(self, handlers: Any, preferences: Any = None) -> Any:
            return super().build_request_director([handler])  # ours only: no other handler can connect

    params = {
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "skip_download": True,
        "noplaylist": True,
        "proxy": "",  # never an environment proxy: the policy checks the addresses we connect to
        "socket_timeout": guard.timeout,
        "logger": _YtdlpLog(),
    }
    shown = display_url(url)
    try:
        with GuardedYoutubeDL(params) as ydl:
            info = ydl.extract_info(url, download=False)
    except MediaError:
        raise
    except Exception as e:
        if refused:  # the address policy stopped one of its requests: that is the reason, said plainly
            raise refused[0] from None
        if not isinstance(e, yt_dlp.utils.DownloadError):
            raise
        cause = getattr(e, "exc_info", None)
        inner = cause[1] if cause else None
        if isinstance(inner, MediaError):
            raise inner from None
        detail = str(e).removeprefix("ERROR: ")
        raise MediaError("no_video", f"{shown} is a web page with no video afterimage can download ({detail})") from None
    if not isinstance(info, dict):
        raise MediaError("no_video", f"{shown} is a web page with no video afterimage can download")
    if info.get("_type") == "playlist":
        entries = [e for e in info.get("entries") or [] if isinstance(e, dict)]
        if len(entries) != 1:
            raise MediaError("no_video", f"{shown} lists {len(entries)} videos: add their own URLs one by one")
        info = {**entries[0], "title": info.get("title") or entries[0].get("title")}  # the page's own title
    return info


def _choose(info: dict[str, Any], page: str) -> str:
    """The URL of the best format up to :data:`MAX_HEIGHT` (else the smallest) with a picture."""
    formats = [f for f in info.get("formats") or [] if isinstance(f, dict) and f.get("url")]
    usable = [
        f for f in formats
        if f.get("vcodec") != "none" and (f.get("protocol") or "https") in _PROTOCOLS
    ]
    if not usable:
        if info.get("url") and (info.get("protocol") or "https") in _PROTOCOLS:
            return str(info["url"])
        raise MediaError("no_video", f"{display_url(page)}: the page's video is in no format afterimage can download")

    def height(f: dict[str, Any]) -> int:
        return int(f.get("height") or 0)

    fitting = [f for f in usable if height(f) <= MAX_HEIGHT]
    best = max(fitting, key=height) if fitting else min(usable, key=height)
    return str(best["url"])


def _guarded_handler(guard: GuardedClient, refused: list[MediaError]) -> type:
    """A yt-dlp request handler that sends every request through ``guard``: the URL, each redirect target
    (yt-dlp's own handlers follow redirects without asking us) and the address connected to (pinned after the
    DNS check, so a name cannot resolve elsewhere for the connection) all pass the address policy. A refusal
    is kept in ``refused`` (yt-dlp turns errors into its own) and raised to yt-dlp as a request error."""
    from yt_dlp.networking.common import RequestHandler, Response
    from yt_dlp.networking.exceptions import HTTPError, RequestError, TransportError

    class GuardedRH(RequestHandler):  # yt-dlp requires the "RH" suffix
        _SUPPORTED_URL_SCHEMES = ("http", "https")
        _SUPPORTED_PROXY_SCHEMES = ()
        _SUPPORTED_FEATURES = ()

        def _check_extensions(self, extensions: dict[str, Any]) -> None:
            super()._check_extensions(extensions)
            for name in ("cookiejar", "timeout", "legacy_ssl", "keep_header_casing"):
                extensions.pop(name, None)  # the guard's own timeouts and TLS settings apply

        def _send(self, request: Any) -> Any:
            data = request.data if isinstance(request.data, bytes) else None
            try:
                with guard.open(request.url, method=request.method, headers=self._get_headers(request), data=data) as answer:
                    body = _read_capped(answer.response, request.url)
                    r = answer.response
                    response = Response(io.BytesIO(body), answer.target.url, dict(r.headers), r.status_code, r.reason)
            except MediaError as e:
                refused.append(e)
                if isinstance(e, Retryable):
                    raise TransportError(str(e)) from None
                raise RequestError(str(e)) from None
            if response.status >= 400:
                raise HTTPError(response)
            return response

    return GuardedRH


def _read_capped(response: Any, url: str) -> bytes:
    """A page's body, refused past :data:`MAX_PAGE_BYTES` (a page is read whole; videos are not read here)."""
    body = bytearray()
    for chunk in response.iter_content(1 << 16):
        body += chunk
        if len(body) > MAX_PAGE_BYTES:
            raise MediaError("too_large", f"{display_url(url)}: a page larger than {MAX_PAGE_BYTES >> 20} MiB")
    return bytes(body)


class _YtdlpLog:
    """yt-dlp's messages go to our log, never to the user's screen."""

    def debug(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)

    def info(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)

    def warning(self, msg: str) -> None:
        log.info("yt-dlp: %s", msg)

    def error(self, msg: str) -> None:
        log.info("yt-dlp: %s", msg)
