"""HTTP requests to third-party URLs under the address policy (:mod:`bot.net.policy`): the one client that
media downloads, RSS item-link checks, Bluesky PDS look-ups and video-page reads share.

- **DNS pinning**: the connection goes to the address that was checked (the pool connects to the IP, while
  the Host header, TLS SNI and certificate check use the host name), so a name that re-resolves to a private
  address between check and connect (DNS rebinding) cannot be used. Environment proxies are not used.
- **Redirects** are followed by hand (at most :data:`MAX_REDIRECTS`), the policy re-applied at every hop.
- **Time**: a total deadline per request (redirects, TLS handshake, headers and body): a watchdog shuts the
  socket down when it passes, so a peer dripping one byte per read timeout cannot hold a worker.

Failures are :class:`~bot.errors.MediaError` exceptions (``Retryable`` for the transient ones a caller may retry);
messages name the URL with :func:`~bot.redact.redact_url` (no query strings: signed CDN URLs carry tokens).
"""

from __future__ import annotations

import contextvars
import http.client
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from bot.errors import MediaError
from bot.net.policy import Resolver, _Target, check_url, display_url, is_public_ip, system_resolver

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
CHUNK = 64 * 1024
BACKOFF_BASE = 0.5  # seconds; doubled at each retry
BACKOFF_MAX = 30.0
USER_AGENT = "afterimage-media/0.1 (+https://github.com/afterimage)"

REDIRECT_STATUSES = {301, 302, 303, 307, 308}
RETRY_STATUS = {408, 429}


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


class Retryable(MediaError):
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

    @contextmanager
    def open(
        self, url: str, *, method: str = "GET", headers: Mapping[str, str] | None = None, data: bytes | None = None
    ) -> Iterator[Answer]:
        """Send ``method`` (with the body ``data``) to ``url`` following redirects under the policy; yields the
        final answer, unread. A 301, 302 or 303 redirect turns the request into a GET without a body, as
        browsers do.

        The response is closed on exit without reading what is left of the body. Raises :class:`MediaError`
        (``bad_url``, ``not_https``, ``private_address``, ``too_many_redirects``, ``http_3xx`` for a redirect
        without a Location, ``tls_error``, ``header_too_large``) or its transient subclass for timeouts and
        connection failures, including those of the caller's body reads inside the context. An exchange cut
        by the watchdog is a ``timeout``, raised on exit at the latest: a body read from a socket shut down
        early may look complete without being so."""
        watchdog = _Watchdog(self.total_timeout)
        token = _current_watchdog.set(watchdog)
        try:
            answer = self._follow(url, method, dict(headers or {}), watchdog, data)
            try:
                yield answer
            except MediaError:
                raise
            except Exception as e:  # noqa: BLE001 - transport errors mapped; the caller's own re-raised
                mapped = map_exception(e, display_url(answer.target.url), in_body=True)
                if mapped is e:
                    raise
                raise mapped from None
            finally:
                answer.response.close()
            if answer.cut:
                raise Retryable("timeout", "cut by the watchdog")  # reworded with URL and deadline below
        except MediaError as e:
            # a socket shut down by the watchdog surfaces as a reset, an aborted handshake or an early EOF
            if watchdog.fired and e.reason in ("unavailable", "tls_error", "timeout"):
                raise Retryable("timeout", f"fetching {display_url(url)} exceeded {self.total_timeout:g}s") from None
            raise
        finally:
            watchdog.cancel()
            _current_watchdog.reset(token)

    def _follow(
        self, url: str, method: str, headers: dict[str, str], watchdog: _Watchdog, data: bytes | None = None
    ) -> Answer:
        current = url
        for _hop in range(MAX_REDIRECTS + 1):
            target = self.check(current)
            response = self._request(method, target, self._resolve(target), headers, data)
            status = response.status_code
            if status not in REDIRECT_STATUSES:
                return Answer(target, response, watchdog)
            response.close()
            if status in (301, 302, 303) and method != "HEAD":
                method, data = "GET", None
            location = response.headers.get("Location")
            if not location:
                raise MediaError(f"http_{status}", f"redirect without a Location from {display_url(current)}")
            current = urljoin(target.url, location.strip())
        raise MediaError("too_many_redirects", f"more than {MAX_REDIRECTS} redirects from {display_url(url)}")

    def _resolve(self, target: _Target) -> str:
        try:
            addresses = self._resolver(target.host, target.port)
        except (socket.gaierror, UnicodeError, OSError) as e:
            raise Retryable("unavailable", f"cannot resolve {target.host}: {e}") from None
        if not addresses:
            raise Retryable("unavailable", f"{target.host} resolves to no address")
        if not target.trusted:
            bad = [a for a in addresses if not is_public_ip(a)]
            if bad:
                raise MediaError(
                    "private_address",
                    f"{target.host} resolves to a non-public address ({bad[0]}); refused: {display_url(target.url)}",
                )
        return addresses[0]

    def _request(
        self, method: str, target: _Target, ip: str, headers: dict[str, str], data: bytes | None = None
    ) -> requests.Response:
        headers = {k: v for k, v in headers.items() if k.lower() != "host"}
        headers["Host"] = target.host_header
        prepared = requests.Request(method, target.url, headers=headers, data=data).prepare()
        self._adapter.pin = (target.host, ip)
        shown = display_url(target.url)
        try:
            # proxies={} (never None): yt-dlp, once imported, replaces requests' proxy selector with one that
            # needs a mapping; no proxy is used either way (the connection goes to the checked address)
            return self._adapter.send(
                prepared, stream=True, timeout=(self.timeout, self.timeout), verify=self._verify, proxies={}
            )
        except Exception as e:  # noqa: BLE001 - mapped below; unknown errors re-raised
            raise map_exception(e, shown) from None
        finally:
            self._adapter.pin = None


def map_exception(e: Exception, shown: str, *, in_body: bool = False) -> Exception:
    """The MediaError (final) or Retryable for an exception of requests/urllib3/http.client/ssl.

    A TLS error before the response (handshake, certificate) is final; one while reading the body is a
    broken connection like any other, and retried."""
    if _header_too_large(e):
        return MediaError("header_too_large", f"response headers too large from {shown}")
    if isinstance(e, (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError, TimeoutError, socket.timeout)):
        return Retryable("timeout", f"timed out fetching {shown}")
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
        return Retryable("unavailable", f"connection failed fetching {shown}: {_short(e)}")
    return e


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
