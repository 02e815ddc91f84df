"""Scripted incidents through real Mosquitto into the rule engine: exactly these findings.

Each case runs a small simulated fleet (3 wristbands, 4 bins of one building,
1 s interval, per-device accounts and wills) with one incident, against a
rules file that turns the minutes of the defaults into seconds, and then
compares everything in `findings.jsonl` with the findings the rules imply:
the incident's own, opened (and, where the scenario ends, cleared), and no
finding at all for any other device.

What keeps the healthy devices quiet, so "no others" is exact:
- bins make no deposits of their own (`deposit_rate=0`), so only a
  sorting-error burst deposits;
- the simulated vitals stay inside every threshold and below a NEWS2 medium
  (no parameter scores 3);
- the manifest gives no home (no wandering); inactivity, not-worn, baselines
  and fill forecasts keep their hours and days.

The ingester is stopped before the fleet: a fleet's clean stop publishes a
retained `offline` for every device, which after `offline_grace` would rightly
open `offline` everywhere.
"""

from __future__ import annotations

import asyncio
import collections
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from carewatch.localstack import HOST, InfluxDB, Mosquitto
from core.settings import MqttTarget
from rules.findings import Finding, Severity, read_findings
from simulators.credentials import derive_password
from simulators.fleet import run_fleet
from simulators.manifest import build_fleet, write_manifest
from simulators.models import DeviceSpec, FleetConfig, FleetReport
from simulators.scenarios import parse_spec
from tests.support.stack import StartIngest, stack_settings
from tests.support.waiting import wait_until

PREFIX = "e2e-"
WARNING, CRITICAL, INFO = Severity.WARNING, Severity.CRITICAL, Severity.INFO

# The defaults' minutes as seconds; everything not named keeps its default.
RULES: dict[str, dict[str, object]] = {
    "threshold.hr_high": {"for": "5s", "clear_for": "3s"},
    "news2": {"for": "5s", "clear_for": "3s"},
    # The manifest CSV gives no reporting interval: the fleet's 1 s.
    "device": {"default_interval": "1s", "offline_intervals": 3, "offline_grace": "2s"},
    "bins": {"sorting_min_deposits": 5},
}

# (subject, rule, active, severity); subject "w0001" / "b0002" (no prefix) or "building".
Expected = tuple[str, str, bool, Severity]


@dataclass(frozen=True)
class Case:
    incident: str
    run_for: float  # seconds the fleet runs before the ingester stops
    expected: tuple[Expected, ...]


CASES = {
    # Immediate, critical (the simulator's confidence is 0.82-0.99) and latched: no clear.
    "fall": Case("fall@w0000+2s", 6, (("w0000", "fall", True, CRITICAL),)),
    # hr 130-160 from 2 s to 12 s: hr_high (> 120 at rest; steps do not move at a 1 s
    # interval) holds 5 s, then clears 3 s after hr is back <= 110. A pulse above 130
    # scores NEWS2 3, a "medium" on its own: news2 opens (warning) and clears with it.
    # An hr of exactly 130 scores only 2 and restarts news2's hold, so it may open later.
    "tachycardia": Case(
        "tachycardia@w0001+2s-12s",
        19,
        (
            ("w0001", "hr_high", True, WARNING),
            ("w0001", "hr_high", False, WARNING),
            ("w0001", "news2", True, WARNING),
            ("w0001", "news2", False, WARNING),
        ),
    ),
    # The link drops without DISCONNECT: the broker publishes the will (`offline`), which
    # after offline_grace opens `offline`. The status came first, so no `no_data` as well
    # ("exactly one finding speaks for a silent device", docs/rules.md).
    "silent": Case("silent@w0002+2s", 6, (("w0002", "offline", True, WARNING),)),
    # The same, and back at 7.15 s: the reconnect's retained `online` clears `offline`,
    # and silence counts from the reconnect (no `no_data` for the outage just reported).
    # The window ends 60 ms after one of w0002's telemetry ticks (its phase is 0.089 s at
    # seed 7), so its first reading comes ~0.9 s after the `online`, as a real band's does
    # when its interval has not come round yet: several ticks fall in between.
    "silent_then_back": Case(
        "silent@w0002+2s-7150ms",
        9,
        (("w0002", "offline", True, WARNING), ("w0002", "offline", False, WARNING)),
    ),
    # Fill ramps to 100 % over 4 s: bin_full opens at >= 90 %; the collection at the
    # window's end empties the bin and it clears (<= 30 %). No `bin_full_soon`: the forecast
    # needs hours of fill history (`predict_min_span`), and seconds of a ramp are not that.
    "bin_overflow": Case(
        "bin_overflow@b0001+2s-10s",
        13,
        (("b0001", "bin_full", True, WARNING), ("b0001", "bin_full", False, WARNING)),
    ),
    # Six wrong deposits (one per second, 2 s..7 s) into the kitchen bin b0000: accuracy
    # 0 % over >= 5 deposits, below the 85 % target, for the building of b0000. No
    # correct deposit follows, so it stays open. The burst adds kilos to the bin within
    # seconds: again no fill history for a forecast.
    "sorting_errors": Case(
        "sorting_errors@b0000+2s-8s", 10, (("building", "sorting_accuracy", True, INFO),)
    ),
}


