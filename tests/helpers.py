"""Shared by the integration tests: the ingester in a thread or a process, publishers, counts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carewatch.localstack import HOST, Mosquitto
from carewatch.settings import Settings
from ingest.service import IngestService

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from alerts.service import AlertService


def influx_query(url: str, database: str, q: str) -> list[dict[str, Any]]:
    data = urllib.parse.urlencode({"db": database, "q": q, "epoch": "ms"}).encode()
    with urllib.request.urlopen(f"{url}/query", data=data, timeout=30) as resp:
        body = json.load(resp)
    result = body["results"][0]
    if "error" in result:
        raise AssertionError(result["error"])
    series: list[dict[str, Any]] = result.get("series", [])
    return series


def count_by_device(url: str, database: str, measurement: str, field: str) -> dict[str, int]:
    """Points per device_id in one measurement (COUNT of one field)."""
    series = influx_query(
        url, database, f'SELECT COUNT("{field}") FROM "{measurement}" GROUP BY "device_id"'
    )
    return {s["tags"]["device_id"]: int(s["values"][0][1]) for s in series}


def healthy(listen: str) -> bool:
    """Whether the service at host:port answers /healthz with 200 (subscribed to the broker)."""
    try:
        with urllib.request.urlopen(f"http://{listen}/healthz", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def stack_settings(
    broker: Mosquitto, influx_url: str, database: str, state_dir: Path, **overrides: Any
) -> Settings:
    """Settings of a service wired to the test's broker and InfluxDB database."""
    return Settings(
        mqtt_url=broker.url(),
        influx_url=influx_url,
        influx_database=database,
        state_dir=state_dir,
        **overrides,
    )


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, step: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class ThreadedIngest:
    """The ingest service on its own event loop in a thread, for tests that look inside it."""

    def __init__(
        self, settings: Settings, *, with_registry: bool = False, with_alerts: bool = False
    ) -> None:
        self.settings = settings
        self.with_registry = with_registry or with_alerts
        self.with_alerts = with_alerts
        self.service: IngestService | None = None
        self.alerts: AlertService | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self._ready = threading.Event()

    def start(self) -> ThreadedIngest:
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()
        self._ready.wait(10)
        return self

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            database = None
            if self.with_registry:
                from devices.db import Database

                database = Database(self.settings.database_url_resolved)
                await database.migrate()
            sinks: list[AlertService] = []
            if self.with_alerts:
                from alerts.service import AlertService

                assert database is not None
                self.alerts = AlertService(self.settings, database)
                sinks.append(self.alerts)
            self.service = IngestService(self.settings, database=database, finding_sinks=sinks)
            if self.alerts is not None and self.service.rules is not None:
                self.alerts.unlatch = self.service.rules.resolve
            self._ready.set()
            try:
                parts = [self.service.run(self._stop)]
                if self.alerts is not None:
                    parts.append(self.alerts.run(self._stop))
                await asyncio.gather(*parts)
            finally:
                if database is not None:
                    await database.dispose()

        try:
            asyncio.run(main())
        except BaseException as exc:  # surfaced by stop()
            self.error = exc
            self._ready.set()

    def stop(self) -> None:
        """Stop and wait; raise what the service raised. Safe to call twice."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(self._stop.set)
        thread.join(30)
        if self.error is not None:
            raise self.error


def ingest_env(settings_env: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(settings_env)
    return env


class IngestProcess:
    """`carewatch ingest` as a child process, for tests that kill it."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> IngestProcess:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "carewatch", "ingest"],
                env=ingest_env(self.env),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


