"""Load mode: publish valid payloads as fast as the broker acknowledges them, and measure.

Devices are multiplexed over a few shared connections (the broker URL's account,
e.g. docker compose's `loadgen`). paho-mqtt is driven directly from one thread
without its network thread: each publish writes straight to the socket and the
loop reads PUBACKs in batches, which is much cheaper per message than awaiting
one aiomqtt publish at a time. Each device sticks to one connection, so its
messages stay in order; its ts stay unique (the simulator bumps them by 1 ms)
and, since a device that runs ahead of the wall clock is skipped for a turn,
they never drift into the future.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from carewatch.settings import MqttTarget
from simulators.device import DeviceSimulator, build_simulators
from simulators.exceptions import SimulatorError
from simulators.models import FleetConfig, FleetProgress, LoadReport

log = logging.getLogger(__name__)

ProgressFn = Callable[[FleetProgress], None]
DEFAULT_MESSAGES: Final = 100_000
_BATCH: Final = 200  # messages written per connection before reading acks
_MAX_AHEAD_MS: Final = 1_000  # a device's ts may run this far ahead of the clock, no more
_DRAIN_TIMEOUT: Final = 10.0  # seconds to wait for the last PUBACKs
_CONNECT_TIMEOUT: Final = 10.0


@dataclass(eq=False)
class _Conn:
    """One shared connection and the devices it carries."""

    index: int
    client: paho.Client
    sims: list[DeviceSimulator]
    up: bool = False
    published: int = 0
    acked: int = 0
    next_sim: int = 0
    retry_at: float = 0.0
    backoff: float = 0.5
    pending: dict[int, int] = field(default_factory=dict)  # mid -> device index in sims


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class LoadRun:
    """One load run; `run()` blocks, so call it in a thread (see run_load)."""

    def __init__(
        self,
        config: FleetConfig,
        broker: MqttTarget,
        *,
        messages: int | None = None,
        duration: float | None = None,
        progress: ProgressFn | None = None,
    ) -> None:
        if messages is None and duration is None:
            messages = DEFAULT_MESSAGES
        self.stop = threading.Event()
        self._config = config
        self._broker = broker
        self._messages = messages
        self._duration = duration
        self._progress = progress
        self._window = max(1, config.max_inflight)
        self._acked_by_device: dict[str, int] = {}
        self._reconnects = 0
        sims, _ = build_simulators(config, _wall_ms())
        if not sims:
            msg = "load mode needs at least one device (--wristbands or --bins)"
            raise SimulatorError(msg)
        count = max(1, min(config.connections, len(sims)))
        self._conns = [_Conn(n, self._client(n), sims[n::count]) for n in range(count)]

    def _client(self, n: int) -> paho.Client:
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"{self._config.prefix}cw-loadgen-{n}",
            protocol=paho.MQTTv311,
            clean_session=True,
        )
        if self._broker.username is not None:
            client.username_pw_set(self._broker.username, self._broker.password)
        if self._broker.tls:
            client.tls_set_context(ssl.create_default_context())
        client.max_inflight_messages_set(self._window)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        client.on_disconnect = self._on_disconnect
        client.user_data_set(n)
        return client

    # paho callbacks (run inside loop() on this thread)

    def _on_connect(
        self, client: paho.Client, n: int, flags: object, reason: object, props: object
    ) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("load connection %d refused: %s", n, reason)
            return
        self._conns[n].up = True

    def _on_disconnect(
        self, client: paho.Client, n: int, flags: object, reason: object, props: object
    ) -> None:
        self._conns[n].up = False

    def _on_publish(
        self, client: paho.Client, n: int, mid: int, reason: object, props: object
    ) -> None:
        conn = self._conns[n]
        conn.acked += 1
        index = conn.pending.pop(mid, None)
        if index is not None:
            device_id = conn.sims[index].device_id
            self._acked_by_device[device_id] = self._acked_by_device.get(device_id, 0) + 1

    # the run

    def _connect_all(self) -> None:
        for conn in self._conns:
            try:
                conn.client.connect(self._broker.host, self._broker.port, keepalive=60)
            except OSError as exc:
                msg = f"cannot connect to {self._broker.host}:{self._broker.port}: {exc}"
                raise SimulatorError(msg) from exc
        deadline = time.monotonic() + _CONNECT_TIMEOUT
        while not all(c.up for c in self._conns):
            if time.monotonic() > deadline or self.stop.is_set():
                msg = (
                    f"broker {self._broker.host}:{self._broker.port} did not accept "
                    "the load connections (check the URL's username and password)"
                )
                raise SimulatorError(msg)
            for conn in self._conns:
                conn.client.loop(timeout=0.01)

    def _service(self, conn: _Conn, now: float) -> None:
        """Read acks, write pending bytes, and reconnect a lost connection with backoff."""
        if conn.up:
            rc = conn.client.loop(timeout=0)
            if rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                return
            conn.up = False
            conn.retry_at = now + conn.backoff
        if now < conn.retry_at:
            return
        self._reconnects += 1
        try:
            # paho resends the unacknowledged QoS 1 messages after reconnecting.
            conn.client.reconnect()
            conn.backoff = 0.5
        except OSError as exc:
            log.debug("load connection %d: reconnect failed: %s", conn.index, exc)
            conn.backoff = min(conn.backoff * 2, 30.0)
            conn.retry_at = now + conn.backoff

    def _fill(self, conn: _Conn, t0: float, budget: int) -> int:
        """Publish up to budget messages on one connection; returns how many."""
        room = min(budget, _BATCH, self._window - (conn.published - conn.acked))
        sent = 0
        sims = conn.sims
        skipped = 0
        while sent < room and skipped < len(sims):
            index = conn.next_sim
            conn.next_sim = (index + 1) % len(sims)
            sim = sims[index]
            now_ms = _wall_ms()
            if sim.last_ts - now_ms > _MAX_AHEAD_MS:
                skipped += 1
                continue
            message = sim.telemetry(time.monotonic() - t0, now_ms)
            if message is None:  # a silent incident
                skipped += 1
                continue
            info = conn.client.publish(message.topic, message.payload, qos=1)
            conn.pending[info.mid] = index
            conn.published += 1
            sent += 1
            skipped = 0
        return sent

    def run(self) -> LoadReport:
        """Publish until the message count or duration is reached (or stop), then drain acks."""
        self._connect_all()
        t0 = time.monotonic()
        end_at = None if self._duration is None else t0 + self._duration
        next_report = t0 + self._config.progress_interval
        last = (t0, 0)
        total = 0
        try:
            while not self.stop.is_set():
                now = time.monotonic()
                if end_at is not None and now >= end_at:
                    break
                if self._messages is not None and total >= self._messages:
                    break
                sent = 0
                for conn in self._conns:
                    if conn.up:
                        budget = (self._messages - total) if self._messages is not None else _BATCH
                        n = self._fill(conn, t0, budget)
                        sent += n
                        total += n
                    self._service(conn, now)
                if sent == 0:
                    time.sleep(0.0005)  # every window is full: let the acks come in
                if now >= next_report:
                    last = self._report(t0, now, last)
                    next_report = now + self._config.progress_interval
            self._drain()
        finally:
            seconds = time.monotonic() - t0
            for conn in self._conns:
                with contextlib.suppress(Exception):
                    conn.client.disconnect()
                    conn.client.loop(timeout=0.05)
        return LoadReport(
            published=sum(c.published for c in self._conns),
            acked=sum(c.acked for c in self._conns),
            seconds=seconds,
            connections=len(self._conns),
            per_device_acked=dict(self._acked_by_device),
            reconnects=self._reconnects,
        )

    def _drain(self) -> None:
        deadline = time.monotonic() + _DRAIN_TIMEOUT
        while any(c.acked < c.published for c in self._conns) and time.monotonic() < deadline:
            for conn in self._conns:
                self._service(conn, time.monotonic())
            time.sleep(0.001)

    def _report(self, t0: float, now: float, last: tuple[float, int]) -> tuple[float, int]:
        acked = sum(c.acked for c in self._conns)
        if self._progress is not None:
            rate = (acked - last[1]) / (now - last[0]) if now > last[0] else 0.0
            published = sum(c.published for c in self._conns)
            connected = sum(len(c.sims) for c in self._conns if c.up)
            devices = sum(len(c.sims) for c in self._conns)
            self._progress(FleetProgress(now - t0, published, acked, connected, devices, rate))
        return now, acked


async def run_load(
    config: FleetConfig,
    broker: MqttTarget,
    *,
    messages: int | None = None,
    duration: float | None = None,
    stop: asyncio.Event | None = None,
    progress: ProgressFn | None = None,
) -> LoadReport:
    """Run a load test in a worker thread; setting `stop` ends it early (acks still drain)."""
    load = LoadRun(config, broker, messages=messages, duration=duration, progress=progress)

    async def relay() -> None:
        if stop is not None:
            await stop.wait()
            load.stop.set()

    relay_task = asyncio.create_task(relay())
    try:
        return await asyncio.to_thread(load.run)
    finally:
        load.stop.set()
        relay_task.cancel()
