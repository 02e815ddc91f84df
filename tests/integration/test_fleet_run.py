"""A simulated fleet through real Mosquitto into real InfluxDB: every message exactly once."""

from __future__ import annotations

import asyncio
import collections
from pathlib import Path

import pytest

from core.settings import MqttTarget
from simulators.credentials import derive_password
from simulators.fleet import run_fleet
from simulators.manifest import build_fleet, write_manifest
from simulators.models import FleetConfig
from simulators.scenarios import parse_spec
from tests.support.influx import influx_query
from tests.support.servers import HOST, InfluxDB, Mosquitto
from tests.support.stack import StartIngest, stack_settings
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

MEASUREMENTS = ("vitals", "wristband_event", "bin", "bin_deposit", "bin_event")


def points_by_device(url: str, database: str) -> dict[str, int]:
    """Distinct (measurement, time) per device: a duplicate point would not add one."""
    counts: collections.Counter[str] = collections.Counter()
    for measurement in MEASUREMENTS:
        for series in influx_query(
            url, database, f'SELECT * FROM "{measurement}" GROUP BY "device_id"'
        ):
            counts[series["tags"]["device_id"]] += len({row[0] for row in series["values"]})
    return dict(counts)


FLEET = FleetConfig(
    wristbands=16,
    bins=4,
    interval=1.0,
    duration=120.0,
    prefix="run-",
    incidents=tuple(
        parse_spec(s)
        for s in (
            "fall@w0001+20s",
            "tachycardia@w0002+10s-60s",
            "sorting_errors@b0001+30s-50s",
            "off_wrist@w0003+40s-70s",
            "bin_fire@b0002+60s-90s",
        )
    ),
)


def assert_landed_once(url: str, database: str, expected: dict[str, int]) -> None:
    """Wait until InfluxDB holds exactly the acked messages per device, one point each."""
    landed: dict[str, int] = {}

    def all_landed() -> bool:
        nonlocal landed
        landed = points_by_device(url, database)
        return landed == expected

    try:
        wait_until(all_landed, 30, "every acked message as one point", step=1.0)
    except AssertionError:
        diff = {
            d: (expected.get(d), landed.get(d))
            for d in expected
            if expected.get(d) != landed.get(d)
        }
        raise AssertionError(f"device: (acked, in InfluxDB) differ: {diff}") from None


def assert_incidents_left_their_trace(url: str, database: str) -> None:
    """Registry context reached the points, and the scripted incidents show in the data."""
    # Bins carry building and category from the manifest.
    bins = influx_query(url, database, 'SHOW TAG VALUES FROM "bin" WITH KEY = "category"')
    assert {row[1] for row in bins[0]["values"]} <= {"kitchen", "recyclable", "hazardous", "other"}
    deposits = influx_query(
        url, database, 'SELECT COUNT("count") FROM "bin_deposit" WHERE "correct" = false'
    )
    assert deposits and deposits[0]["values"][0][1] > 0, "the sorting-error burst left no trace"
    falls = influx_query(
        url,
        database,
        """SELECT COUNT("count") FROM "wristband_event" WHERE "type" = 'fall'""",
    )
    assert falls and falls[0]["values"][0][1] >= 1


def test_twenty_devices_for_two_minutes_land_exactly_once(
    mosquitto: Mosquitto,
    influxdb: InfluxDB,
    database: str,
    tmp_path: Path,
    start_ingest: StartIngest,
) -> None:
    devices = build_fleet(FLEET)
    mosquitto.add_users((d.device_id, derive_password(FLEET.secret, d.device_id)) for d in devices)
    manifest = tmp_path / "devices.csv"
    write_manifest(manifest, devices)
    settings = stack_settings(
        mosquitto,
        influxdb.url,
        database,
        tmp_path / "state",
        ingest={"devices_file": manifest},
    )
    ingest = start_ingest(settings)
    assert ingest.service is not None
    wait_until(ingest.service.subscriber.connected.is_set, 10, "the subscription")
    report = asyncio.run(
        run_fleet(
            FLEET,
            MqttTarget(host=HOST, port=mosquitto.port, tls=False, username=None, password=None),
        )
    )
    expected = {d: c.acked for d, c in report.devices.items()}
    assert sum(expected.values()) > 20 * 100
    assert all(c.published == c.acked for c in report.devices.values())
    assert_landed_once(influxdb.url, database, expected)
    assert ingest.service.metrics.rejected_total == 0
    assert_incidents_left_their_trace(influxdb.url, database)
    ingest.stop()
