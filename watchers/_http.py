"""HTTP plumbing shared by the watchers that drive a third-party client library (X via tweepy, Facebook
via python-facebook-api).

Both libraries own a ``requests.Session``; replacing it with :class:`RoutedSession` gives us, without
forking the library:

- a configurable API host (tweepy hard-codes ``https://api.twitter.com``): URLs starting with
  ``route_from`` are sent to ``route_to`` instead;
- a timeout on every request (tweepy sets none);
- the last response, so a watcher can read status and rate-limit headers the library does not expose.

:func:`describe_error` turns any exception into a one-line message safe to log or store: registered
secrets are masked and ``access_token=`` query values are hidden even if the token was never registered.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

import requests

from bot.redact import MASK, redact

_TOKEN_IN_URL = re.compile(r"((?:access_token|appsecret_proof|input_token)=)[^&\s'\"]+", re.IGNORECASE)
_BEARER = re.compile(r"(Bearer\s+)[^\s'\"]+", re.IGNORECASE)


def scrub(text: str) -> str:
    """``text`` with registered secrets, query-string tokens and bearer tokens masked."""
    text = redact(text)
    text = _TOKEN_IN_URL.sub(lambda m: m.group(1) + MASK, text)
    return _BEARER.sub(lambda m: m.group(1) + MASK, text)


def describe_error(exc: BaseException) -> str:
    """A short, secret-free description of ``exc`` for logs, ``PostStatus.error`` and raised messages."""
    message = str(exc) or repr(exc)
    return scrub(f"{type(exc).__name__}: {message}")[:500]


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
    return [items[i : i + size] for i in range(0, len(items), size)]


def unique(items: Any) -> list[str]:
    """The ids given, as strings, duplicates removed, order kept."""
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(str(item), None)
    return list(seen)
