"""Turn an outbox alert into the (title, body) a person reads in the team chat.

The body is CommonMark; apprise converts it for each target (HTML for Matrix/Telegram, Slack mrkdwn...).
Everything that comes from a post or a platform is untrusted and goes through :func:`untrusted`:
control and bidi characters removed, Markdown/HTML punctuation backslash-escaped, ``@`` (and the ``<`` of
``<!here>``-style tokens, and the ``&`` of HTML entities such as ``&#64;``) followed by a word joiner
(U+2060), so ``@channel``, ``@here``, ``@everyone``, ``@all``, ``@room`` and user mentions never
notify anyone and ``<!channel>``-style or raw HTML cannot be formed. Title and body are finally passed
through :func:`bot.redact.redact`. Rendering never raises: a payload it cannot read is shown as a generic
alert with its key.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from typing import Any
from urllib.parse import quote, urlsplit

from bot.models import human_duration, iso, parse_iso
from bot.redact import redact
from bot.store.records import OutboxAlert

log = logging.getLogger(__name__)

EXCERPT_CHARS = 280
EXCERPT_LINES = 8
MAX_BODY_CHARS = 1900
WORD_JOINER = "\u2060"

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>~])")
_ENTITY = re.compile(r"&(?=#?\w+;)")
_BIDI = dict.fromkeys(map(ord, "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f"), None)

EVENT_TITLES = {
    "deleted": "Post deleted",
    "author_suspended": "Author suspended (post gone)",
    "author_protected": "Author protected their account (post hidden)",
    "author_deleted": "Author account deleted (post gone)",
    "withheld": "Post withheld by the platform (not deleted)",
    "restored": "Post restored",
    "edited": "Post edited",
}


def _strip_controls(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").translate(_BIDI)
    return "".join(
        ch
        for ch in text
        if ch in "\n\t" or not (unicodedata.category(ch) == "Cc" or ch in "\u2028\u2029")
    )


def untrusted(value: Any, *, one_line: bool = True) -> str:
    """Make text from a post or a platform safe to put into the Markdown body (see module docstring)."""
    if value is None:
        return ""
    text = _strip_controls(str(value))
    if one_line:
        text = " ".join(text.split())
    text = _MD_SPECIAL.sub(r"\\\1", text)
    text = _ENTITY.sub("&" + WORD_JOINER, text)  # &#64;room must not become @room in HTML targets
    text = re.sub(r"<(?=[!@#])", "<" + WORD_JOINER, text)  # Slack-style <!here>, <@U123>, <#C123> even unescaped
    return text.replace("@", "@" + WORD_JOINER)


def excerpt(text: str | None, limit: int = EXCERPT_CHARS) -> str:
    """The first ``limit`` characters of a post text (on a word boundary where possible), as plain text."""
    if not text:
        return ""
    text = _strip_controls(text).strip()
    text = re.sub(r"\n{3,}", "\n\n", text)
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    if space > limit * 0.7:
        cut = cut[:space]
    return cut.rstrip() + " …"


def quote_block(text: str | None, limit: int = EXCERPT_CHARS) -> str:
    """The excerpt as a Markdown block quote of escaped, mention-free lines."""
    short = excerpt(text, limit)
    if not short:
        return "> _(no text)_"
    lines = [untrusted(line, one_line=True) for line in short.split("\n")]
    if len(lines) > EXCERPT_LINES:
        lines = lines[:EXCERPT_LINES] + ["…"]
    return "\n".join("> " + line if line else ">" for line in lines)


def link(url: Any) -> str:
    """An http(s) URL as a CommonMark autolink ``<url>`` (percent-encoding whatever could end or break it; on
    Discord the brackets also stop link previews); anything else as escaped text."""
    if not isinstance(url, str) or not url:
        return "(no link)"
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        scheme = ""
    if scheme not in ("http", "https"):
        return untrusted(url)
    return "<" + quote(_strip_controls(url).strip(), safe=":/?#@!$&'+,;=%.-_") + ">"


def when(value: Any) -> str:
    """An ISO time as ``2026-11-24 19:10 UTC`` (unparseable values shown escaped)."""
    try:
        dt = parse_iso(value) if isinstance(value, str) else None
    except ValueError:
        dt = None
    if dt is None:
        return untrusted(value) if value else "unknown"
    return dt.strftime("%Y-%m-%d %H:%M UTC")


def duration(seconds: Any) -> str:
    """``3d 4h``, ``2h 5m``, ``42s``; "unknown" for anything that is not a number (payloads are untrusted)."""
    try:
        return human_duration(int(float(seconds)))
    except (TypeError, ValueError):
        return "unknown"


def _where(p: dict[str, Any]) -> str:
    return f"{untrusted(p.get('platform'))} / {untrusted(p.get('account'))}"


def _post_lines(p: dict[str, Any]) -> list[str]:
    return [
        f"**Account:** {_where(p)}",
        f"**Post:** {link(p.get('post_url'))}",
        f"**Posted:** {when(p.get('posted_at'))}",
    ]


def _number(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.3g}"
    if isinstance(value, (int, float)):
        return str(int(value))
    return untrusted(value)


def _render_match(alert: OutboxAlert) -> tuple[str, str]:
    p = alert.payload
    known = p.get("known") or {}
    recycled = alert.kind == "recycled"
    suggest = p.get("tier") == "suggest"
    label = untrusted(known.get("label")) or "(unlabelled)"
    if recycled:
        title = f"Recycled image: {p.get('platform')}/{p.get('account')} reused an image seen before"
    else:
        title = f"Known image: {p.get('platform')}/{p.get('account')} posted \"{known.get('label') or '?'}\""
    if suggest:
        title = "Possible " + title[0].lower() + title[1:] + " (needs review)"
    lines = [f"**{'POSSIBLE MATCH (review)' if suggest else 'MATCH'}** · {'recycled image' if recycled else 'known media'}"]
    lines += _post_lines(p)
    lines += ["", quote_block(p.get("text")), ""]
    lines.append(f"**Known item:** {label}")
    if known.get("source"):
        lines.append(f"**Source:** {link(known['source']) if str(known['source']).startswith('http') else untrusted(known['source'])}")
    if known.get("note"):
        lines.append(f"**Note:** {untrusted(known['note'])}")
    if p.get("media_frame_ts") is not None:
        lines.append(f"**Posted video, frame at:** {_number(p['media_frame_ts'])} s")
    if known.get("frame_ts") is not None:
        lines.append(f"**Known video, frame at:** {_number(known['frame_ts'])} s")
    origin = known.get("origin") or {}
    if recycled or known.get("kind") == "seen":
        lines.append(
            f"**First seen:** {untrusted(origin.get('platform'))} / {untrusted(origin.get('account'))}, "
            f"posted {when(origin.get('posted_at'))} {link(origin.get('url'))}"
        )
    else:
        lines.append(f"**First seen:** added to known media {when(known.get('added_at'))}")
    lines.append(
        f"**Tier:** {untrusted(p.get('tier'))} · **Signal:** {untrusted(p.get('signal'))} · "
        f"**Distance:** {_number(p.get('distance'))} · **Inliers:** {_number(p.get('inliers'))}"
    )
    if p.get("region"):
        lines.append("**Matched region:** outlined in the attached comparison (posted image left)")
    lines.append(f"**Media:** sha256 `{untrusted(str(p.get('media_sha256'))[:16])}…` · {link(p.get('media_url'))}")
    lines.append(f"**Known id:** {untrusted(known.get('id'))}")
    lines.append(_case_line(p))
    also = [a for a in p.get("also") or [] if isinstance(a, dict)]
    if also:
        title += f" (+{len(also)} more in this post)"
        lines += ["", f"**Also in this post ({len(also)}):**"]
        for a in also:
            k = a.get("known") or {}
            what = "recycled image" if a.get("kind") == "recycled" else "known media"
            lines.append(
                f"- {untrusted(k.get('label')) or '(unlabelled)'} · {what} · {untrusted(a.get('tier'))} · "
                f"{untrusted(a.get('signal'))} distance {_number(a.get('distance'))}, inliers {_number(a.get('inliers'))}"
                f" · media `{untrusted(str(a.get('media_sha256'))[:12])}…` · {_case_line(a)}"
            )
    return title, "\n".join(line for line in lines if line is not None)


def _case_line(p: dict[str, Any]) -> str | None:
    """The case a match opened: a link to its page when ``web.base_url`` is set, else its id."""
    if p.get("case_url"):
        return f"**Review:** {link(p['case_url'])}"
    if p.get("case_id"):
        return f"**Case:** {untrusted(p['case_id'])}"
    return None


def _media_summary(media: Any) -> str:
    if not media:
        return "none"
    if isinstance(media, list):
        return f"{len(media)} attachment(s)"
    return untrusted(media)


#: event details a desk does not need in the chat (they stay in the deletion log and its exports)
_INTERNAL_DETAILS = frozenset({"scope", "version", "confirmed_at", "before", "after"})
_STATE_WORDS = {
    "deleted": "deleted",
    "author_suspended": "gone with its suspended account",
    "author_protected": "hidden by its author's protected account",
    "author_deleted": "gone with its deleted account",
    "withheld": "withheld by the platform",
}


def _event_facts(kind: str, details: dict[str, Any]) -> list[str]:
    """What a desk needs from an event's details, in plain words (internal bookkeeping left out)."""
    lines = []
    if details.get("last_seen_alive"):
        lines.append(f"**Last seen online:** {when(details['last_seen_alive'])}")
    if details.get("answers") and details.get("first_answer_at"):
        lines.append(
            f"**How we know:** the platform gave the same answer {_number(details['answers'])} times in a row, "
            f"from {when(details['first_answer_at'])} to {when(details.get('confirmed_at'))}"
        )
    if details.get("platform_said"):
        lines.append(f"**Platform said:** {untrusted(excerpt(str(details['platform_said']), 200))}")
    if kind == "restored" and details.get("previous"):
        previous = _STATE_WORDS.get(str(details["previous"]), str(details["previous"]))
        lines.append(f"**Before:** recorded as {untrusted(previous)}; last seen online {when(details.get('last_seen_alive_before'))}")
    if details.get("scope") == "account":
        lines.append("**Whole account:** this is about the account, found through this post (its other posts get no alert of their own)")
    if details.get("raw_sha256"):
        lines.append(f"**Archived post:** sha256 `{untrusted(str(details['raw_sha256'])[:16])}…`")
    shown = {"last_seen_alive", "answers", "first_answer_at", "platform_said", "previous", "last_seen_alive_before", "raw_sha256"}
    for k, v in sorted(details.items()):  # anything newer than this renderer, in words rather than as a key
        if k in shown or k in _INTERNAL_DETAILS:
            continue
        value = v if isinstance(v, (str, int, float, bool)) or v is None else json.dumps(v, default=str)
        lines.append(f"**{untrusted(str(k).replace('_', ' ').capitalize())}:** {untrusted(excerpt(str(value), 200))}")
    return lines


