"""Alert events land in InfluxDB as `alert_event` points, for charts of alerts over time."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from core.influx import InfluxClient
from rules.findings import Severity
from tests.integration.test_alert_lifecycle import World
from tests.support.influx import influx_query
from tests.support.servers import InfluxDB


def test_raised_acknowledged_and_resolved_are_charted_with_their_durations(
    tmp_path: Path, influxdb: InfluxDB, database: str
) -> None:
    world = World(tmp_path)

    async def run() -> None:
        await world.setup()
        client = InfluxClient(influxdb.url, database, None)
        await client.ensure_database()
        world.service.influx = client
        await world.service.publish([world.finding("hr_high", severity=Severity.WARNING)])
        (alert,) = await world.alerts()
        world.clock.advance(minutes=12)
        await world.service.acknowledge(alert.id, "王芳")
        world.clock.advance(minutes=30)
        await world.service.resolve(alert.id, "王芳", "已陪同就医")
        await client.aclose()
        await world.database.dispose()

    asyncio.run(run())
    rows = influx_query(
        influxdb.url, database, 'SELECT "seconds", "alert_id" FROM alert_event GROUP BY "kind"'
    )
    by_kind = {r["tags"]["kind"]: r["values"] for r in rows}
    assert set(by_kind) == {"raised", "acknowledged", "resolved"}
    assert by_kind["acknowledged"][0][1] == timedelta(minutes=12).total_seconds()
    assert by_kind["resolved"][0][1] == timedelta(minutes=42).total_seconds()
