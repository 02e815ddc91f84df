"""Wiring the parts into one process: the API server and, when asked, the ingester."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import uvicorn

from api.main import create_app
from carewatch.settings import Settings
from ingest.service import IngestService

log = logging.getLogger("carewatch")


class Server(uvicorn.Server):
    # uvicorn would take SIGINT/SIGTERM for itself and re-raise them after its own
    # shutdown, killing the process before ingest has flushed; ours stop every
    # part together.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(
    settings: Settings, stop: asyncio.Event, *, service: IngestService | None = None
) -> None:
    """Serve the API (and run `service` when given) until `stop` is set; then stop both cleanly."""
    host, port = settings.http_host_port
    server = Server(
        uvicorn.Config(
            create_app(settings, service),
            host=host,
            port=port,
            log_level="warning",
            lifespan="off",
        )
    )
    tasks: list[asyncio.Task[Any]] = [asyncio.create_task(server.serve(), name="http")]
    if service is not None:
        tasks.append(asyncio.create_task(service.run(stop), name="ingest"))
    log.info("listening on http://%s:%d (metrics at /metrics, health at /healthz)", host, port)
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    server.should_exit = True
    await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        if task is not stopper and (exc := task.exception()) is not None:
            raise exc
