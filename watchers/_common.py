"""Helpers every watcher shares; nothing here knows a platform.

- :func:`describe_error`: the one description of an exception for logs, ``PostStatus.error`` and raised
  messages: registered secrets, ``access_token=`` style query values and bearer tokens masked, shortened.
- :class:`MalformedItem`: one item of an answer is not shaped as documented (kept raw, skipped).
- :class:`RoutedSession`: a ``requests.Session`` for client libraries that hard-code their host or set no
  timeout (tweepy, python-facebook-api): re-routes a host prefix, applies a timeout, keeps the last response.
- Time: :func:`parse_time` (ISO 8601) and :func:`epoch_to_datetime`; :func:`reset_time` reads rate-limit
  reset headers.
- :func:`html_to_text`, :func:`require`, :func:`chunks`, :func:`unique`.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from typing import Any

import requests

from bot.errors import PlatformError
from bot.models import PostStatus, as_utc, utcnow
from bot.redact import MASK, redact

#: longest description kept (exception messages can embed whole HTML pages)
_MAX_CHARS = 500

_TOKEN_IN_URL = re.compile(r"(\b(?:access_token|appsecret_proof|input_token|key)=)[^&\s'\"]+", re.IGNORECASE)
_BEARER = re.compile(r"(Bearer\s+)[^\s'\"]+", re.IGNORECASE)


class MalformedItem(ValueError):
    """One item (post, attachment, media object) of an answer is not shaped as documented."""


@dataclass
class LookupRun:
    """What one ``lookup`` call learns once for all its batches (a watcher's ``_lookup_state``)."""

    #: author (channel, wall, account) -> None while it is fine, else the account-level status of its posts
    authors: dict[str, PostStatus | None] = field(default_factory=dict)
    #: why the rest of this call is not asked (a rate limit hit by an earlier batch), None while it may ask
    limited: str | None = None


def read_capped(response: requests.Response, limit: int, what: str) -> bytes:
    """The body of a streamed response; PlatformError when it is larger than ``limit`` bytes."""
    body = bytearray()
    for chunk in response.iter_content(65536):
        body += chunk
        if len(body) > limit:
            raise PlatformError(f"{what} is larger than {limit} bytes")
    return bytes(body)


def scrub(text: str) -> str:
    """``text`` with registered secrets, query-string tokens and bearer tokens masked."""
    text = redact(text)
    text = _TOKEN_IN_URL.sub(lambda m: m.group(1) + MASK, text)
    return _BEARER.sub(lambda m: m.group(1) + MASK, text)


def describe_error(exc: BaseException | str) -> str:
    """``Type: message`` of an exception (or a message as is), every secret masked, then shortened.

    Masking comes first: shortening first could cut a secret in two and leave a part no mask matches."""
    text = exc if isinstance(exc, str) else f"{type(exc).__name__}: {str(exc) or repr(exc)}"
    text = scrub(text)
    return text if len(text) <= _MAX_CHARS else text[:_MAX_CHARS] + "..."


class RoutedSession(requests.Session):
    """A ``requests.Session`` that re-routes a host prefix, applies a default timeout and remembers the
    last response."""

    def __init__(self, *, timeout: float, route_from: str | None = None, route_to: str | None = None):
        super().__init__()
        self.timeout = timeout
        self.route_from = route_from.rstrip("/") if route_from else None
        self.route_to = route_to.rstrip("/") if route_to else None
        self.last_response: requests.Response | None = None

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        url = str(url)
        if self.route_from and self.route_to and url.startswith(self.route_from):
            url = self.route_to + url[len(self.route_from) :]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        self.last_response = None
        response = super().request(method, url, *args, **kwargs)
        self.last_response = response
        return response


def epoch_to_datetime(value: Any) -> datetime | None:
    """Unix epoch seconds (int or numeric string) -> aware UTC datetime; None when absent or garbage."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    if seconds <= 0:
        return None
    try:
        return datetime.fromtimestamp(seconds, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def chunks(items: list[str], size: int) -> list[list[str]]:
    """``items`` in consecutive lists of at most ``size``."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def unique(items: Iterable[Any]) -> list[str]:
    """The ids given, as strings, duplicates removed, order kept."""
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(str(item), None)
    return list(seen)


# ----------------------------------------------------------------------------- HTML -> text

_BLOCK_TAGS = {"p", "div", "li", "blockquote", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "section", "article"}


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag == "br":
            self.parts.append("\n")
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(markup: str | None) -> str:
    """Plain text of an HTML fragment: tags dropped, entities decoded, paragraphs and ``<br>`` kept as
    line breaks, runs of spaces collapsed. Invalid markup degrades to its text, never raises."""
    if not markup:
        return ""
    parser = _TextExtractor()
    try:
        parser.feed(markup)
        parser.close()
        text = "".join(parser.parts)
    except Exception:  # pragma: no cover - HTMLParser is very lenient
        text = html.unescape(re.sub(r"<[^>]*>", " ", markup))
    lines = [re.sub(r"[ \t\r\f\v\u00a0]+", " ", line).strip() for line in text.split("\n")]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


# ----------------------------------------------------------------------------- rate limits

#: header names, in order of preference, that say when a rate limit resets
RESET_HEADERS = ("Retry-After", "X-RateLimit-Reset", "RateLimit-Reset", "X-Rate-Limit-Reset")


def reset_time(headers: Mapping[str, str] | None, now: datetime | None = None) -> datetime | None:
    """When the platform allows requests again, from a 429 answer's headers (None if it did not say).

    ``Retry-After`` is seconds or an HTTP date; ``X-RateLimit-Reset`` / ``RateLimit-Reset`` are a Unix
    timestamp (Bluesky, X), an ISO 8601 time (Mastodon) or, when small, seconds from now (IETF draft).
    """
    if not headers:
        return None
    now = now or utcnow()
    lowered = {k.lower(): v for k, v in headers.items()}
    for name in RESET_HEADERS:
        value = lowered.get(name.lower())
        if value is None or not str(value).strip():
            continue
        value = str(value).strip()
        parsed = _parse_reset(value, now, name.lower() == "retry-after")
        if parsed is not None:
            return parsed
    return None


def _parse_reset(value: str, now: datetime, is_retry_after: bool) -> datetime | None:
    try:
        number = float(value)
    except ValueError:
        number = None
    if number is not None:
        if number < 0:
            return None
        if is_retry_after or number < 10**9:  # a delay in seconds, not an epoch
            return now + timedelta(seconds=number)
        return datetime.fromtimestamp(number, timezone.utc)
    try:
        return as_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        pass
    try:
        return as_utc(parsedate_to_datetime(value))
    except (TypeError, ValueError, IndexError):
        return None


def parse_time(value: Any) -> datetime:
    """An ISO 8601 timestamp from a payload, as aware UTC; raises ValueError on anything else."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"not a timestamp: {value!r}")
    text = value.strip().replace("Z", "+00:00")
    # Python 3.11 accepts most ISO forms; trim sub-microsecond digits some servers send
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    return as_utc(datetime.fromisoformat(text))


def objects(value: Any, where: str, field: str, each: str) -> list[dict[str, Any]]:
    """``value``, an item's ``field`` (absent: empty), checked to be a list of objects; otherwise
    :class:`MalformedItem` naming the item (``where``) and the field, or what ``each`` entry should be."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise MalformedItem(f"{where}: {field} is not a list")
    if not all(isinstance(entry, dict) for entry in value):
        raise MalformedItem(f"{where}: {each} is not an object")
    return value


def require(mapping: Any, key: str, kind: type | tuple[type, ...] = str) -> Any:
    """``mapping[key]`` checked to be of ``kind``; raises ValueError naming the field otherwise."""
    if not isinstance(mapping, dict):
        raise ValueError(f"expected an object, got {type(mapping).__name__}")
    if key not in mapping or mapping[key] is None:
        raise ValueError(f"missing field {key!r}")
    value = mapping[key]
    if not isinstance(value, kind) or (kind is str and value == ""):
        raise ValueError(f"field {key!r} has unexpected type {type(value).__name__}")
    return value
