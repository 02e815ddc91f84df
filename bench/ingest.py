"""Ingest throughput as a user runs it: `carewatch ingest` with rules and alerts on, 1,000 bands.

Publishes N messages (default 300,000) from K wristbands (default 1,000), round-robin
so every band's event time advances together, through a real Mosquitto, at full
speed, at QoS 1 and QoS 0; each run a fresh `carewatch ingest` process, state folder
and InfluxDB database. Configurations, in the same run: the defaults (rules and
alerts on) and rules off, for comparison. `--storm` makes every band cross limits
at once (SpO2 dips into the low band twice, batteries run down below 15 % and are
recharged), the moment CareWatch exists for; without it the stream is quiet.

Every band is registered (tests/support/seeds.py: a resident with one family contact,
one grid with its worker), so findings become alerts that notify people, through
apprise's `json://` to a local receiver standing in for the SMS and WeChat providers.

Prints per run: msg/s until every point is queryable (QoS 1) or until the
ingester stops receiving (QoS 0), landed/sent, findings journaled, alerts opened,
how long after the last message the alert side caught up with the journal, the
p99 from a finding (journaled) to its alert's first family notification (recorded
as sent), and the ingester's peak RSS. The fall-to-SMS latency under load is
`bench/alerts.py`.

    .venv/bin/python bench/ingest.py [--messages 300000] [--devices 1000] [--storm]
        [--no-rules] [--qos 1|0|both]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.journal import read_folder
from core.settings import MqttTarget
from protocol.codec import clean_connect_packet, publish_qos0_packet
from rules.journal import decode_entry
from simulators.wire import Publisher
from tests.support.figures import percentile, rss_mb, scrape_metrics
from tests.support.receiver import NotificationReceiver
from tests.support.seeds import register_bands
from tests.support.servers import HOST, InfluxDB, Mosquitto, free_port
from tests.support.stack import healthy
from tests.support.waiting import wait_until

STEP_MS = 10_000  # a band reports every 10 s of event time
LANES = 4  # publisher connections


@dataclass(frozen=True, slots=True)
class Config:
    name: str
    rules: bool
    qos: int


@dataclass(slots=True)
class Result:
    config: Config
    sent: int
    landed: int = 0
    seconds: float = 0.0
    publish_seconds: float = 0.0
    findings: int = 0
    alerts: int = 0
    alert_catch_up: float = 0.0
    notified: list[float] | None = None  # per alert: finding journaled -> first family message
    peak_rss_mb: float = 0.0

    @property
    def rate(self) -> float:
        return self.landed / self.seconds if self.seconds else 0.0


def reading(d: int, i: int, ts: int, storm: bool) -> dict[str, object]:
    """Message `i` of band `d`: quiet, or the storm's dips and flat batteries."""
    spo2 = 95 + (i + d) % 4
    battery = 90.0
    if storm:
        if 30 <= i % 150 < 60:
            spo2 = 88  # below 90 for 5 minutes: spo2_low, cleared 2 minutes after
        battery = 100.0 if i >= 200 else max(1.0, 40 - i * 0.25)  # low at i=100, recharged
    return {
        "ts": ts,
        "seq": i,
        "hr": 62 + (i * 7 + d) % 30,
        "spo2": spo2,
        "temp": 36.4 + (i % 5) / 10,
        "steps": i * 3,
        "battery": battery,
        "worn": True,
    }


