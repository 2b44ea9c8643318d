"""Template filters: times, durations, and the one gate for links taken from posts (http/https only, so a
``javascript:`` URL in a post can never become a clickable link)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from flask import Flask

from bot.alerts.messages import duration, when


def when_filter(value: Any) -> str:
    if value is None or value == "":
        return "—"
    return when(value.isoformat() if isinstance(value, datetime) else value)


def safe_url(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return value if urlsplit(value.strip()).scheme.lower() in ("http", "https") else None
    except ValueError:
        return None


def register(app: Flask) -> None:
    app.add_template_filter(when_filter, "when")
    app.add_template_filter(duration, "duration")
    app.add_template_filter(safe_url, "safe_url")
