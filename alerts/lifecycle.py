"""The alert lifecycle, an explicit state machine, and the outbox it fills.

    (finding opens) --> firing --ack--> acknowledged --resolve--> resolved
                          |  ^                |
                          |  '-- severity up -'
                          '--(finding clears, not latched) or resolve--> resolved

One alert per (subject, rule) at a time (`Alert.open_key`, unique). A finding
that opens again soon after clearing reopens the same alert; the
`flap_count`-th time it is marked flapping and stops notifying. Another rule of
the same resident within `group_window` joins the open alert (one incident,
one notification) unless it is more severe. Every change happens in the
caller's transaction together with the notifications it owes (the outbox), so
the dispatcher sends exactly what the committed state says.

Ownership: an open alert always has someone on the hook. A firing alert has a
`next_step_at` (the next rung or reminder), an acknowledged one has the person
who acknowledged it, a grouped one its group's primary, and an information-level
one the daily digest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

import msgspec
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from alerts import links
from alerts.routing import RUNGS, Recipient, Subject, load_subject, rung
from alerts.tables import ACKNOWLEDGED, FIRING, RESOLVED, Alert, AlertEvent, Notification
from alerts.templates import Audience, Lang, MessageContext, digest, render
from alerts.templates import Kind as MessageKind
from core.settings import AlertsTuning
from devices.tables import Grid
from rules.findings import Finding

log = logging.getLogger(__name__)

SEVERITY_RANK: Final = {"info": 0, "warning": 1, "critical": 2}
# Steps past the ladder's: messages that are not a rung (kept unique per person all the same).
ACK_STEP: Final = 10_000
RESOLVED_STEP: Final = 10_001
LATCHED_RULES: Final = frozenset({"fall", "sos"})
_to_builtins = msgspec.to_builtins


class LifecycleError(Exception):
    """A change the lifecycle does not allow (acknowledging a resolved alert, say).

    `status` is what an HTTP caller answers: 409 for a conflict, 404 for no such alert.
    """

    def __init__(self, message: str, message_en: str, status: int = 409) -> None:
        super().__init__(message_en)
        self.message = message
        self.message_en = message_en
        self.status = status


def open_key(subject: str, rule: str) -> str:
    return f"{subject}|{rule}"


class AlertBook:
    """Applies findings, acknowledgements and the passing of time to alerts, in a session."""

    def __init__(self, tuning: AlertsTuning, secret: str) -> None:
        self.tuning = tuning
        self.secret = secret
        self.zone = ZoneInfo(tuning.timezone)
        start, _, end = tuning.quiet_hours.partition("-")
        self._quiet = (_minutes(start), _minutes(end))
        self.lang = Lang(tuning.language)

    # -- findings --------------------------------------------------------------------

    async def state_of(self, session: AsyncSession, finding: Finding) -> str | None:
        """The state of the open alert a finding would change, None if there is none."""
        return await session.scalar(
            select(Alert.state).where(Alert.open_key == open_key(finding.subject, finding.rule))
        )

    async def apply(self, session: AsyncSession, finding: Finding, now: datetime) -> Alert | None:
        """One finding: open, update, reopen or clear its alert; queue what it owes."""
        key = open_key(finding.subject, finding.rule)
        alert = await session.scalar(select(Alert).where(Alert.open_key == key))
        if finding.active:
            if alert is None:
                return await self._open(session, finding, key, now)
            await self._refire(session, alert, finding, now)
            return alert
        if alert is None:
            return None
        alert.finding = _to_builtins(finding)
        alert.updated_at = now
        if alert.latched:
            alert.cleared_at = now
            self._event(session, alert, now, "condition_cleared", detail={"note": "latched"})
            return alert
        alert.cleared_at = now
        await self._close(session, alert, now, "system", None, "cleared")
        return alert

    async def _open(
        self, session: AsyncSession, finding: Finding, key: str, now: datetime
    ) -> Alert:
        recent = await self._recently_cleared(session, finding, now)
        if recent is not None:
            return await self._reopen(session, recent, finding, key, now)
        primary = await self._group_primary(session, finding, now)
        alert = Alert(
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
        session.add(alert)
        await session.flush()
        self._event(session, alert, now, "raised", detail={"severity": alert.severity})
        if primary is not None:
            # One incident, one notification: the primary's people hear of it in its reminders.
            self._event(
                session, primary, now, "grouped", detail={"alert": alert.id, "rule": alert.rule}
            )
            self._event(session, alert, now, "joined", detail={"alert": primary.id})
            return alert
        await self._raise(session, alert, now, MessageKind.RAISED)
        return alert

    async def _recently_cleared(
        self, session: AsyncSession, finding: Finding, now: datetime
    ) -> Alert | None:
        if self.tuning.flap_window <= 0:
            return None
        since = now - timedelta(seconds=self.tuning.flap_window)
        return await session.scalar(
            select(Alert)
            .where(
                Alert.subject == finding.subject,
                Alert.rule == finding.rule,
                Alert.state == RESOLVED,
                Alert.resolved_by == "system",
                Alert.resolved_at >= since,
                Alert.latched.is_(False),
            )
            .order_by(Alert.resolved_at.desc())
            .limit(1)
        )

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
        if SEVERITY_RANK[finding.severity.value] > SEVERITY_RANK[alert.severity]:
            alert.severity = finding.severity.value
        self._event(session, alert, now, "reopened", detail={"times": alert.reopened})
        if alert.flapping or alert.reopened >= self.tuning.flap_count:
            if not alert.flapping:
                alert.flapping = True
                self._event(session, alert, now, "flapping", detail={"times": alert.reopened})
            # Still owned: the ladder goes on, but without a message for every return.
            alert.next_step_at = now + self._interval(alert, alert.step + 1)
            return alert
        await self._raise(session, alert, now, MessageKind.RAISED, step=alert.step + 1)
        return alert

    async def _group_primary(
        self, session: AsyncSession, finding: Finding, now: datetime
    ) -> Alert | None:
        if finding.resident_id is None or self.tuning.group_window <= 0:
            return None
        since = now - timedelta(seconds=self.tuning.group_window)
        candidates = await session.scalars(
            select(Alert)
            .where(
                Alert.resident_id == finding.resident_id,
                Alert.open_key.is_not(None),
                Alert.group_id.is_(None),
                Alert.opened_at >= since,
            )
            .order_by(Alert.opened_at)
        )
        rank = SEVERITY_RANK[finding.severity.value]
        for candidate in candidates:
            if SEVERITY_RANK[candidate.severity] >= rank:
                return candidate
        return None

    async def _refire(
        self, session: AsyncSession, alert: Alert, finding: Finding, now: datetime
    ) -> None:
        alert.finding = _to_builtins(finding)
        alert.updated_at = now
        alert.cleared_at = None
        if SEVERITY_RANK[finding.severity.value] <= SEVERITY_RANK[alert.severity]:
            self._event(session, alert, now, "refired")
            return
        alert.severity = finding.severity.value
        self._event(session, alert, now, "severity_raised", detail={"severity": alert.severity})
        if alert.group_id is not None:
            # Now worse than its group: it speaks for itself.
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
    ) -> None:
        """Notify rung 0 (info: only the digest) and set the clock for the next rung."""
        alert.step = step
        if alert.severity == "info":
            alert.next_step_at = None
            self._event(session, alert, now, "digest_only")
            return
        due = self._due(alert, now)
        subject = await load_subject(session, alert)
        await self._notify(session, alert, subject, rung(subject, 0), step, kind, due)
        alert.next_step_at = due + self._interval(alert, step + 1)

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
        await self._tell_the_told(
            session, alert, now, MessageKind.ACKNOWLEDGED, ACK_STEP, by, by_key
        )

    async def resolve(
        self, session: AsyncSession, alert: Alert, by: str, note: str | None, now: datetime
    ) -> None:
        if alert.state == RESOLVED:
            raise LifecycleError("告警已解除", "the alert is already resolved")
        await self._close(session, alert, now, by, note, "resolved")
        for member in await self._members(session, alert):
            if member.state != RESOLVED:
                await self._close(session, member, now, by, note, "resolved")

    def comment(
        self, session: AsyncSession, alert: Alert, by: str, text: str, now: datetime
    ) -> None:
        self._event(session, alert, now, "comment", actor=by, detail={"text": text})

    async def _close(
        self,
        session: AsyncSession,
        alert: Alert,
        now: datetime,
        by: str,
        note: str | None,
        event: str,
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
            await self._tell_the_told(session, alert, now, MessageKind.RESOLVED, RESOLVED_STEP, by)
        if by == "system":
            # The incident's first condition is over, but what joined it may not be: each
            # member still open now speaks for itself (a person's resolve closes them all).
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
        step = alert.step + 1
        alert.step = step
        alert.updated_at = now
        subject = await load_subject(session, alert)
        new_rung = step if step < RUNGS else None
        waited = int((now - alert.opened_at).total_seconds() // 60)
        due = self._due(alert, now)  # a warning's reminder waits for the morning too
        if new_rung is not None:
            fresh = rung(subject, new_rung)
            await self._notify(
                session, alert, subject, fresh, step, MessageKind.ESCALATED, due, waited_min=waited
            )
        # Everyone told so far is reminded (in a rung reached before this step).
        reminded = [r for n in range(min(step, RUNGS)) for r in rung(subject, n)]
        if alert.flapping:
            reminded = []
        await self._notify(
            session, alert, subject, reminded, step, MessageKind.REMINDER, due, waited_min=waited
        )
        alert.next_step_at = due + self._interval(alert, step + 1)
        self._event(
            session,
            alert,
            now,
            "escalated" if new_rung is not None else "reminded",
            detail={"step": step},
        )

    def _interval(self, alert: Alert, step: int) -> timedelta:
        """Gaps grow: base, 2 x base, 4 x base ... up to `reminder_max`."""
        tuning = self.tuning
        base = (
            tuning.critical_escalate_after
            if alert.severity == "critical"
            else tuning.warning_escalate_after
        )
        return timedelta(seconds=min(base * 2 ** max(step - 1, 0), tuning.reminder_max))

    def _due(self, alert: Alert, now: datetime) -> datetime:
        """When a message may go: now, or for non-critical alerts the end of quiet hours."""
        if alert.severity == "critical":
            return now
        local = now.astimezone(self.zone)
        minute = local.hour * 60 + local.minute
        start, end = self._quiet
        quiet = (start <= minute or minute < end) if start > end else (start <= minute < end)
        if not quiet:
            return now
        wake = local.replace(hour=end // 60, minute=end % 60, second=0, microsecond=0)
        if wake <= local:
            wake += timedelta(days=1)
        return wake.astimezone(UTC)

    # -- the outbox -------------------------------------------------------------------------

    async def _notify(
        self,
        session: AsyncSession,
        alert: Alert,
        subject: Subject,
        recipients: Sequence[Recipient],
        step: int,
        kind: MessageKind,
        due: datetime,
        *,
        acked_by: str | None = None,
        waited_min: int | None = None,
    ) -> int:
        """Queue one message per person (critical: on every channel at once); skip repeats."""
        rows = await session.execute(
            select(Notification.recipient_key, Notification.channel).where(
                Notification.alert_id == alert.id, Notification.step == step
            )
        )
        existing = {(key, channel) for key, channel in rows}
        worker_names = tuple(w.full_name for w in subject.workers)
        queued = 0
        seen: set[str] = set()
        for recipient in recipients:
            if recipient.key in seen:
                continue
            seen.add(recipient.key)
            channels = recipient.channels
            every = alert.severity == "critical" and kind is not MessageKind.REMINDER
            first = channels if every else channels[:1]
            fallback = [] if every else [f"{c}:{t}" for c, t in channels[1:]]
            ctx = self._context(
                alert, subject, kind, recipient, step, worker_names, acked_by, waited_min, due
            )
            title, body = render(ctx, Audience(recipient.audience), self.lang)
            for channel, target in first:
                if (recipient.key, channel) in existing:
                    continue
                session.add(
                    Notification(
                        alert_id=alert.id,
                        step=step,
                        kind=kind.value,
                        recipient_key=recipient.key,
                        recipient_name=recipient.name,
                        audience=recipient.audience,
                        channel=channel,
                        target=target,
                        fallback=fallback,
                        title=title,
                        body=body,
                        state="pending",
                        due_at=due,
                    )
                )
                queued += 1
        return queued

    async def _tell_the_told(
        self,
        session: AsyncSession,
        alert: Alert,
        now: datetime,
        kind: MessageKind,
        step: int,
        by: str,
        by_key: str | None = None,
    ) -> None:
        told = set(
            (
                await session.scalars(
                    select(Notification.recipient_key).where(
                        Notification.alert_id == alert.id,
                        Notification.state == "sent",
                        Notification.step < ACK_STEP,
                    )
                )
            ).all()
        )
        if not told:
            return
        subject = await load_subject(session, alert)
        # The one who answered is not told of their own answer (matched by key when known:
        # names are not unique).
        people = [
            r
            for n in range(RUNGS)
            for r in rung(subject, n)
            if r.key in told and (r.key != by_key if by_key is not None else r.name != by)
        ]
        await self._notify(session, alert, subject, people, step, kind, now, acked_by=by)

    async def _cancel_pending(self, session: AsyncSession, alert: Alert, now: datetime) -> None:
        result = await session.execute(
            update(Notification)
            .where(
                Notification.alert_id == alert.id,
                Notification.state == "pending",
                Notification.step < ACK_STEP,
            )
            .values(state="cancelled", last_error="no longer needed")
        )
        cancelled = getattr(result, "rowcount", 0) or 0
        if cancelled:
            self._event(session, alert, now, "cancelled", detail={"notifications": cancelled})

    def _context(
        self,
        alert: Alert,
        subject: Subject,
        kind: MessageKind,
        recipient: Recipient,
        step: int,
        worker_names: tuple[str, ...],
        acked_by: str | None,
        waited_min: int | None,
        sent_at: datetime,
    ) -> MessageContext:
        finding: dict[str, Any] = alert.finding or {}
        resident = subject.resident
        expires = int(sent_at.timestamp() + self.tuning.link_lifetime)
        token = links.sign(self.secret, alert.id, recipient.key, expires)
        return MessageContext(
            rule=alert.rule,
            severity=alert.severity,
            kind=kind,
            at_ms=int(finding.get("ts") or alert.opened_at.timestamp() * 1000),
            resident_name=resident.name if resident is not None else None,
            gender=resident.gender if resident is not None else None,
            birth_year=resident.birth_year if resident is not None else None,
            community=subject.community.name if subject.community is not None else None,
            building=subject.building,
            unit=resident.unit if resident is not None else None,
            room=resident.room if resident is not None else None,
            device_id=alert.device_id,
            value=finding.get("value"),
            limit=finding.get("limit"),
            detail=finding.get("detail") or {},
            health_notes=resident.health_notes if resident is not None else None,
            worker_names=worker_names,
            acked_by=acked_by,
            note=alert.resolution_note,
            ack_url=f"{self.tuning.public_url.rstrip('/')}/a/{token}",
            step=step,
            flapping=alert.flapping,
            waited_min=waited_min,
        )

    async def queue_digest(
        self, session: AsyncSession, grid_id: int, alerts: Sequence[Alert], day: str, now: datetime
    ) -> int:
        """One digest message per worker of the grid (and channel), once per day."""
        subject = Subject(grid=await session.get(Grid, grid_id))
        if subject.grid is None:
            return 0
        subject.workers = [u for u in subject.grid.workers if u.is_active]
        items = [
            MessageContext(
                rule=a.rule,
                severity=a.severity,
                kind=MessageKind.RAISED,
                at_ms=int((a.finding or {}).get("ts") or a.opened_at.timestamp() * 1000),
                building=a.building,
                device_id=a.device_id,
                value=(a.finding or {}).get("value"),
                limit=(a.finding or {}).get("limit"),
                detail=(a.finding or {}).get("detail") or {},
            )
            for a in alerts
        ]
        title, body = digest(items, Audience.WORKER, self.lang, tz=self.zone)
        queued = 0
        for recipient in rung(subject, 0):
            channel, target = recipient.channels[0]
            key = f"digest:{grid_id}:{day}:{recipient.key}:{channel}"
            if await session.scalar(select(Notification.id).where(Notification.dedupe_key == key)):
                continue
            session.add(
                Notification(
                    alert_id=None,
                    dedupe_key=key,
                    step=0,
                    kind="digest",
                    recipient_key=recipient.key,
                    recipient_name=recipient.name,
                    audience=recipient.audience,
                    channel=channel,
                    target=target,
                    fallback=[f"{c}:{t}" for c, t in recipient.channels[1:]],
                    title=title,
                    body=body,
                    state="pending",
                    due_at=now,
                    created_at=now,
                )
            )
            queued += 1
        return queued

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


def _minutes(text: str) -> int:
    hours, _, minutes = text.strip().partition(":")
    return int(hours) * 60 + int(minutes or 0)


Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)
