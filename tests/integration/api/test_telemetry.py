"""A resident's telemetry history from real InfluxDB, across a wristband that changed hands."""

from __future__ import annotations

import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from core.influx import InfluxClient
from devices.tables import DeviceBinding
from tests.integration.api.conftest import Api
from tests.integration.api.test_registry_api import resident
from tests.support.servers import InfluxDB


def write_points(influx: InfluxDB, database: str, lines: list[str]) -> None:
    urllib.request.urlopen(f"{influx.url}/query", data=f"q=CREATE DATABASE {database}".encode())
    request = urllib.request.Request(
        f"{influx.url}/write?db={database}&precision=ms", data="\n".join(lines).encode()
    )
    with urllib.request.urlopen(request) as response:
        assert response.status == 204


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_history_follows_the_bindings(api: Api, influxdb: InfluxDB, database: str) -> None:
    api.client.app.state.influx = InfluxClient(influxdb.url, database)  # type: ignore[attr-defined]
    grandpa = resident(api)
    grandma = resident(api, name="王秀英")
    api.request("admin", "POST", "/devices", json={"id": "w7", "kind": "wristband"})
    api.request("wang", "POST", "/devices/w7/bind", json={"resident_id": grandpa["id"]})
    api.request("wang", "POST", "/devices/w7/bind", json={"resident_id": grandma["id"]})
    now = datetime.now(UTC).replace(microsecond=0)
    handover = now - timedelta(hours=1)

    async def backdate() -> None:
        # The wristband went to grandpa two hours ago and to grandma one hour ago.
        async with api.client.app.state.database.sessions() as session:  # type: ignore[attr-defined]
            first, second = (
                await session.scalars(select(DeviceBinding).order_by(DeviceBinding.id))
            ).all()
            first.start, first.end, second.start = now - timedelta(hours=2), handover, handover
            await session.commit()

    api.client.portal.call(backdate)  # type: ignore[union-attr]
    start_ms = int((now - timedelta(hours=2)).timestamp() * 1000)
    # One reading a minute; grandpa's heart rate 60, grandma's 90.
    lines = [
        f"vitals,device_id=w7 hr={60 if t < handover.timestamp() * 1000 else 90},spo2=97 {t}"
        for t in range(start_ms, int(now.timestamp() * 1000), 60_000)
    ]
    write_points(influxdb, database, lines)
    window = {"start": (now - timedelta(hours=3)).isoformat(), "end": now.isoformat()}
    his = api.request("wang", "GET", f"/residents/{grandpa['id']}/telemetry", params=window).json()
    hers = api.request("wang", "GET", f"/residents/{grandma['id']}/telemetry", params=window).json()
    assert his["interval_s"] == 60  # three hours at <= 500 points: one-minute buckets
    assert len(his["points"]) == 60 and len(hers["points"]) == 60
    assert {p["values"]["hr"] for p in his["points"]} == {60}
    assert {p["values"]["hr"] for p in hers["points"]} == {90}
    week = api.request(
        "wang",
        "GET",
        f"/residents/{grandpa['id']}/telemetry",
        params={"start": (now - timedelta(days=7)).isoformat()},
    ).json()
    assert week["interval_s"] == 1800 and len(week["points"]) <= 336
    bad = api.request(
        "wang",
        "GET",
        f"/residents/{grandpa['id']}/telemetry",
        params={"start": now.isoformat(), "end": (now - timedelta(hours=1)).isoformat()},
    )
    assert bad.status_code == 422
