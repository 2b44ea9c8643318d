"""The JSON API (``/api/v1``, documented in README): Bearer tokens (``afterimage users token NAME``), no
cookies, so no CSRF. 401 without a valid token, 403 for a role too low, 400/404/409 with ``{"error"}``."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, request

from bot.cases import CaseConflict, CaseDesk
from bot.matching.check import MAX_BYTES, check_one
from bot.export.rows import ReadOnlyStore, deletion_log_rows
from bot.export.writers import COLUMNS
from bot.store.review import CaseNotFound, CaseQuery
from bot.web.auth import api_user
from bot.web.present import case_json, export_filters

bp = Blueprint("api", __name__, url_prefix="/api/v1")
MAX_LIMIT = 1000


def _error(status: int, message: str) -> Any:
    return jsonify({"error": message}), status


@bp.errorhandler(413)
def _too_large(_: Exception) -> Any:
    return _error(413, "request too large")


def _ctx() -> dict[str, Any]:
    return current_app.extensions["afterimage"]


@bp.get("/cases")
def cases() -> Any:
    user = api_user("viewer")
    if isinstance(user, tuple):
        return user
    limit = request.args.get("limit", 100, type=int) or 100
    offset = request.args.get("offset", 0, type=int) or 0
    try:
        found = _ctx()["store"].list_cases(
            CaseQuery(
                status=request.args.get("status") or None,
                tier=request.args.get("tier") or None,
                limit=max(1, min(limit, MAX_LIMIT)),
                offset=max(0, offset),
            )
        )
    except ValueError as e:
        return _error(400, str(e))
    return jsonify({"cases": [case_json(c) for c in found]})


@bp.get("/cases/<case_id>")
def case(case_id: str) -> Any:
    user = api_user("viewer")
    if isinstance(user, tuple):
        return user
    found = _ctx()["store"].get_case(case_id)
    return jsonify(case_json(found)) if found else _error(404, f"no case {case_id}")


@bp.post("/cases/<case_id>/<action>")
def decide(case_id: str, action: str) -> Any:
    user = api_user("reviewer")
    if isinstance(user, tuple):
        return user
    if action not in ("confirm", "dismiss", "reopen"):
        return _error(404, f"unknown action {action!r} (confirm, dismiss, reopen)")
    body = request.get_json(silent=True)
    if body is None and request.get_data():
        return _error(400, "the body must be a JSON object")
    body = body or {}
    if not isinstance(body, dict):
        return _error(400, "the body must be a JSON object")
    reason, scope = body.get("reason", body.get("note")), body.get("scope", "account")
    if reason is not None and not isinstance(reason, str) or not isinstance(scope, str):
        return _error(400, "reason and scope are strings")
    desk = CaseDesk(_ctx()["store"], _ctx()["archive"], base_url=_ctx()["config"].web.base_url)
    try:
        decided = desk.decide(case_id, action, user.name, reason, scope)
    except CaseNotFound:
        return _error(404, f"no case {case_id}")
    except CaseConflict as e:
        return _error(409, str(e))
    except ValueError as e:
        return _error(400, str(e))
    return jsonify(case_json(decided))


@bp.get("/deletions")
def deletions() -> Any:
    user = api_user("viewer")
    if isinstance(user, tuple):
        return user
    try:
        filters = export_filters(request.args)
    except ValueError as e:
        return _error(400, str(e))
    rows = deletion_log_rows(ReadOnlyStore(_ctx()["store"]), filters)
    return jsonify({"deletions": [{c: row.get(c) for c in COLUMNS} for row in rows]})


@bp.post("/check")
def check() -> Any:
    user = api_user("viewer")
    if isinstance(user, tuple):
        return user
    upload = request.files.get("file")
    if upload is None:
        return _error(400, "send the image as multipart form field 'file'")
    data = upload.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        return _error(413, f"larger than {MAX_BYTES} bytes")
    from bot.web.pages import matcher

    return jsonify(check_one(matcher(), upload.filename or "upload", lambda: data))
