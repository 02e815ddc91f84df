"""Alerts in the running service: the rule engine's finding sink, the dispatcher, the API's verbs.

`publish` (the `FindingSink` the rule engine awaits) applies findings and
writes the notifications they owe in one transaction, and only then returns:
the ingester acknowledges the reading to the broker after that, so a fall is
either in the outbox or still on the broker, never in between.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.channels import Channels, channel_url, check_url
from alerts.dispatcher import Dispatcher
from alerts.exceptions import AlertNotFound, ChannelConfigError
from alerts.lifecycle import AlertBook, utcnow
from alerts.tables import Alert, JournalCursor
from core.db import Database
from core.influx import InfluxClient
from core.lineprotocol import field_string, tag_string
from core.metrics import Metric, render_prometheus
from core.secrets import load_or_create_secret
from core.settings import Settings
from rules.findings import Finding

__all__ = [
    "AlertService",
    "ChannelConfigError",
    "Unlatch",
    "check_channel_templates",
    "link_secret",
]

log = logging.getLogger(__name__)

# Called when a person resolves a latched alert (fall, SOS): the rule engine unlatches it.
Unlatch = Callable[[str, str], Awaitable[object]]


def link_secret(settings: Settings) -> str:
    """The key that signs ack links: the API's, so either process can check a link."""
    return settings.secret_key or load_or_create_secret(settings.state_dir)


