"""A whole fleet at its steady pace: N wristbands, one reading each per S seconds, falls among them.

    .venv/bin/python bench/fleet.py --devices 100000 --interval 10 --duration 600
        [--fall-every 30] [--connections 4] [--sample 100] [--tail 180] [--progress 15]

What runs: a real Mosquitto and influxd (tests/support/servers.py) and `carewatch ingest`
as a child process with the defaults a user gets (rules and alerts on, the registry in
SQLite in the state folder, INFO logs to a file); only the addresses are set (other
CAREWATCH_* variables in this environment pass through, to compare a knob). `carewatch
run` builds the very same parts (carewatch/runtime.py: both call `run_service` with
ingest on), so `ingest` it is, as in bench/ingest.py.

The fleet: band d (`w0000042`) sends protocol-v1 telemetry at phase d/N of the interval,
then every S seconds, so the broker sees an even N/S msg/s, not bursts. Every message's
`ts` is the wall clock (ms) when it is written to the socket. The bands share
`--connections` connections of the `loadgen` account (simulators/wire.py's batching
QoS 1 publisher), a band always on the same one, as bench/ingest.py does; payloads are
f-strings, topics encoded once per band. If a connection's in-flight window is full,
the band's message waits (a backlog); what is still waiting at the end of the duration is
not sent, so `offered` below the target means the publisher (or the broker's acks) fell
behind: the run then prints how far.

Registry: ingest takes readings from bands the registry does not know (default rules,
points tagged with device_id only, device_state rows kept), as rules/context.py and
ingest/points.py say, so only the falling bands are registered: before ingest
starts (it reads the registry at start, then every 60 s), one grid (tests/support/
seeds.py) and per falling band a resident with one emergency contact whose WeChat
target is a `json://` URL on the receiver (tests/support/receiver.py), which the
dispatcher uses as is. The grid's worker, supervisor and duty centre get `json://`
targets too, so escalations land somewhere. The other bands stay unregistered: at
100,000 bands that is what a site migrating its fleet sees, and it skips minutes of ORM
inserts that measure nothing of the stream.

Falls: from `--fall-every / 2` s on, one fall (`confidence` 0.95) every `--fall-every`
seconds, each from another registered band, in that band's own stream.

Measured:
- offered: messages published (handed to the socket) / duration; the target is N/S.
- landed: points queryable in InfluxDB (COUNT of `vitals` and `wristband_event`) against
  messages published, after the tail landed (ingest's written counter reached them) or
  `--tail` seconds passed.
- lag: from a reading's ts to when it can be queried. A monitor thread asks InfluxDB
  every 0.5 s for the newest point of `--sample` bands spread over the fleet
  (`SELECT last(hr) ... GROUP BY device_id`); a newer ts than last time is one sample,
  lag = the wall clock when that answer arrived - ts. Each sample is an upper bound,
  too high by at most the poll period plus the query's time (about 0.5 s); the lower
  bound (the previous poll was asked before the point landed) is printed beside it. Ingest
  exposes no age of what it writes (ingest/metrics.py has counts only), hence the polling.
- falls: the fall's ts to the receiver's arrival time of the first POST for that band's
  contact (same machine, same clock).
- RSS: the ingester's peak (VmHWM in /proc/<pid>/status), read before it is stopped.

Progress every `--progress` seconds; the last line is the summary (numbers without
thousands separators, so the line splits on ", "). Exit status 1 if a point is missing,
a fall went unnotified or the broker refused a message.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import update

from core.db import Database
from core.settings import MqttTarget
from devices.tables import Community, EmergencyContact, User
from simulators.wire import Publisher
from tests.support.figures import percentile, rss_mb, scrape_metrics
from tests.support.influx import influx_query
from tests.support.receiver import NotificationReceiver
from tests.support.seeds import register_bands
from tests.support.servers import HOST, InfluxDB, Mosquitto, free_port
from tests.support.stack import healthy
from tests.support.waiting import wait_until

DATABASE = "carewatch"  # the default database name
TICK = 0.01  # seconds between two rounds of the paced publisher
LAG_POLL = 0.5  # seconds between two lag samples
WINDOW = 20_000  # QoS 1 messages in flight per connection
TELEMETRY, FALL = 0, 1  # Publisher tags: what an acknowledgement was for


def band_id(d: int) -> str:
    return f"w{d:07d}"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the plan ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    devices: int
    interval: float
    duration: float
    falls: tuple[tuple[float, int], ...]  # (seconds after the start, band index)

    @property
    def target_rate(self) -> float:
        return self.devices / self.interval

    @property
    def readings(self) -> int:
        """Telemetry messages the schedule holds within the duration."""
        return math.ceil(self.duration * self.target_rate)


def make_plan(devices: int, interval: float, duration: float, every: float) -> Plan:
    """Falls every `every` s from `every / 2` on, each from another band spread over the fleet."""
    count = min(devices, max(1, int((duration - every / 2) // every) + 1)) if every > 0 else 0
    falls = tuple((every / 2 + i * every, (i * devices) // max(count, 1)) for i in range(count))
    return Plan(devices, interval, duration, falls)


# -- the registry -------------------------------------------------------------------------


async def register(url: str, plan: Plan, receiver: NotificationReceiver) -> None:
    """One grid; per falling band a resident whose one contact is reached through json://.

    The grid's worker, supervisor and duty centre get json:// targets too, so
    escalations land somewhere.
    """

    def contact(i: int, device_id: str) -> EmergencyContact:
        wechat = receiver.url(f"/family/{device_id}")
        return EmergencyContact(
            position=0, name="家属", relation="子女", wechat=wechat, channels=["wechat"]
        )

    bands = [band_id(d) for _, d in plan.falls]
    interval = max(1, round(plan.interval))
    care = await register_bands(url, bands, contact=contact, interval_s=interval)
    database = Database(url)
    try:
        async with database.sessions() as session, session.begin():
            for username in ("wangfang", "lizhang"):
                target = receiver.url(f"/staff/{username}")
                await session.execute(
                    update(User).where(User.username == username).values(wechat=target)
                )
            await session.execute(
                update(Community)
                .where(Community.id == care.community_id)
                .values(duty_wechat=receiver.url("/duty"))
            )
    finally:
        await database.dispose()


# -- the paced publisher ------------------------------------------------------------------


@dataclass(slots=True)
class Counters:
    """What the publisher did; read by the monitor thread (plain ints, no lock needed)."""

    published: int = 0
    falls_published: int = 0
    fall_ts: dict[str, int] = field(default_factory=dict)  # band -> the fall's ts
    backlog: int = 0  # due messages waiting for room in a window, now
    max_backlog: int = 0
    max_late: float = 0.0  # seconds the oldest due message waited, at worst
    unsent: int = 0  # due within the duration but never sent
    acked: list[int] = field(default_factory=lambda: [0, 0])  # by tag
    refused: int = 0
    started: float = 0.0  # monotonic, when the schedule began
    done: bool = False


class Fleet:
    """Publishes the plan's schedule over `connections` QoS 1 connections, paced by the clock."""

    def __init__(self, plan: Plan, target: MqttTarget, connections: int) -> None:
        self.plan = plan
        self.counters = Counters()
        self.lanes = [
            Publisher(target, f"fleet-{i}", window=WINDOW, ack_counts=self.counters.acked)
            for i in range(connections)
        ]
        # (band, seq or -1 for a fall, when it was due) per connection
        self.backlogs: list[deque[tuple[int, int, float]]] = [deque() for _ in self.lanes]
        n = plan.devices
        self.topics = [f"cw/v1/wristband/{band_id(d)}/telemetry".encode() for d in range(n)]
        self.last_ts = [0] * n
        self.scheduled = 0  # telemetry messages queued so far, in schedule order

    async def run(self) -> None:
        """Publish for the duration (a last round at its very end); wait for the last acks."""
        for lane in self.lanes:
            await lane.connect()
        duration = self.plan.duration
        falls = deque(self.plan.falls)
        start = self.counters.started = time.monotonic()
        while True:
            elapsed = min(time.monotonic() - start, duration)
            self._schedule(elapsed, falls)
            await self._send_due(elapsed)
            if elapsed >= duration:
                break
            await asyncio.sleep(TICK)
        self.counters.unsent = sum(len(b) for b in self.backlogs)
        await self._finish()

    def _schedule(self, elapsed: float, falls: deque[tuple[float, int]]) -> None:
        """Queue every message due by `elapsed` on its band's connection."""
        plan, backlogs, lanes = self.plan, self.backlogs, len(self.lanes)
        per_second, devices = plan.target_rate, plan.devices
        due = min(plan.readings, int(elapsed * per_second) + 1)
        for j in range(self.scheduled, due):
            d = j % devices
            backlogs[d % lanes].append((d, j // devices, j / per_second))
        self.scheduled = max(self.scheduled, due)
        while falls and falls[0][0] <= elapsed:
            at, d = falls.popleft()
            backlogs[d % lanes].append((d, -1, at))

    async def _send_due(self, elapsed: float) -> None:
        counters = self.counters
        waiting = 0
        for lane, backlog in zip(self.lanes, self.backlogs, strict=True):
            room = min(len(backlog), lane.free())
            if room > 0:
                lane.send([self._message(*backlog.popleft()) for _ in range(room)])
                await lane.drain()
            if backlog:
                counters.max_late = max(counters.max_late, elapsed - backlog[0][2])
            waiting += len(backlog)
        counters.backlog = waiting
        counters.max_backlog = max(counters.max_backlog, waiting)

    def _message(self, d: int, k: int, _due: float) -> tuple[int, bytes, bytes]:
        """(tag, topic, payload) of band d's reading k (or its fall), its ts the clock's now."""
        ts = max(now_ms(), self.last_ts[d] + 1)
        self.last_ts[d] = ts
        counters = self.counters
        if k < 0:
            counters.fall_ts[band_id(d)] = ts
            counters.falls_published += 1
            payload = f'{{"ts":{ts},"type":"fall","confidence":0.95}}'
            return FALL, f"cw/v1/wristband/{band_id(d)}/event".encode(), payload.encode()
        counters.published += 1
        payload = (
            f'{{"ts":{ts},"seq":{k},"hr":{62 + (k * 7 + d) % 30},"spo2":{95 + (k + d) % 4},'
            f'"temp":36.{4 + (k + d) % 5},"steps":{k * 3 + d % 100},"battery":80,"worn":true}}'
        )
        return TELEMETRY, self.topics[d], payload.encode()

    async def _finish(self) -> None:
        deadline = time.monotonic() + 60
        while any(lane.pending for lane in self.lanes) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self.counters.refused = sum(lane.refused for lane in self.lanes)
        for lane in self.lanes:
            await lane.close()
        self.counters.done = True


# -- watching ------------------------------------------------------------------------------


class Monitor(threading.Thread):
    """Lag samples every LAG_POLL s, and a progress line every `every` s, beside the fleet."""

    def __init__(
        self,
        influx_url: str,
        sample: list[str],
        listen: str,
        pid: int,
        counters: Counters,
        receiver: NotificationReceiver,
        every: float,
        target: float,
        falls: int,
    ) -> None:
        super().__init__(daemon=True)
        self.falls = falls
        self.influx_url = influx_url
        self.listen = listen
        self.pid = pid
        self.counters = counters
        self.receiver = receiver
        self.every = every
        self.target = target
        ids = "|".join(sample)
        self.query = f'SELECT last("hr") FROM "vitals" WHERE "device_id" =~ /^({ids})$/'
        self.newest: dict[str, int] = {}
        self.lags: list[float] = []
        self.floors: list[float] = []  # the matching lower bounds
        self.asked = 0.0  # when the previous poll was sent (wall clock)
        self.stop = threading.Event()
        self.start_at = time.monotonic()
        self.errors = 0

    def run(self) -> None:
        last_line, since = time.monotonic(), 0
        while not self.stop.wait(LAG_POLL):
            self.sample_lag()
            if time.monotonic() - last_line >= self.every:
                last_line = time.monotonic()
                self.progress(self.lags[since:])
                since = len(self.lags)

    def sample_lag(self) -> None:
        window = "now() - 10m"
        asked = time.time()
        try:
            series = influx_query(
                self.influx_url, DATABASE, f"{self.query} AND time > {window} GROUP BY device_id"
            )
        except (OSError, AssertionError, ValueError):
            self.errors += 1
            return
        arrived = time.time()
        for s in series:
            device, ts = s["tags"]["device_id"], int(s["values"][0][0])
            if ts > self.newest.get(device, 0):
                self.newest[device] = ts
                self.lags.append(arrived - ts / 1000)
                # not visible when the previous poll was asked: written after it
                self.floors.append(max(0.0, self.asked - ts / 1000))
        self.asked = asked

    def progress(self, lags: list[float]) -> None:
        c = self.counters
        elapsed = time.monotonic() - (c.started or self.start_at)
        published, backlog = c.published, c.backlog  # before /metrics, which may be slow
        asked = time.monotonic()
        try:
            m = scrape_metrics(self.listen)
        except OSError:
            m = {}
        answered = time.monotonic() - asked
        lag = f"{percentile(lags, 0.99):.2f} s" if lags else "-"
        falls = sum(1 for band in c.fall_ts if self.receiver.first(f"/family/{band}") is not None)
        state = "tail" if c.done else f"offered {published / elapsed:,.0f}/{self.target:,.0f}"
        print(
            f"[{elapsed:5.0f} s] {state} msg/s, published {published:,}, backlog {backlog:,},"
            f" written {m.get('carewatch_ingest_written_total', 0):,.0f},"
            f" pending {m.get('carewatch_ingest_consumer_lag', 0):,.0f},"
            f" alerts feed lag {m.get('carewatch_alerts_feed_lag_seconds', 0):.1f} s,"
            f" lag p99 {lag} (since last line), falls notified {falls}/{self.falls},"
            f" RSS {rss_mb(self.pid):.0f} MB (peak {rss_mb(self.pid, 'VmHWM'):.0f}),"
            f" /metrics answered in {answered:.2f} s",
            flush=True,
        )


# -- one run -------------------------------------------------------------------------------


@dataclass(slots=True)
class Outcome:
    counters: Counters
    lags: list[float]  # upper bounds of the sampled readings' lag
    floors: list[float]  # their lower bounds
    landed: int
    fall_ms: dict[str, float]  # band -> fall to first POST, ms (in the order of the falls)
    peak_rss_mb: float
    tail_seconds: float
    log_lines: list[str]
    cpu: dict[str, float]  # process -> share of one core, publishing and tail


def ingester_env(broker: Mosquitto, influx: InfluxDB, state: Path, listen: str) -> dict[str, str]:
    """`carewatch ingest` as a user starts it: defaults, only the addresses set."""
    env = dict(os.environ)
    env.update(
        {
            "CAREWATCH_MQTT_URL": broker.url(),
            "CAREWATCH_INFLUX_URL": influx.url,
            "CAREWATCH_STATE_DIR": str(state),
            "CAREWATCH_HTTP_LISTEN": listen,
        }
    )
    return env


def sample_bands(plan: Plan, size: int) -> list[str]:
    """`size` bands spread evenly over the fleet (the falling ones excepted when possible)."""
    falling = {d for _, d in plan.falls}
    step = max(1, plan.devices // max(1, size))
    picked = [d for d in range(step // 2, plan.devices, step) if d not in falling][:size]
    return [band_id(d) for d in picked] or [band_id(0)]


def wait_tail(listen: str, fleet: Fleet, receiver: NotificationReceiver, timeout: float) -> float:
    """Until every message is written (or rejected) and every fall notified; the seconds it took."""
    c = fleet.counters
    expected = c.published + c.falls_published
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            m = scrape_metrics(listen)
        except OSError:
            m = {}
        handled = sum(
            m.get(f"carewatch_ingest_{k}_total", 0) for k in ("written", "rejected", "redelivered")
        )
        notified = all(receiver.first(f"/family/{band}") is not None for band in c.fall_ts)
        if handled >= expected and notified:
            break
        time.sleep(0.25)
    return time.monotonic() - start


def count_points(influx: InfluxDB) -> int:
    total = 0
    for measurement, fld in (("vitals", "hr"), ("wristband_event", "count")):
        series = influx_query(influx.url, DATABASE, f'SELECT COUNT("{fld}") FROM "{measurement}"')
        total += sum(int(s["values"][0][1]) for s in series)
    return total


def run(args: argparse.Namespace, plan: Plan, root: Path) -> Outcome:
    broker = Mosquitto(root / "mosquitto")
    influx = InfluxDB(root / "influxdb")
    receiver = NotificationReceiver().start()
    state = root / "state"
    log_path = root / "ingest.log"
    proc: subprocess.Popen[bytes] | None = None
    monitor: Monitor | None = None
    broker.start()
    influx.start()
    try:
        url = f"sqlite+aiosqlite:///{state / 'carewatch.db'}"  # where the default puts it
        state.mkdir(parents=True)
        asyncio.run(register(url, plan, receiver))
        listen = f"{HOST}:{free_port()}"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "carewatch", "ingest"],
                env=ingester_env(broker, influx, state, listen),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(lambda: healthy(listen), 60, "the ingester's health check")
        target = MqttTarget(
            host=HOST,
            port=broker.port,
            tls=False,
            username="loadgen",
            password=broker.loadgen_password,
        )
        fleet = Fleet(plan, target, args.connections)
        monitor = Monitor(
            influx.url,
            sample_bands(plan, args.sample),
            listen,
            proc.pid,
            fleet.counters,
            receiver,
            args.progress,
            plan.target_rate,
            len(plan.falls),
        )
        pids = {"ingest": proc.pid, "influxd": influx.pid, "mosquitto": broker.pid}
        pids["bench"] = os.getpid()
        cpu_before = {name: cpu_seconds(pid or 0) for name, pid in pids.items()}
        began = time.monotonic()
        monitor.start()
        asyncio.run(fleet.run())
        tail = wait_tail(listen, fleet, receiver, args.tail)
        wall = time.monotonic() - began
        cpu = {n: (cpu_seconds(pid or 0) - cpu_before[n]) / wall for n, pid in pids.items()}
        monitor.stop.set()
        monitor.join(10)
        landed = count_points(influx)
        peak = rss_mb(proc.pid, "VmHWM")
    finally:
        if monitor is not None:
            monitor.stop.set()
        if proc is not None:
            proc.terminate()
            proc.wait(60)
        receiver.stop()
        broker.stop()
        influx.stop()
    c = fleet.counters
    fall_ms = {}
    for band, ts in c.fall_ts.items():
        got = receiver.first(f"/family/{band}")
        if got is not None:
            fall_ms[band] = got * 1000 - ts
    log_lines = log_path.read_text(errors="replace").splitlines()
    return Outcome(c, monitor.lags, monitor.floors, landed, fall_ms, peak, tail, log_lines, cpu)


def log_summary(lines: list[str], shown: int = 8) -> list[str]:
    """The log's kinds of line, most frequent first: count, then the first of each kind."""
    kinds: dict[str, tuple[int, str]] = {}
    for line in lines:
        parts = line.split(None, 3)  # time, level, logger:, message
        if len(parts) < 4 or not parts[2].endswith(":"):
            key = "other"
        else:
            key = " ".join((parts[1], parts[2], re.sub(r"[\d.,]+", "#", parts[3])[:60]))
        count, first = kinds.get(key, (0, line))
        kinds[key] = (count + 1, first)
    ordered = sorted(kinds.values(), key=lambda k: -k[0])
    return [f"{count:>5} x {first[:200]}" for count, first in ordered[:shown]]


def report(plan: Plan, args: argparse.Namespace, out: Outcome) -> bool:
    """Print the details, then the summary line; whether nothing was lost or left unnotified."""
    c = out.counters
    sent = c.published + c.falls_published
    offered = sent / plan.duration
    print(
        f"publisher: target {plan.target_rate:,.0f} msg/s, offered {offered:,.0f} msg/s"
        f" ({offered / plan.target_rate:.1%}), backlog at most {c.max_backlog:,} messages,"
        f" a due message waited at most {c.max_late:.2f} s, {c.unsent:,} due but not sent,"
        f" {c.refused:,} refused by the broker"
    )
    if offered < 0.99 * plan.target_rate:
        print("publisher: FELL BEHIND the target rate (offered < 99 % of N/S)")
    print(f"tail: {out.tail_seconds:.1f} s after publishing stopped")
    shares = ", ".join(f"{name} {share:.0%}" for name, share in out.cpu.items())
    print(f"CPU while publishing and for the tail, of one core: {shares}")
    if out.lags:
        print(
            f"lag ts -> queryable ({len(out.lags):,} samples of {args.sample} bands, polled"
            f" every {LAG_POLL} s), upper bounds: p50 {percentile(out.lags, 0.5):.2f} s,"
            f" p99 {percentile(out.lags, 0.99):.2f} s, max {max(out.lags):.2f} s;"
            f" lower bounds: p50 {percentile(out.floors, 0.5):.2f} s,"
            f" p99 {percentile(out.floors, 0.99):.2f} s, max {max(out.floors):.2f} s"
        )
    if out.fall_ms:
        falls = ", ".join(f"{band} {ms:.0f}" for band, ms in out.fall_ms.items())
        print(f"fall -> family POST (ms), in the order of the falls: {falls}")
    missing = sorted(set(c.fall_ts) - set(out.fall_ms))
    if missing:
        print(f"falls without a notification: {missing}")
    print(f"ingester log: {len(out.log_lines)} lines")
    for line in log_summary(out.log_lines):
        print(f"  {line}")
    lag = f"{percentile(out.lags, 0.99):.2f}" if out.lags else "-"
    fall_p99 = f"{percentile(list(out.fall_ms.values()), 0.99):.0f}" if out.fall_ms else "-"
    print(
        f"devices {plan.devices}, offered {offered:.0f} msg/s, landed {out.landed}/{sent},"
        f" p99 lag {lag} s, falls notified {len(out.fall_ms)}/{len(c.fall_ts)}"
        f" p99 {fall_p99} ms, RSS {out.peak_rss_mb:.0f} MB",
        flush=True,
    )
    return out.landed == sent and len(out.fall_ms) == len(plan.falls) and c.refused == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between readings")
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of publishing")
    parser.add_argument("--fall-every", type=float, default=30.0, help="seconds between falls")
    parser.add_argument("--connections", type=int, default=4, help="publisher connections")
    parser.add_argument("--sample", type=int, default=100, help="bands sampled for the lag")
    parser.add_argument("--tail", type=float, default=180.0, help="seconds to wait for the tail")
    parser.add_argument("--progress", type=float, default=15.0, help="seconds between lines")
    args = parser.parse_args()
    plan = make_plan(args.devices, args.interval, args.duration, args.fall_every)
    print(
        f"{plan.devices:,} wristbands, one reading each per {plan.interval:g} s"
        f" ({plan.target_rate:,.0f} msg/s) for {plan.duration:g} s, {len(plan.falls)} falls;"
        f" `carewatch ingest` with its defaults, broker, InfluxDB and receiver on this machine"
        f" ({os.cpu_count()} cores)",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="cw-bench-fleet-") as tmp:
        outcome = run(args, plan, Path(tmp))
    return 0 if report(plan, args, outcome) else 1


if __name__ == "__main__":
    sys.exit(main())
