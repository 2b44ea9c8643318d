"""The post as it looked: a PNG "post card" rendered from an archived version of a post.

A card shows the platform mark (a coloured badge with the platform's name: no third-party logos), the
account's display name and handle, the publication time, the text (wrapped, never cut mid-line), the archived
attachments as thumbnails read back from the archive (hash-verified), and a footer naming the version and
the raw post's SHA-256. It is a picture of the evidence for people, not the evidence itself: the raw JSON and
the media files in the archive are. Cards are archived like any other file (and so timestamped), shown in
the HTML report and attached to deletion alerts; an edit gets both versions side by side.

Fonts: DejaVu Sans (Debian ``fonts-dejavu-core``, which ``.ci/run`` installs); without it, Pillow's own
scalable default font.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, Protocol

from PIL import Image, ImageDraw, ImageFont

from bot.alerts.picture import load_image
from bot.archive import Archive
from bot.models import Post, iso
from bot.store.media import MediaReader
from bot.store.posts import PostReader
from bot.store.records import PostEvent

WIDTH = 640
PAD = 24
TEXT_SIZE = 19
#: handle, time, URL and footer: read at about half size in a report on a phone, so not smaller than this
SMALL_SIZE = 16
URL_LINE = 21
MAX_TEXT_LINES = 40
THUMB = 180
FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/dejavu", "/usr/local/share/fonts")
PLATFORM_MARKS = {  # name shown on the badge, badge colour
    "x": ("X", (20, 20, 20)),
    "facebook": ("Facebook", (24, 119, 242)),
    "mastodon": ("Mastodon", (99, 100, 255)),
    "bluesky": ("Bluesky", (0, 133, 255)),
    "rss": ("RSS feed", (238, 128, 42)),
    "telegram": ("Telegram", (36, 161, 222)),
    "vk": ("VK", (0, 119, 255)),
    "youtube": ("YouTube", (230, 33, 23)),
}
INK = (20, 20, 20)
MUTED = (100, 100, 100)
LINE = (215, 215, 215)


@lru_cache(maxsize=16)
def font(size: int, bold: bool = False, mono: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    name = "DejaVuSansMono.ttf" if mono else ("DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf")
    for folder in FONT_DIRS:
        try:
            return ImageFont.truetype(f"{folder}/{name}", size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


@dataclass(frozen=True)
class CardPost:
    """What a card shows, independent of where it came from (a stored version or an alert)."""

    platform: str
    display_name: str
    handle: str
    posted_at: datetime | None
    text: str
    url: str
    media_paths: tuple[str | None, ...]  # archive paths of the attachments (None: not archived)
    version: int
    raw_sha256: str


def _dig(raw: Any, *path: Any) -> Any:
    for key in path:
        if isinstance(raw, dict):
            raw = raw.get(key)
        elif isinstance(raw, list) and isinstance(key, int) and -len(raw) <= key < len(raw):
            raw = raw[key]
        else:
            return None
    return raw


def author_of(post: Post) -> tuple[str, str]:
    """(display name, handle) from the raw payload where the platform gives them, else the account."""
    raw = post.raw
    candidates = [
        (_dig(raw, "includes", "users", 0, "name"), _dig(raw, "includes", "users", 0, "username")),  # X
        (_dig(raw, "account", "display_name"), _dig(raw, "account", "acct")),  # Mastodon
        (_dig(raw, "author", "displayName"), _dig(raw, "author", "handle")),  # Bluesky
        (_dig(raw, "post", "author", "displayName"), _dig(raw, "post", "author", "handle")),
        (_dig(raw, "from", "name"), None),  # Facebook
        (_dig(raw, "author"), None),  # RSS
    ]
    for name, handle in candidates:
        if isinstance(name, str) and name.strip():
            return name.strip(), f"@{handle}" if isinstance(handle, str) and handle else post.account
    return post.account, post.account if post.platform == "rss" else f"@{post.account.lstrip('@')}"


class CardSource(PostReader, MediaReader, Protocol):
    """What a post card reads: the post, its versions and its archived media."""


def card_post(store: CardSource, post: Post, version: int, raw_sha256: str) -> CardPost:
    """The card of one stored version; attachments resolved to archive paths through the post's media links."""
    by_url = {link.url: link.sha256 for link in store.get_post_media(post.platform, post.post_id) if link.sha256}
    paths: list[str | None] = []
    for media in post.media:
        sha = by_url.get(media.url)
        record = store.get_media(sha) if sha else None
        paths.append(record.archive_path if record else None)
    name, handle = author_of(post)
    return CardPost(post.platform, name, handle, post.created_at, post.text, post.url, tuple(paths), version, raw_sha256)


