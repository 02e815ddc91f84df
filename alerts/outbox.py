"""The outbox: the messages an alert owes, written as rows in the caller's transaction.

The dispatcher sends what these rows say; one row per (alert, step, person, channel).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, tzinfo
from typing import Any, Final

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from alerts import links
from alerts.decisions import RUNGS, channel_plan
from alerts.routing import Recipient, Subject, load_subject, rung
from alerts.tables import Alert, Notification
from alerts.templates import Audience, Lang, MessageContext, MessageKind, digest, render
from core.settings import AlertsTuning
from devices.tables import Grid

# Steps past the ladder's: messages that are not a rung (kept unique per person all the same).
ACK_STEP: Final = 10_000
RESOLVED_STEP: Final = 10_001


class Outbox:
    """Renders and queues an alert's messages: one row per person and channel, never twice."""

    def __init__(self, tuning: AlertsTuning, secret: str, lang: Lang, zone: tzinfo) -> None:
        self.tuning = tuning
        self.secret = secret
        self.lang = lang
        self.zone = zone

    async def notify(
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
        fresh: bool = False,
    ) -> int:
        """Queue one message per person (critical: on every channel at once); skip repeats.

        `fresh`: the alert was created in this transaction, so it has no message to repeat.
        """
        existing: set[tuple[str, str]] = set()
        if not fresh:
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
            plan = channel_plan(alert.severity, kind is MessageKind.REMINDER, recipient.channels)
            ctx = self._context(alert, subject, kind, recipient, step, due)
            ctx = replace(ctx, worker_names=worker_names, acked_by=acked_by, waited_min=waited_min)
            title, body = render(ctx, Audience(recipient.audience), self.lang)
            for channel, target in plan.now:
                if (recipient.key, channel) in existing:
                    continue
                session.add(
                    new_row(
                        recipient,
                        (channel, target),
                        list(plan.fallback),
                        (title, body),
                        due,
                        alert_id=alert.id,
                        step=step,
                        kind=kind.value,
                    )
                )
                queued += 1
        return queued

    async def tell_the_told(
        self,
        session: AsyncSession,
        alert: Alert,
        now: datetime,
        kind: MessageKind,
        step: int,
        by: str,
        by_key: str | None = None,
    ) -> None:
        """Tell everyone already told of the alert (but the one who answered) what happened."""
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
        # Matched by key when known: names are not unique.
        people = [
            r
            for n in range(RUNGS)
            for r in rung(subject, n)
            if r.key in told and (r.key != by_key if by_key is not None else r.name != by)
        ]
        await self.notify(session, alert, subject, people, step, kind, now, acked_by=by)

    async def cancel_pending(self, session: AsyncSession, alert: Alert) -> int:
        """Cancel the ladder's messages not sent yet; how many there were."""
        result = await session.execute(
            update(Notification)
            .where(
                Notification.alert_id == alert.id,
                Notification.state == "pending",
                Notification.step < ACK_STEP,
            )
            .values(state="cancelled", last_error="no longer needed")
        )
        return getattr(result, "rowcount", 0) or 0

    def ack_url(self, alert_id: int, recipient_key: str, sent_at: datetime) -> str:
        """The signed link by which this person acknowledges this alert."""
        expires = int(sent_at.timestamp() + self.tuning.link_lifetime)
        token = links.sign(self.secret, alert_id, recipient_key, expires)
        return f"{self.tuning.public_url.rstrip('/')}/a/{token}"

    def _context(
        self,
        alert: Alert,
        subject: Subject,
        kind: MessageKind,
        recipient: Recipient,
        step: int,
        sent_at: datetime,
    ) -> MessageContext:
        finding: dict[str, Any] = alert.finding or {}
        resident = subject.resident
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
            note=alert.resolution_note,
            ack_url=self.ack_url(alert.id, recipient.key, sent_at),
            step=step,
            flapping=alert.flapping,
        )

    async def queue_digest(
        self, session: AsyncSession, grid_id: int, alerts: Sequence[Alert], day: str, now: datetime
    ) -> int:
        """One digest message per worker of the grid (and channel), once per day."""
        subject = Subject(grid=await session.get(Grid, grid_id))
        if subject.grid is None:
            return 0
        subject.workers = [u for u in subject.grid.workers if u.is_active]
        title, body = digest(
            [_digest_item(a) for a in alerts], Audience.WORKER, self.lang, tz=self.zone
        )
        queued = 0
        for recipient in rung(subject, 0):
            channel, target = recipient.channels[0]
            key = f"digest:{grid_id}:{day}:{recipient.key}:{channel}"
            if await session.scalar(select(Notification.id).where(Notification.dedupe_key == key)):
                continue
            fallback = [f"{c}:{t}" for c, t in recipient.channels[1:]]
            session.add(
                new_row(
                    recipient,
                    (channel, target),
                    fallback,
                    (title, body),
                    now,
                    alert_id=None,
                    dedupe_key=key,
                    step=0,
                    kind="digest",
                    created_at=now,
                )
            )
            queued += 1
        return queued


def new_row(
    recipient: Recipient,
    address: tuple[str, str],
    fallback: list[str],
    message: tuple[str, str],
    due: datetime,
    **fields: Any,
) -> Notification:
    """A pending message to one person on one channel (`address`: channel, target)."""
    (channel, target), (title, body) = address, message
    return Notification(
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
        **fields,
    )


def _digest_item(alert: Alert) -> MessageContext:
    finding: dict[str, Any] = alert.finding or {}
    return MessageContext(
        rule=alert.rule,
        severity=alert.severity,
        kind=MessageKind.RAISED,
        at_ms=int(finding.get("ts") or alert.opened_at.timestamp() * 1000),
        building=alert.building,
        device_id=alert.device_id,
        value=finding.get("value"),
        limit=finding.get("limit"),
        detail=finding.get("detail") or {},
    )
