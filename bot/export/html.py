"""The self-contained HTML report of the deletion log: one file, images embedded as JPEG thumbnails.

Rendered by jinja2 with autoescaping (post text is data, never markup) and a Content-Security-Policy that
allows no script and no remote resource, so the file shows the same thing offline, attached to a report.

Fit to publish: a title and the organisation's name, a methodology section, the post cards (the
post as it looked) and the timestamp proof of every hash when the evidence folder is given, a "matches"
section for matched posts that were not deleted; it works at a phone's width and prints cleanly.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape

from bot import __version__
from bot.archive import Archive
from bot.errors import ArchiveError
from bot.models import human_duration, iso, parse_iso, utcnow
from bot.store.base import StoreReader

LABEL_CHARS = 44  # timeline labels: monospace 11 px (6.7 px a character), so this many always fit label_w
POST_ID_CHARS = 12  # the end of a long post id: where ids of one account differ

THUMB_PX = 320
KIND_LABELS = {
    "deleted": "Deleted",
    "author_suspended": "Account suspended",
    "author_protected": "Account protected",
    "author_deleted": "Account deleted",
    "withheld": "Withheld by platform",
    "edited": "Edited",
    "restored": "Restored",
}
KIND_COLORS = {
    "deleted": "#c0392b",
    "author_suspended": "#8e44ad",
    "author_protected": "#d35400",
    "author_deleted": "#6d214f",
    "withheld": "#7f8c8d",
    "edited": "#2471a3",
    "restored": "#1e8449",
}


class Thumbnails:
    """JPEG data: URIs of archived images, verified against their hash on read, cached per path."""

    def __init__(self, archive_root: str | os.PathLike[str] | None, max_px: int = THUMB_PX):
        self.archive = Archive(archive_root) if archive_root else None
        self.max_px = max_px
        self._cache: dict[str, tuple[str | None, str | None]] = {}

    def get(self, relpath: str | None) -> tuple[str | None, str | None]:
        """``(data_uri, problem)``: one of them is None."""
        if not relpath:
            return None, "not archived"
        if self.archive is None:
            return None, "archive folder not given"
        if relpath not in self._cache:
            self._cache[relpath] = self._make(relpath)
        return self._cache[relpath]

    def _make(self, relpath: str) -> tuple[str | None, str | None]:
        from PIL import Image, UnidentifiedImageError

        assert self.archive is not None
        try:
            data = self.archive.get(relpath)
        except ArchiveError as e:
            return None, str(e)
        try:
            with Image.open(io.BytesIO(data)) as img:
                img.thumbnail((self.max_px, self.max_px))
                if img.mode not in ("RGB", "L"):
                    background = Image.new("RGB", img.size, "white")
                    rgba = img.convert("RGBA")
                    background.paste(rgba, mask=rgba.getchannel("A"))
                    img = background
                out = io.BytesIO()
                img.save(out, "JPEG", quality=82, optimize=True)
        except (UnidentifiedImageError, OSError, ValueError):
            return None, "no still preview (video or unsupported format)"
        return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii"), None

    def png(self, relpath: str) -> str | None:
        """A post card (PNG) as a data: URI, unscaled (it is made to be read), or None if it does not verify."""
        if self.archive is None:
            return None
        try:
            return "data:image/png;base64," + base64.b64encode(self.archive.get(relpath)).decode("ascii")
        except ArchiveError:
            return None


def shorten(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters, cut in the middle so that both ends stay readable (feed URLs
    share their beginning, post ids differ at their end)."""
    if len(text) <= limit:
        return text
    head = (limit - 1) // 2
    return text[:head] + "…" + text[len(text) - (limit - 1 - head):]


def account_label(account: str) -> str:
    """An account as a short label: a feed URL becomes its host (without www.) and last path part (without a
    feed extension)."""
    import re
    from urllib.parse import urlsplit

    if "://" not in account:
        return account
    parts = urlsplit(account)
    host = re.sub(r"^www\.", "", parts.hostname or "")
    tail = [p for p in parts.path.split("/") if p]
    last = re.sub(r"\.(atom|rss|xml)$", "", tail[-1]) if tail else ""
    return f"{host}/…/{last}" if len(tail) > 1 else f"{host}/{last}" if last else host


