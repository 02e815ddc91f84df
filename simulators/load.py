"""Load mode: publish valid payloads as fast as the broker acknowledges them, and measure.

How devices share connections and keep their ts: simulators/README.md, "Load mode".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Final

from core.settings import MqttTarget
from simulators.device import DeviceSimulator, build_simulators
from simulators.exceptions import LinkDown, SimulatorError
from simulators.models import FleetConfig, FleetProgress, LoadReport
from simulators.transport import wait_first
from simulators.wire import Publisher

log = logging.getLogger(__name__)

ProgressFn = Callable[[FleetProgress], None]
DEFAULT_MESSAGES: Final = 100_000
_BATCH: Final = 256  # PUBLISH packets per socket write
_MAX_AHEAD_MS: Final = 1_000  # a device's ts may run this far ahead of the clock, no more
_DRAIN_TIMEOUT: Final = 10.0  # seconds to wait for the last PUBACKs
_PING_EVERY: Final = 20.0


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class _Lane:
    """One connection and the devices it carries, round-robin."""

    def __init__(self, publisher: Publisher, sims: list[tuple[int, DeviceSimulator]]) -> None:
        self.publisher = publisher
        self.sims = sims
        self.next = 0
        self.published = 0
        self.reconnects = 0

    def batch(self, size: int, elapsed: float) -> list[tuple[int, bytes, bytes]]:
        """Up to `size` fresh telemetry messages from this lane's devices."""
        out: list[tuple[int, bytes, bytes]] = []
        sims = self.sims
        skipped = 0
        while len(out) < size and skipped < len(sims):
            index, sim = sims[self.next]
            self.next = (self.next + 1) % len(sims)
            now_ms = _wall_ms()
            if sim.last_ts - now_ms > _MAX_AHEAD_MS:
                skipped += 1
                continue
            message = sim.telemetry(elapsed, now_ms)
            if message is None:  # a silent incident
                skipped += 1
                continue
            out.append((index, message.topic.encode(), message.payload))
            skipped = 0
        return out

    async def reconnect(self, stop: asyncio.Event) -> None:
        """Connect again with backoff until it works or stop is set."""
        backoff = 0.5
        while not stop.is_set():
            try:
                await self.publisher.connect()
                return
            except LinkDown as exc:
                log.warning("load: %s; retrying in %.1fs", exc, backoff)
                await wait_first(stop, timeout=backoff)
                backoff = min(backoff * 2, 30.0)
            finally:
                self.reconnects += 1