def make_messages(devices: int, total: int, storm: bool) -> list[tuple[str, bytes]]:
    """(topic, payload), round-robin over the bands; event time ends a minute ago."""
    per_device = total // devices
    start = (time.time_ns() // 1_000_000) - (per_device + 6) * STEP_MS
    out = []
    for i in range(per_device):
        ts = start + i * STEP_MS
        for d in range(devices):
            body = json.dumps(reading(d, i, ts, storm), separators=(",", ":")).encode()
            out.append((f"cw/v1/wristband/b{d:05d}/telemetry", body))
    return out


async def publish(broker: Mosquitto, messages: list[tuple[str, bytes]], qos: int) -> float:
    """Publish everything over LANES connections; return the seconds it took."""
    target = MqttTarget(
        host=HOST, port=broker.port, tls=False, username="loadgen", password=broker.loadgen_password
    )
    lanes = [messages[i::LANES] for i in range(LANES)]
    start = time.monotonic()
    send = _lane_qos1 if qos else _lane_qos0
    await asyncio.gather(*(send(target, f"bench-{i}", lane) for i, lane in enumerate(lanes)))
    return time.monotonic() - start


async def _lane_qos1(target: MqttTarget, client_id: str, lane: list[tuple[str, bytes]]) -> None:
    publisher = Publisher(target, client_id, window=20_000, ack_counts=[0])
    await publisher.connect()
    topics: dict[str, bytes] = {}
    position = 0
    while position < len(lane):
        if publisher.free() <= 0:
            publisher.room.clear()
            await publisher.room.wait()
            continue
        batch = lane[position : position + min(256, publisher.free())]
        position += len(batch)
        publisher.send([(0, topics.setdefault(t, t.encode()), p) for t, p in batch])
        await publisher.drain()
    while publisher.pending:
        await asyncio.sleep(0.01)
    await publisher.close()


async def _lane_qos0(target: MqttTarget, client_id: str, lane: list[tuple[str, bytes]]) -> None:
    reader, writer = await asyncio.open_connection(target.host, target.port)
    writer.write(clean_connect_packet(client_id, target.username, target.password, keepalive=60))
    await reader.read(64)  # CONNACK
    for position in range(0, len(lane), 256):
        batch = lane[position : position + 256]
        writer.write(b"".join(publish_qos0_packet(t, p) for t, p in batch))
        await writer.drain()
    writer.write(b"\xe0\x00")  # DISCONNECT, normal
    await writer.drain()
    writer.close()


class JournalKeeper(threading.Thread):
    """Hard-links each rule journal segment into `keep` as it appears: the service trims
    them once applied, and the latency figure needs every finding's journal time."""

    def __init__(self, journal: Path, keep: Path) -> None:
        super().__init__(daemon=True)
        self.journal, self.keep = journal, keep
        self.done = threading.Event()

    def run(self) -> None:
        self.keep.mkdir(parents=True, exist_ok=True)
        while not self.done.wait(0.05):
            for segment in self.journal.glob("*.seg"):
                link = self.keep / segment.name
                if not link.exists():
                    with contextlib.suppress(FileNotFoundError):  # trimmed meanwhile
                        link.hardlink_to(segment)


def run_one(
    config: Config,
    broker: Mosquitto,
    influx: InfluxDB,
    messages: list[tuple[str, bytes]],
    root: Path,
    receiver: NotificationReceiver,
) -> Result:
    """One configuration against a fresh ingester, state folder and database."""
    state = root / f"state-{config.name}-q{config.qos}"
    listen = f"{HOST}:{free_port()}"
    bands = sorted({topic.split("/")[3] for topic, _ in messages})
    asyncio.run(register_bands(f"sqlite+aiosqlite:///{state / 'carewatch.db'}", bands))
    env = dict(os.environ)
    env.update(
        {
            "CAREWATCH_MQTT_URL": broker.url(),
            "CAREWATCH_INFLUX_URL": influx.url,
            "CAREWATCH_INFLUX_DATABASE": f"bench_{config.name}_q{config.qos}",
            "CAREWATCH_STATE_DIR": str(state),
            "CAREWATCH_HTTP_LISTEN": listen,
            "CAREWATCH_LOG_LEVEL": "WARNING",
            "CAREWATCH_RULES__ENABLED": "true" if config.rules else "false",
            "CAREWATCH_INGEST__CLIENT_ID": f"carewatch-bench-{config.name}-q{config.qos}",
            "CAREWATCH_ALERTS__SMS_URL": receiver.url("/sms/{phone}"),
            "CAREWATCH_ALERTS__WECHAT_URL": receiver.url("/wechat/{wechat}"),
            "CAREWATCH_ALERTS__QUIET_HOURS": "00:00-00:00",  # whatever the hour of the run
        }
    )
    keeper = JournalKeeper(state / "journal", root / f"journal-{config.name}-q{config.qos}")
    keeper.start()
    proc = subprocess.Popen([sys.executable, "-m", "carewatch", "ingest"], env=env)
    result = Result(config, len(messages))
    try:
        wait_until(lambda: healthy(listen), 60, "the ingester's subscription")
        start = time.monotonic()
        result.publish_seconds = asyncio.run(publish(broker, messages, config.qos))
        published = time.monotonic()
        result.landed, end = _wait_written(listen, proc.pid, result, len(messages))
        result.seconds = end - start
        if config.rules:
            caught_up = _wait_feed(listen)
            result.alert_catch_up = max(0.0, caught_up - published)
            result.findings = int(scrape_metrics(listen).get("carewatch_rules_findings_total", 0))
            wait_until(lambda: _sends_settled(state), 120, "the notifications to be sent")
    finally:
        proc.terminate()
        proc.wait(60)
        keeper.done.set()
        keeper.join()
    if config.rules:
        with sqlite3.connect(state / "carewatch.db") as db:
            result.alerts = db.execute("SELECT COUNT(*) FROM alerts").fetchone()[0]
        result.notified = _finding_to_family(state / "carewatch.db", keeper.keep)
    return result


def _sends_settled(state: Path) -> bool:
    with sqlite3.connect(state / "carewatch.db") as db:
        due = db.execute("SELECT COUNT(*) FROM notifications WHERE state IN ('pending', 'sending')")
        return due.fetchone()[0] == 0


def _finding_to_family(registry: Path, journal: Path) -> list[float]:
    """Per alert that told a family: its subject's first finding of the rule (journal time)
    to the first family notification recorded as sent. Grouped alerts tell nobody: skipped."""
    first_at: dict[tuple[str, str], int] = {}
    for payload in read_folder(journal):
        entry = decode_entry(payload)
        for f in entry.findings:
            if f.active:
                first_at.setdefault((f.subject, f.rule), entry.at)
    with sqlite3.connect(registry) as db:
        rows = db.execute(
            "SELECT a.subject, a.rule, MIN(n.sent_at) FROM alerts a"
            " JOIN notifications n ON n.alert_id = a.id"
            " WHERE n.audience = 'family' AND n.state = 'sent' GROUP BY a.id"
        ).fetchall()
    out = []
    for subject, rule, sent_at in rows:
        at = first_at.get((subject, rule))
        if at is not None and sent_at:
            sent = datetime.fromisoformat(sent_at).replace(tzinfo=UTC)  # SQLite: naive UTC
            out.append(sent.timestamp() - at / 1000)
    return out


def _wait_written(listen: str, pid: int, result: Result, total: int) -> tuple[int, float]:
    """Written points and when the last arrived: all of them, or none new for 3 s (QoS 0)."""
    written, last_change = 0, time.monotonic()
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        result.peak_rss_mb = max(result.peak_rss_mb, rss_mb(pid))
        now_written = int(scrape_metrics(listen).get("carewatch_ingest_written_total", 0))
        if now_written != written:
            written, last_change = now_written, time.monotonic()
        if written >= total or time.monotonic() - last_change > 3.0:
            break
        time.sleep(0.05)
    return written, last_change


def _wait_feed(listen: str) -> float:
    """When the alert side had applied every journal entry (the monotonic time)."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if scrape_metrics(listen).get("carewatch_alerts_feed_journal_depth", 0) == 0:
            return time.monotonic()
        time.sleep(0.1)
    return time.monotonic()


def report(result: Result) -> None:
    c = result.config
    publishers = result.sent / result.publish_seconds
    line = (
        f"{c.name:<9} QoS {c.qos}  {result.rate:>8,.0f} msg/s  landed {result.landed:,}/"
        f"{result.sent:,}  ({result.seconds:.1f} s; publishers {publishers:,.0f} msg/s)"
        f"  RSS {result.peak_rss_mb:.0f} MB"
    )
    if c.rules:
        line += (
            f"\n{'':<16}findings journaled {result.findings:,}, alerts opened {result.alerts:,},"
            f" alert side caught up {result.alert_catch_up:.1f} s after the last message"
        )
        told = result.notified or []
        if told:
            line += (
                f"\n{'':<16}finding -> first family notification: p50 "
                f"{percentile(told, 0.5):.1f} s, p99 {percentile(told, 0.99):.1f} s"
                f" ({len(told):,} alerts told a family)"
            )
    print(line, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=300_000)
    parser.add_argument("--devices", type=int, default=1_000)
    parser.add_argument("--storm", action="store_true", help="every band crosses limits at once")
    parser.add_argument("--no-rules", action="store_true", help="only the rules-off configuration")
    parser.add_argument("--qos", choices=["0", "1", "both"], default="both")
    args = parser.parse_args()
    total = (args.messages // args.devices) * args.devices
    qos_levels = [1, 0] if args.qos == "both" else [int(args.qos)]
    configs = [Config("rules-off", False, q) for q in qos_levels]
    if not args.no_rules:
        configs = [Config("defaults", True, q) for q in qos_levels] + configs
    messages = make_messages(args.devices, total, args.storm)
    stream = "storm: every band crosses limits" if args.storm else "quiet stream"
    print(
        f"{total:,} messages from {args.devices:,} wristbands ({stream}), broker and InfluxDB "
        f"on this machine ({os.cpu_count()} cores)",
        flush=True,
    )
    results = []
    with tempfile.TemporaryDirectory(prefix="cw-bench-") as tmp:
        root = Path(tmp)
        broker = Mosquitto(root / "mosquitto")
        influx = InfluxDB(root / "influxdb")
        receiver = NotificationReceiver()
        broker.start()
        influx.start()
        receiver.start()
        try:
            for config in configs:
                results.append(run_one(config, broker, influx, messages, root, receiver))
                report(results[-1])
        finally:
            receiver.stop()
            broker.stop()
            influx.stop()
    by = {(r.config.name, r.config.qos): r for r in results}
    for q in qos_levels:
        if ("defaults", q) in by and ("rules-off", q) in by:
            ratio = by["defaults", q].rate / by["rules-off", q].rate
            print(f"QoS {q}: defaults / rules-off = {ratio:.2f}")
    lost = [r for r in results if r.config.qos == 1 and r.landed != r.sent]
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
