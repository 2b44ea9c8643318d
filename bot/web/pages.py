"""The console's pages. Each view reads the store through its interfaces and renders a template; decisions
go through :class:`bot.cases.CaseDesk`, known media through :mod:`bot.known` (no logic of their own here)."""

from __future__ import annotations

import mimetypes
import tempfile
import threading
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from werkzeug.utils import secure_filename

from bot.alerts.picture import PICTURE_EXT, PICTURE_TYPE, comparison_picture
from bot.archive import Archive
from bot.cases import ACTIONS, CaseConflict, CaseDesk
from bot.matching.check import MAX_BYTES, check_one
from bot.config import Config
from bot.errors import AfterimageError
from bot.export.cases import CASE_FORMATS, render_cases
from bot.export.rows import ExportFilters, ReadOnlyStore, deletion_log_rows
from bot.export.writers import FORMATS, render
from bot.known import AddOptions, add_paths, items_of
from bot.matching.matcher import Matcher
from bot.media.fetch import MediaFetcher
from bot.models import utcnow
from bot.parked import KINDS, retry_refs
from bot.status import take_snapshot
from bot.store.base import StateStore
from bot.store.records import EVENT_KINDS, KnownKind
from bot.store.deletion_log import EventFilter
from bot.store.review import CASE_STATUSES, CASE_TIERS, DISMISS_SCOPES, ROLES, CaseNotFound, CaseQuery
from bot.users import UserError, add_user
from bot.web.auth import require_login, role_required
from bot.web.present import export_filters

bp = Blueprint("pages", __name__)
bp.before_request(require_login)
PAGE_SIZE = 50
_matcher_lock = threading.Lock()


def ctx() -> dict[str, Any]:
    return current_app.extensions["afterimage"]


def store() -> StateStore:
    """The console's store: every role (it shows posts, cases, known media, alerts and the status)."""
    return ctx()["store"]


def archive() -> Archive:
    return ctx()["archive"]


def config() -> Config:
    return ctx()["config"]


def desk() -> CaseDesk:
    return CaseDesk(store(), archive(), base_url=config().web.base_url)


def matcher() -> Matcher:
    """One matcher per console process (it keeps the known-media indexes; refreshed on each check)."""
    with _matcher_lock:
        if "matcher" not in ctx():
            ctx()["matcher"] = Matcher(store(), archive(), config().matching)
        return ctx()["matcher"]


def _case_or_404(case_id: str) -> Any:
    case = store().get_case(case_id)
    if case is None:
        abort(404, f"no case {case_id}")
    return case


# ----------------------------------------------------------------------------- dashboard
@bp.get("/")
def dashboard() -> str:
    now = utcnow()
    configured = {p: list(s.accounts) for p, s in config().watchers.enabled().items()}
    snapshot = take_snapshot(store(), configured, now)
    events = store().list_events(EventFilter(since=now - timedelta(days=30)))[-10:][::-1]
    return render_template(
        "dashboard.html",
        snapshot=snapshot,
        backlog=len(store().pending_posts(1000)),
        open_cases=store().count_cases("open"),
        cases=store().list_cases(CaseQuery(limit=10)),
        events=events,
        parked=KINDS["alerts"].list_items(store())[:10],  # errors redacted, delivery progress left out
    )


# ----------------------------------------------------------------------------- cases
@bp.get("/queue")
def queue() -> str:
    tier = request.args.get("tier") or None
    if tier not in (None, *CASE_TIERS):
        abort(400, "tier must be match or suggest")
    cases = store().list_cases(CaseQuery(status="open", tier=tier, limit=PAGE_SIZE))
    return render_template("queue.html", cases=cases, tier=tier, scopes=DISMISS_SCOPES, total=store().count_cases("open"))


