"""Where alerts go: one :class:`AppriseTarget` per configured apprise URL, plus the console (log) target.

Each target has a stable ``id`` that reveals nothing of its URL (``console``, or ``t`` + 12 hex digits of the
URL's SHA-256): the sender records per-target progress under it, so a retry never resends to a target that
already accepted an alert. ``label`` is what logs show (apprise's privacy form of the URL, redacted).

Every secret part of a target URL (password, and every path/query part apprise hides in its privacy form:
webhook tokens, bot tokens, signatures) is registered with :mod:`bot.redact`, so apprise's own log lines and
any error text are masked once the redacting log filter is installed.

One configured URL is the unit of "delivered once": a URL that fans out to several chats (e.g. a Telegram
URL with two chat ids) is retried as a whole when one of them fails. Configure one URL per chat to avoid
duplicates on partial failures.
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

import apprise

from bot.errors import AfterimageError, ConfigError
from bot.redact import MASK, redact, register_secret

log = logging.getLogger(__name__)
console_log = logging.getLogger("bot.alerts.console")

DEFAULT_TIMEOUT = 30.0


class DeliveryError(AfterimageError):
    """A target did not accept an alert (HTTP error, timeout, refused attachment...)."""


class Target(Protocol):
    id: str
    label: str

    def send(self, title: str, body: str, attachment: Path | None = None) -> None:
        """Deliver one message; raise :class:`DeliveryError` unless the target accepted it."""


class ConsoleTarget:
    """Writes the rendered alert to the log (``bot.alerts.console``, INFO). Always accepts."""

    id = "console"
    label = "console"

    def __init__(self, logger: logging.Logger | None = None):
        self.logger = logger or console_log

    def send(self, title: str, body: str, attachment: Path | None = None) -> None:
        extra = ""
        if attachment is not None:
            try:
                extra = f"\n[attachment: {attachment.name}, {attachment.stat().st_size} bytes]"
            except OSError:
                extra = f"\n[attachment: {attachment.name}]"
        self.logger.info("%s", redact(f"ALERT {title}\n{body}{extra}"))


def target_id(url: str) -> str:
    return "t" + hashlib.sha256(url.encode()).hexdigest()[:12]


_SPLIT = re.compile(r"[/?&=:@,;+#]")


def _looks_secret(piece: str) -> bool:
    """Tokens are long or mix letters and digits; plain words ("hooks", "alerts") are not masked everywhere."""
    return len(piece) >= 10 or (len(piece) >= 6 and any(c.isdigit() for c in piece) and any(c.isalpha() for c in piece))


def register_url_secrets(url: str, private_form: str | None = None) -> None:
    """Register the secret parts of an apprise URL for redaction: the whole URL, its password, and every
    token-like part of its host, path, query values and fragment that apprise hides in ``private_form``
    (its ``url(privacy=True)``)."""
    register_secret(url)
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return
    if password:
        register_secret(password)
        register_secret(unquote(password))
    if private_form is None:
        return
    shown = {unquote(p) for p in _SPLIT.split(private_form)}
    hostinfo = parts.netloc.rsplit("@", 1)[-1]
    values = [v for _, v in parse_qsl(parts.query, keep_blank_values=False)]
    for text in (hostinfo, parts.path, parts.fragment, *values):
        for piece in _SPLIT.split(unquote(text)):
            if piece and piece not in shown and _looks_secret(piece):
                register_secret(piece)


#: apprise's generic webhook schemes: the URL is the whole address of someone's endpoint
_GENERIC = frozenset({"json", "jsons", "xml", "xmls", "form", "forms"})


def _scheme_only(url: str) -> str:
    scheme = url.split("://", 1)[0] if "://" in url else "?"
    return f"{scheme}://{MASK}"


class AppriseTarget:
    """One apprise URL. ``timeout`` bounds a whole delivery (connect and read timeouts are lowered to it too)."""

    def __init__(self, url: str, timeout: float = DEFAULT_TIMEOUT):
        self.id = target_id(url)
        #: only the scheme (``json://***``): safe to print even where ``label`` would show a token that apprise
        #: does not count as secret (a generic ``json://`` webhook's path)
        self.scheme_label = _scheme_only(url)
        self.timeout = timeout
        register_url_secrets(url)
        try:
            plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
        except Exception:  # pragma: no cover - apprise reports by returning None
            plugin = None
        if plugin is None:
            raise ConfigError([f"alerts.targets: apprise cannot use the URL {_scheme_only(url)} (check scheme and tokens)"])
        private = plugin.url(privacy=True)
        # a generic webhook (json://, xml://, form://) often carries its secret in the path, which apprise's
        # privacy form shows: count nothing of such a URL as shown, so every token-like part is masked
        register_url_secrets(url, _scheme_only(url) if url.split("://", 1)[0].lower() in _GENERIC else private)
        self.label = redact(private.split("?", 1)[0])
        for attr in ("socket_connect_timeout", "socket_read_timeout"):
            current = getattr(plugin, attr, None)
            if isinstance(current, (int, float)) and current > timeout:
                setattr(plugin, attr, timeout)
        self._plugin = plugin
        self._apprise = apprise.Apprise()
        self._apprise.add(plugin)

    @property
    def supports_attachments(self) -> bool:
        return bool(getattr(self._plugin, "attachment_support", False))

    def send(self, title: str, body: str, attachment: Path | None = None) -> None:
        attach = None
        if attachment is not None and self.supports_attachments:
            attach = apprise.AppriseAttachment()
            if not attach.add(str(attachment)):
                raise DeliveryError(f"{self.label}: cannot attach {attachment.name}")
        try:
            with _AppriseLog() as apprise_log:
                result = self._apprise.notify(
                    body=body,
                    title=title,
                    body_format=apprise.NotifyFormat.MARKDOWN,
                    attach=attach,
                    timeout=self.timeout,
                )
        except Exception as e:
            raise DeliveryError(f"{self.label}: {type(e).__name__}: {redact(str(e))}") from None
        if not result:
            raise DeliveryError(f"{self.label}: not accepted: {failure_reason(apprise_log.records)}")


class _AppriseLog(logging.Handler):
    """What apprise logged while one message was sent: its ``notify`` only answers True/False, and the reason
    (the HTTP status, the socket error) is in its warning and debug lines. Those lines are collected here
    instead of reaching the log at debug level; the ones the log would have shown are passed on afterwards.
    Deliveries are one at a time per process (the sender's outbox lock; ``alerts test`` sends in turn), so
    the lines collected are this message's."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._logger = logging.getLogger("apprise")

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> _AppriseLog:
        self._saved = (self._logger.level, self._logger.propagate, self._logger.getEffectiveLevel())
        self._logger.addHandler(self)
        self._logger.setLevel(logging.DEBUG)
        self._logger.propagate = False
        return self

    def __exit__(self, *exc: object) -> None:
        level, propagate, shown_from = self._saved
        self._logger.removeHandler(self)
        self._logger.setLevel(level)
        self._logger.propagate = propagate
        if propagate and self._logger.parent is not None:
            for record in self.records:
                if record.levelno >= shown_from:
                    self._logger.parent.handle(record)


_HTTP_STATUS = re.compile(r"error=(\d{3})\b")
_SSL_REASON = re.compile(r"\[SSL: ([A-Z_]+)\] ([^(\]\n]+)|certificate verify failed: ([^(\)\n]+)")


def failure_reason(records: list[logging.LogRecord]) -> str:
    """Why a target did not accept a message, in a few words, from apprise's log lines (redacted): the HTTP
    status, "connection refused", a TLS error, a timeout, an unknown host; else apprise's last warning."""
    messages = [record.getMessage() for record in records]
    text = "\n".join(messages)
    status = _HTTP_STATUS.search(text)
    if status:
        warning = next((m for m in reversed(messages) if f"error={status.group(1)}" in m), "")
        said = warning.split(": ", 1)[1].rsplit(", error=", 1)[0].strip() if ": " in warning else ""
        return redact(f"HTTP {status.group(1)}" + (f" ({said.rstrip('.')})" if said else ""))
    if "Connection refused" in text:
        return "connection refused"
    if "SSLError" in text or "CERTIFICATE_VERIFY_FAILED" in text or "[SSL:" in text:
        found = _SSL_REASON.search(text)
        detail = " ".join(g for g in (found.groups() if found else ()) if g).strip()
        return redact("TLS error" + (f": {detail}" if detail else ""))
    if "timed out" in text or "Timeout" in text:
        return "timed out"
    if "NameResolutionError" in text or "Name or service not known" in text or "nodename nor servname" in text:
        return "host name not found"
    warnings = [r.getMessage() for r in records if r.levelno >= logging.WARNING]
    return redact(warnings[-1]) if warnings else "refused (no reason given)"


def build_targets(urls: list[str], console: bool, timeout: float = DEFAULT_TIMEOUT) -> list[Target]:
    """Console first (when enabled), then the apprise URLs in configuration order. Raises :class:`ConfigError`
    listing every URL apprise cannot use (redacted)."""
    targets: list[Target] = [ConsoleTarget()] if console else []
    problems: list[str] = []
    seen: set[str] = set()
    for i, url in enumerate(urls):
        try:
            target = AppriseTarget(url, timeout)
        except ConfigError as e:
            problems.extend(p.replace("alerts.targets:", f"alerts.targets.{i}:") for p in e.problems)
            continue
        if target.id in seen:
            problems.append(f"alerts.targets.{i}: the same URL is listed twice ({target.label})")
            continue
        seen.add(target.id)
        targets.append(target)
    if problems:
        raise ConfigError(problems)
    return targets


def target_problems(urls: list[str]) -> list[str]:
    """Problems with the configured target URLs (empty when apprise can use all of them), for ``config check``."""
    try:
        build_targets(urls, console=False)
    except ConfigError as e:
        return list(e.problems)
    return []