def _render_event(alert: OutboxAlert) -> tuple[str, str]:
    p = alert.payload
    details = p.get("details") or {}
    title = f"{EVENT_TITLES.get(alert.kind, alert.kind)}: {p.get('platform')}/{p.get('account')}"
    lines = [f"**{untrusted(EVENT_TITLES.get(alert.kind, alert.kind)).upper()}**"]
    lines += _post_lines(p)
    lines.append(f"**Detected:** {when(p.get('detected_at'))} · **Lifetime:** {duration(p.get('lifetime_seconds'))}")
    if alert.kind == "edited":
        before = details.get("before") or {}
        after = details.get("after") or {}
        lines += ["", "**Before:**", quote_block(before.get("text")), f"Media: {_media_summary(before.get('media'))}"]
        lines += ["", "**After:**", quote_block(after.get("text")), f"Media: {_media_summary(after.get('media'))}"]
    else:
        lines += ["", quote_block(p.get("text"))]
        facts = _event_facts(alert.kind, details)
        if facts:
            lines += ["", *facts]
    media = p.get("media") or []
    if media:
        lines.append(f"**Archived media:** {len(media)} file(s)")
        for m in media[:4]:
            lines.append(f"- `{untrusted(str(m.get('sha256'))[:16])}…` {untrusted(m.get('archive_path'))}")
    return title, "\n".join(lines)


