"""Running the built parts in one process: the API server and, when asked, ingest and alerts."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Iterator
from typing import Any

import uvicorn

from carewatch.build import Parts, assembled
from core.settings import Settings
from devices.service import provisioner_for

log = logging.getLogger("carewatch")


class Server(uvicorn.Server):
    """uvicorn, minus its signal handlers: ours stop every part together."""

    # uvicorn would take SIGINT/SIGTERM for itself and re-raise them after its own
    # shutdown, killing the process before ingest has flushed.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Leave the signals to `carewatch.cli`."""
        yield


async def run_service(settings: Settings, stop: asyncio.Event, *, ingest: bool) -> None:
    """`carewatch run` / `ingest` / `api`: the registry, then ingest (when asked) and the API."""
    alerts = settings.alerts.enabled
    async with assembled(settings, ingest=ingest, alerts=alerts, charts=alerts) as parts:
        await serve(parts, stop)


async def serve(parts: Parts, stop: asyncio.Event) -> None:
    """Serve the API and run the other parts until `stop` is set; then stop them all cleanly."""
    host, port = parts.settings.http_host_port
    app = parts.app(provisioner_for(parts.settings))
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
    tasks: list[asyncio.Task[Any]] = [asyncio.create_task(http(), name="http"), *parts.start(stop)]
    log.info("listening on http://%s:%d (metrics at /metrics, health at /healthz)", host, port)
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    server.should_exit = True
    await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        if task is not stopper and (exc := task.exception()) is not None:
            raise exc