def _wrap(draw: ImageDraw.ImageDraw, text: str, fnt: Any, width: int) -> list[str]:
    """Lines of at most ``width`` pixels; words longer than a line (URLs) are broken where they must be."""
    lines: list[str] = []
    for paragraph in text.replace("\r\n", "\n").split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if draw.textlength(candidate, font=fnt) <= width:
                line = candidate
                continue
            if line:
                lines.append(line)
            while draw.textlength(word, font=fnt) > width:
                cut = len(word)
                while cut > 1 and draw.textlength(word[:cut], font=fnt) > width:
                    cut -= 1
                lines.append(word[:cut])
                word = word[cut:]
            line = word
        lines.append(line)
    return lines


def render_card(archive: Archive, post: CardPost, label: str | None = None) -> Image.Image:
    """The card as an RGB image (never raises for bad media: a missing attachment is drawn as a placeholder)."""
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    inner = WIDTH - 2 * PAD
    text_font, small = font(TEXT_SIZE), font(SMALL_SIZE)
    lines = _wrap(scratch, post.text or "(no text)", text_font, inner)
    if len(lines) > MAX_TEXT_LINES:
        lines = lines[:MAX_TEXT_LINES] + [f"… ({len(lines) - MAX_TEXT_LINES} more lines in the archived version)"]
    thumbs = [_thumb(archive, p, n + 1) for n, p in enumerate(post.media_paths)]
    per_row = max(1, inner // (THUMB + 8))
    rows = (len(thumbs) + per_row - 1) // per_row
    url_lines = _wrap(scratch, post.url or "", small, inner)
    label_h = 30 if label else 0
    height = (label_h + PAD + 56 + 12 + len(lines) * (TEXT_SIZE + 7) + (rows * (THUMB + 8) + 8 if rows else 0)
              + 14 + len(url_lines) * URL_LINE + SMALL_SIZE + 10 + PAD)
    img = Image.new("RGB", (WIDTH, height), "white")
    d = ImageDraw.Draw(img)
    y = 0
    if label:
        d.rectangle([0, 0, WIDTH, label_h], fill=(245, 245, 245))
        d.text((PAD, 6), label, font=font(15, bold=True), fill=INK)
        y = label_h
    d.rectangle([0, 0, WIDTH - 1, height - 1], outline=LINE, width=2)
    y += PAD
    mark, colour = PLATFORM_MARKS.get(post.platform, (post.platform.upper(), (90, 90, 90)))
    d.ellipse([PAD, y, PAD + 48, y + 48], fill=colour)
    initial = mark[0]
    w = d.textlength(initial, font=font(24, bold=True))
    d.text((PAD + 24 - w / 2, y + 10), initial, font=font(24, bold=True), fill="white")
    x = PAD + 60
    name = post.display_name
    while d.textlength(name, font=font(18, bold=True)) > inner - 60 - 110 and len(name) > 4:
        name = name[:-2].rstrip() + "…" if not name.endswith("…") else name[:-3].rstrip() + "…"
    d.text((x, y + 2), name, font=font(18, bold=True), fill=INK)
    posted = post.posted_at.strftime("%Y-%m-%d %H:%M UTC") if post.posted_at else "time unknown"
    handle = post.handle
    while d.textlength(f"{handle} · {posted}", font=small) > inner - 60 and len(handle) > 4:
        handle = "…" + handle[3:] if handle.startswith("…") else "…" + handle[2:]
    d.text((x, y + 28), f"{handle} · {posted}", font=small, fill=MUTED)
    bw = d.textlength(mark, font=font(13, bold=True)) + 16
    d.rounded_rectangle([WIDTH - PAD - bw, y + 2, WIDTH - PAD, y + 24], radius=6, fill=colour)
    d.text((WIDTH - PAD - bw + 8, y + 6), mark, font=font(13, bold=True), fill="white")
    y += 56 + 12
    for line in lines:
        d.text((PAD, y), line, font=text_font, fill=INK)
        y += TEXT_SIZE + 7
    if rows:
        y += 4
        for n, thumb in enumerate(thumbs):
            tx = PAD + (n % per_row) * (THUMB + 8)
            ty = y + (n // per_row) * (THUMB + 8)
            img.paste(thumb, (tx + (THUMB - thumb.width) // 2, ty + (THUMB - thumb.height) // 2))
            d.rectangle([tx, ty, tx + THUMB, ty + THUMB], outline=LINE)
        y += rows * (THUMB + 8) + 4
    y += 6
    d.line([PAD, y, WIDTH - PAD, y], fill=LINE)
    y += 8
    posted = post.posted_at.strftime("%Y-%m-%d %H:%M:%S UTC") if post.posted_at else "time unknown"
    for line in url_lines:
        d.text((PAD, y), line, font=small, fill=(30, 80, 160))
        y += URL_LINE
    footer = f"Posted {posted} · version {post.version} · raw sha256 {post.raw_sha256[:16]}…"
    for size in range(SMALL_SIZE - 1, 10, -1):  # the footer is one line: a smaller size only when it must
        if d.textlength(footer, font=font(size)) <= inner:
            break
    d.text((PAD, y + 2), footer, font=font(size), fill=MUTED)
    return img


def _thumb(archive: Archive, relpath: str | None, number: int) -> Image.Image:
    image, problem = load_image(archive, relpath)
    if image is None:
        tile = Image.new("RGB", (THUMB, THUMB), (235, 235, 235))
        d = ImageDraw.Draw(tile)
        for n, line in enumerate(_wrap(d, f"attachment {number}: {problem or 'unavailable'}", font(13), THUMB - 16)[:4]):
            d.text((8, THUMB // 2 - 30 + n * 17), line, font=font(13), fill=MUTED)
        return tile
    image.thumbnail((THUMB, THUMB))
    return image


def side_by_side(left: Image.Image, right: Image.Image, gap: int = 16) -> Image.Image:
    out = Image.new("RGB", (left.width + gap + right.width, max(left.height, right.height)), "white")
    out.paste(left, (0, 0))
    out.paste(right, (left.width + gap, 0))
    return out


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _versions_shown(store: CardSource, event: PostEvent) -> list[tuple[str | None, CardPost]]:
    """(label, card) of the versions an event is about: before and after for an edit, else the last one."""
    versions = {v.version: v for v in store.get_versions(event.platform, event.post_id)}
    if event.kind == "edited":
        shown = []
        for side, title in (("before", "Before"), ("after", "After")):
            number = (event.details.get(side) or {}).get("version")
            v = versions.get(number) if number is not None else None
            if v is not None:
                shown.append((f"{title}: version {v.version}, seen {iso(v.observed_at)}", card_post(store, v.post, v.version, v.raw_sha256)))
        if shown:
            return shown
    stored = store.get_post(event.platform, event.post_id)
    if stored is None:
        return []
    return [(None, card_post(store, stored.post, stored.version, stored.post.raw_sha256()))]


def cards_for_event(store: CardSource, archive: Archive, event: PostEvent) -> list[dict[str, Any]]:
    """Render and archive the card(s) of an event; ``[{version, label, sha256, archive_path}]``."""
    out = []
    for label, post in _versions_shown(store, event):
        stored = archive.put(png(render_card(archive, post, label)), "png")
        out.append({"version": post.version, "label": label, "sha256": stored.sha256, "archive_path": stored.relpath})
    return out


def event_card_png(store: CardSource, archive: Archive, event: PostEvent) -> bytes | None:
    """One PNG for an event's alert: the post's card, or both versions side by side for an edit."""
    images = [render_card(archive, post, label) for label, post in _versions_shown(store, event)]
    if not images:
        return None
    image = images[0] if len(images) == 1 else side_by_side(images[0], images[1])
    return png(image)

