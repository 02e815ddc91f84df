"""Alert latency: from a wristband's fall to the family's notification, under ingest load.

How it runs and what it measures: docs/BENCHMARKS.md, "Alert latency".

    .venv/bin/python bench/alerts.py [--falls 40] [--rate 5000] [--gap 0.5]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import select

from alerts.tables import Alert
from core.db import Database
from core.settings import MqttTarget
from simulators.credentials import derive_password
from simulators.fleet import run_fleet
from simulators.manifest import build_fleet
from simulators.models import FleetConfig, FleetReport
from simulators.scenarios import parse_spec
from tests.support.figures import percentile
from tests.support.receiver import NotificationReceiver as Receiver
from tests.support.seeds import contact_phone, contact_wechat, register_bands
from tests.support.servers import HOST, InfluxDB, Mosquitto, free_port
from tests.support.stack import healthy
from tests.support.waiting import wait_until

PREFIX = "bench-"
SECRET = "bench-alerts-secret"
FIRST_FALL = 3.0  # seconds after the fleet starts: every band is connected by then


# -- the registry (tests.support.seeds.register_bands) ------------------------------------


async def opened_at(url: str) -> dict[str, float]:
    """When each band's fall alert opened (the finding committed), epoch seconds."""
    database = Database(url)
    try:
        async with database.sessions() as session:
            rows = (await session.scalars(select(Alert).where(Alert.rule == "fall"))).all()
            return {a.device_id or "": a.opened_at.timestamp() for a in rows}
    finally:
        await database.dispose()


# -- the background load ------------------------------------------------------------------


class Load:
    """`devices` mosquitto_pub processes fed telemetry lines at `rate` msg/s in all."""

    def __init__(self, broker: Mosquitto, rate: float, devices: int) -> None:
        self.rate = rate
        self.procs: list[subprocess.Popen[bytes]] = []
        for d in range(devices):
            self.procs.append(
                subprocess.Popen(
                    [
                        "mosquitto_pub",
                        "-h",
                        HOST,
                        "-p",
                        str(broker.port),
                        "-u",
                        Mosquitto.LOADGEN_USER,
                        "-P",
                        broker.loadgen_password,
                        "-i",
                        f"bench-load-{d}",
                        "-q",
                        "1",
                        "-M",
                        "1000",
                        "-t",
                        f"cw/v1/wristband/load-w{d:04d}/telemetry",
                        "-l",
                    ],
                    stdin=subprocess.PIPE,
                )
            )
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._feed, daemon=True)

    def start(self) -> Load:
        self._thread.start()
        return self

    def _feed(self) -> None:
        pipes: list[IO[bytes]] = [p.stdin for p in self.procs if p.stdin is not None]
        last = [0] * len(pipes)
        seq = [0] * len(pipes)
        lanes = itertools.cycle(range(len(pipes)))
        t0 = time.monotonic()
        while not self._stop.is_set():
            due = int((time.monotonic() - t0) * self.rate) - self.sent
            touched = set()
            for _ in range(due):
                d = next(lanes)
                ts = last[d] = max(time.time_ns() // 1_000_000, last[d] + 1)
                n = seq[d] = seq[d] + 1
                line = (
                    f'{{"ts":{ts},"seq":{n},"hr":{62 + n % 30},"spo2":{95 + n % 4},'
                    f'"temp":36.{5 + n % 4},"steps":{n // 50},"battery":80,"worn":true}}\n'
                )
                pipes[d].write(line.encode())
                touched.add(d)
            for d in touched:
                pipes[d].flush()
            self.sent += due
            self._stop.wait(0.01)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for proc in self.procs:
            if proc.stdin is not None:
                proc.stdin.close()
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


# -- measuring ----------------------------------------------------------------------------


def summary(label: str, seconds: list[float]) -> str:
    ms = [s * 1000 for s in seconds]
    return (
        f"{label:<38} p50 {percentile(ms, 0.5):>6.0f} ms   p99 {percentile(ms, 0.99):>6.0f} ms"
        f"   max {max(ms):>6.0f} ms   (n={len(ms)})"
    )


def ingest_written(listen: str) -> int:
    with urllib.request.urlopen(f"http://{listen}/healthz", timeout=5) as resp:
        return int(json.load(resp)["ingest"]["written"])


def run_falls(broker: Mosquitto, falls: int, gap: float, receiver: Receiver) -> FleetReport:
    """The registered bands, each falling once, until every family's SMS has arrived."""
    config = FleetConfig(
        wristbands=falls,
        bins=0,
        interval=10.0,
        seed=11,
        prefix=PREFIX,
        secret=SECRET,
        incidents=tuple(
            parse_spec(f"fall@w{i:04d}+{round((FIRST_FALL + i * gap) * 1000)}ms")
            for i in range(falls)
        ),
        location=False,
        deposit_rate=0.0,
    )
    target = MqttTarget(host=HOST, port=broker.port, tls=False, username=None, password=None)

    async def drive() -> FleetReport:
        stop = asyncio.Event()
        task = asyncio.create_task(run_fleet(config, target, stop=stop))
        deadline = time.monotonic() + FIRST_FALL + falls * gap + 30
        try:
            while time.monotonic() < deadline and not task.done():
                if all(receiver.first(f"/sms/{contact_phone(i)}") for i in range(falls)):
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)  # the WeChat messages of the last fall
        finally:
            stop.set()
        return await asyncio.wait_for(task, 15)

    return asyncio.run(drive())


@dataclass
class Run:
    report: FleetReport
    receiver: Receiver
    opened: dict[str, float]  # device id -> its fall alert's opened_at
    seconds: float  # how long the falls took, load running
    fed: int  # background messages handed to the publishers meanwhile
    written: int  # points the ingester wrote meanwhile
    log: list[str]  # the ingester's log lines (warnings and errors)


