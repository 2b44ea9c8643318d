"""Safe download of posted media: the security boundary between untrusted platform payloads and the archive.

Media URLs come from platform payloads anyone can influence, so every fetch is treated as hostile:

- **Address policy** (:func:`check_url`, :func:`is_public_ip`): only ``https``; no userinfo; the host is resolved
  and refused when ANY of its addresses is private, loopback, link-local, multicast, reserved, unspecified,
  shared (CGNAT 100.64/10), or an IPv6 form embedding such an IPv4 address (mapped, 6to4, Teredo, NAT64).
  Hosts listed in ``media.trusted_hosts`` (``host`` for any port, or ``host:port``) skip both checks (on-premise
  mirrors, tests). Trust is by the host as written in the URL, never by resolved address.
- **DNS pinning**: the connection goes to the address that was checked (the pool connects to the IP, while
  the Host header, TLS SNI and certificate check use the host name), so a name that re-resolves to a private
  address between check and connect (DNS rebinding) cannot be used. Environment proxies are not used.
- **Redirects** are followed by hand (at most :data:`MAX_REDIRECTS`), the policy re-applied at every hop.

Address policy, pinning, redirects and the total deadline live in :class:`GuardedClient`, so other code that
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

import contextvars
import http.client
import ipaddress
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from bot.config_base import MediaConfig
from bot.errors import MediaError
from bot.media.sniff import SNIFF_BYTES, SniffedType, sniff
from bot.redact import redact_url

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
CHUNK = 64 * 1024
BACKOFF_BASE = 0.5  # seconds; doubled at each retry
BACKOFF_MAX = 30.0
USER_AGENT = "afterimage-media/0.1 (+https://github.com/afterimage)"

REDIRECT_STATUSES = {301, 302, 303, 307, 308}
_RETRY_STATUS = {408, 429}
# declared types that may precede media bytes; anything else is refused before the body is read
_MEDIA_TYPE_PREFIXES = ("image/", "video/")
_BINARY_TYPES = {"application/octet-stream", "binary/octet-stream", "application/binary", "application/mp4"}

# networks ipaddress does not flag (or flags inconsistently across Python versions)
_EXTRA_BLOCKED = [
    ipaddress.ip_network("100.64.0.0/10"),  # shared address space (CGNAT)
    ipaddress.ip_network("0.0.0.0/8"),
    ipaddress.ip_network("192.0.0.0/24"),
    ipaddress.ip_network("198.18.0.0/15"),  # benchmarking
    ipaddress.ip_network("240.0.0.0/4"),
    ipaddress.ip_network("255.255.255.255/32"),
    ipaddress.ip_network("64:ff9b:1::/48"),  # local-use NAT64
    ipaddress.ip_network("fc00::/7"),
    ipaddress.ip_network("fe80::/10"),
    ipaddress.ip_network("fec0::/10"),  # deprecated site-local
]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

Resolver = Callable[[str, int], list[str]]


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


# ----------------------------------------------------------------------------- address policy


def is_public_ip(address: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether ``address`` is a globally routable unicast address that media may be fetched from.

    False for private, loopback, link-local (cloud metadata 169.254.169.254), multicast, reserved,
    unspecified, shared/CGNAT (100.64/10), documentation and benchmarking ranges, and for IPv6 addresses that
    embed such an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``, 6to4 ``2002::/16``, Teredo, NAT64
    ``64:ff9b::/96``). Unparseable input is not public.
    """
    if not isinstance(address, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        try:
            address = ipaddress.ip_address(str(address).split("%", 1)[0])  # drop an IPv6 zone id
        except ValueError:
            return False
    ip = address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return is_public_ip(ip.ipv4_mapped)
        if ip in _NAT64:
            return is_public_ip(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        embedded: list[ipaddress.IPv4Address] = []
        if ip.sixtofour is not None:
            embedded.append(ip.sixtofour)
        if ip.teredo is not None:
            embedded.extend(ip.teredo)
        if any(not is_public_ip(v4) for v4 in embedded):
            return False
    if (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or any(ip in net for net in _EXTRA_BLOCKED if net.version == ip.version)
    ):
        return False
    return ip.is_global


@dataclass(frozen=True)
class _Target:
    """A URL that passed the static checks: normalized parts and whether its host is trusted."""

    url: str  # normalized, ASCII host
    host: str  # lowercase, IDNA, no brackets
    port: int
    host_header: str
    trusted: bool


def display_url(url: str) -> str:
    """``url`` as safe to show in a message (credentials and token-like parts masked)."""
    try:
        return redact_url(url)
    except Exception:  # noqa: BLE001 - never fail while describing a failure
        return "<url>"


def _is_trusted(host: str, port: int, trusted_hosts: list[str] | tuple[str, ...]) -> bool:
    for entry in trusted_hosts:
        entry = entry.strip().lower().rstrip(".")
        if not entry:
            continue
        if entry.startswith("["):  # [v6]:port or [v6]
            bracket = entry.find("]")
            entry_host, rest = entry[1:bracket], entry[bracket + 1 :]
            entry_port = rest[1:] if rest.startswith(":") else ""
        elif entry.count(":") == 1:
            entry_host, entry_port = entry.split(":")
        else:  # a bare host, or a bare IPv6 address
            entry_host, entry_port = entry, ""
        if entry_host == host and (not entry_port or entry_port == str(port)):
            return True
    return False


def check_url(url: str, trusted_hosts: list[str] | tuple[str, ...] = (), *, https_only: bool = True) -> _Target:
    """Static checks of a URL (no DNS): parseable http(s) URL with a host, no userinfo, https unless trusted.

    ``https_only=False`` also accepts plain http from any host (callers checking whether a page exists, where
    the answer is a status and not content that is kept). Raises :class:`MediaError` (``bad_url`` or
    ``not_https``)."""
    shown = display_url(url)
    if not isinstance(url, str) or not url or len(url) > 8192 or any(c.isspace() or ord(c) < 0x20 for c in url):
        raise MediaError("bad_url", f"not a usable URL: {shown}")
    try:
        parts = urlsplit(url)
        port = parts.port
        raw_host = parts.hostname
    except ValueError:
        raise MediaError("bad_url", f"not a usable URL: {shown}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise MediaError("bad_url", f"unsupported scheme {scheme or '(none)'!r}: {shown}")
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        raise MediaError("bad_url", f"URLs with credentials are refused: {shown}")
    if not raw_host:
        raise MediaError("bad_url", f"URL has no host: {shown}")
    host = raw_host.rstrip(".").lower()
    try:
        ipaddress.ip_address(host)
        is_ip = True
    except ValueError:
        is_ip = False
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise MediaError("bad_url", f"host is not a valid name: {shown}") from None
    if not host or (not is_ip and not all(c.isalnum() or c in "-._" for c in host)):
        raise MediaError("bad_url", f"host is not a valid name: {shown}")
    default_port = 443 if scheme == "https" else 80
    port = port if port is not None else default_port
    if port == 0:
        raise MediaError("bad_url", f"port 0 is not usable: {shown}")
    trusted = _is_trusted(host, port, trusted_hosts)
    if scheme != "https" and https_only and not trusted:
        raise MediaError("not_https", f"media must be fetched over https: {shown}")
    bracketed = f"[{host}]" if ":" in host else host
    host_header = bracketed if port == default_port else f"{bracketed}:{port}"
    normalized = urlunsplit((scheme, host_header, parts.path or "/", parts.query, ""))
    return _Target(normalized, host, port, host_header, trusted)


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (IPv4 first, resolver order otherwise)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for family, _, _, _, sockaddr in sorted(infos, key=lambda i: 0 if i[0] == socket.AF_INET else 1):
        address = str(sockaddr[0]).split("%", 1)[0]
        if address not in seen:
            seen.append(address)
    return seen


# ----------------------------------------------------------------------------- pinned connections


class _Watchdog:
    """Shuts down the socket of the current attempt when its deadline passes.

    Socket timeouts bound each read, not a peer that sends one byte just before each one expires (slow-drip
    headers, TLS handshakes or bodies); shutting the socket down makes the blocked read return."""

    def __init__(self, seconds: float):
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self.fired = False
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def attach(self, sock: socket.socket) -> None:
        with self._lock:
            self._socks.append(sock)
            fired = self.fired
        if fired:
            self._shutdown(sock)

    def cancel(self) -> None:
        self._timer.cancel()

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            socks = list(self._socks)
        for sock in socks:
            self._shutdown(sock)

    @staticmethod
    def _shutdown(sock: socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


_current_watchdog: contextvars.ContextVar[_Watchdog | None] = contextvars.ContextVar("media_watchdog", default=None)


def _watch(sock: Any) -> None:
    watchdog = _current_watchdog.get()
    if watchdog is not None and sock is not None:
        watchdog.attach(sock)


class _WatchedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _watch(sock)  # covers the TLS handshake too: the TLS socket wraps this one
        return sock

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        _watch(self.sock)  # a kept-alive connection was created in an earlier attempt
        return super().getresponse(*args, **kwargs)


class _WatchedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _watch(sock)
        return sock

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        _watch(self.sock)
        return super().getresponse(*args, **kwargs)


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _PinnedAdapter(HTTPAdapter):
    """Connects to a pre-checked IP address while Host, SNI and certificate checks use the host name.

    ``pin`` is set for each request by :class:`GuardedClient`, per thread (a watcher may be polled and
    re-checked from two threads at once); pools are keyed by (scheme, IP, port, server name), so two names
    sharing an address never share a TLS connection."""

    def __init__(self) -> None:
        super().__init__(pool_connections=4, pool_maxsize=4, max_retries=0)
        self._local = threading.local()

    @property
    def pin(self) -> tuple[str, str] | None:
        """(host, ip) of the request this thread is sending."""
        return getattr(self._local, "pin", None)

    @pin.setter
    def pin(self, value: tuple[str, str] | None) -> None:
        self._local.pin = value

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}

    def get_connection_with_tls_context(
        self, request: requests.PreparedRequest, verify: Any, proxies: Any = None, cert: Any = None
    ) -> Any:
        assert self.pin is not None, "GuardedClient sets the pinned address before each request"
        host, ip = self.pin
        host_params, pool_kwargs = self.build_connection_pool_key_attributes(request, verify, cert)
        if host_params["scheme"] == "https":
            pool_kwargs = {**pool_kwargs, "server_hostname": host, "assert_hostname": host}
        return self.poolmanager.connection_from_host(
            host=ip, port=host_params["port"], scheme=host_params["scheme"], pool_kwargs=pool_kwargs
        )


# ----------------------------------------------------------------------------- policy-checked requests


class _Retryable(MediaError):
    """A transient failure (5xx, 408, 429, timeouts, dropped connections): :class:`MediaFetcher` retries it;
    other callers of :class:`GuardedClient` see it as the MediaError it is."""


@dataclass(frozen=True)
class Answer:
    """The first answer that is not a redirect: the URL it came from and the streamed, unread response."""

    target: _Target
    response: requests.Response
    _watchdog: _Watchdog = field(repr=False)

    @property
    def cut(self) -> bool:
        """Whether the watchdog shut the socket down: what was read since is not the whole answer."""
        return self._watchdog.fired


class GuardedClient:
    """HTTP requests to third-party URLs under the address policy of the module documentation.

    The URL and every redirect target pass :func:`check_url` (``https_only`` as given; trusted hosts may
    always use http), are resolved and refused when any address is non-public unless trusted, and are
    connected to at the checked address; a watchdog ends the exchange after ``total_timeout``. The media
    fetcher downloads through it; the RSS watcher checks item links with it. Safe to share between threads.
    """

    def __init__(
        self,
        trusted_hosts: list[str] | tuple[str, ...],
        timeout: float,
        *,
        total_timeout: float,
        https_only: bool = True,
        resolver: Resolver = system_resolver,
        verify: bool | str = True,
    ):
        self.trusted_hosts = tuple(trusted_hosts)
        self.timeout = timeout
        self.total_timeout = total_timeout
        self.https_only = https_only
        self._resolver = resolver
        self._verify = verify
        self._adapter = _PinnedAdapter()

    def close(self) -> None:
        self._adapter.close()

    def check(self, url: str) -> _Target:
        """The static checks alone (no DNS, no request), to refuse a bad URL before any retry loop."""
        return check_url(url, self.trusted_hosts, https_only=self.https_only)

    def admit(self, url: str) -> None:
        """Raise :class:`MediaError` unless ``url`` passes the address policy, DNS included, without a request:
        for a library that connects by itself (yt-dlp reading a video page), checked before each request."""
        try:
            self._resolve(self.check(url))
        except _Retryable as e:
            raise MediaError(e.reason, str(e)) from None

    @contextmanager
    def open(self, url: str, *, method: str = "GET", headers: Mapping[str, str] | None = None) -> Iterator[Answer]:
        """Send ``method`` to ``url`` following redirects under the policy; yields the final answer, unread.

        The response is closed on exit without reading what is left of the body. Raises :class:`MediaError`
        (``bad_url``, ``not_https``, ``private_address``, ``too_many_redirects``, ``http_3xx`` for a redirect
        without a Location, ``tls_error``, ``header_too_large``) or its transient subclass for timeouts and
        connection failures, including those of the caller's body reads inside the context. An exchange cut
        by the watchdog is a ``timeout``, raised on exit at the latest: a body read from a socket shut down
        early may look complete without being so."""
        watchdog = _Watchdog(self.total_timeout)
        token = _current_watchdog.set(watchdog)
        try:
            answer = self._follow(url, method, dict(headers or {}), watchdog)
            try:
                yield answer
            except MediaError:
                raise
            except Exception as e:  # noqa: BLE001 - transport errors mapped; the caller's own re-raised
                mapped = _map_exception(e, display_url(answer.target.url), in_body=True)
                if mapped is e:
                    raise
                raise mapped from None
            finally:
                answer.response.close()
            if answer.cut:
                raise _Retryable("timeout", "cut by the watchdog")  # reworded with URL and deadline below
        except MediaError as e:
            # a socket shut down by the watchdog surfaces as a reset, an aborted handshake or an early EOF
            if watchdog.fired and e.reason in ("unavailable", "tls_error", "timeout"):
                raise _Retryable("timeout", f"fetching {display_url(url)} exceeded {self.total_timeout:g}s") from None
            raise
        finally:
            watchdog.cancel()
            _current_watchdog.reset(token)

    def _follow(self, url: str, method: str, headers: dict[str, str], watchdog: _Watchdog) -> Answer:
        current = url
        for _hop in range(MAX_REDIRECTS + 1):
            target = self.check(current)
            response = self._request(method, target, self._resolve(target), headers)
            status = response.status_code
            if status not in REDIRECT_STATUSES:
                return Answer(target, response, watchdog)
            response.close()
            location = response.headers.get("Location")
            if not location:
                raise MediaError(f"http_{status}", f"redirect without a Location from {display_url(current)}")
            current = urljoin(target.url, location.strip())
        raise MediaError("too_many_redirects", f"more than {MAX_REDIRECTS} redirects from {display_url(url)}")

    def _resolve(self, target: _Target) -> str:
        try:
            addresses = self._resolver(target.host, target.port)
        except (socket.gaierror, UnicodeError, OSError) as e:
            raise _Retryable("unavailable", f"cannot resolve {target.host}: {e}") from None
        if not addresses:
            raise _Retryable("unavailable", f"{target.host} resolves to no address")
        if not target.trusted:
            bad = [a for a in addresses if not is_public_ip(a)]
            if bad:
                raise MediaError(
                    "private_address",
                    f"{target.host} resolves to a non-public address ({bad[0]}); refused: {display_url(target.url)}",
                )
        return addresses[0]

    def _request(self, method: str, target: _Target, ip: str, headers: dict[str, str]) -> requests.Response:
        headers = {k: v for k, v in headers.items() if k.lower() != "host"}
        headers["Host"] = target.host_header
        prepared = requests.Request(method, target.url, headers=headers).prepare()
        self._adapter.pin = (target.host, ip)
        shown = display_url(target.url)
        try:
            # proxies={} (never None): yt-dlp, once imported, replaces requests' proxy selector with one that
            # needs a mapping; no proxy is used either way (the connection goes to the checked address)
            return self._adapter.send(
                prepared, stream=True, timeout=(self.timeout, self.timeout), verify=self._verify, proxies={}
            )
        except Exception as e:  # noqa: BLE001 - mapped below; unknown errors re-raised
            raise _map_exception(e, shown) from None
        finally:
            self._adapter.pin = None


def _map_exception(e: Exception, shown: str, *, in_body: bool = False) -> Exception:
    """The MediaError (final) or _Retryable for an exception of requests/urllib3/http.client/ssl.

    A TLS error before the response (handshake, certificate) is final; one while reading the body is a
    broken connection like any other, and retried."""
    if _header_too_large(e):
        return MediaError("header_too_large", f"response headers too large from {shown}")
    if isinstance(e, (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError, TimeoutError, socket.timeout)):
        return _Retryable("timeout", f"timed out fetching {shown}")
    if not in_body and (
        isinstance(e, requests.exceptions.SSLError) or _in_chain(e, lambda x: isinstance(x, ssl.SSLError))
    ):
        return MediaError("tls_error", f"TLS failure fetching {shown}: {_short(e)}")
    if isinstance(e, requests.exceptions.InvalidURL):
        return MediaError("bad_url", f"not a usable URL: {shown}")
    connection_errors = (
        requests.exceptions.ConnectionError,
        requests.exceptions.ChunkedEncodingError,
        urllib3.exceptions.HTTPError,
        http.client.HTTPException,
        OSError,  # ConnectionError, ssl.SSLError
    )
    if isinstance(e, connection_errors):
        return _Retryable("unavailable", f"connection failed fetching {shown}: {_short(e)}")
    return e


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
        """The guarded HTTP client downloads go through (its :meth:`~GuardedClient.admit` checks a URL)."""
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
        last: _Retryable | None = None
        for attempt in range(attempts):
            if attempt:
                delay = min(BACKOFF_MAX, self._backoff_base * 2 ** (attempt - 1))
                log.info("media: retrying %s in %.1fs (%s)", display_url(url), delay, last)
                self._sleep(delay)
            try:
                return self._fetch_once(url, expected, limit)
            except _Retryable as e:
                last = e
        assert last is not None
        raise MediaError(last.reason, f"{last} (after {attempts} attempts)")

    # ------------------------------------------------------------------ one attempt

    def _fetch_once(self, url: str, expected: Expected, limit: int) -> FetchedMedia:
        with self._client.open(url, headers=self._headers()) as answer:
            status = answer.response.status_code
            shown = display_url(answer.target.url)
            if status >= 500 or status in _RETRY_STATUS:
                reason = "unavailable" if status >= 500 else f"http_{status}"
                raise _Retryable(reason, f"HTTP {status} from {shown}")
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
        except (MediaError, _Retryable):
            raise
        except Exception as e:  # noqa: BLE001
            raise _map_exception(e, shown, in_body=True) from None
        if answer.cut:  # checked before sniffing: a body cut short is a timeout, not "not media"
            raise _Retryable("timeout", f"download of {shown} exceeded {self._client.total_timeout:g}s")
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


def _in_chain(e: BaseException, predicate: Callable[[BaseException], bool]) -> bool:
    seen: set[int] = set()
    stack: list[BaseException] = [e]
    while stack:
        x = stack.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        if predicate(x):
            return True
        stack.extend(a for a in getattr(x, "args", ()) if isinstance(a, BaseException))
        for linked in (x.__cause__, x.__context__, getattr(x, "reason", None)):
            if isinstance(linked, BaseException):
                stack.append(linked)
    return False


def _header_too_large(e: BaseException) -> bool:
    def is_it(x: BaseException) -> bool:
        # http.client: a header (or status) line over 64 KiB, or more than 100 header lines
        return isinstance(x, http.client.LineTooLong) or (
            isinstance(x, http.client.HTTPException) and "got more than" in str(x) and "headers" in str(x)
        )

    return _in_chain(e, is_it)


def _short(e: BaseException) -> str:
    text = str(e)
    return text if len(text) <= 200 else text[:200] + "..."
