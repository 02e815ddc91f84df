"""Ingester memory over a long run of a large fleet (2,000 devices, ten minutes): is it flat?

Local Mosquitto and InfluxDB, `carewatch ingest` and `carewatch simulate` (one MQTT client per
device) as processes; prints the ingester's RSS every 10 s and what it wrote.

    .venv/bin/python bench/soak.py [--devices 2000] [--minutes 10] [--interval 1s]
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

from simulators.credentials import derive_password
from simulators.manifest import build_fleet
from simulators.models import FleetConfig
from tests.support.figures import rss_mb
from tests.support.servers import HOST, InfluxDB, Mosquitto, free_port


def metrics(url: str) -> dict[str, object]:
    """The ingest section of the service's health snapshot."""
    with urllib.request.urlopen(url, timeout=5) as resp:
        snapshot: dict[str, object] = json.load(resp)["ingest"]
        return snapshot


def wait_healthy(url: str, timeout: float = 30.0) -> None:
    """Wait until the ingester answers its health URL."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            metrics(url)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def start_simulator(
    env: dict[str, str], fleet: FleetConfig, interval: str, minutes: float
) -> subprocess.Popen[bytes]:
    """`carewatch simulate` with the fleet, one MQTT client and account per device."""
    argv = [sys.executable, "-m", "carewatch", "simulate"]
    argv += ["--wristbands", str(fleet.wristbands), "--bins", str(fleet.bins)]
    argv += ["--prefix", fleet.prefix, "--interval", interval]
    argv += ["--duration", f"{int(minutes * 60)}s"]
    return subprocess.Popen(argv, env=env, stderr=subprocess.DEVNULL)


def sample(ingest: subprocess.Popen[bytes], sim: subprocess.Popen[bytes], health: str) -> None:
    """Print the ingester's RSS and counters every 10 s while the simulator runs, then a summary."""
    samples = []
    start = time.monotonic()
    while sim.poll() is None:
        time.sleep(10)
        m = metrics(health)
        samples.append(rss_mb(ingest.pid))
        print(
            f"  {time.monotonic() - start:5.0f} s  RSS {samples[-1]:6.1f} MB  "
            f"written {m['written']:>9}  seen {m['devices_seen']:>5}  "
            f"pending {m['pending']:>5}",
            flush=True,
        )
    time.sleep(3)
    m = metrics(health)
    print(
        f"RSS first {samples[0]:.1f} MB, max {max(samples):.1f} MB, "
        f"last {samples[-1]:.1f} MB; written {m['written']}, rejected "
        f"{m['rejected_total']}, received {m['received']}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--interval", default="1s")
    args = parser.parse_args()
    bins = args.devices // 10
    fleet = FleetConfig(wristbands=args.devices - bins, bins=bins, prefix="soak-")
    with tempfile.TemporaryDirectory(prefix="cw-soak-") as tmp:
        root = Path(tmp)
        users = [
            (d.device_id, derive_password(fleet.secret, d.device_id)) for d in build_fleet(fleet)
        ]
        broker = Mosquitto(root / "mosquitto", users=users)
        influx = InfluxDB(root / "influxdb")
        broker.start()
        influx.start()
        listen = f"{HOST}:{free_port()}"
        env = dict(
            os.environ,
            CAREWATCH_MQTT_URL=broker.url(),
            CAREWATCH_INFLUX_URL=influx.url,
            CAREWATCH_STATE_DIR=str(root / "state"),
            CAREWATCH_HTTP_LISTEN=listen,
            CAREWATCH_LOG_LEVEL="WARNING",
        )
        ingest = subprocess.Popen([sys.executable, "-m", "carewatch", "ingest"], env=env)
        sim = None
        try:
            health = f"http://{listen}/healthz"
            wait_healthy(health)
            sim_env = dict(env, CAREWATCH_MQTT_URL=f"mqtt://{HOST}:{broker.port}")
            sim = start_simulator(sim_env, fleet, args.interval, args.minutes)
            print(
                f"{args.devices} devices, one message each per {args.interval}, "
                f"{args.minutes:g} min; ingester RSS every 10 s:"
            )
            sample(ingest, sim, health)
            return 0
        finally:
            if sim is not None and sim.poll() is None:
                sim.terminate()
                sim.wait(60)
            ingest.terminate()
            ingest.wait(60)
            broker.stop()
            influx.stop()


if __name__ == "__main__":
    sys.exit(main())
