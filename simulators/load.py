"""Load mode: publish valid payloads as fast as the broker acknowledges them, and measure.

Devices are multiplexed over a few shared connections (the broker URL's account,
e.g. docker compose's `loadgen`) through `simulators.wire`, a batching QoS 1
publisher. Each device sticks to one connection, so its messages stay in order;
its ts stay unique (the simulator bumps them by 1 ms) and never drift into the
future, because a device more than a second ahead of the clock skips its turn.
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


async def _reconnect(lane: _Lane, stop: asyncio.Event) -> None:
    backoff = 0.5
    while not stop.is_set():
        try:
            await lane.publisher.connect()
            return
        except LinkDown as exc:
            log.warning("load: %s; retrying in %.1fs", exc, backoff)
            await wait_first(stop, timeout=backoff)
            backoff = min(backoff * 2, 30.0)
        finally:
            lane.reconnects += 1


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
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    sims, _ = build_simulators(config, _wall_ms())
    if not sims:
        msg = "load mode needs at least one device (--wristbands or --bins)"
        raise SimulatorError(msg)
    ack_counts = [0] * len(sims)
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
    try:
        await asyncio.gather(*(lane.publisher.connect() for lane in lanes))
    except LinkDown as exc:
        for lane in lanes:
            await lane.publisher.close()
        raise SimulatorError(str(exc)) from exc
    t0 = loop.time()
    done = asyncio.Event()
    if duration is not None:
        loop.call_later(duration, done.set)
    sent = 0

    async def produce(lane: _Lane) -> None:
        nonlocal sent
        publisher = lane.publisher
        last_ping = loop.time()
        while not (stop.is_set() or done.is_set()):
            if not publisher.up:
                await _reconnect(lane, stop)
                continue
            size = min(publisher.free(), _BATCH)
            if messages is not None:
                remaining = messages - sent
                if remaining <= 0:  # all published (by any lane); a full window is not "done"
                    done.set()
                    break
                size = min(size, remaining)
            if size <= 0:  # the in-flight window is full: wait for PUBACKs
                publisher.room.clear()
                if publisher.free() <= 0:
                    await wait_first(publisher.room, stop, done, timeout=1.0)
                continue
            batch = lane.batch(size, loop.time() - t0)
            if not batch:  # every device is ahead of the clock: wait a moment
                await asyncio.sleep(0.005)
                continue
            with contextlib.suppress(LinkDown):
                publisher.send(batch)
                lane.published += len(batch)
                sent += len(batch)
                await publisher.drain()
            if loop.time() - last_ping > _PING_EVERY:
                publisher.ping()
                last_ping = loop.time()
            await asyncio.sleep(0)  # let the other lanes and the ack readers run

    async def report_progress() -> None:
        last_time, last_acked = t0, 0
        while True:
            await asyncio.sleep(config.progress_interval)
            now = loop.time()
            acked = sum(lane.publisher.acked for lane in lanes)
            if progress is not None:
                rate = (acked - last_acked) / (now - last_time)
                connected = sum(len(lane.sims) for lane in lanes if lane.publisher.up)
                progress(FleetProgress(now - t0, sent, acked, connected, len(sims), rate))
            last_time, last_acked = now, acked

    reporter = asyncio.create_task(report_progress())
    try:
        await asyncio.gather(*(produce(lane) for lane in lanes))
        # The last PUBACKs: reconnect (resending) if a lane broke meanwhile.
        deadline = loop.time() + _DRAIN_TIMEOUT
        while any(lane.publisher.pending for lane in lanes) and loop.time() < deadline:
            for lane in lanes:
                if lane.publisher.pending and not lane.publisher.up and not stop.is_set():
                    await _reconnect(lane, stop)
            await asyncio.sleep(0.005)
        seconds = loop.time() - t0
    finally:
        reporter.cancel()
        for lane in lanes:
            await lane.publisher.close()
    return LoadReport(
        published=sum(lane.published for lane in lanes),
        acked=sum(lane.publisher.acked for lane in lanes),
        seconds=seconds,
        connections=len(lanes),
        per_device_acked={sim.device_id: n for sim, n in zip(sims, ack_counts, strict=True)},
        reconnects=sum(lane.reconnects for lane in lanes),
    )
