"""A fake of Telegram's public web preview (``t.me/s/<channel>`` pages and ``t.me/<channel>/<id>?embed=1``),
rendering the markup the real site serves (classes, attributes, album layout, ``?before=`` paging), for the
demo, the end-to-end tests and the watcher tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from html import escape

#: messages per channel page (the real site shows about 20)
PAGE_SIZE = 20


@dataclass
class FakeMessage:
    """One channel message. ``photos`` (media paths on the fake server): two or more make an album whose
    members take the ids ``message_id``, ``message_id + 1``... as on Telegram."""

    message_id: int
    text: str
    created_at: datetime
    photos: list[str] = field(default_factory=list)
    #: (video path or None when "too big" for the preview, thumbnail path)
    video: tuple[str | None, str] | None = None
    forwarded_from: tuple[str, str] | None = None  # (name, link)
    links: list[tuple[str, str]] = field(default_factory=list)  # (text, href) appended to the text
    edited: bool = False
    deleted: bool = False

    @property
    def last_id(self) -> int:
        return self.message_id + max(0, len(self.photos) - 1)


def _time(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _photo(base: str, channel: str, member: int, path: str, grouped: bool) -> str:
    single = "?single" if grouped else ""
    cls = "tgme_widget_message_photo_wrap grouped_media_wrap blured js-message_photo" if grouped else (
        "tgme_widget_message_photo_wrap blured js-message_photo"
    )
    return (
        f'<a class="{cls}" style="left:0px;top:0px;width:453px;height:301px;'
        f"background-image:url('{base}{path}')\" data-ratio=\"1.5\" href=\"https://t.me/{channel}/{member}{single}\">"
        '<div class="grouped_media_helper" style="left:0;right:0;top:0;bottom:0;">'
        '<div class="tgme_widget_message_photo grouped_media" style="left:0;right:0;top:0;bottom:0;"></div></div></a>'
    )


def render_message(m: FakeMessage, channel: str, base: str, embed: bool = False) -> str:
    """The ``div.tgme_widget_message`` of one message as the preview site renders it."""
    parts = [
        f'<div class="tgme_widget_message_wrap js-widget_message_wrap"><div class="tgme_widget_message text_not_supported_wrap '
        f'js-widget_message" data-post="{channel}/{m.message_id}" data-view="v{m.message_id}">',
        '<div class="tgme_widget_message_bubble">',
        f'<div class="tgme_widget_message_author accent_color"><a class="tgme_widget_message_owner_name" '
        f'href="https://t.me/{channel}"><span dir="auto">{escape(channel)}</span></a></div>',
    ]
    if m.forwarded_from:
        name, link = m.forwarded_from
        parts.append(
            '<div class="tgme_widget_message_forwarded_from accent_color">Forwarded from&nbsp;<a '
            f'class="tgme_widget_message_forwarded_from_name" href="{escape(link)}"><span dir="auto">{escape(name)}</span></a></div>'
        )
    if len(m.photos) > 1:
        items = "".join(_photo(base, channel, m.message_id + i, p, True) for i, p in enumerate(m.photos))
        parts.append(
            '<div class="tgme_widget_message_grouped_wrap js-message_grouped_wrap" data-margin-w="2" data-margin-h="2" '
            'style="width:453px;"><div class="tgme_widget_message_grouped js-message_grouped" style="padding-top:133.333%">'
            f'<div class="tgme_widget_message_grouped_layer js-message_grouped_layer" style="width:453px;height:604px">{items}'
            "</div></div></div>"
        )
    elif m.photos:
        parts.append(_photo(base, channel, m.message_id, m.photos[0], False))
    if m.video:
        video, thumb = m.video
        cls = "tgme_widget_message_video_player" + ("" if video else " not_supported")
        inner = (
            f'<i class="tgme_widget_message_video_thumb" style="background-image:url(\'{base}{thumb}\')"></i>'
            + (
                f'<div class="tgme_widget_message_video_wrap"><video src="{base}{video}" class="tgme_widget_message_video '
                'js-message_video" width="100%" height="100%"></video></div>'
                if video
                else '<div class="message_media_not_supported"><div class="message_media_not_supported_label">Media is too big'
                "</div></div>"
            )
            + '<div class="message_video_play"></div><time class="message_video_duration js-message_video_duration">0:12</time>'
        )
        parts.append(f'<a class="{cls} js-message_video_player" href="https://t.me/{channel}/{m.message_id}">{inner}</a>')
    text = "<br/>".join(escape(line) for line in m.text.split("\n"))
    for label, href in m.links:
        text += f' <a href="{escape(href)}" target="_blank" rel="noopener">{escape(label)}</a>'
    if text:
        parts.append(f'<div class="tgme_widget_message_text js-message_text" dir="auto">{text}</div>')
    edited = "edited&nbsp;" if m.edited else ""
    time_class = "datetime" if embed else "time"
    parts.append(
        '<div class="tgme_widget_message_footer compact js-message_footer"><div class="tgme_widget_message_info short js-message_info">'
        '<span class="tgme_widget_message_views">1.2K</span><span class="copyonly"> views</span>'
        f'<span class="tgme_widget_message_meta">{edited}<a class="tgme_widget_message_date" href="https://t.me/{channel}/{m.message_id}">'
        f'<time datetime="{_time(m.created_at)}" class="{time_class}">{m.created_at:%H:%M}</time></a></span></div></div>'
    )
    parts.append("</div></div></div>")
    return "\n".join(parts)


def _document(title: str, body_class: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html>\n  <head>\n    <meta charset="utf-8">\n'
        f"    <title>{escape(title)}</title>\n"
        '    <meta property="og:site_name" content="Telegram">\n'
        '    <link href="//telegram.org/css/widget-frame.css?73" rel="stylesheet" media="screen">\n'
        f'  </head>\n  <body class="{body_class}">\n{body}\n  </body>\n</html>\n<!-- page generated in 12.34ms -->\n'
    )


def channel_page(channel: str, messages: list[FakeMessage], base: str, before: int | None = None) -> str:
    """``t.me/s/<channel>[?before=<id>]``: the newest :data:`PAGE_SIZE` visible messages older than ``before``,
    oldest first, with the "load more" link when older ones exist."""
    visible = sorted((m for m in messages if not m.deleted), key=lambda m: m.message_id)
    if before is not None:
        visible = [m for m in visible if m.message_id < before]
    page = visible[-PAGE_SIZE:]
    more = ""
    if len(visible) > len(page):
        first = page[0].message_id
        more = (
            '<div class="tgme_widget_message_centered js-messages_more_wrap">'
            f'<a href="/s/{channel}?before={first}" class="tme_messages_more js-messages_more" data-before="{first}"></a></div>'
        )
    body = (
        '<header class="tgme_header search_collapsed"><div class="tgme_channel_info"><div class="tgme_channel_info_header_title">'
        f'<span dir="auto">{escape(channel)}</span></div></div></header>\n'
        f'<main class="tgme_main" data-url="/{channel}"><div class="tgme_container">'
        f'<section class="tgme_channel_history js-message_history">{more}\n'
        + "\n".join(render_message(m, channel, base) for m in page)
        + "\n</section></div></main>"
    )
    return _document(f"{channel} – Telegram", "widget_frame_base tgme_webpreview emoji_image thin_box_shadow tme_mode", body)


def embed_page(channel: str, messages: list[FakeMessage], message_id: int, base: str) -> str:
    """``t.me/<channel>/<id>?embed=1``: the message widget, or the "Post not found" error block."""
    found = next((m for m in messages if m.message_id == message_id and not m.deleted), None)
    if found is None:
        body = (
            '<div class="tgme_widget_message_wrap js-widget_message_wrap"><div class="tgme_widget_message js-widget_message" '
            f'data-post="{channel}/{message_id}"><div class="tgme_widget_message_bubble">'
            '<div class="tgme_widget_message_error">Post not found</div></div></div></div>'
        )
    else:
        body = render_message(found, channel, base, embed=True)
    return _document("Telegram Widget", "body_widget_post emoji_image", body)


def missing_channel_page(channel: str) -> str:
    """``t.me/<name>`` for a name without a public channel (where ``/s/<name>`` redirects)."""
    body = (
        '<div class="tgme_page_wrap"><div class="tgme_page"><div class="tgme_page_extra">If you have <strong>Telegram</strong>, '
        f'you can contact <a class="tgme_username_link" href="tg://resolve?domain={channel}">@{escape(channel)}</a> right away.'
        "</div></div></div>"
    )
    return _document(f"Telegram: Contact @{channel}", "", body)


CHALLENGE_PAGE = _document(
    "Just a moment...",
    "no-js",
    '<div class="main-wrapper" role="main"><div class="main-content"><h1>Checking your browser before accessing t.me</h1>'
    '<noscript>Enable JavaScript and cookies to continue</noscript><div id="challenge-stage"></div></div></div>',
)
