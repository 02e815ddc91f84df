"""End-to-end ingest throughput against a plain C subscriber, in the same run.

Publishes N messages (default 200,000) from K wristbands at full speed, QoS 1,
through a real Mosquitto, twice with identical C publishers (`mosquitto_pub -l`):
once to `mosquitto_sub -q 1` (the raw rate a C subscriber receives) and once
to `carewatch ingest` (until every point is queryable in InfluxDB). Prints
both rates, their ratio, the publishers' own rate, and the ingester's peak
memory. Broker and InfluxDB run on this machine, as in the issue.

    .venv/bin/python bench/ingest.py [--messages 200000] [--devices 20]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.influx import influx_query
from tests.support.servers import HOST, InfluxDB, Mosquitto, free_port
from tests.support.stack import healthy
from tests.support.waiting import wait_until


def make_payloads(folder: Path, devices: int, messages: int, start_ms: int) -> list[Path]:
    """One file of JSON lines per device; ts unique per device, seq contiguous."""
    per_device = messages // devices
    files = []
    for d in range(devices):
        path = folder / f"w{d:04d}.jsonl"
        with path.open("w") as out:
            for i in range(per_device):
                out.write(
                    json.dumps(
                        {
                            "ts": start_ms + i,
                            "seq": i,
                            "hr": 60 + (i * 7 + d) % 40,
                            "spo2": 94 + i % 6,
                            "sbp": 110 + i % 30,
                            "dbp": 70 + i % 15,
                            "temp": 36.2 + (i % 8) / 10,
                            "steps": i,
                            "battery": 90,
                            "worn": True,
                        },
                        separators=(",", ":"),
                    )
                    + "\n"
                )
        files.append(path)
    return files


def publish_all(broker: Mosquitto, files: list[Path], tag: str) -> tuple[float, float]:
    """Run one mosquitto_pub per device at once; return (start, end) monotonic times."""
    procs = []
    start = time.monotonic()
    for path in files:
        device = path.stem
        procs.append(
            subprocess.Popen(
                [
                    "mosquitto_pub",
                    "-h",
                    HOST,
                    "-p",
                    str(broker.port),
                    "-u",
                    "loadgen",
                    "-P",
                    broker.loadgen_password,
                    "-i",
                    f"bench-{tag}-{device}",
                    "-q",
                    "1",
                    "-M",
                    "1000",
                    "-t",
                    f"cw/v1/wristband/{device}/telemetry",
                    "-l",
                ],
                stdin=path.open("rb"),
            )
        )
    for proc in procs:
        if proc.wait() != 0:
            raise SystemExit(f"mosquitto_pub failed with {proc.returncode}")
    return start, time.monotonic()


def bench_c_subscriber(broker: Mosquitto, files: list[Path], total: int) -> dict[str, float]:
    sub = subprocess.Popen(
        [
            "mosquitto_sub",
            "-h",
            HOST,
            "-p",
            str(broker.port),
            "-u",
            "loadgen",
            "-P",
            broker.loadgen_password,
            "-i",
            "bench-sub",
            "-q",
            "1",
            "-V",
            "mqttv5",
            "-t",
            "cw/v1/wristband/+/telemetry",
            "-C",
            str(total),
        ],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    start, published = publish_all(broker, files, "sub")
    sub.wait(600)
    end = time.monotonic()
    return {
        "rate": total / (end - start),
        "publish_rate": total / (published - start),
        "seconds": end - start,
    }


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_ingest(
    broker: Mosquitto, influx: InfluxDB, files: list[Path], total: int, state: Path
) -> dict[str, float]:
    database = "bench"
    env = dict(os.environ)
    env.update(
        {
            "CAREWATCH_MQTT_URL": broker.url(),
            "CAREWATCH_INFLUX_URL": influx.url,
            "CAREWATCH_INFLUX_DATABASE": database,
            "CAREWATCH_STATE_DIR": str(state),
            "CAREWATCH_HTTP_LISTEN": f"{HOST}:{free_port()}",
            "CAREWATCH_LOG_LEVEL": "WARNING",
        }
    )
    proc = subprocess.Popen([sys.executable, "-m", "carewatch", "ingest"], env=env)
    metrics_url = f"http://{env['CAREWATCH_HTTP_LISTEN']}/healthz"
    wait_until(lambda: healthy(env["CAREWATCH_HTTP_LISTEN"]), 30, "the ingester's health check")
    peak = 0.0
    cpu_before = cpu_seconds(proc.pid)
    start, published = publish_all(broker, files, "ingest")
    peak = max(peak, rss_mb(proc.pid))

    def landed() -> int:
        series = influx_query(influx.url, database, 'SELECT COUNT("hr") FROM "vitals"')
        return int(series[0]["values"][0][1]) if series else 0

    deadline = time.monotonic() + 600
    written = 0
    while time.monotonic() < deadline:
        peak = max(peak, rss_mb(proc.pid))
        with urllib.request.urlopen(metrics_url, timeout=5) as resp:
            written = json.load(resp)["ingest"]["written"]
        if written >= total:
            break
        time.sleep(0.05)
    end = time.monotonic()
    cpu = cpu_seconds(proc.pid) - cpu_before
    count = landed()
    proc.terminate()
    proc.wait(30)
    return {
        "rate": total / (end - start),
        "publish_rate": total / (published - start),
        "seconds": end - start,
        "queryable": count,
        "peak_rss_mb": peak,
        "cpu_share": cpu / (end - start),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--devices", type=int, default=20)
    args = parser.parse_args()
    total = (args.messages // args.devices) * args.devices
    with tempfile.TemporaryDirectory(prefix="cw-bench-") as tmp:
        root = Path(tmp)
        broker = Mosquitto(root / "mosquitto")
        influx = InfluxDB(root / "influxdb")
        broker.start()
        influx.start()
        try:
            start_ms = int(time.time() * 1000) - 3_600_000
            files = make_payloads(root, args.devices, total, start_ms)
            print(
                f"{total} messages from {args.devices} devices, QoS 1, "
                f"broker and InfluxDB on this machine ({os.cpu_count()} cores)"
            )
            c_sub = bench_c_subscriber(broker, files, total)
            print(
                f"mosquitto_sub (C) received   {c_sub['rate']:>9,.0f} msg/s "
                f"({c_sub['seconds']:.1f} s; publishers {c_sub['publish_rate']:,.0f} msg/s)"
            )
            ours = bench_ingest(broker, influx, files, total, root / "state")
            print(
                f"carewatch ingest end-to-end  {ours['rate']:>9,.0f} msg/s "
                f"({ours['seconds']:.1f} s to queryable; publishers "
                f"{ours['publish_rate']:,.0f} msg/s)"
            )
            print(f"points queryable in InfluxDB {ours['queryable']:>9,} of {total:,}")
            print(f"ingester peak RSS            {ours['peak_rss_mb']:>9.0f} MB")
            print(f"ingester CPU while it ran    {ours['cpu_share']:>9.0%} of one core")
            print(f"ratio ingest / C subscriber  {ours['rate'] / c_sub['rate']:>9.2f}")
            return 0 if ours["queryable"] == total else 1
        finally:
            broker.stop()
            influx.stop()


if __name__ == "__main__":
    sys.exit(main())
