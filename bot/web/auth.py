"""Logins: the login form (throttled), sessions (Flask-Login), roles, and Bearer tokens for the API.

A session names the user and a fragment of its password hash, so changing a password (``users add
--replace``) or removing the user ends its sessions. Failed logins are counted in the store's request
budgets (shared by every console process on the store, kept across restarts): more than
:data:`MAX_FAILURES` for one user name or one client address within :data:`WINDOW` and further attempts are
refused with 429 until the window passes, whether the password is right or not.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

from flask import Blueprint, Flask, abort, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from bot.models import utcnow
from bot.store.coordination import CoordinationStore
from bot.store.review import User, UserStore
from bot.users import authenticate, role_at_least, user_for_token

bp = Blueprint("auth", __name__)
login_manager = LoginManager()
MAX_FAILURES = 5
WINDOW = timedelta(minutes=15)
F = TypeVar("F", bound=Callable[..., Any])


class LoginStore(UserStore, CoordinationStore, Protocol):
    """What logging in uses: the users, and the budgets that throttle failed attempts."""


def store() -> LoginStore:
    return current_app.extensions["afterimage"]["store"]


class SessionUser(UserMixin):
    def __init__(self, user: User):
        self.user = user
        self.name = user.name
        self.role = user.role

    def get_id(self) -> str:
        return f"{self.user.name}\x1f{self.user.password_hash[-16:]}"

    def can(self, role: str) -> bool:
        return role_at_least(self.user, role)


@login_manager.user_loader
def _load(session_id: str) -> SessionUser | None:
    name, _, fragment = session_id.partition("\x1f")
    user = store().get_user(name)
    if user is None or user.password_hash[-16:] != fragment:
        return None
    return SessionUser(user)


def init(app: Flask) -> None:
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please log in."
    login_manager.session_protection = "basic"


def require_login() -> Any:
    """``before_request`` of every page blueprint: no page without a session."""
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    return None


def role_required(role: str) -> Callable[[F], F]:
    """A page (or form action) for ``role`` and above; 403 for a lower role."""

    def wrap(view: F) -> F:
        @functools.wraps(view)
        def inner(*args: Any, **kwargs: Any) -> Any:
            if not current_user.is_authenticated:
                return login_manager.unauthorized()
            if not current_user.can(role):
                abort(403, f"this needs the {role} role")
            return view(*args, **kwargs)

        return inner  # type: ignore[return-value]

    return wrap


def api_user(role: str) -> User | tuple[Any, int]:
    """The API caller from ``Authorization: Bearer TOKEN``: the user, or the JSON error answer (401 without a
    valid token, 403 for a role below ``role``)."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    user = user_for_token(store(), token.strip()) if scheme.lower() == "bearer" else None
    if user is None:
        response = jsonify({"error": "unauthorized: send Authorization: Bearer <token> (afterimage users token NAME)"})
        response.headers["WWW-Authenticate"] = 'Bearer realm="afterimage"'
        return response, 401
    if not role_at_least(user, role):
        return jsonify({"error": f"forbidden: this needs the {role} role, {user.name} is {user.role}"}), 403
    return user


class LoginForm(FlaskForm):
    name = StringField("User", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])


def _throttle_keys(name: str) -> list[str]:
    return [f"login-failures:user:{name.lower()}", f"login-failures:addr:{request.remote_addr or '?'}"]


def _throttled(name: str) -> bool:
    since = utcnow() - WINDOW
    return any(store().budget_spent(key, since) >= MAX_FAILURES for key in _throttle_keys(name))


def _safe_next(target: str | None) -> str:
    """Only a path on this site (never ``//host`` or ``https://host``): no open redirect after login."""
    if target and target.startswith("/") and not target.startswith("//") and not urlsplit(target).netloc:
        return target
    return url_for("pages.dashboard")


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        name = form.name.data or ""
        if _throttled(name):
            flash(f"Too many failed logins: try again in {int(WINDOW.total_seconds() // 60)} minutes.", "error")
            status = 429
        else:
            user = authenticate(store(), name, form.password.data or "")
            if user is None:
                for key in _throttle_keys(name):
                    store().spend_budget(key, utcnow())
                flash("Wrong user name or password.", "error")
                status = 401
            else:
                login_user(SessionUser(user))
                return redirect(_safe_next(request.args.get("next")))
    elif request.method == "POST":
        status = 400
    return render_template("login.html", form=form), status


@bp.post("/logout")
def logout() -> Any:
    logout_user()
    return redirect(url_for("auth.login"))