@bp.get("/cases")
def cases() -> str:
    status = request.args.get("status") or None
    tier = request.args.get("tier") or None
    page = max(1, request.args.get("page", 1, type=int) or 1)
    try:
        found = store().list_cases(CaseQuery(status=status, tier=tier, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE))
    except ValueError as e:
        abort(400, str(e))
    return render_template("cases.html", cases=found, status=status, tier=tier, page=page,
                           statuses=CASE_STATUSES, tiers=CASE_TIERS, page_size=PAGE_SIZE, formats=CASE_FORMATS)


@bp.get("/cases/<case_id>")
def case(case_id: str) -> str:
    found = _case_or_404(case_id)
    post = store().get_post(found.platform, found.post_id)
    return render_template("case.html", case=found, post=post, scopes=DISMISS_SCOPES)


@bp.get("/cases/<case_id>.json")
def case_raw(case_id: str) -> Response:
    found = _case_or_404(case_id)
    return _download(current_app.json.dumps(found.to_dict(), indent=2), f"case-{found.id}.json", "application/json")


@bp.get(f"/cases/<case_id>/comparison.{PICTURE_EXT}")
def comparison(case_id: str) -> Response:
    found = _case_or_404(case_id)
    response = Response(comparison_picture(archive(), found.payload), mimetype=PICTURE_TYPE)
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response


@bp.post("/cases/<case_id>/<action>")
@role_required("reviewer")
def decide(case_id: str, action: str) -> Any:
    if action not in ACTIONS:
        abort(404)
    try:
        decided = desk().decide(
            case_id, action, current_user.name, request.form.get("note"), request.form.get("scope") or "account"
        )
        flash(f"Case {decided.id}: {decided.status}.", "ok")
    except CaseNotFound:
        abort(404, f"no case {case_id}")
    except CaseConflict as e:
        flash(str(e), "error")
    except ValueError as e:
        abort(400, str(e))
    back = request.form.get("back")
    if back == "queue":
        return redirect(url_for("pages.queue", tier=request.form.get("tier") or None))
    return redirect(url_for("pages.case", case_id=case_id))


@bp.get("/matches/export.<fmt>")
def matches_export(fmt: str) -> Response:
    if fmt not in CASE_FORMATS:
        abort(404)
    status = request.args.get("status") or None
    tier = request.args.get("tier") or None
    try:
        found = store().list_cases(CaseQuery(status=status, tier=tier, limit=1_000_000))
    except ValueError as e:
        abort(400, str(e))
    mime = "text/csv" if fmt == "csv" else "application/x-ndjson"
    return _download(render_cases(fmt, found), f"matches.{fmt}", mime)


# ----------------------------------------------------------------------------- posts and media
@bp.get("/posts/<platform>/<path:post_id>")
def post(platform: str, post_id: str) -> str:
    stored = store().get_post(platform, post_id)
    if stored is None:
        abort(404, "no such post")
    links = store().get_post_media(platform, post_id)
    media = [(link, store().get_media(link.sha256) if link.sha256 else None) for link in links]
    return render_template(
        "post.html",
        stored=stored,
        versions=store().get_versions(platform, post_id),
        media=media,
        recheck=store().get_recheck(platform, post_id),
        events=[e for e in store().list_events(EventFilter(platform=platform, account=stored.post.account)) if e.post_id == post_id],
        cases=store().list_cases(CaseQuery(platform=platform, post_id=post_id)),
    )


@bp.get("/posts/<platform>/<path:post_id>/v<int:version>.json")
def post_raw(platform: str, post_id: str, version: int) -> Response:
    for v in store().get_versions(platform, post_id):
        if v.version == version:
            return _download(v.post.raw_bytes(), f"{platform}-{post_id}-v{version}.json", "application/json")
    abort(404, "no such version")


