"""The review loop: every match becomes a case; a person confirms or dismisses it; a dismissal teaches.

The pipeline hands each match alert it builds to :meth:`CaseDesk.admit` (its one seam), which

- opens the case (idempotent by posted attachment and known item, so a rerun finds the same case),
- drops the alert when a standing dismissal covers it: the same posted file, or a PDQ near-duplicate of it
  (within ``near_duplicate`` bits), was dismissed for this known item, on this account or globally. The case
  is still recorded, already dismissed, with a ``suppressed`` history line naming the dismissal it obeyed, so
  the desk can see what the bot stayed quiet about;
- applies the stricter thresholds of ``matching.thresholds`` (:mod:`bot.matching.thresholds`): a match of a
  noisy list's item may become a suggestion, or no case at all;
- keeps ``suggest``-tier hits out of the chat unless ``suggest_to_chat`` (they wait in the review queue);
- adds the case id, and its page's URL when ``web.base_url`` is set, to the alert's payload.

:meth:`CaseDesk.post_message` then folds a post's paged alerts into one chat message listing all its cases.

:meth:`CaseDesk.decide` applies a reviewer's confirm / dismiss / reopen, with the history line and the
dismissal in one store write. Uses only the store's review role (:class:`~bot.store.review.CaseStore`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime

from PIL import Image

from bot.archive import Archive
from bot.config import ThresholdOverride
from bot.errors import AfterimageError
from bot.hashing.decode import decode_image
from bot.hashing.signals import PdqSignal
from bot.matching.thresholds import tier_under_rules
from bot.models import utcnow
from bot.store.common import new_id
from bot.store.records import KnownKind, OutboxAlert
from bot.store.review import DISMISS_SCOPES, Case, CaseEvent, CaseNotFound, CaseStore, Dismissal

log = logging.getLogger(__name__)

#: the name history lines carry for what the bot itself did
BOT = "afterimage"
#: PDQ bits (of 256) within which a posted picture counts as the same picture as a dismissed one; the
#: ``pdq_match`` default: what the matcher itself calls the same image
NEAR_DUPLICATE_BITS = 31
ACTIONS = {"confirm": "confirmed", "dismiss": "dismissed", "reopen": "open"}


class CaseConflict(ValueError):
    """The decision does not apply to the case as it stands (e.g. confirming a dismissed case)."""


def case_path(case_id: str) -> str:
    """The console's page of a case (relative to ``web.base_url``)."""
    return f"/cases/{case_id}"


