"""The address policy of every outbound request afterimage makes for third-party URLs (media downloads, RSS
item links and feed redirects, Bluesky PDS look-ups, video pages): which URLs may be fetched at all.

Only ``https`` (``http`` where a caller allows it); no userinfo; the host is resolved and refused when ANY
of its addresses is private, loopback, link-local, multicast, reserved, unspecified, shared (CGNAT
100.64/10), or an IPv6 form embedding such an IPv4 address (mapped, 6to4, Teredo, NAT64). Hosts listed as
trusted (``host`` for any port, or ``host:port``) skip both checks (on-premise mirrors, tests). Trust is by
the host as written in the URL, never by resolved address. The checked address is handed on so that the
connection goes to it (:mod:`bot.net.client`).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from bot.errors import MediaError
from bot.redact import redact_url

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
