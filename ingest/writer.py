"""The telemetry writer: a batch is durable once InfluxDB took it or the spool holds it.

While anything is spooled, new batches are spooled too, behind it, so the
points reach InfluxDB in the order they arrived; a replay task drains the
spool oldest first whenever InfluxDB answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from core.exceptions import InfluxWriteError
from core.influx import InfluxClient
from ingest.metrics import IngestMetrics
from ingest.spool import Spool

log = logging.getLogger(__name__)


class TelemetryWriter:
    """Makes batches durable; `write` returns only once the batch cannot be lost."""

    def __init__(
        self,
        influx: InfluxClient,
        spool: Spool,
        metrics: IngestMetrics,
        *,
        attempts: int = 3,
        backoff: float = 0.2,
        replay_interval: float = 2.0,
    ) -> None:
        self._influx = influx
        self._spool = spool
        self._metrics = metrics
        self._attempts = attempts
        self._backoff = backoff
        self._replay_interval = replay_interval
        self._replay_wakeup = asyncio.Event()
        self._sync_spool_metrics()

    def _sync_spool_metrics(self) -> None:
        self._metrics.spool_segments = len(self._spool)
        self._metrics.spool_bytes = self._spool.bytes

    async def write(self, body: bytes, points: int) -> None:
        """Write one batch of `points` lines to InfluxDB, or to the spool if it will not take it."""
        if not len(self._spool):
            delay = self._backoff
            for attempt in range(1, self._attempts + 1):
                try:
                    await self._influx.write(body)
                except InfluxWriteError as exc:
                    self._metrics.write_errors += 1
                    self._metrics.influx_ok = False
                    if not exc.retryable:
                        # Bad data, e.g. a field type conflict: InfluxDB 1.x keeps the
                        # valid points of the batch. Retrying cannot help; say so loudly.
                        self._metrics.write_refused += 1
                        log.error("InfluxDB refused part of a batch of %d points: %s", points, exc)
                        return
                    if attempt == self._attempts:
                        log.warning("%s; spooling %d points", exc, points)
                        break
                    await asyncio.sleep(delay)
                    delay *= 2
                else:
                    self._metrics.written += points
                    self._metrics.influx_ok = True
                    return
        # Blocking file I/O with fsync, but rare (InfluxDB is down) and bounded by batch size.
        self._spool.append(body)
        self._metrics.spooled += points
        self._sync_spool_metrics()
        self._replay_wakeup.set()

    async def replay_forever(self) -> None:
        """Drain the spool, oldest batch first, whenever InfluxDB answers."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._replay_wakeup.wait(), self._replay_interval)
            self._replay_wakeup.clear()
            await self.replay()

    async def replay(self) -> None:
        """Write spooled batches, oldest first, until the spool is empty or InfluxDB refuses."""
        while (head := self._spool.peek()) is not None:
            segment, body = head
            points = body.count(b"\n") + 1
            try:
                await self._influx.write(body)
            except InfluxWriteError as exc:
                if exc.retryable:
                    self._metrics.influx_ok = False
                    await asyncio.sleep(self._replay_interval)
                    return
                self._metrics.write_refused += 1
                log.error(
                    "InfluxDB refused spooled segment %d: %s; dropping its bad points", segment, exc
                )
            else:
                self._metrics.written += points
                self._metrics.replayed += points
                self._metrics.influx_ok = True
            self._spool.remove(segment)
            self._sync_spool_metrics()
            if not len(self._spool):
                log.info("spool drained: InfluxDB has every spooled point")