@bp.get("/media/<path:relpath>")
def media(relpath: str) -> Response:
    """An archived file (verified against its SHA-256 on read). Shown inline only when it is an image or
    video; served with nosniff and the console's CSP, so an archived HTML file cannot run as a page."""
    try:
        data = archive().get(relpath)
    except (AfterimageError, ValueError):
        abort(404, "not in the archive")
    mime = mimetypes.guess_type(relpath)[0] or "application/octet-stream"
    inline = mime.startswith(("image/", "video/")) and mime != "image/svg+xml"
    response = Response(data, mimetype=mime if inline else "application/octet-stream")
    if not inline:
        response.headers["Content-Disposition"] = f'attachment; filename="{Path(relpath).name}"'
    response.headers["Cache-Control"] = "private, max-age=86400, immutable"
    return response


# ----------------------------------------------------------------------------- deletions
def _filters() -> ExportFilters:
    try:
        return export_filters(request.args)
    except ValueError as e:
        abort(400, str(e))


@bp.get("/deletions")
def deletions() -> str:
    filters = _filters()
    rows = deletion_log_rows(ReadOnlyStore(store()), filters)
    query = request.query_string.decode()
    return render_template("deletions.html", rows=rows[::-1], filters=filters, kinds=EVENT_KINDS, formats=FORMATS,
                           query=query, case_formats=CASE_FORMATS)


@bp.get("/deletions/export.<fmt>")
def deletions_export(fmt: str) -> Response:
    if fmt not in FORMATS:
        abort(404)
    text, _ = render(fmt, store(), _filters(), archive_root=config().archive_path)
    mime = {"csv": "text/csv", "jsonl": "application/x-ndjson", "html": "text/html"}[fmt]
    name = {"csv": "deletions.csv", "jsonl": "deletions.jsonl", "html": "deletion-report.html"}[fmt]
    return _download(text, name, mime)


def _download(body: str | bytes, filename: str, mime: str) -> Response:
    response = Response(body, mimetype=mime)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


# ----------------------------------------------------------------------------- known media
@bp.get("/known")
def known() -> str:
    items = items_of(store().iter_known(KnownKind.KNOWN))
    return render_template("known.html", items=items[::-1])


@bp.post("/known/upload")
@role_required("admin")
def known_upload() -> Any:
    files = [f for f in request.files.getlist("files") if f and f.filename]
    if not files:
        flash("Choose at least one image or video file.", "error")
        return redirect(url_for("pages.known"))
    label = (request.form.get("label") or "").strip() or None
    source = (request.form.get("source") or "").strip() or None
    note = (request.form.get("note") or "").strip() or None
    added, duplicates, errors = 0, 0, []
    with tempfile.TemporaryDirectory(prefix="afterimage-upload-") as tmp:
        for i, f in enumerate(files):
            name = secure_filename(f.filename or "") or "upload"
            path = Path(tmp) / f"{i:03d}" / name
            path.parent.mkdir()
            f.save(path)
            # one item per file: labelled with its file name unless a label was given; the source says who
            # uploaded it when none was given (never the temporary path)
            given = AddOptions(label or name, source or f"uploaded by {current_user.name}: {name}", note)
            report = add_paths(store(), archive(), [path], given)
            added += len(report.added)
            duplicates += len(report.duplicates)
            errors += [(name, error) for _, error in report.errors]
    flash(f"Added {added} entr{'y' if added == 1 else 'ies'} from {len(files)} file(s); {duplicates} already known.", "ok")
    for name, error in errors:
        flash(f"{name}: {error}", "error")
    return redirect(url_for("pages.known"))


def _item_or_404(key: str) -> Any:
    for item in items_of(store().iter_known(KnownKind.KNOWN)):
        if item.key == key:
            return item
    abort(404, "no such known item")


@bp.post("/known/<key>/edit")
@role_required("admin")
def known_edit(key: str) -> Any:
    item = _item_or_404(key)
    label = (request.form.get("label") or "").strip()
    if not label:
        flash("A known item needs a label.", "error")
        return redirect(url_for("pages.known"))
    source = (request.form.get("source") or "").strip() or None
    note = (request.form.get("note") or "").strip() or None
    for entry in item.entries:
        entry_label = f"{label} @ {entry.frame_ts:.1f}s" if entry.frame_ts is not None else label
        store().add_known(replace(entry, label=entry_label, source=source, note=note))
    flash(f"Saved {label}.", "ok")
    return redirect(url_for("pages.known"))


