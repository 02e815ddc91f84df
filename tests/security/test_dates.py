"""Dates the API takes are bounded (2000 .. now + 5 min); one stored before that breaks nothing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import update

from core.db import Database
from devices.tables import Visit
from tests.integration.api.conftest import Api
from tests.integration.api.test_registry_api import resident

pytestmark = pytest.mark.integration  # the `api` fixture: SQLite and PostgreSQL

BAD = ["9999-12-31T00:00:00Z", "1025-06-01T08:00:00+08:00", "2099-01-01T00:00:00"]


@pytest.mark.parametrize("when", BAD)
def test_a_visit_dated_out_of_range_is_refused(api: Api, when: str) -> None:
    created = resident(api, service_needs=["daily_check"])
    answer = api.request(
        "wang", "POST", f"/residents/{created['id']}/visits", json={"visited_at": when}
    )
    assert answer.status_code == 422, answer.text
    assert "2000-01-01" in answer.text


@pytest.mark.parametrize("when", BAD)
def test_a_report_or_chart_bounded_out_of_range_is_refused(api: Api, when: str) -> None:
    created = resident(api)
    for path, params in (
        ("/alerts/stats/response-times", {"from": when}),
        (f"/residents/{created['id']}/telemetry", {"start": when}),
    ):
        answer = api.request("admin", "GET", path, params=params)
        assert answer.status_code == 422, (path, answer.text)


def test_a_future_visit_stored_earlier_neither_breaks_nor_hides_the_due_list(
    api: Api, database_url: str
) -> None:
    created = resident(api, service_needs=["daily_check"])
    visit = api.request("wang", "POST", f"/residents/{created['id']}/visits", json={})
    assert visit.status_code == 201
    database = Database(database_url)  # its own connections: the app's belong to its loop

    async def mistype() -> None:  # as a mistyped year stored before dates were checked
        async with database.sessions() as session, session.begin():
            far = datetime(9999, 12, 31, tzinfo=UTC)
            await session.execute(update(Visit).values(visited_at=far))
        await database.dispose()

    asyncio.run(mistype())
    answer = api.request("wang", "GET", "/visits/due")
    assert answer.status_code == 200, answer.text
    due = [d for d in answer.json() if d["resident_id"] == created["id"]]
    assert due and due[0]["last_visit"] is None  # still due: the bogus visit does not count
