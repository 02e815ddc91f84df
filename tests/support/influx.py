"""What landed in InfluxDB: queries, counts per device, and the nothing-lost check."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from typing import Any

from tests.support.publishers import StreamPublisher
from tests.support.waiting import wait_until


def influx_query(url: str, database: str, q: str) -> list[dict[str, Any]]:
    """The series an InfluxQL query returns (timestamps in ms); its error fails the test."""
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


def ts_by_device(url: str, database: str, measurement: str = "vitals") -> dict[str, set[int]]:
    """The timestamps of each device's points in one measurement."""
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