def timeline_label(account: str, post_id: str, limit: int = LABEL_CHARS) -> str:
    """``account · post`` in ``limit`` characters, both parts shortened in the middle when needed."""
    account = account_label(account)
    post_id = post_id.rstrip("/").rsplit("/", 1)[-1] if "://" in post_id else post_id
    if len(post_id) > POST_ID_CHARS:
        post_id = "…" + post_id[-(POST_ID_CHARS - 1):]
    return f"{shorten(account, limit - 3 - len(post_id))} · {post_id}"


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    kinds = [k for k in KIND_LABELS if any(r["kind"] == k for r in rows)]
    per_account: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    lifetimes: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in rows:
        key = (r["platform"], r["account"])
        per_account[key][r["kind"]] += 1
        if r["kind"] == "deleted" and r["lifetime_seconds"] is not None:
            lifetimes[key].append(r["lifetime_seconds"])
    accounts = [
        {
            "platform": p,
            "account": a,
            "counts": [per_account[(p, a)].get(k, 0) for k in kinds],
            "total": sum(per_account[(p, a)].values()),
            "median_lifetime": human_duration(_median(lifetimes[(p, a)])),
        }
        for (p, a) in sorted(per_account)
    ]
    all_lifetimes = [x for v in lifetimes.values() for x in v]
    return {
        "kinds": [{"kind": k, "label": KIND_LABELS[k], "color": KIND_COLORS[k]} for k in kinds],
        "kind_totals": [sum(1 for r in rows if r["kind"] == k) for k in kinds],
        "accounts": accounts,
        "total": len(rows),
        "deletions": sum(1 for r in rows if r["kind"] == "deleted"),
        "median_lifetime": human_duration(_median(all_lifetimes)),
        "median_lifetime_seconds": _median(all_lifetimes),
    }


def timeline(rows: Sequence[dict[str, Any]], width: int = 1000, row_h: int = 22, label_w: int = 310) -> dict[str, Any] | None:
    """Geometry of the SVG timeline: per event a bar from posted to last seen alive, a dashed gap until
    detection, and a dot at detection."""
    items = [r for r in rows if r["posted_at"] and r["detected_at"]]
    if not items:
        return None
    times = [parse_iso(r["posted_at"]) for r in items] + [parse_iso(r["detected_at"]) for r in items]
    t0, t1 = min(times), max(times)  # type: ignore[type-var]
    span = max((t1 - t0).total_seconds(), 60.0)  # type: ignore[operator]
    plot_w = width - label_w - 20

    def x(t: datetime | None) -> float:
        assert t is not None
        return round(label_w + (t - t0).total_seconds() / span * plot_w, 1)  # type: ignore[operator]

    bars = []
    for i, r in enumerate(items):
        posted, detected = parse_iso(r["posted_at"]), parse_iso(r["detected_at"])
        alive = parse_iso(r["last_seen_alive"]) or posted
        y = 30 + i * row_h
        bars.append(
            {
                "y": y,
                "label": timeline_label(r["account"], r["post_id"]),
                "full_label": f"{r['account']} · {r['post_id']}",
                "x_posted": x(posted),
                "x_alive": x(alive),
                "x_detected": x(detected),
                "color": KIND_COLORS.get(r["kind"], "#333"),
                "kind": KIND_LABELS.get(r["kind"], r["kind"]),
                "title": f"{r['account']} · {r['post_id']}: {KIND_LABELS.get(r['kind'], r['kind'])}, posted {r['posted_at']}, last seen alive "
                f"{r['last_seen_alive']}, detected {r['detected_at']}",
                "anchor": f"event-{r['event_id']}",
            }
        )
    # ticks across the plotted span (at least a minute), labelled as precisely as the span needs; the
    # first tick carries the date
    fmt = "%H:%M:%S" if span < 600 else "%H:%M" if span < 2 * 86400 else "%m-%d %H:%M"
    ticks = []
    for k in range(5):
        t = t0 + timedelta(seconds=span * k / 4)  # type: ignore[operator]
        ticks.append({"x": x(t), "label": t.strftime(("%Y-%m-%d " if k == 0 else "") + fmt)})
    return {"width": width, "height": 50 + len(items) * row_h, "bars": bars, "ticks": ticks, "label_w": label_w,
            "bottom": 30 + len(items) * row_h}


class Evidence:
    """What the evidence folder says about the report's items: chain entries (with their post cards) by event
    id, and the timestamp proof of each hash. Read only; an absent folder gives no proofs."""

    def __init__(self, folder: str | os.PathLike[str] | None, rows: Sequence[dict[str, Any]]):
        """``rows``: the report's event and match rows (only their hashes' proofs are read)."""
        from bot.evidence.ledger import EvidenceLedger

        self.entries: dict[str, dict[str, Any]] = {}
        self.proofs: dict[str, Any] = {}
        if not folder:
            return
        ledger = EvidenceLedger(folder)
        ids = {str(r.get("event_id")) for r in rows}
        self.entries = {str((e.get("record") or {}).get("event_id")): e for e in ledger.chain()
                        if str((e.get("record") or {}).get("event_id")) in ids}
        shas = {r.get("raw_sha256") for r in rows} | {s for r in rows for s in r["media_sha256"]}
        shas |= {e.get("hash") for e in self.entries.values()}
        shas |= {c.get("sha256") for e in self.entries.values() for c in (e.get("record") or {}).get("cards", [])}
        self.proofs = ledger.proofs(s for s in shas if s)

    def proof(self, what: str, sha256: str | None) -> dict[str, Any]:
        p = self.proofs.get(sha256 or "")
        return {"what": what, "sha256": sha256, "gen_time": p.gen_time if p else None, "tsa": p.tsa if p else None,
                "root": p.root if p else None}


