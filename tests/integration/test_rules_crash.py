"""SIGKILL in the middle of a sustained condition: one alert, opened when it should have been.

The ingester is killed after it acknowledged the first minutes of a tachycardia but
before any checkpoint held them; the journal replays them into the restarted engine.
"""

from __future__ import annotations

import sqlite3
import time

from core.journal import read_folder
from rules.findings import read_findings
from rules.journal import decode_entry
from tests.support.publishers import publish_hr
from tests.support.servers import HOST, free_port
from tests.support.stack import Stack, StartProcess, healthy
from tests.support.waiting import wait_until

DEVICE = "w-crash-1"
STEP_MS = 10_000


def test_sigkill_mid_tachycardia_opens_one_alert_at_the_right_time(
    stack: Stack, ingest_process: StartProcess
) -> None:
    rules = stack.state_dir.parent / "rules.toml"
    rules.write_text('[threshold.hr_high]\nfor = "3m"\n')
    listen = f"{HOST}:{free_port()}"
    env = {
        "CAREWATCH_MQTT_URL": stack.broker.url(),
        "CAREWATCH_INFLUX_URL": stack.influx_url,
        "CAREWATCH_INFLUX_DATABASE": stack.database,
        "CAREWATCH_STATE_DIR": str(stack.state_dir),
        "CAREWATCH_HTTP_LISTEN": listen,
        "CAREWATCH_RULES__FILE": str(rules),
        "CAREWATCH_RULES__CHECKPOINT_INTERVAL": "3600",  # only the start's and the stop's
        "CAREWATCH_INGEST__FLUSH_INTERVAL": "0.05",
    }
    # Event time, ten minutes ago: normal for a minute, then 140 bpm for five minutes.
    start = (time.time_ns() // 1_000_000 // STEP_MS) * STEP_MS - 10 * 60_000
    onset = start + 60_000
    readings = [
        (start + i * STEP_MS, 80.0 if start + i * STEP_MS < onset else 140.0) for i in range(37)
    ]
    before_kill = [r for r in readings if r[0] < onset + 2 * 60_000]  # two minutes into it

    ingest = ingest_process(env)
    wait_until(lambda: healthy(listen), 30, "the ingester's subscription")
    publish_hr(stack.broker, [(DEVICE, ts, hr) for ts, hr in before_kill], STEP_MS)
    findings_file = stack.state_dir / "findings.jsonl"
    journal = stack.state_dir / "journal"

    def judged() -> bool:
        # Judged and journaled (so acknowledged): every reading is in a journal entry.
        entries = [decode_entry(p) for p in read_folder(journal)]
        return sum(len(e.wt) for e in entries) >= len(before_kill)

    wait_until(judged, 30, "the first two minutes to be judged")
    ingest.kill()
    assert not [f for f in read_findings(findings_file) if f.rule == "hr_high"]

    ingest.start()
    wait_until(lambda: healthy(listen), 30, "the restarted ingester")
    rest = readings[len(before_kill) :]
    publish_hr(stack.broker, [(DEVICE, ts, hr) for ts, hr in rest], STEP_MS)
    wait_until(
        lambda: any(f.rule == "hr_high" for f in read_findings(findings_file)),
        30,
        "hr_high to open",
    )
    assert ingest.stop() == 0

    opened = [f for f in read_findings(findings_file) if f.rule == "hr_high" and f.active]
    assert len(opened) == 1
    (finding,) = opened
    assert finding.since == onset  # the clock started at the first high reading, before the kill
    assert finding.ts == onset + 3 * 60_000
    with sqlite3.connect(stack.state_dir / "carewatch.db") as db:
        alerts = db.execute("SELECT COUNT(*) FROM alerts WHERE rule = 'hr_high'").fetchone()[0]
    assert alerts == 1
