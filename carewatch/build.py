"""One build of the parts from settings: registry, InfluxDB clients, ingest, rules, alerts, API.

`carewatch run`, `carewatch demo` and the tests' stack all assemble the service here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from fastapi import FastAPI

from alerts.feed import FindingFeed
from alerts.service import AlertService
from api.deps import Health
from api.main import create_app
from carewatch.migrations import migrate
from core.db import Database
from core.influx import InfluxClient
from core.journal import Journal
from core.settings import Settings
from devices.broker.provisioning import BrokerProvisioner
from ingest.service import IngestService
from rules.findings import FindingLog
from rules.service import RuleService


async def open_registry(settings: Settings) -> Database:
    """The registry database, migrated to the newest schema."""
    database = Database(settings.database_url_resolved)
    await migrate(database)
    return database


@dataclass(slots=True)
class Parts:
    """The parts of one process, wired; `database` and the clients stay the builder's to close."""

    settings: Settings
    database: Database | None
    ingest: IngestService | None = None
    rules: RuleService | None = None
    alerts: AlertService | None = None
    feed: FindingFeed | None = None
    journal: Journal | None = None
    clients: list[InfluxClient] = field(default_factory=list)

    def influx(self) -> InfluxClient:
        """A new InfluxDB client, closed with the parts: one per user, so none waits on another."""
        settings = self.settings
        client = InfluxClient(settings.influx_url, settings.influx_database, settings.influx_token)
        self.clients.append(client)
        return client

    def health(self) -> Health:
        """Healthy while ingest is subscribed to the broker (always, in an API-only process)."""
        if self.ingest is None:
            return Health()
        snapshot = self.ingest.metrics.snapshot()
        return Health(healthy=bool(snapshot["mqtt_connected"]), ingest=snapshot)

    async def unlatch(self, device_id: str, rule: str) -> bool:
        """A person resolved a latched alert (fall, SOS): the rule engine unlatches it."""
        # Alerts are built first (the engine hands them its findings), so this looks the
        # engine up when called rather than when wired.
        assert self.rules is not None
        return await self.rules.resolve(device_id, rule)

    def metrics(self) -> str:
        """The counters of ingest and rules; the API adds those of its alert service."""
        text = ""
        if self.ingest is not None:
            text += self.ingest.metrics.render_prometheus()
        if self.rules is not None:
            text += self.rules.render_prometheus()
        if self.feed is not None:
            text += self.feed.render_prometheus()
        return text

    def app(self, provisioner: BrokerProvisioner) -> FastAPI:
        """The API over these parts."""
        if self.database is None:
            msg = "the API needs the registry database"
            raise ValueError(msg)
        return create_app(
            self.settings,
            database=self.database,
            provisioner=provisioner,
            influx=self.influx(),
            alerts=self.alerts,
            health=self.health,
            metrics=self.metrics,
        )

    def start(self, stop: asyncio.Event) -> list[asyncio.Task[None]]:
        """Start ingest and, beside it, the alert dispatcher; none in an API-only process."""
        if self.ingest is None:
            return []
        ingest = self.ingest
        drained = asyncio.Event()

        async def run_ingest() -> None:
            try:
                await ingest.run(stop)
            finally:
                drained.set()  # the last readings are journaled: the feed may finish

        tasks = [asyncio.create_task(run_ingest(), name="ingest")]
        if self.feed is not None:
            tasks.append(asyncio.create_task(self.feed.run(drained), name="alerts-feed"))
        if self.alerts is not None:
            # The dispatcher runs where the findings arrive: one per ingest worker; the
            # database's claims keep two workers from sending the same message.
            tasks.append(asyncio.create_task(self.alerts.run(stop), name="alerts"))
        return tasks

    async def aclose(self) -> None:
        """Close the InfluxDB clients and the journal."""
        for client in self.clients:
            await client.aclose()
        self.clients.clear()
        if self.journal is not None:
            self.journal.close()


def build(parts: Parts, *, ingest: bool, alerts: bool, charts: bool = False) -> Parts:
    """Build and wire the parts: ingest hands readings to rules, rules hand findings to alerts."""
    # `alerts` needs the registry; `charts` also writes alert events to InfluxDB (the
    # service does; the demo and the tests go without, as they always have). What is
    # built before a failure (a bad rules file) is closed by `parts.aclose()`.
    settings, database = parts.settings, parts.database
    if alerts:
        if database is None:
            msg = "alerts need the registry database"
            raise ValueError(msg)
        engine = ingest and settings.rules.enabled
        parts.alerts = AlertService(
            settings,
            database,
            influx=parts.influx() if charts else None,
            unlatch=parts.unlatch if engine else None,
        )
    if ingest:
        if settings.rules.enabled:
            parts.journal = Journal(settings.state_dir / "journal")
            parts.rules = build_rules(settings, database, parts.journal)
            if parts.alerts is not None:
                # One cursor per worker: workers share the registry, each has its journal.
                reader = f"alerts:{settings.ingest.client_id}"[:64]
                parts.feed = FindingFeed(parts.journal, parts.alerts, reader=reader)
        parts.ingest = IngestService(
            settings,
            influx=parts.influx(),
            consumers=[parts.rules] if parts.rules is not None else [],
            database=database,
        )
    return parts


def build_rules(settings: Settings, database: Database | None, journal: Journal) -> RuleService:
    """The rule engine: its steps journaled (the alerts read them there), findings logged."""
    sinks = [FindingLog(settings.state_dir / "findings.jsonl")]
    return RuleService(settings, sinks, database=database, journal=journal)


@asynccontextmanager
async def assembled(
    settings: Settings,
    *,
    registry: bool = True,
    ingest: bool,
    alerts: bool,
    charts: bool = False,
) -> AsyncIterator[Parts]:
    """`build` over a migrated registry (when `registry`); everything closed on the way out."""
    database = await open_registry(settings) if registry else None
    try:
        parts = Parts(settings, database)
        try:
            yield build(parts, ingest=ingest, alerts=alerts, charts=charts)
        finally:
            await parts.aclose()
    finally:
        if database is not None:
            await database.dispose()