class CaseDesk:
    def __init__(
        self,
        store: CaseStore,
        archive: Archive | None = None,
        *,
        base_url: str | None = None,
        suggest_to_chat: bool = False,
        thresholds: Sequence[ThresholdOverride] = (),
        near_duplicate: int = NEAR_DUPLICATE_BITS,
        clock: Callable[[], datetime] = utcnow,
    ):
        self.store = store
        self.archive = archive
        self.base_url = base_url.rstrip("/") if base_url else None
        self.suggest_to_chat = suggest_to_chat
        self.thresholds = list(thresholds)
        self.near_duplicate = near_duplicate
        self.clock = clock

    # ------------------------------------------------------------------ pipeline seam
    def admit(
        self, alert: OutboxAlert, *, known_item: str, image: Image.Image | None = None, still_sha256: str | None = None
    ) -> OutboxAlert | None:
        """Open the case of a match alert; the alert to enqueue (with the case named), or None when it must not
        page the chat (dismissed picture, suggest tier). ``image`` and ``still_sha256`` are the matched still
        (a video's frame) for the near-duplicate test; the PDQ is only computed when a dismissal needs it."""
        p = alert.payload
        tier = tier_under_rules(self.thresholds, p.get("known") or {}, known_item, str(p.get("tier")), str(p.get("signal")),
                                p.get("distance"), p.get("inliers"))
        if tier is None:  # below the stricter bar of this item's rule: not a match at all
            return None
        if tier != p.get("tier"):
            p = {**p, "tier": tier}
            alert = replace(alert, payload=p)
        platform, account, post_id = str(p["platform"]), str(p["account"]), str(p["post_id"])
        media_sha256 = str(p["media_sha256"])
        now = self.clock()
        blocker = self._dismissed_by(known_item, platform, account, {media_sha256, still_sha256 or media_sha256}, image)
        pages = blocker is None and (p.get("tier") == "match" or self.suggest_to_chat)
        history = [CaseEvent(now, BOT, "opened")]
        if blocker is not None:
            note = f"the same picture was dismissed for this item in case {blocker.case_id}: {blocker.reason or ''}".rstrip(": ")
            history.append(CaseEvent(now, BOT, "suppressed", note, blocker.scope))
        case_id = new_id()
        case = Case(
            kind=alert.kind,
            tier=str(p.get("tier")),
            platform=platform,
            account=account,
            post_id=post_id,
            media_sha256=media_sha256,
            known_item=known_item,
            payload=dict(p),
            created_at=now,
            status="dismissed" if blocker is not None else "open",
            id=case_id,
            updated_at=now,
            note=history[-1].note if blocker is not None else None,
            scope=blocker.scope if blocker is not None else None,
            alert_key=alert.key if pages else None,
            history=tuple(history),
        )
        stored, added = self.store.open_case(case)
        if added:
            log.info("%s/%s: case %s opened (%s, %s)%s", platform, post_id, stored.id, alert.kind, stored.tier,
                     " and dismissed at once: a dismissal covers it" if blocker else "")
        if stored.alert_key is None:  # never paged: suppressed, or a suggestion waiting for review
            return None
        payload = {**p, "case_id": stored.id}
        if self.base_url:
            payload["case_url"] = self.base_url + case_path(stored.id)
        return replace(alert, payload=payload)

    def post_message(self, alerts: list[OutboxAlert]) -> OutboxAlert | None:
        """One chat message for all of a post's paged cases: the first alert (the matcher's order puts known
        media before recycled hits within an attachment), its key and picture, with the others listed in
        ``payload["also"]`` (kind, tier, known item, evidence, case). None when nothing pages the chat."""
        if not alerts:
            return None
        first = min(alerts, key=lambda a: (a.kind != "match", a.payload.get("tier") != "match"))
        others = [a for a in alerts if a is not first]
        if not others:
            return first
        also = [
            {
                "kind": a.kind,
                "tier": a.payload.get("tier"),
                "known": {k: (a.payload.get("known") or {}).get(k) for k in ("id", "label", "source", "kind", "frame_ts")},
                "media_sha256": a.payload.get("media_sha256"),
                "signal": a.payload.get("signal"),
                "distance": a.payload.get("distance"),
                "inliers": a.payload.get("inliers"),
                "case_id": a.payload.get("case_id"),
                "case_url": a.payload.get("case_url"),
            }
            for a in others
        ]
        return replace(first, payload={**first.payload, "also": also})

    def _dismissed_by(
        self, known_item: str, platform: str, account: str, shas: set[str], image: Image.Image | None
    ) -> Dismissal | None:
        standing = [d for d in self.store.dismissals_for(known_item) if d.covers(platform, account)]
        if not standing:
            return None
        for d in standing:
            if d.media_sha256 in shas:
                return d
        if image is None:
            return None
        pdq = PdqSignal.compute(image)
        for d in standing:
            if d.pdq and PdqSignal.distance(pdq, d.pdq) <= self.near_duplicate:
                return d
        return None

    # ------------------------------------------------------------------ decisions
    def decide(self, case_id: str, action: str, by: str, note: str | None = None, scope: str = "account") -> Case:
        """Apply ``confirm`` (note), ``dismiss`` (reason, scope ``account`` or ``global``) or ``reopen``.

        Confirm and dismiss apply to an open case, reopen to a decided one (:class:`CaseConflict` otherwise);
        :class:`~bot.store.review.CaseNotFound` for an unknown id, ``ValueError`` for an unknown action/scope."""
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {', '.join(ACTIONS)}, not {action!r}")
        case = self.store.get_case(case_id)
        if case is None:
            raise CaseNotFound(case_id)
        status = ACTIONS[action]
        if (action == "reopen") == (case.status == "open"):
            raise CaseConflict(f"case {case_id} is {case.status}: it cannot be {ACTIONS[action] if action != 'reopen' else 'reopened'}")
        note = (note or "").strip() or None
        now = self.clock()
        dismissal = None
        if action == "dismiss":
            if scope not in DISMISS_SCOPES:
                raise ValueError(f"scope must be one of {', '.join(DISMISS_SCOPES)}, not {scope!r}")
            dismissal = Dismissal(
                case_id=case.id,
                known_item=case.known_item,
                media_sha256=case.media_sha256,
                pdq=self._posted_pdq(case),
                scope=scope,
                platform=case.platform,
                account=case.account,
                reason=note,
                by=by,
                at=now,
            )
        event = CaseEvent(now, by, "reopened" if action == "reopen" else status, note, scope if dismissal else None)
        updated = case.with_event(event, status=status, note=note, scope=scope if dismissal else None)
        return self.store.update_case(updated, dismissal)

    def _posted_pdq(self, case: Case) -> str | None:
        """The PDQ of the posted picture: the one the pipeline remembered (its ``seen`` entry), else computed
        from the archived file (a video: its matched frame). None when neither is available: the dismissal
        then covers the identical file only."""
        find = getattr(self.store, "find_known_by_sha256", None)
        if find is not None:
            for entry in find(case.media_sha256):
                if entry.kind == KnownKind.SEEN and entry.signals.get("pdq"):
                    return entry.signals["pdq"]
        path = case.payload.get("media_archive_path")
        if self.archive is None or not path:
            return None
        try:
            data = self.archive.get(path)
        except AfterimageError as e:
            log.warning("case %s: archived picture unreadable (%s): dismissal covers the identical file only", case.id, e)
            return None
        try:
            return PdqSignal.compute(decode_image(data))
        except AfterimageError:
            from bot.alerts.picture import video_frame

            frame = video_frame(data, case.payload.get("media_frame_ts"))
            return PdqSignal.compute(frame) if frame is not None else None
