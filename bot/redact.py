"""Keeps secrets out of every log line, alert and export.

Every secret value afterimage learns (resolved ``${ENV}`` references, secret config fields, passwords in
store URLs) is registered here; :class:`RedactingFilter` rewrites log records, and :func:`redact` is called
by anything else that turns data into text for people (alerts, exports, error messages).
"""

from __future__ import annotations

import logging
import re
import threading
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
_MIN_SECRET_LEN = 4  # shorter values would mask ordinary words; such "secrets" are refused by config anyway

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None


def register_secret(value: str | None) -> None:
    """Remember ``value`` so that it is masked wherever it would be shown."""
    global _pattern
    if not value or len(value) < _MIN_SECRET_LEN:
        return
    with _lock:
        if value in _secrets:
            return
        _secrets.add(value)
        ordered = sorted(_secrets, key=len, reverse=True)  # longest first, so a secret containing another is masked whole
        _pattern = re.compile("|".join(re.escape(s) for s in ordered))


def clear_secrets() -> None:
    """Forget all registered secrets (tests)."""
    global _pattern
    with _lock:
        _secrets.clear()
        _pattern = None


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    pattern = _pattern
    if pattern is None or not text:
        return text
    return pattern.sub(MASK, text)


def redact_url(url: str) -> str:
    """A URL with its password (and the secret parts of an apprise URL's path) hidden: scheme and host only
    for URLs that carry credentials in the path, the password masked for those with userinfo."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    if not parts.netloc:  # sqlite:///path, file paths: nothing secret in them
        return redact(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    if parts.username:
        netloc = f"{parts.username}:{MASK}@{netloc}" if parts.password else f"{parts.username}@{netloc}"
    elif parts.password:
        netloc = f":{MASK}@{netloc}"
    return redact(urlunsplit((parts.scheme, netloc, parts.path, "", "")))


class RedactingFilter(logging.Filter):
    """Rewrites each record's message (with its arguments and any exception text) with secrets masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _pattern is None:
            return True
        message = record.getMessage()
        if record.exc_info:
            formatter = logging.Formatter()
            exc_text = formatter.formatException(record.exc_info)
            record.exc_info = None
            record.exc_text = redact(exc_text)
        record.msg = redact(message)
        record.args = None
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Attach the redacting filter to every handler of ``logger`` (root by default).

    Filters on handlers, not loggers, see records from every child logger (tweepy's, urllib3's...)."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


def setup_logging(level: str = "INFO") -> None:
    """Configure process logging once: one stderr handler, secrets redacted."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(level.upper())
    # APScheduler logs two INFO lines per job run (hundreds a minute with many accounts): only at debug level
    logging.getLogger("apscheduler").setLevel(logging.DEBUG if root.level <= logging.DEBUG else logging.WARNING)
    # a run skipped because the previous one is still going is how max_instances=1 is meant to work
    logging.getLogger("apscheduler.scheduler").setLevel(logging.ERROR)
    install_log_redaction(root)