def render_toml(tables: Mapping[str, Mapping[str, object]]) -> str:
    """Tables of scalars as TOML (JSON's strings, numbers and booleans are TOML's too)."""
    out = []
    for name, values in tables.items():
        out.append(f"[{name}]")
        out.extend(f"{key} = {json.dumps(value)}" for key, value in values.items())
        out.append("")
    return "\n".join(out)


def subject_of(devices: Mapping[str, DeviceSpec], name: str) -> str:
    if name == "building":
        # All four bins stand in one building; the CSV names it, and names are the keys.
        (building,) = {d.entry.building for d in devices.values() if d.name.startswith("b")}
        return building
    return devices[name].device_id


def run_fleet_then_stop_ingest(
    fleet: FleetConfig, port: int, run_for: float, stop_ingest: Callable[[], None]
) -> FleetReport:
    """Run the fleet for `run_for` s, stop the ingester (the last tick included), then the fleet."""

    async def drive() -> FleetReport:
        stop = asyncio.Event()
        target = MqttTarget(host=HOST, port=port, tls=False, username=None, password=None)
        task = asyncio.create_task(run_fleet(fleet, target, stop=stop))
        try:
            await asyncio.sleep(run_for)
            await asyncio.to_thread(stop_ingest)
        finally:
            stop.set()
        return await asyncio.wait_for(task, 15)

    return asyncio.run(drive())


def key(f: Finding) -> tuple[str, str, bool, Severity]:
    return (f.subject, f.rule, f.active, f.severity)


@pytest.mark.parametrize("name", list(CASES))
def test_scenario_produces_exactly_its_findings(
    name: str,
    mosquitto: Mosquitto,
    influxdb: InfluxDB,
    database: str,
    tmp_path: Path,
    start_ingest: StartIngest,
) -> None:
    case = CASES[name]
    fleet = FleetConfig(
        wristbands=3,
        bins=4,
        interval=1.0,
        seed=7,
        prefix=PREFIX,
        secret="e2e-secret",
        incidents=(parse_spec(case.incident),),
        deposit_rate=0.0,
        location=False,
    )
    devices = {d.name: d for d in build_fleet(fleet)}
    mosquitto.add_users(
        (d.device_id, derive_password(fleet.secret, d.device_id)) for d in devices.values()
    )
    manifest = tmp_path / "devices.csv"
    write_manifest(manifest, devices.values())
    rules_file = tmp_path / "rules.toml"
    rules_file.write_text(render_toml(RULES), encoding="utf-8")
    state = tmp_path / "state"
    settings = stack_settings(
        mosquitto,
        influxdb.url,
        database,
        state,
        ingest={"devices_file": manifest},
        rules={"file": rules_file, "tick_interval": 0.2},
    )
    ingest = start_ingest(settings)
    assert ingest.service is not None and ingest.rules is not None
    wait_until(ingest.service.subscriber.connected.is_set, 10, "the subscription")

    report = run_fleet_then_stop_ingest(fleet, mosquitto.port, case.run_for, ingest.stop)

    (incident,) = report.incidents
    assert name.startswith(incident.scenario.value)
    assert all(c.acked > 0 for c in report.devices.values()), report.devices
    findings = read_findings(state / "findings.jsonl")
    got = collections.Counter(key(f) for f in findings)
    want = collections.Counter(
        (subject_of(devices, s), rule, active, sev) for s, rule, active, sev in case.expected
    )
    timeline = [(f.ts - report.start_ms, *key(f)) for f in findings]
    assert got == want, f"findings (ms after start, subject, rule, active, severity): {timeline}"
    # Per subject and rule, opens and clears alternate, starting with an open.
    by_key: dict[tuple[str, str], list[bool]] = collections.defaultdict(list)
    for f in findings:
        by_key[f.key].append(f.active)
    for states in by_key.values():
        assert states == [i % 2 == 0 for i in range(len(states))], timeline
    check_details(name, findings, devices)


def check_details(name: str, findings: list[Finding], devices: Mapping[str, DeviceSpec]) -> None:
    """What each scenario's findings say beyond their keys."""
    first = findings[0]
    if name == "fall":
        assert first.latched and first.subject_kind == "wristband"
        assert first.value is not None and 0.82 <= first.value <= 0.99
    elif name == "tachycardia":
        hr = next(f for f in findings if f.rule == "hr_high" and f.active)
        assert hr.value is not None and hr.value >= 130 and hr.limit == 120
        assert hr.ts - hr.since >= 5000  # held for the test's 5 s
    elif name.startswith("silent"):
        assert first.detail == {"reason": "status"}
    elif name == "bin_overflow":
        full = next(f for f in findings if f.rule == "bin_full" and f.active)
        assert full.value is not None and full.value >= 90 and full.subject_kind == "bin"
    elif name == "sorting_errors":
        assert first.subject_kind == "building" and first.value == 0.0 and first.limit == 0.85
        assert first.detail["errors"] == first.detail["deposits"] >= 5
        assert first.building == devices["b0000"].entry.building
