"""Helpers shared by the Mastodon, Bluesky and RSS watchers (owned by the ``social`` branch).

Nothing here knows a platform: HTML to plain text, rate-limit reset headers, timestamps, and a
short description of an exception that never contains a registered secret.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from typing import Any

from bot.models import as_utc, utcnow
from bot.redact import redact

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


# ----------------------------------------------------------------------------- misc


def parse_time(value: Any) -> datetime:
    """An ISO 8601 timestamp from a payload, as aware UTC; raises ValueError on anything else."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"not a timestamp: {value!r}")
    text = value.strip().replace("Z", "+00:00")
    # Python 3.11 accepts most ISO forms; trim sub-microsecond digits some servers send
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    return as_utc(datetime.fromisoformat(text))


def describe(exc: BaseException) -> str:
    """``Type: message`` of an exception, shortened, with every registered secret masked."""
    message = str(exc) or exc.__class__.__name__
    if len(message) > 300:
        message = message[:300] + "..."
    return redact(f"{exc.__class__.__name__}: {message}")


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