@bp.post("/known/<key>/remove")
@role_required("admin")
def known_remove(key: str) -> Any:
    item = _item_or_404(key)
    for entry in item.entries:
        store().remove_known(entry.id)
    flash(f"Removed {item.label} ({len(item.entries)} entr{'y' if len(item.entries) == 1 else 'ies'}).", "ok")
    return redirect(url_for("pages.known"))


# ----------------------------------------------------------------------------- check an image
@bp.route("/check", methods=["GET", "POST"])
def check() -> Any:
    result = None
    if request.method == "POST":
        upload = request.files.get("file")
        url = (request.form.get("url") or "").strip()
        if upload and upload.filename:
            data = upload.read(MAX_BYTES + 1)
            result = check_one(matcher(), upload.filename, lambda: _within_limit(data))
        elif url:
            result = check_one(matcher(), url, lambda: _fetch(url))
        else:
            flash("Choose a file or give a URL.", "error")
    return render_template("check.html", result=result)


def _within_limit(data: bytes) -> bytes:
    if len(data) > MAX_BYTES:
        raise ValueError(f"larger than {MAX_BYTES} bytes")
    return data


def _fetch(url: str) -> bytes:
    """A URL typed into the console is fetched by the safe media fetcher (https, public addresses, size
    limits): the console must not become a way into the internal network."""
    fetcher = MediaFetcher(config().media)
    try:
        return fetcher.fetch(url).data
    finally:
        fetcher.close()


# ----------------------------------------------------------------------------- users (admin)
@bp.get("/users")
@role_required("admin")
def users() -> str:
    return render_template("users.html", users=store().list_users(), roles=ROLES)


@bp.post("/users/add")
@role_required("admin")
def users_add() -> Any:
    try:
        user = add_user(store(), (request.form.get("name") or "").strip(), request.form.get("role") or "",
                        request.form.get("password") or "")
        flash(f"User {user.name} ({user.role}) added.", "ok")
    except UserError as e:
        flash(str(e), "error")
    return redirect(url_for("pages.users"))


@bp.post("/users/<name>/remove")
@role_required("admin")
def users_remove(name: str) -> Any:
    if name == current_user.name:
        flash("You cannot remove yourself.", "error")
    elif store().remove_user(name):
        flash(f"User {name} removed: its sessions and API token no longer work.", "ok")
    else:
        abort(404, f"no user {name}")
    return redirect(url_for("pages.users"))


# ----------------------------------------------------------------------------- parked work
@bp.get("/parked")
def parked() -> str:
    """Failed posts (the work queue) and parked alerts (the outbox), each with its last error (redacted)."""
    sections = [(kind, kind.list_items(store())) for kind in KINDS.values()]
    return render_template("parked.html", sections=sections)


@bp.post("/parked/<group>/retry")
@role_required("reviewer")
def parked_retry(group: str) -> Any:
    """Retry one parked item (form field ``ref``, as the page lists it) or all of a kind (``all``)."""
    kind = KINDS.get(group)
    if kind is None:
        abort(404)
    ref = request.form.get("ref")
    if not ref and not request.form.get("all"):
        abort(400, "give an item to retry, or all")
    retried, gone = retry_refs(store(), kind, {ref} if ref else None)
    if retried:
        flash(f"{retried} {kind.noun}(s) {kind.done}: a running daemon picks them up at once.", "ok")
    if gone:
        flash(f"{gone} {kind.noun}(s) no longer parked (retried meanwhile?).", "error")
    if not retried and not gone:
        flash(f"No {kind.noun}s to retry.", "ok")
    return redirect(url_for("pages.parked"))
