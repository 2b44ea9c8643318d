"""The web console (``afterimage web``): review queue, case and post pages, deletions, known media, checks,
and the JSON API, on the same store as the daemon.

Flask with server-rendered Jinja templates (autoescaped: post text and labels are untrusted), Flask-Login
for sessions, Flask-WTF for CSRF tokens on every form, argon2-cffi for passwords. No front-end build: one
stylesheet and one small script (keyboard shortcuts, upload progress) are served as static files.

Security, in one place (:func:`create_app`): every route requires login except ``/login`` and ``/healthz``;
session cookies are HttpOnly, SameSite=Lax, and Secure when ``web.base_url`` is https (then the console runs
behind a TLS reverse proxy and trusts its one ``X-Forwarded-*`` hop); a strict Content-Security-Policy
(no inline script, no framing); the API (``/api/v1``) takes Bearer tokens instead of cookies, so it is exempt
from CSRF and never reads the session.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, render_template, request
from flask_wtf.csrf import CSRFProtect
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from bot.archive import Archive
from bot.config import Config
from bot.store import StateStore, open_store

#: largest upload (known media, checks); larger requests get 413
MAX_UPLOAD = 200 * 1000**2


def _secret_key(config: Config) -> str:
    """``web.secret_key``, else a random key kept in ``<data_dir>/web-secret`` (created 0600), so sessions
    survive a restart."""
    if config.web.secret_key is not None:
        return config.web.secret_key.get_secret_value()
    path = Path(config.data_dir) / "web-secret"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_hex(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key)
        return key


def create_app(config: Config, store: StateStore | None = None) -> Flask:
    from bot.web import api, auth, filters, pages

    app = Flask(__name__)
    secure = bool(config.web.base_url and config.web.base_url.startswith("https://"))
    app.config.update(
        SECRET_KEY=_secret_key(config),
        SESSION_COOKIE_NAME="afterimage_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=secure,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=secure,
        PREFERRED_URL_SCHEME="https" if secure else "http",
        MAX_CONTENT_LENGTH=MAX_UPLOAD,
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
        WTF_CSRF_SSL_STRICT=True,
    )
    if secure:  # behind the TLS reverse proxy: scheme and client address come from its one hop
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)  # type: ignore[method-assign]
    app.extensions["afterimage"] = {
        "config": config,
        "store": store or open_store(config.store_url),
        "archive": Archive(config.archive_path),
    }
    csrf = CSRFProtect(app)
    auth.init(app)
    app.register_blueprint(auth.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)
    csrf.exempt(api.bp)

    @app.get("/healthz")
    def healthz() -> Any:
        try:
            app.extensions["afterimage"]["store"].outbox_size()
        except Exception as e:  # the store is unreachable: unhealthy, say what kind of error
            return jsonify({"status": "error", "error": type(e).__name__}), 503
        return jsonify({"status": "ok"})

    filters.register(app)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Any:
        if request.path.startswith("/api/"):
            return jsonify({"error": error.description}), error.code
        page = render_template("error.html", code=error.code, name=error.name, description=error.description)
        return page, error.code

    @app.after_request
    def security_headers(response: Response) -> Response:
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "same-origin"
        if secure:
            response.headers["Strict-Transport-Security"] = "max-age=31536000"
        return response

    return app