class StreamPublisher:
    """Publishes wristband telemetry for `devices` devices at about `rate` msg/s (paho, QoS 1).

    Keeps, per device, the ts of every message sent and of every one the broker
    acknowledged: a fault test then checks acked <= in InfluxDB <= sent.
    """

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        password: str,
        *,
        devices: int = 20,
        rate: float = 400.0,
        prefix: str = "f",
    ) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self.devices = [f"{prefix}{i:03d}" for i in range(devices)]
        self.rate = rate
        self.sent: dict[str, set[int]] = {d: set() for d in self.devices}
        # paho's own record of each publish; read, never locked against its thread.
        self._infos: list[tuple[str, int, Any]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{prefix}", protocol=mqtt.MQTTv5
        )
        client.username_pw_set(username, password)
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(0.2, 2)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        client.connect(host, port, clean_start=False, properties=props)
        client.loop_start()
        self.client = client

    def start(self) -> StreamPublisher:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        seq = 0
        base = int(time.time() * 1000) - 600_000
        interval = len(self.devices) / self.rate
        while not self._stop.is_set():
            tick = time.monotonic()
            for device in self.devices:
                if not self.client.is_connected():
                    continue  # a real device buffers; here the message is simply not sent
                ts = base + seq
                payload = json.dumps({"ts": ts, "seq": seq, "hr": 60 + seq % 50, "spo2": 97})
                info = self.client.publish(f"cw/v1/wristband/{device}/telemetry", payload, qos=1)
                self.sent[device].add(ts)
                self._infos.append((device, ts, info))
            seq += 1
            self._stop.wait(max(0.0, interval - (time.monotonic() - tick)))

    def stop(self, settle: float = 30.0) -> None:
        """Stop publishing and wait (up to `settle` s) until the broker acked all that was sent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline:
            if all(_acked(info) for _, _, info in self._infos):
                break
            time.sleep(0.1)
        self.client.loop_stop()
        self.client.disconnect()

    @property
    def acked(self) -> dict[str, set[int]]:
        acked: dict[str, set[int]] = {d: set() for d in self.devices}
        for device, ts, info in self._infos:
            if _acked(info):
                acked[device].add(ts)
        return acked

    @property
    def total_acked(self) -> int:
        return sum(len(v) for v in self.acked.values())


def _acked(info: Any) -> bool:
    """Whether the broker acknowledged a paho publish; one sent while disconnected counts as not."""
    try:
        return bool(info.is_published())
    except (RuntimeError, ValueError):
        return False


def ts_by_device(url: str, database: str, measurement: str = "vitals") -> dict[str, set[int]]:
    series = influx_query(url, database, f'SELECT "hr" FROM "{measurement}" GROUP BY "device_id"')
    return {s["tags"]["device_id"]: {int(v[0]) for v in s["values"]} for s in series}


def assert_nothing_lost(
    publisher: StreamPublisher, url: str, database: str, timeout: float = 120.0
) -> dict[str, set[int]]:
    """Every acked message is in InfluxDB (within `timeout`), and nothing that was never sent."""
    landed: dict[str, set[int]] = {}

    acked = publisher.acked

    def complete() -> bool:
        nonlocal landed
        landed = ts_by_device(url, database)
        return all(acked[d] <= landed.get(d, set()) for d in publisher.devices)

    try:
        wait_until(complete, timeout, "every acknowledged message in InfluxDB", step=1.0)
    except AssertionError:
        missing = {d: len(acked[d] - landed.get(d, set())) for d in publisher.devices}
        raise AssertionError(f"lost messages per device: {missing}") from None
    for device, stamps in landed.items():
        assert stamps <= publisher.sent[device], f"{device} has points never sent"
    return landed


# -- a care registry: the people the alert tests and bench/alerts.py expect -------------------

WORKER_PHONE = "13900000001"  # 王芳, the grid worker (WeChat `wangfang`)
WORKER_WECHAT = "wangfang"
SUPERVISOR_PHONE = "13900000002"  # 李站长, the grid's supervisor
DUTY_PHONE = "13900000003"  # the community's duty centre


@dataclass(frozen=True)
class CareGrid:
    community_id: int
    grid_id: int


async def seed_care_grid(session: AsyncSession) -> CareGrid:
    """One community (幸福小区, with a duty centre) and one grid with its worker and supervisor."""
    from devices.tables import Community, Grid, User

    community = Community(name="幸福小区", duty_phone=DUTY_PHONE)
    session.add(community)
    await session.flush()
    worker = User(
        username="wangfang",
        full_name="王芳",
        phone=WORKER_PHONE,
        wechat=WORKER_WECHAT,
        role="grid_worker",
        password_hash="x",
    )
    boss = User(
        username="lizhang",
        full_name="李站长",
        phone=SUPERVISOR_PHONE,
        role="supervisor",
        password_hash="x",
        community_id=community.id,
    )
    session.add_all([worker, boss])
    await session.flush()
    grid = Grid(community_id=community.id, name="一网格", supervisor_id=boss.id)
    grid.workers.append(worker)
    session.add(grid)
    await session.flush()
    return CareGrid(community.id, grid.id)


async def bind_band(session: AsyncSession, device_id: str, resident_id: int, grid_id: int) -> None:
    """Register a wristband and bind it (since yesterday) to a resident."""
    from devices.tables import Device, DeviceBinding

    session.add(Device(id=device_id, kind="wristband", grid_id=grid_id, interval_s=60))
    await session.flush()
    since = datetime.now(UTC) - timedelta(days=1)
    session.add(DeviceBinding(device_id=device_id, resident_id=resident_id, start=since))


# -- a stand-in for the SMS and WeChat providers ----------------------------------------------


@dataclass(frozen=True)
class Post:
    """One POST as the receiver got it; `at` is this machine's wall clock on arrival."""

    path: str
    title: str
    message: str
    at: float
    status: int

    @property
    def ok(self) -> bool:
        return self.status == 200


class NotificationReceiver:
    """A real HTTP server on 127.0.0.1 for apprise's `json://`: records every POST.

    Paths starting with one of `failing` get HTTP 500. Use as a context manager.
    """

    def __init__(self) -> None:
        self.failing: tuple[str, ...] = ()
        self.posts: list[Post] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                at = time.time()
                status = 500 if self.path.startswith(receiver.failing) else 200
                with receiver.lock:
                    receiver.posts.append(
                        Post(self.path, body.get("title", ""), body.get("message", ""), at, status)
                    )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((HOST, 0), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]

    def start(self) -> NotificationReceiver:
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> NotificationReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def url(self, path: str) -> str:
        return f"json://{HOST}:{self.port}{path}"

    def to(self, path: str, *, ok_only: bool = True) -> list[Post]:
        with self.lock:
            return [p for p in self.posts if p.path == path and (p.ok or not ok_only)]

    def first(self, path: str) -> float | None:
        """When the first delivered POST to `path` arrived, if one did."""
        posts = self.to(path)
        return posts[0].at if posts else None

    def total(self) -> int:
        with self.lock:
            return len(self.posts)

    def wait_for(self, *paths: str, timeout: float) -> dict[str, Post]:
        """The first delivered POST to each path, waiting up to `timeout` s for all of them."""
        wait_until(
            lambda: all(self.to(p) for p in paths), timeout, f"messages to {paths}", step=0.02
        )
        return {p: self.to(p)[0] for p in paths}
