"""The dispatcher: sends what the outbox owes, retries, falls back, and climbs the ladder.

Each pass claims due notifications (`pending` -> `sending`, committed before
anything is sent, so two dispatchers never send the same row), sends them
concurrently through apprise, and records the result on the row and in the
alert's timeline. A failure is retried with backoff; after `retry_attempts`
the person's next channel is queued (SMS down -> WeChat, and the reverse).

A crash between claiming and recording leaves rows in `sending`. At start they
become `uncertain` and are not sent again (the provider may have delivered
them: a step never reaches a person twice); the alert's next reminder reaches
the same people anyway, since the ladder keeps running until someone answers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.channels import Channels, Delivery, channel_url
from alerts.lifecycle import ACK_STEP, AlertBook, utcnow
from alerts.tables import FIRING, Alert, AlertEvent, Notification
from core.db import Database
from core.settings import AlertsTuning

log = logging.getLogger(__name__)

_BATCH = 200
_CONCURRENCY = 16


@dataclass(slots=True)
class DispatchMetrics:
    sent: int = 0
    failed: int = 0
    fallbacks: int = 0
    escalations: int = 0
    uncertain: int = 0
    by_channel: dict[str, int] = field(default_factory=dict)


class Dispatcher:
    def __init__(
        self,
        database: Database,
        book: AlertBook,
        channels: Channels,
        tuning: AlertsTuning,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.database = database
        self.book = book
        self.channels = channels
        self.tuning = tuning
        self.clock = clock
        self.metrics = DispatchMetrics()
        self.wake = asyncio.Event()
        self._digest_day: str | None = None
        self._limit = asyncio.Semaphore(_CONCURRENCY)

    async def run(self, stop: asyncio.Event) -> None:
        await self.recover()
        while not stop.is_set():
            try:
                await self.step()
            except Exception:
                log.exception("dispatch pass failed; trying again shortly")
            waits = [asyncio.ensure_future(self.wake.wait()), asyncio.ensure_future(stop.wait())]
            await asyncio.wait(
                waits, timeout=self.tuning.dispatch_interval, return_when=asyncio.FIRST_COMPLETED
            )
            for waiter in waits:
                waiter.cancel()
            self.wake.clear()

    async def step(self) -> int:
        """One pass: send what is due, then escalate what is due. Returns how much was done."""
        done = await self._send_due()
        done += await self._escalate_due()
        done += await self._digest_due()
        if done:
            # Escalation may have queued messages that are due now.
            done += await self._send_due()
        return done

    async def recover(self) -> int:
        """Rows a crash left in `sending`: uncertain, never sent twice (module docstring)."""
        now = self.clock()
        async with self.database.sessions() as session, session.begin():
            rows = (
                await session.scalars(select(Notification).where(Notification.state == "sending"))
            ).all()
            for row in rows:
                row.state = "uncertain"
                row.last_error = "the service stopped while sending; not sent again"
                if row.alert_id is not None:
                    session.add(
                        AlertEvent(
                            alert_id=row.alert_id,
                            at=now,
                            kind="uncertain",
                            channel=row.channel,
                            recipient=row.recipient_name,
                            detail={"step": row.step},
                        )
                    )
        self.metrics.uncertain += len(rows)
        return len(rows)

    async def _send_due(self) -> int:
        now = self.clock()
        async with self.database.sessions() as session, session.begin():
            due = (
                await session.scalars(
                    select(Notification)
                    .where(Notification.state == "pending", Notification.due_at <= now)
                    .order_by(Notification.due_at, Notification.id)
                    .limit(_BATCH)
                )
            ).all()
            claimed = []
            for row in due:
                result = await session.execute(
                    update(Notification)
                    .where(Notification.id == row.id, Notification.state == "pending")
                    .values(state="sending", attempts=Notification.attempts + 1)
                    .execution_options(synchronize_session=False)
                )
                if getattr(result, "rowcount", 0) == 1:
                    claimed.append(
                        (row.id, row.channel, row.target, row.title, row.body, row.attempts + 1)
                    )
        if not claimed:
            return 0
        results = await asyncio.gather(
            *(
                self._deliver(channel, target, title, body)
                for _, channel, target, title, body, _ in claimed
            )
        )
        await self._record(claimed, results)
        return len(claimed)

    async def _deliver(self, channel: str, target: str, title: str, body: str) -> Delivery:
        try:
            url = self._url(channel, target)
        except ValueError as exc:  # a template that does not fit this person's target
            return Delivery(False, f"cannot build the {channel} address: {exc}")
        if isinstance(url, Delivery):
            return url
        async with self._limit:
            try:
                return await self.channels.send(url, title, body)
            except Exception as exc:  # a channel must never take the dispatcher down
                log.exception("sending through %s failed", channel)
                return Delivery(False, f"{type(exc).__name__}: {exc}")

    def _url(self, channel: str, target: str) -> str | Delivery:
        tuning = self.tuning
        if channel == "sms":
            if not tuning.sms_url:
                return Delivery(False, "no SMS provider: set CAREWATCH_ALERTS__SMS_URL")
            return channel_url(tuning.sms_url, phone=target)
        if channel == "wechat":
            if "://" in target:
                return target
            if not tuning.wechat_url:
                return Delivery(False, "no WeChat sender: set CAREWATCH_ALERTS__WECHAT_URL")
            return channel_url(tuning.wechat_url, wechat=target)
        return Delivery(False, f"unknown channel {channel!r}")

    async def _record(
        self,
        claimed: list[tuple[int, str, str, str, str, int]],
        results: list[Delivery],
    ) -> None:
        now = self.clock()
        metrics = self.metrics
        async with self.database.sessions() as session, session.begin():
            for (row_id, channel, _, _, _, attempts), delivery in zip(
                claimed, results, strict=True
            ):
                row = await session.get(Notification, row_id)
                if row is None:
                    continue
                event = "notified" if delivery.ok else "failed"
                if delivery.ok:
                    row.state = "sent"
                    row.sent_at = now
                    metrics.sent += 1
                    metrics.by_channel[channel] = metrics.by_channel.get(channel, 0) + 1
                else:
                    metrics.failed += 1
                    row.last_error = delivery.detail[:500]
                    if not await self._still_wanted(session, row):
                        # Answered or resolved meanwhile: no retry, no fallback.
                        row.state = "cancelled"
                    elif attempts < self.tuning.retry_attempts:
                        row.state = "pending"
                        backoff = self.tuning.retry_backoff * 2 ** (attempts - 1)
                        row.due_at = now + timedelta(seconds=backoff)
                    else:
                        row.state = "failed"
                        if row.fallback:
                            event = "fallback"
                            metrics.fallbacks += 1
                            self._fall_back(session, row, now)
                if row.alert_id is not None:
                    session.add(
                        AlertEvent(
                            alert_id=row.alert_id,
                            at=now,
                            kind=event,
                            channel=channel,
                            recipient=row.recipient_name,
                            detail={
                                "step": row.step,
                                "kind": row.kind,
                                "attempt": attempts,
                                **({} if delivery.ok else {"error": delivery.detail[:200]}),
                            },
                        )
                    )

    async def _still_wanted(self, session: AsyncSession, row: Notification) -> bool:
        if row.alert_id is None or row.step >= ACK_STEP:
            return True  # digests, notices, and the news of an answer itself
        state = await session.scalar(select(Alert.state).where(Alert.id == row.alert_id))
        return state == FIRING

    def _fall_back(self, session: AsyncSession, row: Notification, now: datetime) -> None:
        channel, _, target = row.fallback[0].partition(":")
        session.add(
            Notification(
                alert_id=row.alert_id,
                dedupe_key=f"{row.dedupe_key}|{channel}" if row.dedupe_key else None,
                step=row.step,
                kind=row.kind,
                recipient_key=row.recipient_key,
                recipient_name=row.recipient_name,
                audience=row.audience,
                channel=channel,
                target=target,
                fallback=row.fallback[1:],
                title=row.title,
                body=row.body,
                state="pending",
                due_at=now,
                created_at=now,
            )
        )

    async def _digest_due(self) -> int:
        """Once a day at `digest_at`: each grid's information-level alerts of the last day."""
        now = self.clock()
        local = now.astimezone(self.book.zone)
        hours, _, minutes = self.tuning.digest_at.partition(":")
        at = local.replace(hour=int(hours), minute=int(minutes), second=0, microsecond=0)
        day = local.date().isoformat()
        if local < at or self._digest_day == day:
            return 0
        self._digest_day = day
        since = now - timedelta(days=1)
        queued = 0
        async with self.database.sessions() as session, session.begin():
            rows = (
                await session.scalars(
                    select(Alert).where(
                        Alert.severity == "info",
                        Alert.opened_at >= since,
                        Alert.grid_id.is_not(None),
                    )
                )
            ).all()
            by_grid: dict[int, list[Alert]] = {}
            for alert in rows:
                assert alert.grid_id is not None
                by_grid.setdefault(alert.grid_id, []).append(alert)
            for grid_id, alerts in sorted(by_grid.items()):
                queued += await self.book.queue_digest(session, grid_id, alerts, day, now)
        return queued

    async def _escalate_due(self) -> int:
        now = self.clock()
        async with self.database.sessions() as session, session.begin():
            due = (
                await session.scalars(
                    select(Alert)
                    .where(
                        Alert.state == FIRING,
                        Alert.group_id.is_(None),
                        Alert.next_step_at.is_not(None),
                        Alert.next_step_at <= now,
                    )
                    .order_by(Alert.next_step_at)
                    .limit(_BATCH)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            for alert in due:
                await self.book.escalate(session, alert, now)
        self.metrics.escalations += len(due)
        return len(due)