def ingester_env(
    broker: Mosquitto, influx: InfluxDB, root: Path, url: str, listen: str, receiver: Receiver
) -> dict[str, str]:
    """`carewatch ingest` as deployed, alert settings left at their defaults but the URLs."""
    env = dict(os.environ)
    env.update(
        {
            "CAREWATCH_MQTT_URL": broker.url(),
            "CAREWATCH_INFLUX_URL": influx.url,
            "CAREWATCH_INFLUX_DATABASE": "bench",
            "CAREWATCH_DATABASE_URL": url,
            "CAREWATCH_STATE_DIR": str(root / "state"),
            "CAREWATCH_HTTP_LISTEN": listen,
            "CAREWATCH_LOG_LEVEL": "WARNING",
            "CAREWATCH_SECRET_KEY": "bench-alerts-signing-key-0123456789",
            "CAREWATCH_ALERTS__SMS_URL": receiver.url("/sms/{phone}"),
            "CAREWATCH_ALERTS__WECHAT_URL": receiver.url("/wechat/{wechat}"),
        }
    )
    return env


def run(args: argparse.Namespace, root: Path) -> Run:
    bands = [
        spec.device_id
        for spec in build_fleet(FleetConfig(wristbands=args.falls, bins=0, prefix=PREFIX))
    ]
    broker = Mosquitto(root / "mosquitto")
    influx = InfluxDB(root / "influxdb")
    receiver = Receiver().start()
    log_path = root / "ingest.log"
    proc: subprocess.Popen[bytes] | None = None
    load: Load | None = None
    broker.start()
    influx.start()
    try:
        url = f"sqlite+aiosqlite:///{root / 'registry.db'}"
        asyncio.run(register_bands(url, bands))
        broker.add_users((d, derive_password(SECRET, d)) for d in bands)
        listen = f"{HOST}:{free_port()}"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "carewatch", "ingest"],
                env=ingester_env(broker, influx, root, url, listen, receiver),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(lambda: healthy(listen), 60, "the ingester's health check")
        load = Load(broker, args.rate, args.load_devices).start()
        time.sleep(args.warmup)
        written0, fed0, t0 = ingest_written(listen), load.sent, time.monotonic()
        report = run_falls(broker, args.falls, args.gap, receiver)
        seconds = time.monotonic() - t0
        written, fed = ingest_written(listen) - written0, load.sent - fed0
        opened = asyncio.run(opened_at(url))
    finally:
        if load is not None:
            load.stop()
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        receiver.stop()
        broker.stop()
        influx.stop()
    log_lines = log_path.read_text(errors="replace").splitlines()
    return Run(report, receiver, opened, seconds, fed, written, log_lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--falls", type=int, default=40, help="bands that fall, once each")
    parser.add_argument("--rate", type=float, default=5000.0, help="background msg/s")
    parser.add_argument("--load-devices", type=int, default=50, help="bands of the background")
    parser.add_argument("--gap", type=float, default=0.5, help="seconds between falls")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of load first")
    args = parser.parse_args()
    print(
        f"{args.falls} falls, one per registered band, {args.gap:g} s apart, over a "
        f"background of {args.rate:,.0f} msg/s from {args.load_devices} other bands (QoS 1); "
        f"broker, InfluxDB, SQLite registry, ingester and receiver on this machine "
        f"({os.cpu_count()} cores)"
    )
    with tempfile.TemporaryDirectory(prefix="cw-bench-alerts-") as tmp:
        result = run(args, Path(tmp))

    receiver = result.receiver
    sms: list[float] = []
    family: list[float] = []
    to_alert: list[float] = []
    to_phone: list[float] = []
    missing = []
    for incident, (fell_ms, _) in result.report.effects.items():
        i = int(incident.device_id.rsplit("w", 1)[1])
        fell = fell_ms / 1000
        got_sms = receiver.first(f"/sms/{contact_phone(i)}")
        got_wechat = receiver.first(f"/wechat/{contact_wechat(i)}")
        if got_sms is None:
            missing.append(incident.device_id)
            continue
        sms.append(got_sms - fell)
        family.extend(a - fell for a in (got_sms, got_wechat) if a is not None)
        opened = result.opened.get(f"{PREFIX}w{i:04d}")
        if opened is not None:
            to_alert.append(opened - fell)
            to_phone.append(got_sms - opened)
    print(
        f"background while the falls ran ({result.seconds:.1f} s): "
        f"{result.fed / result.seconds:,.0f} msg/s fed to the publishers, "
        f"{result.written / result.seconds:,.0f} points/s written by the ingester"
    )
    print(
        f"falls published {len(result.report.effects)}, fall alerts opened "
        f"{len(result.opened)}, POSTs received {receiver.total()}"
    )
    if result.log:
        print(f"ingester log: {len(result.log)} lines; the first: {result.log[0][:240]}")
    if missing:
        print(f"no SMS for {len(missing)} falls: {missing}")
    if not sms:
        return 1
    print(summary("fall -> family SMS", sms))
    print(summary("fall -> family SMS and WeChat", family))
    if to_alert:
        print(summary("  fall -> finding at the alert service", to_alert))
        print(summary("  finding -> family SMS", to_phone))
    p99 = percentile(sms, 0.99)
    print(f"target p99 < 1 s: {'met' if p99 < 1.0 else 'missed'} ({p99 * 1000:.0f} ms)")
    return 0 if not missing and len(result.report.effects) == args.falls else 1


if __name__ == "__main__":
    sys.exit(main())
