"""The live fleet: one asyncio task per device publishing its simulator's messages over MQTT.

Each device buffers its messages in an outbox while disconnected and publishes
them in order once connected again, so a broker restart loses nothing that was
generated (up to `outbox_limit`). A message counts as `published` once handed to
the client and as `acked` once its PUBACK arrived: whatever was acked is on the
broker, and what was published but not acked may or may not be.

`silent` incidents: a per-device client cuts its connection without a
DISCONNECT, so the broker publishes the device's retained `offline` will, and
reconnects (retained `online`) when the window ends; on shared connections the
device only stops publishing. On a clean stop every device publishes a retained
`offline` before disconnecting, as a device that is switched off would.
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


async def _run_device(
    sim: DeviceSimulator,
    link: Link,
    counts: DeviceCounts,
    config: FleetConfig,
    stop: asyncio.Event,
    t0: float,
    clock: Clock,
    *,
    own_link: bool,
) -> None:
    """Generate on schedule, publish in order, and keep going across disconnects."""
    loop = asyncio.get_running_loop()
    outbox: deque[Message] = deque()
    head_sent = False  # whether outbox[0] was already handed to the client once
    while not stop.is_set():
        elapsed = loop.time() - t0
        window = sim.silent_window(elapsed) if own_link else None
        if window is not None:
            link.drop()
            end = window[1]
            await wait_first(stop, timeout=None if end is None else max(0.0, end - elapsed))
            link.release()
            continue
        fresh = sim.advance(elapsed, clock())
        counts.generated += len(fresh)
        outbox.extend(fresh)
        while len(outbox) > config.outbox_limit:
            outbox.popleft()
            head_sent = False
            counts.dropped += 1
        while outbox and link.connected.is_set() and not stop.is_set():
            message = outbox[0]
            if not head_sent:
                counts.published += 1
                head_sent = True
            try:
                await link.publish(message.topic, message.payload)
            except LinkDown as exc:
                log.debug("%s", exc)
                break
            outbox.popleft()
            head_sent = False
            counts.acked += 1
            counts.last_acked_seq = message.seq
            if message.channel is Channel.TELEMETRY:
                counts.telemetry_acked += 1
            else:
                counts.event_acked += 1
        delay = max(0.0, sim.next_due() - (loop.time() - t0))
        if outbox and not link.connected.is_set():
            await wait_first(stop, link.connected, timeout=delay)
        elif delay > 0:
            await wait_first(stop, timeout=delay)


async def _monitor(
    report: FleetReport,
    links: list[Link],
    per_device: bool,
    config: FleetConfig,
    stop: asyncio.Event,
    t0: float,
    progress: ProgressFn | None,
) -> None:
    loop = asyncio.get_running_loop()
    last_time, last_acked = t0, 0
    next_report = t0 + config.progress_interval
    devices = len(report.devices)
    while not stop.is_set():
        await wait_first(stop, timeout=_MONITOR_TICK)
        now = loop.time()
        connected = sum(1 for link in links if link.connected.is_set())
        connected_devices = connected if per_device else (devices if connected == len(links) else 0)
        report.peak_connected = max(report.peak_connected, connected)
        if report.all_connected_after is None and all(link.connects for link in links):
            report.all_connected_after = now - t0
        if progress is not None and (now >= next_report or stop.is_set()):
            acked = report.acked
            rate = (acked - last_acked) / (now - last_time) if now > last_time else 0.0
            progress(
                FleetProgress(now - t0, report.published, acked, connected_devices, devices, rate)
            )
            last_time, last_acked = now, acked
            next_report = now + config.progress_interval


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
    gate = ConnectGate(config.connect_concurrency, config.connect_rate)
    links: list[Link]
    if config.shared_account:
        links = [
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
        device_links = [links[i % len(links)] for i in range(len(sims))]
    else:
        links = [
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
        device_links = links
    timer = None
    if config.duration is not None:
        timer = loop.call_later(config.duration, stop.set)
    link_tasks = [asyncio.create_task(link.run(stop), name=link.client_id) for link in links]
    device_tasks = [
        asyncio.create_task(
            _run_device(
                sim,
                link,
                report.devices[sim.device_id],
                config,
                stop,
                t0,
                clock,
                own_link=not config.shared_account,
            ),
            name=f"sim-{sim.device_id}",
        )
        for sim, link in zip(sims, device_links, strict=True)
    ]
    monitor = asyncio.create_task(
        _monitor(report, links, not config.shared_account, config, stop, t0, progress)
    )
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