class AlertService:
    """Findings in, notifications out; acknowledge and resolve for the API and the ack links.

    `unlatch` is the rule engine's: called when a person resolves a latched alert.
    """

    def __init__(
        self,
        settings: Settings,
        database: Database,
        *,
        channels: Channels | None = None,
        clock: Callable[[], datetime] = utcnow,
        influx: InfluxClient | None = None,
        unlatch: Unlatch | None = None,
    ) -> None:
        self.settings = settings
        self.database = database
        self.clock = clock
        check_channel_templates(settings)
        self.book = AlertBook(settings.alerts, link_secret(settings))
        self.dispatcher = Dispatcher(
            database, self.book, channels or Channels(), settings.alerts, clock=clock
        )
        # Still an attribute: the wiring that assigns it after construction keeps working.
        self.unlatch: Unlatch | None = unlatch
        self.influx = influx
        self.applied = 0

    # -- the rule engine's sink ------------------------------------------------------------

    async def publish(
        self, findings: list[Finding], *, cursor: tuple[str, int] | None = None
    ) -> None:
        """Apply findings and queue what they owe, in one transaction, before returning.

        `cursor` (reader, journal position) is stored in the same transaction, so a
        journal reader applies each finding exactly once whatever stops it.
        """
        now = self.clock()
        changed: list[tuple[str, Alert]] = []
        async with self.database.sessions() as session, session.begin():
            for before, alert in await self.book.apply_all(session, findings, now):
                if alert is not None and alert.state != before:
                    changed.append((alert.state if before is not None else "raised", alert))
            if cursor is not None:
                await _store_cursor(session, *cursor, now)
        self.applied += len(findings)
        self.dispatcher.wake.set()
        await self._chart(changed, now)

    async def cursor(self, reader: str) -> int:
        """The last journal position `reader` applied (0 before the first)."""
        async with self.database.sessions() as session:
            lsn = await session.scalar(
                select(JournalCursor.lsn).where(JournalCursor.reader == reader)
            )
        return lsn or 0

    async def run(self, stop: asyncio.Event) -> None:
        """The dispatcher, until `stop`."""
        await self.dispatcher.run(stop)

    # -- people (API and ack links) ---------------------------------------------------------

    async def acknowledge(
        self, alert_id: int, by: str, via: str = "api", by_key: str | None = None
    ) -> Alert:
        """Acknowledge as `by`; raises AlertNotFound, or LifecycleError once resolved."""
        async with self.database.sessions() as session, session.begin():
            alert = await _get(session, alert_id)
            await self.book.acknowledge(session, alert, by, self.clock(), via, by_key)
        self.dispatcher.wake.set()
        await self._chart([("acknowledged", alert)], self.clock())
        return alert

    async def resolve(self, alert_id: int, by: str, note: str | None) -> Alert:
        """Resolve with a note; a latched alert is unlatched in the rule engine too."""
        async with self.database.sessions() as session, session.begin():
            alert = await _get(session, alert_id)
            await self.book.resolve(session, alert, by, note, self.clock())
        if alert.latched and alert.device_id and self.unlatch is not None:
            await self.unlatch(alert.device_id, alert.rule)
        self.dispatcher.wake.set()
        await self._chart([("resolved", alert)], self.clock())
        return alert

    async def _chart(self, changes: list[tuple[str, Alert]], now: datetime) -> None:
        """Alert events as `alert_event` points, for charts of alerts over time (best effort)."""
        if self.influx is None or not changes:
            return
        lines = []
        for kind, alert in changes:
            seconds = None
            if kind in ("acknowledged", "resolved"):
                seconds = (now - alert.opened_at).total_seconds()
            tags = tag_string(
                {
                    "kind": kind,
                    "rule": alert.rule,
                    "severity": alert.severity,
                    "grid": str(alert.grid_id) if alert.grid_id is not None else None,
                }
            )
            fields = field_string({"count": 1, "alert_id": alert.id, "seconds": seconds})
            # The writer speaks milliseconds (precision=ms), like the devices' own ts.
            lines.append(f"alert_event{tags} {fields} {int(now.timestamp() * 1000)}")
        try:
            await self.influx.write("\n".join(lines).encode())
        except Exception as exc:  # a chart must never hold up an alert
            log.warning("could not write %d alert events to InfluxDB: %s", len(lines), exc)

    def render_prometheus(self) -> str:
        """The alert counters in the Prometheus text format."""
        m = self.dispatcher.metrics
        return render_prometheus(
            "carewatch_alerts_",
            [
                Metric("findings_total", "counter", "Findings applied to alerts.", self.applied),
                Metric("notifications_sent_total", "counter", "Notifications delivered.", m.sent),
                Metric(
                    "notification_failures_total", "counter", "Failed delivery attempts.", m.failed
                ),
                Metric(
                    "fallbacks_total",
                    "counter",
                    "Switches to a person's next channel.",
                    m.fallbacks,
                ),
                Metric(
                    "escalations_total", "counter", "Escalation steps and reminders.", m.escalations
                ),
                Metric("uncertain_total", "counter", "Sends cut short by a stop.", m.uncertain),
            ],
        )


def check_channel_templates(settings: Settings) -> None:
    """Refuse to start with an SMS or WeChat URL template apprise would not accept."""
    tuning = settings.alerts
    for name, template, sample in (
        ("CAREWATCH_ALERTS__SMS_URL", tuning.sms_url, {"phone": "13800138000"}),
        ("CAREWATCH_ALERTS__WECHAT_URL", tuning.wechat_url, {"wechat": "someone"}),
    ):
        if not template:
            continue
        try:
            problem = check_url(channel_url(template, **sample))
        except ValueError as exc:
            problem = str(exc)
        if problem is not None:
            msg = f"{name}: {problem} (docs/alerts.md lists the URL forms)"
            raise ChannelConfigError(msg)


async def _get(session: AsyncSession, alert_id: int) -> Alert:
    alert = await session.get(Alert, alert_id, with_for_update=True)
    if alert is None:
        raise AlertNotFound(alert_id)
    return alert


async def _store_cursor(session: AsyncSession, reader: str, lsn: int, now: datetime) -> None:
    row = await session.get(JournalCursor, reader)
    if row is None:
        session.add(JournalCursor(reader=reader, lsn=lsn, updated_at=now))
    else:
        row.lsn, row.updated_at = lsn, now
