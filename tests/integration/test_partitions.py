"""Two ingest workers, each owning part of the fleet; one killed, its partition taken over.

Mosquitto's shared subscriptions hand out messages round-robin, which would split a
device's readings over the workers. Each worker here reads every message and keeps
the devices of its partition (`CAREWATCH_INGEST__PARTITION=i/n`, a hash of the device
id), so a device's readings all reach one worker. Worker 0 is SIGKILLed in the middle
of a sustained tachycardia on every band, before any alert opened; a new worker takes
its partition, with its client id (so the broker's queued messages) but not its state
folder (the volume is lost): nothing lost, and one alert per band, the killed worker's
opened by the new one.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from protocol.topics import partition_of
from tests.support.figures import scrape_metrics
from tests.support.influx import count_by_device
from tests.support.publishers import publish_hr
from tests.support.servers import HOST, free_port
from tests.support.stack import Stack, StartProcess, healthy
from tests.support.waiting import wait_until

BANDS = [f"w-part-{i:02d}" for i in range(24)]
STEP_MS = 10_000
READINGS = 60  # per band: 10 normal, then 50 at 140 bpm


def worker_env(
    stack: Stack, index: int, state: Path, registry: Path, rules: Path
) -> dict[str, str]:
    return {
        "CAREWATCH_MQTT_URL": stack.broker.url(),
        "CAREWATCH_INFLUX_URL": stack.influx_url,
        "CAREWATCH_INFLUX_DATABASE": stack.database,
        "CAREWATCH_DATABASE_URL": f"sqlite+aiosqlite:///{registry}",
        "CAREWATCH_STATE_DIR": str(state),
        "CAREWATCH_HTTP_LISTEN": f"{HOST}:{free_port()}",
        "CAREWATCH_INGEST__PARTITION": f"{index}/2",
        "CAREWATCH_INGEST__CLIENT_ID": f"carewatch-ingest-p{index}",
        "CAREWATCH_INGEST__FLUSH_INTERVAL": "0.05",
        "CAREWATCH_RULES__FILE": str(rules),
    }


def test_a_killed_workers_partition_is_taken_over_nothing_lost_no_alert_twice(
    stack: Stack, ingest_process: StartProcess
) -> None:
    owners = {band: partition_of(f"cw/v1/wristband/{band}/telemetry", 2) for band in BANDS}
    assert set(owners.values()) == {0, 1}  # both workers own some of these bands
    root = stack.state_dir.parent
    rules = root / "rules.toml"
    rules.write_text('[threshold.hr_high]\nfor = "3m"\n')
    registry = root / "registry.db"
    envs = [worker_env(stack, i, root / f"worker{i}", registry, rules) for i in (0, 1)]
    workers = []
    for env in envs:  # one after the other: the first one creates the registry's tables
        workers.append(ingest_process(env))
        wait_until(lambda env=env: healthy(env["CAREWATCH_HTTP_LISTEN"]), 30, "a worker")

    start = (time.time_ns() // 1_000_000 // STEP_MS) * STEP_MS - 15 * 60_000
    readings = [
        (band, start + i * STEP_MS, 80.0 if i < 10 else 140.0)
        for i in range(READINGS)
        for band in BANDS
    ]
    # Twenty readings a band, ten of them at 140 bpm: 100 s of the 3 minutes, no alert yet.
    half = 20 * len(BANDS)
    publish_hr(stack.broker, readings[:half], STEP_MS)

    def landed() -> dict[str, int]:
        return count_by_device(stack.influx_url, stack.database, "vitals", "hr")

    wait_until(lambda: sum(landed().values()) >= half, 30, "the first half to land")
    workers[0].kill()
    # Worker 0's share waits in its session at the broker.
    publish_hr(stack.broker, readings[half:], STEP_MS)

    # The takeover: partition 0's client id and share, a state folder of its own.
    envs[0]["CAREWATCH_STATE_DIR"] = str(root / "takeover")
    takeover = ingest_process(envs[0])
    wait_until(lambda: healthy(envs[0]["CAREWATCH_HTTP_LISTEN"]), 30, "the takeover worker")
    wait_until(lambda: sum(landed().values()) >= len(readings), 60, "every reading to land")
    assert landed() == dict.fromkeys(BANDS, READINGS)

    def alerts() -> dict[str, int]:
        with sqlite3.connect(registry) as db:
            rows = db.execute(
                "SELECT subject, COUNT(*) FROM alerts WHERE rule = 'hr_high' GROUP BY subject"
            )
            return dict(rows.fetchall())

    wait_until(lambda: set(alerts()) == set(BANDS), 60, "an hr_high alert for every band")
    # Worker 1 judged its own bands' readings and only those.
    ours = sum(1 for band in BANDS if owners[band] == 1)
    figures = scrape_metrics(envs[1]["CAREWATCH_HTTP_LISTEN"])
    assert figures["carewatch_rules_readings_total"] == ours * READINGS
    assert figures["carewatch_ingest_foreign_total"] >= (len(BANDS) - ours) * READINGS
    assert takeover.stop() == 0
    assert workers[1].stop() == 0
    assert alerts() == dict.fromkeys(BANDS, 1)
    for log in sorted(root.glob("ingest-*.log")):
        assert "Traceback" not in log.read_text(), log
