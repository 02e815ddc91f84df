"""The live fleet: one asyncio task per device publishing its simulator's messages over MQTT.

Outbox, counts, `silent` incidents and the clean stop: simulators/README.md, "Live fleet".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Final

from core.settings import MqttTarget
from protocol.models import Channel
from protocol.topics import device_topic
from simulators.credentials import derive_password
from simulators.device import DeviceSimulator, build_simulators
from simulators.exceptions import LinkDown
from simulators.models import DeviceCounts, FleetConfig, FleetProgress, FleetReport, Message
from simulators.transport import ConnectGate, Link, wait_first

log = logging.getLogger(__name__)

Clock = Callable[[], int]
ProgressFn = Callable[[FleetProgress], None]
_MONITOR_TICK: Final = 0.25


def wall_ms() -> int:
    """The real wall-clock time in ms since the epoch (UTC)."""
    return time.time_ns() // 1_000_000


class _Outbox:
    """A device's messages not yet acknowledged, oldest first, and its counts."""

    def __init__(self, counts: DeviceCounts, limit: int) -> None:
        self.queue: deque[Message] = deque()
        self.counts = counts
        self._limit = limit
        self._head_sent = False  # whether queue[0] was already handed to the client once

    def add(self, fresh: list[Message]) -> None:
        """Queue freshly generated messages, dropping the oldest beyond the limit."""
        counts = self.counts
        counts.generated += len(fresh)
        self.queue.extend(fresh)
        while len(self.queue) > self._limit:
            self.queue.popleft()
            self._head_sent = False
            counts.dropped += 1

    async def flush(self, link: Link, stop: asyncio.Event) -> None:
        """Publish in order while connected; a failed message stays first for the next try."""
        queue = self.queue
        counts = self.counts
        while queue and link.connected.is_set() and not stop.is_set():
            message = queue[0]
            if not self._head_sent:
                counts.published += 1
                self._head_sent = True
            try:
                await link.publish(message.topic, message.payload)
            except LinkDown as exc:
                log.debug("%s", exc)
                return
            queue.popleft()
            self._head_sent = False
            counts.acked += 1
            counts.last_acked_seq = message.seq
            if message.channel is Channel.TELEMETRY:
                counts.telemetry_acked += 1
            else:
                counts.event_acked += 1


class _FleetRun:
    """What the device tasks and the monitor of one run share."""

    def __init__(
        self,
        config: FleetConfig,
        report: FleetReport,
        stop: asyncio.Event,
        t0: float,
        clock: Clock,
    ) -> None:
        self.config = config
        self.report = report
        self.stop = stop
        self.t0 = t0
        self.clock = clock

    async def device(self, sim: DeviceSimulator, link: Link) -> None:
        """Generate on schedule, publish in order, and keep going across disconnects."""
        loop = asyncio.get_running_loop()
        stop = self.stop
        own_link = not self.config.shared_account
        outbox = _Outbox(self.report.devices[sim.device_id], self.config.outbox_limit)
        while not stop.is_set():
            elapsed = loop.time() - self.t0
            window = sim.silent_window(elapsed) if own_link else None
            if window is not None:
                # Gone without a DISCONNECT, so the broker publishes the will; back at the end.
                link.drop()
                end = window[1]
                await wait_first(stop, timeout=None if end is None else max(0.0, end - elapsed))
                link.release()
                continue
            outbox.add(sim.advance(elapsed, self.clock()))
            await outbox.flush(link, stop)
            delay = max(0.0, sim.next_due() - (loop.time() - self.t0))
            if outbox.queue and not link.connected.is_set():
                await wait_first(stop, link.connected, timeout=delay)
            elif delay > 0:
                await wait_first(stop, timeout=delay)

    async def monitor(self, links: list[Link], progress: ProgressFn | None) -> None:
        """Track connections (peak, all connected) and report progress every few seconds."""
        loop = asyncio.get_running_loop()
        report, stop, t0 = self.report, self.stop, self.t0
        per_device = not self.config.shared_account
        last_time, last_acked = t0, 0
        next_report = t0 + self.config.progress_interval
        devices = len(report.devices)
        while not stop.is_set():
            await wait_first(stop, timeout=_MONITOR_TICK)
            now = loop.time()
            connected = sum(1 for link in links if link.connected.is_set())
            everyone = devices if connected == len(links) else 0
            report.peak_connected = max(report.peak_connected, connected)
            if report.all_connected_after is None and all(link.connects for link in links):
                report.all_connected_after = now - t0
            if progress is not None and (now >= next_report or stop.is_set()):
                acked = report.acked
                rate = (acked - last_acked) / (now - last_time) if now > last_time else 0.0
                shown = connected if per_device else everyone
                progress(FleetProgress(now - t0, report.published, acked, shown, devices, rate))
                last_time, last_acked = now, acked
                next_report = now + self.config.progress_interval