def _proofs(row: dict[str, Any], evidence: Evidence, entry: dict[str, Any] | None) -> list[dict[str, Any]]:
    out = [evidence.proof("Raw post JSON", row.get("raw_sha256"))]
    out += [evidence.proof(f"Attachment {n}", sha) for n, sha in enumerate(row["media_sha256"], start=1)]
    if entry is not None:
        out.append(evidence.proof(f"Log entry {entry.get('seq')}", entry.get("hash")))
        out += [evidence.proof(f"Post card, version {c.get('version')}", c.get("sha256")) for c in (entry.get("record") or {}).get("cards", [])]
    return out


def _media(row: dict[str, Any], thumbs: Thumbnails) -> list[dict[str, Any]]:
    matches_by_media: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for m in row["known_matches"]:
        src, problem = thumbs.get(m.get("known_archive_path"))
        matches_by_media[m["media_sha256"]].append({**m, "thumb": src, "thumb_problem": problem})
    media = []
    for sha, path in zip(row["media_sha256"], row["media_archive_paths"]):
        src, problem = thumbs.get(path)
        media.append({"sha256": sha, "path": path, "thumb": src, "thumb_problem": problem, "matches": matches_by_media.get(sha, [])})
    return media


def _card(row: dict[str, Any], thumbs: Thumbnails, evidence: Evidence) -> dict[str, Any]:
    media = _media(row, thumbs)
    details = row["details"] or {}
    entry = evidence.entries.get(str(row["event_id"]))
    cards = []
    for c in ((entry or {}).get("record") or {}).get("cards", []):
        src = thumbs.png(c.get("archive_path", ""))
        if src:
            cards.append({"src": src, "label": c.get("label") or f"Version {c.get('version')}", "sha256": c.get("sha256")})
    return {
        **row,
        "post_cards": cards,
        "proofs": _proofs(row, evidence, entry),
        "chain_seq": entry.get("seq") if entry else None,
        "label": KIND_LABELS.get(row["kind"], row["kind"]),
        "color": KIND_COLORS.get(row["kind"], "#333"),
        "lifetime": human_duration(row["lifetime_seconds"]),
        "media": media,
        "before": details.get("before") if row["kind"] == "edited" else None,
        "after": details.get("after") if row["kind"] == "edited" else None,
        "details_json": json.dumps(details, indent=2, sort_keys=True, ensure_ascii=False),
    }


#: where a long account name may wrap: after a URL's or handle's separators, and between camel-case words or
#: letters and digits (``WWWMinistryOf|Defence|UKOfficial``, ``gov@|social.|example``)
_BREAKS = re.compile(r"(?<=[/.@?&=_\-])(?=[^/])|(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])|(?<=[A-Za-z])(?=[0-9])")


def breakable(text: object) -> Markup:
    """``text`` escaped, with ``<wbr>`` where it may wrap (:data:`_BREAKS`): a narrow column breaks a handle or
    a feed URL between its words, not after whichever letter reaches the edge."""
    return Markup("<wbr>").join(escape(part) for part in _BREAKS.split(str(text)))


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("bot", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html", "j2"), default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["breakable"] = breakable
    return env


def render_html(
    rows: Sequence[dict[str, Any]],
    store: StoreReader | None = None,
    archive_root: str | os.PathLike[str] | None = None,
    filters: Any = None,
    now: datetime | None = None,
    evidence_dir: str | os.PathLike[str] | None = None,
    title: str | None = None,
    organisation: str | None = None,
) -> str:
    from bot.export.matches import live_match_rows

    thumbs = Thumbnails(archive_root)
    match_rows = live_match_rows(store, filters, rows) if store is not None else []
    evidence = Evidence(evidence_dir, [*rows, *match_rows])
    matches = [{**m, "media": _media(m, thumbs), "proofs": _proofs(m, evidence, None)} for m in match_rows]
    template = _environment().get_template("deletion_report.html.j2")
    return template.render(
        title=title or "Deletion log",
        organisation=organisation or "",
        generated_at=iso(now or utcnow()),
        version=__version__,
        filters={k: v for k, v in (filters.to_dict() if filters else {}).items() if v},
        summary=summarize(rows),
        timeline=timeline(rows),
        cards=[_card(r, thumbs, evidence) for r in rows],
        matches=matches,
        timestamps=bool(evidence.proofs),
    )
