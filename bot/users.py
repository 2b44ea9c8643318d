"""Console users: Argon2id password hashes (argon2-cffi's defaults, RFC 9106 low-memory profile) and API
tokens.

An API token is 32 random bytes (``secrets.token_urlsafe``) shown once and stored as its SHA-256: a token has
full entropy, so a fast hash is as safe as a slow one and lets a request find its user with one lookup;
passwords, chosen by people, get the slow, salted Argon2id.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import replace

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from bot.models import utcnow
from bot.store.review import ROLES, User, UserStore

_hasher = PasswordHasher()  # Argon2id
#: a hash verified against when the user does not exist, so a login takes as long either way
_DUMMY_HASH = _hasher.hash("afterimage-no-such-user")
MIN_PASSWORD = 10
TOKEN_PREFIX = "ai_"


class UserError(ValueError):
    """A user cannot be added or changed as asked (bad role, short password, unknown name)."""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add_user(store: UserStore, name: str, role: str, password: str, *, replace_existing: bool = False) -> User:
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if not name or not all(c.isalnum() or c in "._-@" for c in name) or len(name) > 64:
        raise UserError("a user name is 1-64 letters, digits and . _ - @")
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password must have at least {MIN_PASSWORD} characters")
    existing = store.get_user(name)
    if existing is not None and not replace_existing:
        raise UserError(f"user {name!r} exists (use --replace to change its role and password)")
    user = User(name, role, _hasher.hash(password), existing.created_at if existing else utcnow())
    if existing is not None:  # a password change keeps the API token
        user = replace(user, token_hash=existing.token_hash, token_created_at=existing.token_created_at)
    store.put_user(user)
    return user


def new_token(store: UserStore, name: str) -> str:
    """A new API token for ``name`` (replacing the old one), returned once and stored hashed."""
    user = store.get_user(name)
    if user is None:
        raise UserError(f"no user {name!r}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    store.put_user(replace(user, token_hash=hash_token(token), token_created_at=utcnow()))
    return token


def authenticate(store: UserStore, name: str, password: str) -> User | None:
    """The user when ``password`` is right, else None (same work whether or not the user exists)."""
    user = store.get_user(name)
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    return user


def user_for_token(store: UserStore, token: str) -> User | None:
    return store.user_by_token(hash_token(token)) if token else None


def role_at_least(user: User, role: str) -> bool:
    return ROLES.index(user.role) >= ROLES.index(role)
