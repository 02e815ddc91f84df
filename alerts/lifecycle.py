"""The alert lifecycle: an explicit state machine (firing, acknowledged, resolved) and its outbox.

The decisions are alerts/decisions.py's; this module reads and writes the rows around
them (docs/alerts.md, "Lifecycle").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from alerts import decisions
from alerts.batch import Seen, open_key
from alerts.decisions import Candidate, Opening, Policy, Reopening, severity_rose
from alerts.exceptions import LifecycleError
from alerts.outbox import ACK_STEP, RESOLVED_STEP, Outbox
from alerts.routing import load_subject, rung
from alerts.tables import ACKNOWLEDGED, FIRING, RESOLVED, Alert, AlertEvent
from alerts.templates import Lang, MessageKind
from core.constants import LATCHED_RULES
from core.settings import AlertsTuning
from rules.findings import Finding

__all__ = ["AlertBook", "Applied", "Clock", "open_key", "utcnow"]

log = logging.getLogger(__name__)

_to_builtins = msgspec.to_builtins

# (state of its open alert before, the alert after) per finding; None: there was none.
Applied = tuple[str | None, Alert | None]


class AlertBook:
    """Applies findings, acknowledgements and the passing of time to alerts, in a session."""

    def __init__(self, tuning: AlertsTuning, secret: str) -> None:
        self.tuning = tuning
        self.secret = secret
        self.policy = Policy.of(tuning)
        self.zone = self.policy.zone
        self.lang = Lang(tuning.language)
        self.outbox = Outbox(tuning, secret, self.lang, self.zone)

    # -- findings --------------------------------------------------------------------

    async def apply_all(
        self, session: AsyncSession, findings: Sequence[Finding], now: datetime
    ) -> list[Applied]:
        """Findings in order: open, update, reopen or clear their alerts; queue what they owe.

        What they read (their open alerts, those the system just cleared, the residents
        and grids of the messages) is fetched for the whole batch in a few statements:
        a heat wave's thousand findings are not a few thousand round trips.
        """
        seen = await Seen.fetch(session, findings, now, self.policy.flap_window)
        out: list[Applied] = []
        for finding in findings:
            key = open_key(finding.subject, finding.rule)
            alert = seen.open(key)
            if alert is not None and alert in seen.unsent:
                await self._settle(session, seen, now)  # its own story starts with "raised"
            before = alert.state if alert is not None else None
            out.append((before, await self._apply(session, finding, key, alert, now, seen)))
        await self._settle(session, seen, now)
        return out

    async def _settle(self, session: AsyncSession, seen: Seen, now: datetime) -> None:
        """The alerts opened so far get their ids (one flush), then "raised" and messages.

        Deferred to here because a message carries its alert's id (in the ack link): one
        flush for a burst's new alerts instead of one round trip each.
        """
        if not seen.unsent:
            return
        await session.flush()
        unsent, seen.unsent = seen.unsent, []
        for alert in unsent:
            self._event(session, alert, now, "raised", detail={"severity": alert.severity})
            await self._raise(session, alert, now, MessageKind.RAISED, fresh=True)

    async def _apply(
        self,
        session: AsyncSession,
        finding: Finding,
        key: str,
        alert: Alert | None,
        now: datetime,
        seen: Seen,
    ) -> Alert | None:
        if finding.active:
            if alert is None:
                return await self._open(session, finding, key, now, seen)
            await self._refire(session, alert, finding, now)
            return alert
        if alert is None:
            return None
        alert.finding = _to_builtins(finding)
        alert.updated_at = now
        alert.cleared_at = now
        if alert.latched:
            self._event(session, alert, now, "condition_cleared", detail={"note": "latched"})
            return alert
        await self._close(session, alert, now, "system", None, "cleared", seen)
        return alert

    async def _open(
        self, session: AsyncSession, finding: Finding, key: str, now: datetime, seen: Seen
    ) -> Alert:
        recent = seen.last_cleared(finding.subject, finding.rule)
        resolved_at = recent.resolved_at if recent is not None else None
        if recent is not None and (
            decisions.open_or_reopen(resolved_at, now, self.policy) is Opening.REOPEN
        ):
            alert = await self._reopen(session, recent, finding, key, now)
            seen.opened(alert)
            return alert
        primary = await self._group_primary(session, finding, now, seen)
        alert = _new_alert(finding, key, primary, now)
        session.add(alert)
        seen.opened(alert)
        if primary is None:
            seen.unsent.append(alert)  # "raised" and its messages: at `_settle`
            return alert
        await session.flush()
        self._event(session, alert, now, "raised", detail={"severity": alert.severity})
        # One incident, one notification: the primary's people hear of it in its reminders.
        self._event(
            session, primary, now, "grouped", detail={"alert": alert.id, "rule": alert.rule}
        )
        self._event(session, alert, now, "joined", detail={"alert": primary.id})
        return alert

    async def _reopen(
        self, session: AsyncSession, alert: Alert, finding: Finding, key: str, now: datetime
    ) -> Alert:
        alert.open_key = key
        alert.state = FIRING
        alert.group_id = None  # back on its own: its incident may be long over
        alert.reopened += 1
        alert.resolved_at = alert.resolved_by = alert.cleared_at = None
        alert.acked_at = alert.acked_by = None
        alert.finding = _to_builtins(finding)
        alert.updated_at = now
        if severity_rose(alert.severity, finding.severity.value):
            alert.severity = finding.severity.value
        self._event(session, alert, now, "reopened", detail={"times": alert.reopened})
        decision = decisions.on_reopen(alert.reopened, alert.flapping, self.policy)
        if decision is Reopening.NOTIFY:
            await self._raise(session, alert, now, MessageKind.RAISED, step=alert.step + 1)
            return alert
        if decision is Reopening.START_FLAPPING:
            alert.flapping = True
            self._event(session, alert, now, "flapping", detail={"times": alert.reopened})
        # Still owned: the ladder goes on, but without a message for every return.
        alert.next_step_at = now + decisions.interval(alert.severity, alert.step + 1, self.policy)
        return alert

    async def _group_primary(
        self, session: AsyncSession, finding: Finding, now: datetime, seen: Seen
    ) -> Alert | None:
        if finding.resident_id is None:
            return None
        open_alerts = seen.heading(finding.resident_id)
        if any(a in seen.unsent for a in open_alerts):
            await self._settle(session, seen, now)  # chosen by id, and raised before joined
        candidates = [Candidate(a.id, a.severity, a.opened_at) for a in open_alerts]
        chosen = decisions.group_primary(
            finding.resident_id, finding.severity.value, candidates, now, self.policy
        )
        return next((a for a in open_alerts if a.id == chosen), None)

    async def _refire(
        self, session: AsyncSession, alert: Alert, finding: Finding, now: datetime
    ) -> None:
        alert.finding = _to_builtins(finding)
        alert.updated_at = now
        alert.cleared_at = None
        if not severity_rose(alert.severity, finding.severity.value):
            self._event(session, alert, now, "refired")
            return
        alert.severity = finding.severity.value
        self._event(session, alert, now, "severity_raised", detail={"severity": alert.severity})
        # Now worse than its group (if it had one): it speaks for itself.
        alert.group_id = None
        alert.state = FIRING
        alert.acked_at = alert.acked_by = None
        await self._raise(session, alert, now, MessageKind.UPDATED, step=alert.step + 1)

    async def _raise(
        self,
        session: AsyncSession,
        alert: Alert,
        now: datetime,
        kind: MessageKind,
        step: int = 0,
        *,
        fresh: bool = False,
    ) -> None:
        """Notify rung 0 (info: only the digest) and set the clock for the next rung.

        `fresh`: the alert was just created, so none of its messages can exist yet.
        """
        alert.step = step
        plan = decisions.raise_plan(alert.severity, step, now, self.policy)
        if plan is None:
            alert.next_step_at = None
            self._event(session, alert, now, "digest_only")
            return
        subject = await load_subject(session, alert)
        await self.outbox.notify(
            session, alert, subject, rung(subject, 0), step, kind, plan.due, fresh=fresh
        )
        alert.next_step_at = plan.next_at

    # -- people ------------------------------------------------------------------------

    async def acknowledge(
        self,
        session: AsyncSession,
        alert: Alert,
        by: str,
        now: datetime,
        via: str = "api",
        by_key: str | None = None,
    ) -> None:
        """`by_key` (user:5, contact:12) names who answered, so they are not told of it."""
        if alert.group_id is not None:
            # A member of an incident: answering it answers the incident (its primary).
            primary = await session.get(Alert, alert.group_id)
            if primary is not None and primary.state != RESOLVED:
                self._event(session, alert, now, "acknowledged", actor=by, detail={"via": via})
                alert = primary
        if alert.state == RESOLVED:
            raise LifecycleError("告警已解除，无需确认", "the alert is already resolved")
        if alert.state == ACKNOWLEDGED:
            return  # a second click on the link changes nothing
        alert.state = ACKNOWLEDGED
        alert.acked_at = now
        alert.acked_by = by
        alert.next_step_at = None
        alert.updated_at = now
        await self._cancel_pending(session, alert, now)
        self._event(session, alert, now, "acknowledged", actor=by, detail={"via": via})
        for member in await self._members(session, alert):
            if member.state == FIRING:
                member.state = ACKNOWLEDGED
                member.acked_at, member.acked_by, member.next_step_at = now, by, None
                self._event(session, member, now, "acknowledged", actor=by, detail={"via": "group"})
        # Tell those already told that someone is on it (not the one who answered).
        await self.outbox.tell_the_told(
            session, alert, now, MessageKind.ACKNOWLEDGED, ACK_STEP, by, by_key
        )

    async def resolve(
        self, session: AsyncSession, alert: Alert, by: str, note: str | None, now: datetime
    ) -> None:
        """A person closes the alert, and what joined it, with a note of what was done."""
        if alert.state == RESOLVED:
            raise LifecycleError("告警已解除", "the alert is already resolved")
        await self._close(session, alert, now, by, note, "resolved")
        for member in await self._members(session, alert):
            if member.state != RESOLVED:
                await self._close(session, member, now, by, note, "resolved")

    def comment(
        self, session: AsyncSession, alert: Alert, by: str, text: str, now: datetime
    ) -> None:
        """A line of text on the alert's timeline."""
        self._event(session, alert, now, "comment", actor=by, detail={"text": text})

    async def _close(
        self,
        session: AsyncSession,
        alert: Alert,
        now: datetime,
        by: str,
        note: str | None,
        event: str,
        seen: Seen | None = None,
    ) -> None:
        was_told = alert.state != RESOLVED and alert.group_id is None
        alert.state = RESOLVED
        alert.open_key = None
        alert.resolved_at = now
        alert.resolved_by = by
        alert.resolution_note = note
        alert.next_step_at = None
        alert.updated_at = now
        await self._cancel_pending(session, alert, now)
        self._event(session, alert, now, event, actor=by, detail={"note": note} if note else {})
        if was_told and alert.severity != "info":
            await self.outbox.tell_the_told(
                session, alert, now, MessageKind.RESOLVED, RESOLVED_STEP, by
            )
        if by == "system":
            if seen is not None:
                seen.cleared(alert)
            await self._release_members(session, alert, now)

    async def _release_members(self, session: AsyncSession, alert: Alert, now: datetime) -> None:
        """The incident's first condition is over, but what joined it may not be.

        Each member still open now speaks for itself (a person's resolve closes them all).
        """
        for member in await self._members(session, alert):
            if member.state == RESOLVED:
                continue
            member.group_id = None
            self._event(session, member, now, "ungrouped", detail={"alert": alert.id})
            if member.state == FIRING:
                await self._raise(session, member, now, MessageKind.RAISED, step=member.step)

    async def _members(self, session: AsyncSession, alert: Alert) -> Sequence[Alert]:
        return (await session.scalars(select(Alert).where(Alert.group_id == alert.id))).all()

    # -- time ----------------------------------------------------------------------------

    async def escalate(self, session: AsyncSession, alert: Alert, now: datetime) -> None:
        """The next step of a firing alert nobody acknowledged: a new rung, or reminders."""
        step = decisions.next_step(
            alert.step, alert.severity, alert.flapping, alert.opened_at, now, self.policy
        )
        alert.step = step.step
        alert.updated_at = now
        subject = await load_subject(session, alert)
        if step.new_rung is not None:
            fresh = rung(subject, step.new_rung)
            await self.outbox.notify(
                session,
                alert,
                subject,
                fresh,
                step.step,
                MessageKind.ESCALATED,
                step.due,
                waited_min=step.waited_min,
            )
        # Everyone told so far is reminded (in a rung reached before this step).
        reminded = [r for n in step.reminded for r in rung(subject, n)]
        await self.outbox.notify(
            session,
            alert,
            subject,
            reminded,
            step.step,
            MessageKind.REMINDER,
            step.due,
            waited_min=step.waited_min,
        )
        alert.next_step_at = step.next_at
        self._event(session, alert, now, step.event, detail={"step": step.step})

    async def queue_digest(
        self, session: AsyncSession, grid_id: int, alerts: Sequence[Alert], day: str, now: datetime
    ) -> int:
        """One digest message per worker of the grid (and channel), once per day."""
        return await self.outbox.queue_digest(session, grid_id, alerts, day, now)

    async def _cancel_pending(self, session: AsyncSession, alert: Alert, now: datetime) -> None:
        cancelled = await self.outbox.cancel_pending(session, alert)
        if cancelled:
            self._event(session, alert, now, "cancelled", detail={"notifications": cancelled})

    def _event(
        self,
        session: AsyncSession,
        alert: Alert,
        now: datetime,
        kind: str,
        *,
        actor: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        session.add(
            AlertEvent(alert_id=alert.id, at=now, kind=kind, actor=actor, detail=detail or {})
        )


def _new_alert(finding: Finding, key: str, primary: Alert | None, now: datetime) -> Alert:
    return Alert(
        open_key=key,
        rule=finding.rule,
        subject_kind=finding.subject_kind.value,
        subject=finding.subject,
        device_id=finding.device_id,
        resident_id=finding.resident_id,
        grid_id=finding.grid_id,
        building=finding.building,
        severity=finding.severity.value,
        state=FIRING,
        latched=finding.latched or finding.rule in LATCHED_RULES,
        group_id=primary.id if primary is not None else None,
        finding=_to_builtins(finding),
        step=0,
        opened_at=now,
        updated_at=now,
    )


Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The wall clock, in UTC: the default `Clock`."""
    return datetime.now(UTC)
