"""Safe download of posted media: the security boundary between untrusted platform payloads and the archive.

Media URLs come from platform payloads anyone can influence, so every fetch is treated as hostile:

- **Address policy** (:mod:`bot.net.policy`): only ``https``; no userinfo; the host is resolved
  and refused when ANY of its addresses is private, loopback, link-local, multicast, reserved, unspecified,
  shared (CGNAT 100.64/10), or an IPv6 form embedding such an IPv4 address (mapped, 6to4, Teredo, NAT64).
  Hosts listed in ``media.trusted_hosts`` (``host`` for any port, or ``host:port``) skip both checks (on-premise
  mirrors, tests). Trust is by the host as written in the URL, never by resolved address.
- **DNS pinning**: the connection goes to the address that was checked (the pool connects to the IP, while
  the Host header, TLS SNI and certificate check use the host name), so a name that re-resolves to a private
  address between check and connect (DNS rebinding) cannot be used. Environment proxies are not used.
- **Redirects** are followed by hand (at most :data:`MAX_REDIRECTS`), the policy re-applied at every hop.

Address policy, pinning, redirects and the total deadline live in :class:`bot.net.client.GuardedClient`, so other code that
follows third-party URLs (the RSS watcher's item-link checks) gets the same protection; ``https_only=False``
lets such callers accept plain http from public addresses.
- **Size**: a Content-Length over ``media.max_bytes`` is refused before reading; bodies without one are counted
  while streaming and aborted at the cap. ``Accept-Encoding: identity`` is asked for.
- **Type**: a declared Content-Type that cannot be media (HTML, SVG, text, JSON, XML...) is refused before the
  body is read, and the magic bytes of the body decide the type (:mod:`bot.media.sniff`): JPEG, PNG, GIF, WebP,
  MP4/MOV, WebM, MPEG-TS. Anything else is ``not_media``. A caller may ask for other types (:class:`Expected`:
  :mod:`bot.media.hls` fetches playlists and segments through the same fetcher, under the same policy).
- **Time**: connect and read timeouts of ``media.timeout``, and a total deadline per attempt (redirects, TLS
  handshake, headers and body): a watchdog shuts the socket down when it passes, so a peer dripping one byte
  per read timeout cannot hold a worker.
- **Retries**: 5xx, 408, 429, timeouts and connection failures are retried ``media.retries`` times with
  exponential backoff; other 4xx and policy refusals are not.

Every failure is a :class:`~bot.errors.MediaError` whose ``reason`` is one of: ``bad_url``, ``not_https``,
``private_address``, ``too_many_redirects``, ``too_large``, ``not_media``, ``header_too_large``,
``http_<code>`` (4xx, unexpected 2xx/3xx, or 429 after retries), ``timeout``, ``unavailable`` (5xx, connection
failures and DNS failures after retries), ``tls_error`` (certificate or TLS handshake failure; not retried).
Messages name the URL with :func:`~bot.redact.redact_url` (no query strings: signed CDN URLs carry tokens).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Self

import requests

from bot.config_base import MediaConfig
from bot.errors import MediaError
from bot.media.sniff import SNIFF_BYTES, SniffedType, sniff
from bot.net.client import (
    BACKOFF_BASE,
    BACKOFF_MAX,
    CHUNK,
    RETRY_STATUS,
    USER_AGENT,
    Answer,
    GuardedClient,
    Retryable,
    map_exception,
)
from bot.net.policy import Resolver, display_url, system_resolver

log = logging.getLogger(__name__)

# declared types that may precede media bytes; anything else is refused before the body is read
_MEDIA_TYPE_PREFIXES = ("image/", "video/")
_BINARY_TYPES = {"application/octet-stream", "binary/octet-stream", "application/binary", "application/mp4"}


# ----------------------------------------------------------------------------- result


@dataclass(frozen=True)
class FetchedMedia:
    """A downloaded media file. ``content_type``, ``ext`` and ``kind`` come from the magic bytes."""

    url: str
    final_url: str
    data: bytes = field(repr=False)
    content_type: str
    ext: str  # jpg, png, gif, webp, mp4, webm, mov, ts (m3u8, m4s: see bot.media.hls)
    kind: str  # "image" | "video" (an animated GIF is "image": its bytes are a GIF); "playlist", "segment"


@dataclass(frozen=True)
class Expected:
    """What a fetch may return: the one place where a caller widens or narrows the accepted types.

    ``declared_ok`` decides, before the body is read, whether a declared Content-Type may precede such a body;
    ``sniff`` then recognizes the body from its first :data:`SNIFF_BYTES` bytes (the only judge of its type);
    ``what`` names the accepted types in ``not_media`` errors."""

    sniff: Callable[[bytes], SniffedType | None]
    declared_ok: Callable[[str], bool]
    what: str


# ----------------------------------------------------------------------------- fetcher


class MediaFetcher:
    """Downloads media under the policy of the module documentation. Not thread-safe: one per worker.

    ``session`` contributes default headers only (its adapters, proxies, auth and cookies are not used:
    the fetcher's own adapter pins addresses). ``sleep`` and ``resolver`` are injectable for tests;
    ``verify`` is passed to requests (a CA bundle path for on-premise mirrors); ``total_timeout`` bounds one
    attempt including the body (default: ten times ``config.timeout``).
    """

    def __init__(
        self,
        config: MediaConfig,
        session: requests.Session | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        resolver: Resolver = system_resolver,
        verify: bool | str = True,
        total_timeout: float | None = None,
        backoff_base: float = BACKOFF_BASE,
    ):
        self.config = config
        self._session = session or requests.Session()
        self._own_session = session is None
        self._client = GuardedClient(
            config.trusted_hosts,
            config.timeout,
            total_timeout=total_timeout if total_timeout is not None else 10 * config.timeout,
            resolver=resolver,
            verify=verify,
        )
        self._sleep = sleep
        self._backoff_base = backoff_base

    @property
    def client(self) -> GuardedClient:
        """The guarded HTTP client downloads go through (also every request yt-dlp makes reading a page)."""
        return self._client

    def close(self) -> None:
        self._client.close()
        if self._own_session:
            self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ public

    def fetch(self, url: str, expected: Expected | None = None, *, max_bytes: int | None = None) -> FetchedMedia:
        """Download ``url``; raises :class:`MediaError` with one of the reasons of the module documentation.

        ``expected`` defaults to :data:`MEDIA`; ``max_bytes`` lowers (never raises) ``media.max_bytes`` for this
        download, so a caller assembling one file from several downloads can hold the total to the cap."""
        expected = expected or MEDIA
        limit = self.config.max_bytes if max_bytes is None else min(max_bytes, self.config.max_bytes)
        attempts = self.config.retries + 1
        last: Retryable | None = None
        for attempt in range(attempts):
            if attempt:
                delay = min(BACKOFF_MAX, self._backoff_base * 2 ** (attempt - 1))
                log.info("media: retrying %s in %.1fs (%s)", display_url(url), delay, last)
                self._sleep(delay)
            try:
                return self._fetch_once(url, expected, limit)
            except Retryable as e:
                last = e
        assert last is not None
        raise MediaError(last.reason, f"{last} (after {attempts} attempts)")

    # ------------------------------------------------------------------ one attempt

    def _fetch_once(self, url: str, expected: Expected, limit: int) -> FetchedMedia:
        with self._client.open(url, headers=self._headers()) as answer:
            status = answer.response.status_code
            shown = display_url(answer.target.url)
            if status >= 500 or status in RETRY_STATUS:
                reason = "unavailable" if status >= 500 else f"http_{status}"
                raise Retryable(reason, f"HTTP {status} from {shown}")
            if status != 200:
                raise MediaError(f"http_{status}", f"HTTP {status} from {shown}")
            return self._read_body(url, answer, expected, limit)

    def _headers(self) -> dict[str, str]:
        """The session's default headers (never its credentials) with the fetcher's own."""
        headers = {k: v for k, v in self._session.headers.items() if k.lower() not in ("host", "authorization", "cookie")}
        headers.update(
            {
                "User-Agent": headers.get("User-Agent") or USER_AGENT,
                "Accept": "image/*,video/*;q=0.9,*/*;q=0.1",
                "Accept-Encoding": "identity",
            }
        )
        if "python-requests" in headers["User-Agent"]:
            headers["User-Agent"] = USER_AGENT
        return headers

    def _read_body(self, url: str, answer: Answer, expected: Expected, limit: int) -> FetchedMedia:
        target, response = answer.target, answer.response
        shown = display_url(target.url)
        declared = (response.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if declared and not expected.declared_ok(declared):
            raise MediaError("not_media", f"{shown} is {declared}, not {expected.what}")
        length = response.headers.get("Content-Length")
        if length is not None:
            try:
                declared_length = int(length)
            except ValueError:
                declared_length = None
            if declared_length is not None and declared_length > limit:
                raise MediaError("too_large", f"{shown} is {declared_length} bytes, over the limit of {limit}")
        data = bytearray()
        sniffed = None
        raw = response.raw
        try:
            while True:  # no clock check here: the watchdog cuts the socket at the deadline (answer.cut)
                chunk = raw.read1(CHUNK, decode_content=True)
                if not chunk:
                    break
                data += chunk
                if len(data) > limit:
                    raise MediaError("too_large", f"{shown} is over the limit of {limit} bytes")
                if sniffed is None and len(data) >= SNIFF_BYTES:
                    sniffed = _sniff_or_refuse(bytes(data[:SNIFF_BYTES]), declared, shown, expected)
        except (MediaError, Retryable):
            raise
        except Exception as e:  # noqa: BLE001
            raise map_exception(e, shown, in_body=True) from None
        if answer.cut:  # checked before sniffing: a body cut short is a timeout, not "not media"
            raise Retryable("timeout", f"download of {shown} exceeded {self._client.total_timeout:g}s")
        if sniffed is None:
            sniffed = _sniff_or_refuse(bytes(data), declared, shown, expected)
        return FetchedMedia(
            url=url,
            final_url=target.url,
            data=bytes(data),
            content_type=sniffed.content_type,
            ext=sniffed.ext,
            kind=sniffed.kind,
        )


# ----------------------------------------------------------------------------- helpers


def _may_be_media(declared: str) -> bool:
    if "svg" in declared or "xml" in declared or "html" in declared:
        return False
    return declared.startswith(_MEDIA_TYPE_PREFIXES) or declared in _BINARY_TYPES


def _sniff_or_refuse(head: bytes, declared: str, shown: str, expected: Expected) -> SniffedType:
    sniffed = expected.sniff(head)
    if sniffed is None:
        raise MediaError("not_media", f"{shown} is not {expected.what} (declared {declared or 'no type'})")
    return sniffed


#: what :meth:`MediaFetcher.fetch` accepts unless told otherwise: a posted image or video file
MEDIA = Expected(sniff, _may_be_media, "JPEG, PNG, GIF, WebP, MP4, MOV, WebM or MPEG-TS")
