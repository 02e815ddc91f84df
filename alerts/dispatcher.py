"""The dispatcher: sends what the outbox owes, retries, falls back, and climbs the ladder.

Claims before it sends, so a row is never sent twice; a crash mid-send leaves it
`uncertain` (docs/alerts.md, "No loss, no repeats").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import case, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from alerts import decisions
from alerts.channels import Channels, Delivery, channel_url
from alerts.decisions import FailureOutcome
from alerts.lifecycle import AlertBook, utcnow
from alerts.outbox import ACK_STEP
from alerts.tables import FIRING, Alert, AlertEvent, Notification
from alerts.templates import bundle
from core.db import Database
from core.settings import AlertsTuning

log = logging.getLogger(__name__)

# Claimed at once: a fall that becomes due waits for at most one batch's sends.
_BATCH = 64
_CONCURRENCY = 32
# Rows of the ladder to one worker in one claim that go as one message (templates.bundle).
_BUNDLE_MIN = 3
_BUNDLED_KINDS = frozenset({"raised", "updated", "escalated", "reminder"})
_SEVERITIES = ("critical", "warning", "info")  # by the claim's rank


@dataclass(frozen=True, slots=True)
class _Claimed:
    """A row claimed for sending: what it says, to whom, and how urgent its alert is."""

    id: int
    channel: str
    target: str
    title: str
    body: str
    attempts: int
    audience: str
    recipient_key: str
    alert_id: int | None
    kind: str
    severity: str = "info"


@dataclass(frozen=True, slots=True)
class _Sending:
    """One message on the wire: one row's, or a bundle of several to one person."""

    rows: tuple[_Claimed, ...]
    channel: str
    target: str
    title: str
    body: str


@dataclass(slots=True)
class DispatchMetrics:
    """Counters for /metrics."""

    sent: int = 0
    failed: int = 0
    fallbacks: int = 0
    escalations: int = 0
    uncertain: int = 0
    by_channel: dict[str, int] = field(default_factory=dict)


