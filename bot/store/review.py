"""Store roles of the review loop: cases (every match awaiting a person's judgement), the dismissals they
teach, and the web console's users. Two roles (:class:`CaseStore`, with its reading half :class:`CaseReader`,
and :class:`UserStore`), composed into :class:`~bot.store.base.StateStore` like the other roles; both
backends implement them (``bot.store.sqlite_review``, ``bot.store.redis_review``) and pass the contract suite
in ``tests/store/test_review_contract.py``.

A **case** is one posted attachment against one known item (the key ``platform:post_id:media_sha256:item``,
the same parts as the match alert's idempotence key), so reopening the store after a crash and matching the
post again finds the case it already opened. A **dismissal** is what a dismissed case teaches: the posted
picture (its SHA-256 and PDQ hash) must not raise an alert for that known item again, for one account or for
every account. The service deciding with them is :mod:`bot.cases`.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from bot.models import utcnow
from bot.store.records import JsonRecord

CASE_STATUSES = ("open", "confirmed", "dismissed")
CASE_TIERS = ("match", "suggest")
DISMISS_SCOPES = ("account", "global")
ROLES = ("viewer", "reviewer", "admin")


@dataclass(frozen=True)
class CaseEvent(JsonRecord):
    """One line of a case's history: who did what, when (``action``: opened, confirmed, dismissed, reopened,
    suppressed), with the note or reason and, for a dismissal, its scope."""

    at: datetime
    by: str
    action: str
    note: str | None = None
    scope: str | None = None

    _TIMES = ("at",)


def case_key(platform: str, post_id: str, media_sha256: str, known_item: str) -> str:
    """The identity of a case: one per posted attachment and known item."""
    return ":".join((platform, post_id, media_sha256, known_item))


@dataclass(frozen=True)
class Case(JsonRecord):
    """A match (or recycled hit) and the desk's judgement of it.

    ``payload`` is the match payload of :func:`bot.alerts.payloads.match_payload` (post, known entry, tier,
    signal, distance, inliers, region): what the review page shows. ``alert_key`` names the chat alert it
    raised (None: it did not page the chat). ``note`` is the last decision's note or reason, ``scope`` the
    scope of a standing dismissal. ``id`` is assigned by the store when empty."""

    kind: str  # match | recycled
    tier: str  # match | suggest
    platform: str
    account: str
    post_id: str
    media_sha256: str
    known_item: str
    payload: dict[str, Any]
    created_at: datetime = field(default_factory=utcnow)
    status: str = "open"
    id: str = ""
    updated_at: datetime | None = None
    note: str | None = None
    scope: str | None = None
    alert_key: str | None = None
    history: tuple[CaseEvent, ...] = ()

    @property
    def key(self) -> str:
        return case_key(self.platform, self.post_id, self.media_sha256, self.known_item)

    @property
    def known(self) -> dict[str, Any]:
        return dict(self.payload.get("known") or {})

    _TIMES = ("created_at",)
    _OPTIONAL_TIMES = ("updated_at",)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "history": [e.to_dict() for e in self.history]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Case:
        return cls(**{**cls._parsed(d), "history": tuple(CaseEvent.from_dict(e) for e in d.get("history") or ())})

    @property
    def changed_at(self) -> datetime:
        """When the case last changed: its last decision, else its opening."""
        return self.updated_at or self.created_at

    def with_event(self, event: CaseEvent, **changes: Any) -> Case:
        """This case after ``event`` (appended to the history), with ``changes`` applied."""
        return replace(self, history=(*self.history, event), updated_at=event.at, **changes)


@dataclass(frozen=True)
class Dismissal(JsonRecord):
    """What dismissing case ``case_id`` taught: the posted picture (``media_sha256``, and ``pdq`` for its
    near-duplicates) is not ``known_item``. ``scope`` ``account`` holds for ``platform``/``account`` only,
    ``global`` for every account."""

    case_id: str
    known_item: str
    media_sha256: str
    pdq: str | None
    scope: str
    platform: str
    account: str
    reason: str | None
    by: str
    at: datetime = field(default_factory=utcnow)

    def covers(self, platform: str, account: str) -> bool:
        return self.scope == "global" or (self.platform, self.account) == (platform, account)

    _TIMES = ("at",)


@dataclass(frozen=True)
class User(JsonRecord):
    """A console user. ``password_hash`` is an Argon2id hash; ``token_hash`` the SHA-256 of the user's API
    token (one per user: a new token replaces the old one), None when the user has none."""

    name: str
    role: str
    password_hash: str
    created_at: datetime = field(default_factory=utcnow)
    token_hash: str | None = None
    token_created_at: datetime | None = None

    _TIMES = ("created_at",)
    _OPTIONAL_TIMES = ("token_created_at",)


class CaseNotFound(KeyError):
    """No case has this id."""


def check_case_filters(status: str | None, tier: str | None) -> None:
    """A clear error for a status or tier that does not exist (rather than an empty list)."""
    if status is not None and status not in CASE_STATUSES:
        raise ValueError(f"status must be one of {', '.join(CASE_STATUSES)}, not {status!r}")
    if tier is not None and tier not in CASE_TIERS:
        raise ValueError(f"tier must be one of {', '.join(CASE_TIERS)}, not {tier!r}")


@dataclass(frozen=True)
class CaseQuery:
    """Which cases to list, newest first: of one status, tier, platform or post (each None: any), a page of
    ``limit`` after skipping ``offset``. A status or tier that does not exist is a clear error here, not an
    empty list."""

    status: str | None = None
    tier: str | None = None
    platform: str | None = None
    post_id: str | None = None
    limit: int = 100
    offset: int = 0

    def __post_init__(self) -> None:
        check_case_filters(self.status, self.tier)

    def equal_to(self) -> dict[str, str]:
        """The case fields this query fixes, and their values."""
        given = {"status": self.status, "tier": self.tier, "platform": self.platform, "post_id": self.post_id}
        return {name: value for name, value in given.items() if value is not None}

    def matches(self, case: Case) -> bool:
        return all(getattr(case, name) == value for name, value in self.equal_to().items())


class CaseReader(Protocol):
    """Reading cases and the dismissals they taught."""

    @abstractmethod
    def get_case(self, case_id: str) -> Case | None: ...

    @abstractmethod
    def list_cases(self, query: CaseQuery = CaseQuery()) -> list[Case]:
        """The cases ``query`` selects, newest first (the first 100 by default)."""

    @abstractmethod
    def count_cases(self, status: str | None = None) -> int: ...

    @abstractmethod
    def dismissals_for(self, known_item: str) -> list[Dismissal]:
        """Standing dismissals of a known item, oldest first."""

    @abstractmethod
    def cases_changed_since(self, since: datetime | None) -> list[Case]:
        """Cases last changed (opened or decided: ``updated_at``, else ``created_at``) at or after ``since``,
        every case when None; by that time, oldest first. The evidence job reads it to copy new history lines
        into its hash chain without reading every case each minute."""


class CaseStore(CaseReader, Protocol):
    """Cases and the dismissals they teach."""

    @abstractmethod
    def open_case(self, case: Case) -> tuple[Case, bool]:
        """Store ``case`` unless a case with its key exists (assigning ``id`` when empty). Returns the stored
        case and True when it was added: opening twice is harmless (a retried pipeline step)."""

    @abstractmethod
    def update_case(self, case: Case, dismissal: Dismissal | None) -> Case:
        """Atomically replace the stored case ``case.id`` by ``case`` and set its dismissal: the dismissal a
        case taught is removed (reopened, or confirmed after all) and ``dismissal`` (when given) stored in its
        place. :class:`CaseNotFound` when there is no such case."""


class UserStore(Protocol):
    """Console users and their API tokens."""

    @abstractmethod
    def put_user(self, user: User) -> None:
        """Add or replace a user (and its token: a replaced token stops working at once)."""

    @abstractmethod
    def get_user(self, name: str) -> User | None: ...

    @abstractmethod
    def user_by_token(self, token_hash: str) -> User | None: ...

    @abstractmethod
    def list_users(self) -> list[User]:
        """Every user, by name."""

    @abstractmethod
    def remove_user(self, name: str) -> bool:
        """Remove a user and its token; False when there was none."""