def _render_digest(alert: OutboxAlert) -> tuple[str, str]:
    p = alert.payload
    t = p.get("totals") or {}
    title = f"Daily digest {p.get('date')}"
    lines = [
        f"**Daily digest** · {when(p.get('since'))} to {when(p.get('until'))}",
        f"Matches: {_number(t.get('match', 0))} · Recycled: {_number(t.get('recycled', 0))} · "
        f"Possible (review): {_number(t.get('suggest', 0))} · Deletions: {_number(t.get('deleted', 0))} · "
        f"Edits: {_number(t.get('edited', 0))} · Other status changes: {_number(t.get('other_events', 0))}",
    ]
    if not p.get("alerts_counted", True):
        lines.append("_(match counts unavailable: this store cannot list alerts)_")
    accounts = p.get("accounts") or []
    if accounts:
        lines.append("")
        for a in accounts:
            lines.append(
                f"- {untrusted(a.get('platform'))} / {untrusted(a.get('account'))}: "
                f"{_number(a.get('match', 0))} match, {_number(a.get('recycled', 0))} recycled, "
                f"{_number(a.get('suggest', 0))} review, {_number(a.get('deleted', 0))} deleted, "
                f"{_number(a.get('edited', 0))} edited, {_number(a.get('other_events', 0))} other"
            )
    else:
        lines.append("Nothing happened on the watched accounts.")
    return title, "\n".join(lines)