class Dispatcher:
    """Sends due notifications, records how it went, and walks the ladder of due alerts."""

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
        """Pass after pass until `stop`: at once when woken, else every `dispatch_interval`."""
        await self.recover()
        while not stop.is_set():
            try:
                if await self.step() >= _BATCH:
                    continue  # more may be due at once: no pause in the middle of a burst
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
        # Critical alerts' messages first: a fall is not queued behind a burst of warnings.
        rank = case((Alert.severity == "critical", 0), (Alert.severity == "warning", 1), else_=2)
        async with self.database.sessions() as session, session.begin():
            due = (
                await session.execute(
                    select(Notification.id, rank)
                    .outerjoin(Alert, Alert.id == Notification.alert_id)
                    .where(Notification.state == "pending", Notification.due_at <= now)
                    .order_by(rank, Notification.due_at, Notification.id)
                    .limit(_BATCH)
                )
            ).all()
            if not due:
                return 0  # no write, so no lock on the database for nothing
            # One claim for the batch; `state == pending` keeps two workers from both taking one.
            rows = (
                await session.execute(
                    update(Notification)
                    .where(
                        Notification.id.in_([d[0] for d in due]), Notification.state == "pending"
                    )
                    .values(state="sending", attempts=Notification.attempts + 1)
                    .returning(
                        Notification.id,
                        Notification.channel,
                        Notification.target,
                        Notification.title,
                        Notification.body,
                        Notification.attempts,
                        Notification.audience,
                        Notification.recipient_key,
                        Notification.alert_id,
                        Notification.kind,
                    )
                    .execution_options(synchronize_session=False)
                )
            ).all()
            order = {row_id: (i, severity) for i, (row_id, severity) in enumerate(due)}
            claimed = sorted(
                (
                    _Claimed(
                        r.id,
                        r.channel,
                        r.target,
                        r.title,
                        r.body,
                        r.attempts,
                        r.audience,
                        r.recipient_key,
                        r.alert_id,
                        r.kind,
                        _SEVERITIES[order[r.id][1]],
                    )
                    for r in rows
                ),
                key=lambda row: order[row.id][0],
            )
        if not claimed:
            return 0
        sendings = self._bundled(claimed, now)
        results = await asyncio.gather(
            *(self._deliver(s.channel, s.target, s.title, s.body) for s in sendings)
        )
        await self._record(sendings, results)
        return len(claimed)

    def _bundled(self, claimed: list[_Claimed], now: datetime) -> list[_Sending]:
        """One message per row, but several rows of the ladder to one worker: one message.

        Families always get their own resident's message, and everyone a critical alert's
        (a fall, an SOS: the full text, at once); acknowledgements and all-clears go one
        by one. The order is the claim's: a bundle goes where its first row was.
        """
        groups: dict[tuple[str, str, str], list[_Claimed]] = {}
        for row in claimed:
            if (
                row.audience != "family"
                and row.severity != "critical"
                and row.kind in _BUNDLED_KINDS
                and row.alert_id
            ):
                groups.setdefault((row.recipient_key, row.channel, row.target), []).append(row)
        sendings: list[_Sending] = []
        done: set[tuple[str, str, str]] = set()
        for row in claimed:
            key = (row.recipient_key, row.channel, row.target)
            group = groups.get(key, ())
            if len(group) < _BUNDLE_MIN or row not in group:
                sendings.append(_Sending((row,), row.channel, row.target, row.title, row.body))
                continue
            if key in done:
                continue
            done.add(key)
            outbox = self.book.outbox
            items = [
                (r.title, outbox.ack_url(r.alert_id or 0, r.recipient_key, now)) for r in group
            ]
            worst = min(group, key=lambda r: _SEVERITIES.index(r.severity)).severity
            title, body = bundle(items, worst, self.book.lang)
            sendings.append(_Sending(tuple(group), row.channel, row.target, title, body))
        return sendings

    async def _deliver(self, channel: str, target: str, title: str, body: str) -> Delivery:
        try:
            url = self._url(channel, target)
        except ValueError as exc:  # a template that does not fit this person's target
            return Delivery(False, f"cannot build the {channel} address: {exc}", recoverable=False)
        if isinstance(url, Delivery):
            return url
        async with self._limit:
            try:
                return await self.channels.send(url, title, body)
            except Exception as exc:  # a channel must never take the dispatcher down
                log.exception("sending through %s failed", channel)
                return Delivery(False, f"{type(exc).__name__}: {exc}")

    def _url(self, channel: str, target: str) -> str | Delivery:
        """The apprise URL of one person's channel, or why there is none (no retry helps)."""
        tuning = self.tuning
        if channel == "sms":
            if not tuning.sms_url:
                return _permanent("no SMS provider: set CAREWATCH_ALERTS__SMS_URL")
            return channel_url(tuning.sms_url, phone=target)
        if channel == "wechat":
            if "://" in target:
                return target
            if not tuning.wechat_url:
                return _permanent("no WeChat sender: set CAREWATCH_ALERTS__WECHAT_URL")
            return channel_url(tuning.wechat_url, wechat=target)
        return _permanent(f"unknown channel {channel!r}")

    async def _record(self, sendings: list[_Sending], results: list[Delivery]) -> None:
        now = self.clock()
        async with self.database.sessions() as session, session.begin():
            ids = [row.id for sending in sendings for row in sending.rows]
            rows = {
                r.id: r
                for r in await session.scalars(select(Notification).where(Notification.id.in_(ids)))
            }
            for sending, delivery in zip(sendings, results, strict=True):
                for claimed in sending.rows:
                    row = rows.get(claimed.id)
                    if row is None:
                        continue
                    if delivery.ok:
                        event = self._delivered(row, claimed.channel, now)
                    else:
                        event = await self._failed(session, row, delivery, claimed.attempts, now)
                    if row.alert_id is None:
                        continue
                    detail: dict[str, object] = {"step": row.step, "kind": row.kind}
                    detail["attempt"] = claimed.attempts
                    if len(sending.rows) > 1:
                        detail["bundle"] = len(sending.rows)  # sent as one message with others
                    if not delivery.ok:
                        detail["error"] = delivery.detail[:200]
                    session.add(
                        AlertEvent(
                            alert_id=row.alert_id,
                            at=now,
                            kind=event,
                            channel=claimed.channel,
                            recipient=row.recipient_name,
                            detail=detail,
                        )
                    )

    def _delivered(self, row: Notification, channel: str, now: datetime) -> str:
        row.state = "sent"
        row.sent_at = now
        self.metrics.sent += 1
        self.metrics.by_channel[channel] = self.metrics.by_channel.get(channel, 0) + 1
        return "notified"

    async def _failed(
        self,
        session: AsyncSession,
        row: Notification,
        delivery: Delivery,
        attempts: int,
        now: datetime,
    ) -> str:
        """Retry, fall back or give up (decisions.after_failure); the timeline's event kind."""
        self.metrics.failed += 1
        row.last_error = delivery.detail[:500]
        decision = decisions.after_failure(
            attempts=attempts,
            recoverable=delivery.recoverable,
            still_wanted=await self._still_wanted(session, row),
            has_fallback=bool(row.fallback),
            now=now,
            policy=self.book.policy,
        )
        if decision.outcome is FailureOutcome.CANCEL:
            row.state = "cancelled"  # answered or resolved meanwhile
        elif decision.outcome is FailureOutcome.RETRY:
            assert decision.retry_at is not None
            row.state = "pending"
            row.due_at = decision.retry_at
        else:
            row.state = "failed"
            if decision.outcome is FailureOutcome.FALL_BACK:
                self.metrics.fallbacks += 1
                self._fall_back(session, row, now)
                return "fallback"
        return "failed"

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
        day = decisions.digest_day(now, self._digest_day, self.book.policy)
        if day is None:
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


def _permanent(detail: str) -> Delivery:
    return Delivery(False, detail, recoverable=False)