async def _open_lanes(
    config: FleetConfig, broker: MqttTarget, sims: list[DeviceSimulator], ack_counts: list[int]
) -> list[_Lane]:
    """Share the devices over the connections (each device on one) and connect them all."""
    count = max(1, min(config.connections, len(sims)))
    lanes = [
        _Lane(
            Publisher(
                broker,
                f"{config.prefix}cw-loadgen-{n}",
                window=config.max_inflight,
                ack_counts=ack_counts,
            ),
            list(enumerate(sims))[n::count],
        )
        for n in range(count)
    ]
    results = await asyncio.gather(
        *(lane.publisher.connect() for lane in lanes), return_exceptions=True
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        for lane in lanes:
            await lane.publisher.close()
        if isinstance(errors[0], LinkDown):
            raise SimulatorError(str(errors[0])) from errors[0]
        raise errors[0]
    return lanes


class _LoadRun:
    """One run over its lanes: the message budget, the clock, and when to stop."""

    def __init__(self, lanes: list[_Lane], stop: asyncio.Event, messages: int | None) -> None:
        self.lanes = lanes
        self.stop = stop
        self.messages = messages
        self.done = asyncio.Event()
        self.sent = 0
        self.loop = asyncio.get_running_loop()
        self.t0 = self.loop.time()

    def _over(self) -> bool:
        return self.stop.is_set() or self.done.is_set()

    def _room(self, publisher: Publisher) -> int:
        """How many to publish now: the window's room, capped by what is left of the budget."""
        size = min(publisher.free(), _BATCH)
        if self.messages is not None:
            remaining = self.messages - self.sent
            if remaining <= 0:  # all published (by any lane); a full window is not "done"
                self.done.set()
            size = min(size, remaining)
        return size

    async def produce(self, lane: _Lane) -> None:
        """Publish this lane's messages until the budget, the duration or stop says enough."""
        publisher = lane.publisher
        last_ping = self.loop.time()
        while not self._over():
            if not publisher.up:
                await lane.reconnect(self.stop)
                continue
            size = self._room(publisher)
            if self.done.is_set():
                break
            if size <= 0:  # the in-flight window is full: wait for PUBACKs
                publisher.room.clear()
                if publisher.free() <= 0:
                    await wait_first(publisher.room, self.stop, self.done, timeout=1.0)
                continue
            batch = lane.batch(size, self.loop.time() - self.t0)
            if not batch:  # every device is ahead of the clock: wait a moment
                await asyncio.sleep(0.005)
                continue
            with contextlib.suppress(LinkDown):
                publisher.send(batch)
                lane.published += len(batch)
                self.sent += len(batch)
                await publisher.drain()
            if self.loop.time() - last_ping > _PING_EVERY:
                publisher.ping()
                last_ping = self.loop.time()
            await asyncio.sleep(0)  # let the other lanes and the ack readers run

    async def report_progress(self, interval: float, devices: int, progress: ProgressFn) -> None:
        """Call `progress` every `interval` seconds with the ack rate since the last call."""
        last_time, last_acked = self.t0, 0
        while True:
            await asyncio.sleep(interval)
            now = self.loop.time()
            acked = sum(lane.publisher.acked for lane in self.lanes)
            rate = (acked - last_acked) / (now - last_time)
            connected = sum(len(lane.sims) for lane in self.lanes if lane.publisher.up)
            progress(FleetProgress(now - self.t0, self.sent, acked, connected, devices, rate))
            last_time, last_acked = now, acked

    async def settle(self) -> None:
        """Wait for the last PUBACKs, reconnecting (and so resending) a lane that broke."""
        deadline = self.loop.time() + _DRAIN_TIMEOUT
        while any(lane.publisher.pending for lane in self.lanes) and self.loop.time() < deadline:
            for lane in self.lanes:
                if lane.publisher.pending and not lane.publisher.up and not self.stop.is_set():
                    await lane.reconnect(self.stop)
            await asyncio.sleep(0.005)

    def report(self, sims: list[DeviceSimulator], ack_counts: list[int]) -> LoadReport:
        """What the run published and what the broker acknowledged, per device too."""
        lanes = self.lanes
        return LoadReport(
            published=sum(lane.published for lane in lanes),
            acked=sum(lane.publisher.acked for lane in lanes),
            seconds=self.loop.time() - self.t0,
            connections=len(lanes),
            per_device_acked={sim.device_id: n for sim, n in zip(sims, ack_counts, strict=True)},
            reconnects=sum(lane.reconnects for lane in lanes),
            refused=sum(lane.publisher.refused for lane in lanes),
        )


async def run_load(
    config: FleetConfig,
    broker: MqttTarget,
    *,
    messages: int | None = None,
    duration: float | None = None,
    stop: asyncio.Event | None = None,
    progress: ProgressFn | None = None,
) -> LoadReport:
    """Publish `messages` (or for `duration` seconds, or until stop), then wait for the acks."""
    if messages is None and duration is None:
        messages = DEFAULT_MESSAGES
    sims, _ = build_simulators(config, _wall_ms())
    if not sims:
        msg = "load mode needs at least one device (--wristbands or --bins)"
        raise SimulatorError(msg)
    ack_counts = [0] * len(sims)
    lanes = await _open_lanes(config, broker, sims, ack_counts)
    run = _LoadRun(lanes, stop or asyncio.Event(), messages)
    if duration is not None:
        run.loop.call_later(duration, run.done.set)
    reporter = None
    if progress is not None:
        reporter = asyncio.create_task(
            run.report_progress(config.progress_interval, len(sims), progress)
        )
    try:
        await asyncio.gather(*(run.produce(lane) for lane in lanes))
        await run.settle()
        report = run.report(sims, ack_counts)
    finally:
        if reporter is not None:
            reporter.cancel()
        for lane in lanes:
            await lane.publisher.close()
    return report