def _render_fallback(alert: OutboxAlert) -> tuple[str, str]:
    try:
        dump = json.dumps(alert.payload, sort_keys=True, default=str)
    except (TypeError, ValueError):
        dump = repr(alert.payload)
    body = f"**Alert** `{untrusted(alert.kind)}` · key {untrusted(alert.key)}\n\n{quote_block(dump, 1000)}"
    return f"afterimage alert ({alert.kind})", body


def _title_text(title: str) -> str:
    # titles are plain text on most targets: strip controls and break mentions, but do not escape Markdown
    return " ".join(_strip_controls(title).split()).replace("@", "@" + WORD_JOINER)[:200]


def render(alert: OutboxAlert) -> tuple[str, str]:
    """(title, body) of an alert, ready for apprise with ``body_format=markdown``; never raises."""
    try:
        if alert.kind in ("match", "recycled"):
            title, body = _render_match(alert)
        elif alert.kind in EVENT_TITLES:
            title, body = _render_event(alert)
        elif alert.kind == "digest":
            title, body = _render_digest(alert)
        else:
            title, body = _render_fallback(alert)
    except Exception:  # a malformed payload must not block the outbox
        log.exception("cannot render alert %s; sending it in raw form", redact(alert.key))
        title, body = _render_fallback(alert)
    created = iso(alert.created_at) if alert.created_at else ""
    shown_key = re.sub(r"\b([0-9a-f]{12})[0-9a-f]{52}\b", r"\1…", str(alert.key))  # sha256 shortened
    body += f"\n\n_afterimage · {untrusted(shown_key)} · queued {when(created)}_"
    body = redact(body)
    if len(body) > MAX_BODY_CHARS:  # Discord refuses more than 2000 characters; a refusal would block the outbox
        body = body[: MAX_BODY_CHARS - 2].rstrip() + " …"
    return redact(_title_text(title)), body