def _links(
    config: FleetConfig, broker: MqttTarget, sims: list[DeviceSimulator]
) -> tuple[list[Link], list[Link]]:
    """The connections, and each device's connection: its own, or one of a few shared ones."""
    gate = ConnectGate(config.connect_concurrency, config.connect_rate)
    if config.shared_account:
        shared = [
            Link(
                broker,
                client_id=f"{config.prefix}cw-sim-shared-{n}",
                username=broker.username,
                password=broker.password,
                gate=gate,
                max_inflight=config.max_inflight,
                publish_timeout=config.publish_timeout,
            )
            for n in range(max(1, config.connections))
        ]
        return shared, [shared[i % len(shared)] for i in range(len(sims))]
    own = [
        Link(
            broker,
            client_id=s.device_id,
            username=s.device_id,
            password=derive_password(config.secret, s.device_id),
            gate=gate,
            status_topic=_status_topic(s),
            publish_timeout=config.publish_timeout,
        )
        for s in sims
    ]
    return own, own


async def run_fleet(
    config: FleetConfig,
    broker: MqttTarget,
    *,
    stop: asyncio.Event | None = None,
    progress: ProgressFn | None = None,
    clock: Clock = wall_ms,
) -> FleetReport:
    """Run the fleet until `stop` is set or config.duration passes; return per-device counts."""
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    start_ms = clock()
    t0 = loop.time()
    sims, incidents = build_simulators(config, start_ms)
    report = FleetReport(
        start_ms=start_ms,
        end_ms=start_ms,
        devices={s.device_id: DeviceCounts(s.device_id, s.kind) for s in sims},
        incidents=incidents,
    )
    run = _FleetRun(config, report, stop, t0, clock)
    links, device_links = _links(config, broker, sims)
    timer = None if config.duration is None else loop.call_later(config.duration, stop.set)
    link_tasks = [asyncio.create_task(link.run(stop), name=link.client_id) for link in links]
    device_tasks = [
        asyncio.create_task(run.device(sim, link), name=f"sim-{sim.device_id}")
        for sim, link in zip(sims, device_links, strict=True)
    ]
    monitor = asyncio.create_task(run.monitor(links, progress))
    try:
        if config.shared_account:
            # Shared connections announce each device once, as its own client would.
            await _announce(sims, device_links, stop)
        await asyncio.gather(*device_tasks)
    finally:
        stop.set()
        if timer is not None:
            timer.cancel()
        for task in device_tasks:
            task.cancel()
        await asyncio.gather(*device_tasks, monitor, *link_tasks, return_exceptions=True)
        for sim, link in zip(sims, device_links, strict=True):
            report.effects.update(sim.effects)
            report.devices[sim.device_id].connects = link.connects
        report.end_ms = clock()
    return report


def _status_topic(sim: DeviceSimulator) -> str:
    return device_topic(sim.kind, sim.device_id, Channel.STATUS)


async def _announce(sims: list[DeviceSimulator], links: list[Link], stop: asyncio.Event) -> None:
    async def one(sim: DeviceSimulator, link: Link) -> None:
        while not stop.is_set():
            await wait_first(stop, link.connected)
            with contextlib.suppress(LinkDown):
                await link.publish(_status_topic(sim), b"online", retain=True)
                return

    await asyncio.gather(*(one(s, lk) for s, lk in zip(sims, links, strict=True)))
