"""Wiring the parts into one process: the API server and, when asked, the ingester."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Iterator
from typing import Any

import uvicorn

from alerts.service import AlertService
from api.main import create_app
from carewatch.migrations import migrate
from core.db import Database
from core.influx import InfluxClient
from core.settings import MqttTarget, Settings
from devices.provisioning import BrokerProvisioner, DynsecProvisioner, ProvisioningError
from ingest.service import IngestService

log = logging.getLogger("carewatch")


class Server(uvicorn.Server):
    # uvicorn would take SIGINT/SIGTERM for itself and re-raise them after its own
    # shutdown, killing the process before ingest has flushed; ours stop every
    # part together.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class NoBroker:
    """The provisioner when CAREWATCH_MQTT_ADMIN_URL is unset: says so instead of pretending."""

    async def _refuse(self, device_id: str) -> None:
        msg = (
            f"device {device_id}: CAREWATCH_MQTT_ADMIN_URL is not set, so the broker was not "
            "updated; add the credentials by hand (mosquitto/README.md) or set it"
        )
        raise ProvisioningError(msg)

    async def add_device(self, device_id: str, password: str) -> None:
        await self._refuse(device_id)

    async def revoke_device(self, device_id: str) -> None:
        await self._refuse(device_id)

    async def restore_device(self, device_id: str, password: str) -> None:
        await self._refuse(device_id)


def provisioner_for(settings: Settings) -> BrokerProvisioner:
    if settings.mqtt_admin_url:
        return DynsecProvisioner(MqttTarget.from_url(settings.mqtt_admin_url))
    return NoBroker()


async def run_service(settings: Settings, stop: asyncio.Event, *, ingest: bool) -> None:
    """`carewatch run` / `ingest` / `api`: the registry, then ingest (when asked) and the API."""
    database = Database(settings.database_url_resolved)
    await migrate(database)
    alerts: AlertService | None = None
    try:
        if settings.alerts.enabled:
            charts = InfluxClient(
                settings.influx_url, settings.influx_database, settings.influx_token
            )
            alerts = AlertService(settings, database, influx=charts)
        service = None
        if ingest:
            sinks = [alerts] if alerts is not None else []
            service = IngestService(settings, database=database, finding_sinks=sinks)
            if alerts is not None and service.rules is not None:
                alerts.unlatch = service.rules.resolve
        await serve(settings, stop, database=database, service=service, alerts=alerts)
    finally:
        if alerts is not None and alerts.influx is not None:
            await alerts.influx.aclose()
        await database.dispose()


async def serve(
    settings: Settings,
    stop: asyncio.Event,
    *,
    database: Database,
    service: IngestService | None = None,
    alerts: AlertService | None = None,
) -> None:
    """Serve the API (and run `service` when given) until `stop` is set; then stop both cleanly."""
    host, port = settings.http_host_port
    app = create_app(
        settings,
        database=database,
        provisioner=provisioner_for(settings),
        ingest=service,
        alerts=alerts,
    )
    server = Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            lifespan="off",
        )
    )

    async def http() -> None:
        try:
            await server.serve()
        except SystemExit as exc:  # uvicorn exits when it cannot bind; stop the rest cleanly
            msg = f"the API could not listen on {host}:{port}; set CAREWATCH_HTTP_LISTEN"
            raise RuntimeError(msg) from exc

    # Everything imported so far lives as long as the process: keep the full
    # collections (tens of ms each) from walking it again and again.
    gc.collect()
    gc.freeze()
    tasks: list[asyncio.Task[Any]] = [asyncio.create_task(http(), name="http")]
    if service is not None:
        tasks.append(asyncio.create_task(service.run(stop), name="ingest"))
        if alerts is not None:
            # The dispatcher runs where the findings arrive: one per ingest worker; the
            # database's claims keep two workers from sending the same message.
            tasks.append(asyncio.create_task(alerts.run(stop), name="alerts"))
    log.info("listening on http://%s:%d (metrics at /metrics, health at /healthz)", host, port)
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    server.should_exit = True
    await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        if task is not stopper and (exc := task.exception()) is not None:
            raise exc
