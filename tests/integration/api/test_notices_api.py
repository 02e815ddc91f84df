"""Area notices through the real app: who is in the area, who is told, who confirms safe."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.tables import NoticeCheck, Notification
from devices.tables import User
from tests.integration.api.conftest import Api

T = TypeVar("T")


def db(api: Api, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in a session of the app's database, on the app's loop, and commit."""

    async def run() -> T:
        async with api.client.app.state.database.sessions() as session:  # type: ignore[attr-defined]
            result = await work(session)
            await session.commit()
            return result

    return api.client.portal.call(run)  # type: ignore[union-attr]


RAIN = {"title": "暴雨预警", "text": "今晚有大暴雨，请确认低洼住户安全"}


def resident(api: Api, name: str, grid: str, **extra: Any) -> dict[str, Any]:
    body = {
        "name": name,
        "grid_id": api.ids[grid],
        "contacts": [
            {"name": f"{name}的儿子", "relation": "儿子", "phone": "13800138000"},
            {"name": f"{name}的女儿", "relation": "女儿", "phone": "13900139000"},
        ],
        **extra,
    }
    response = api.request("admin", "POST", "/residents", json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


@pytest.fixture
def area(api: Api) -> dict[str, dict[str, Any]]:
    """Four residents; the grid workers have phones, so they can be told."""

    async def phones(session: AsyncSession) -> None:
        for username, phone in (("wang", "13700137001"), ("li", "13700137002")):
            await session.execute(update(User).where(User.username == username).values(phone=phone))

    db(api, phones)
    return {
        "zhang": resident(
            api,
            "张建国",
            "grid_a",
            building_id=api.ids["building_a"],
            unit="2单元",
            room="201",
            tags=["low-lying"],
        ),
        "liu": resident(api, "刘强", "grid_a", tags=["lives-alone"]),
        "chen": resident(api, "陈秀英", "grid_b", room="102", tags=["low-lying", "lives-alone"]),
        "zhou": resident(api, "周明", "grid_b", tags=["lives-alone"]),
    }


def messages(api: Api, notice_id: int) -> list[Notification]:
    async def rows(session: AsyncSession) -> list[Notification]:
        query = select(Notification).where(Notification.dedupe_key.like(f"notice:{notice_id}:%"))
        return list((await session.scalars(query.order_by(Notification.id))).all())

    return db(api, rows)


def checks(api: Api, notice_id: int) -> list[NoticeCheck]:
    async def rows(session: AsyncSession) -> list[NoticeCheck]:
        query = select(NoticeCheck).where(NoticeCheck.notice_id == notice_id)
        return list((await session.scalars(query.order_by(NoticeCheck.resident_id))).all())

    return db(api, rows)


def raise_notice(api: Api, who: str, **area: Any) -> Any:
    return api.request(who, "POST", "/notices", json={**RAIN, **area})


def test_a_notice_checks_the_residents_of_its_area(
    api: Api, area: dict[str, dict[str, Any]]
) -> None:
    response = raise_notice(api, "zhao", tags=["low-lying"])
    assert response.status_code == 201, response.text
    notice = response.json()
    assert notice["created_by"] == "zhao" and notice["closed_at"] is None
    assert notice["area"] == {"grid_ids": [], "building_ids": [], "tags": ["low-lying"]}
    assert (notice["residents"], notice["safe"]) == (2, 0)
    assert sorted(c.resident_id for c in checks(api, notice["id"])) == sorted(
        [area["zhang"]["id"], area["chen"]["id"]]
    )
    grids = {g["grid_id"]: g for g in notice["grids"]}
    assert set(grids) == {api.ids["grid_a"], api.ids["grid_b"]}
    assert grids[api.ids["grid_a"]]["grid_name"] == "网格A"
    assert grids[api.ids["grid_a"]]["checks"][0]["home"] == "3栋2单元201"
    assert grids[api.ids["grid_a"]]["pending"] == 1

    def covered(**where: Any) -> list[int]:
        response = raise_notice(api, "admin", **where)
        assert response.status_code == 201, response.text
        return sorted(c.resident_id for c in checks(api, response.json()["id"]))

    # Places are united; tags narrow them.
    assert covered(grid_ids=[api.ids["grid_b"]]) == [area["chen"]["id"], area["zhou"]["id"]]
    assert covered(building_ids=[api.ids["building_a"]]) == [area["zhang"]["id"]]
    assert covered(grid_ids=[api.ids["grid_a"]], building_ids=[api.ids["building_a"]]) == sorted(
        [area["zhang"]["id"], area["liu"]["id"]]
    )
    assert covered(grid_ids=[api.ids["grid_b"]], tags=["lives-alone"]) == sorted(
        [area["chen"]["id"], area["zhou"]["id"]]
    )
    assert covered(grid_ids=[api.ids["grid_a"]], tags=["lives-alone"]) == [area["liu"]["id"]]


def test_messages_reach_the_grid_workers_and_first_contacts(
    api: Api, area: dict[str, dict[str, Any]]
) -> None:
    notice = raise_notice(api, "zhao", tags=["low-lying"]).json()
    rows = messages(api, notice["id"])
    assert {r.alert_id for r in rows} == {None}
    assert {(r.kind, r.state, r.step) for r in rows} == {("notice", "pending", 0)}
    by_name = {r.recipient_name: r for r in rows}
    # Each grid's worker, and the first emergency contact of each resident in the area.
    assert set(by_name) == {"wang", "li", "张建国的儿子", "陈秀英的儿子"}
    wang, li = by_name["wang"], by_name["li"]
    assert wang.recipient_key == f"user:{api.ids['wang']}" and wang.audience == "worker"
    assert wang.dedupe_key == f"notice:{notice['id']}:user:{api.ids['wang']}:sms"
    assert wang.target == "13700137001"
    assert "暴雨预警" in wang.title
    assert "张建国（3栋2单元201）" in wang.body and "陈秀英" not in wang.body
    assert "陈秀英（102）" in li.body and "张建国" not in li.body
    son = by_name["张建国的儿子"]
    assert son.audience == "family" and son.target == "13800138000"
    assert "张建国" in son.body and "陈秀英" not in son.body  # never other residents' names
    assert notice["messages"] == {"pending": 4}
    # One message per worker even when their residents span several grids of the area.
    both = raise_notice(api, "admin", grid_ids=[api.ids["grid_a"]], tags=["low-lying"]).json()
    assert sorted(r.recipient_name for r in messages(api, both["id"])) == ["wang", "张建国的儿子"]


def test_who_may_raise_a_notice(api: Api, area: dict[str, dict[str, Any]]) -> None:
    assert raise_notice(api, "wang", tags=["low-lying"]).status_code == 403
    # Another community's supervisor: grids outside the scope do not exist...
    outside = raise_notice(api, "qian", grid_ids=[api.ids["grid_a"]])
    assert outside.status_code == 404
    # ...and their own area has nobody in it.
    empty = raise_notice(api, "qian", tags=["low-lying"])
    assert empty.status_code == 422 and empty.json()["error"]["code"] == "no_residents"
    assert raise_notice(api, "zhao").status_code == 422  # no area at all
    assert raise_notice(api, "zhao", tags=["   "]).status_code == 422
    assert raise_notice(api, "zhao", title=" ", tags=["low-lying"]).status_code == 422
    assert api.request("admin", "GET", "/notices").json()["count"] == 0


def test_marking_residents_safe(api: Api, area: dict[str, dict[str, Any]]) -> None:
    notice = raise_notice(api, "zhao", tags=["low-lying"]).json()
    nid, zhang, chen = notice["id"], area["zhang"]["id"], area["chen"]["id"]

    def confirm(who: str, resident_id: int, note: str = "") -> Any:
        path = f"/notices/{nid}/checks/{resident_id}"
        return api.request(who, "POST", path, json={"note": note})

    assert confirm("li", zhang).status_code == 404  # not li's grid: not found
    assert confirm("zhao", chen).status_code == 403  # supervisors read, workers confirm
    assert confirm("wang", area["liu"]["id"]).status_code == 404  # not in the area
    assert api.request("qian", "GET", f"/notices/{nid}").status_code == 404

    response = confirm("wang", zhang, "已电话确认，老人在家")
    assert response.status_code == 200, response.text
    check = response.json()
    assert check["safe"] and check["confirmed_by"] == "wang"
    assert check["note"] == "已电话确认，老人在家"
    assert confirm("admin", zhang, "again").json()["confirmed_by"] == "wang"  # first one stands

    mine = api.request("wang", "GET", f"/notices/{nid}").json()
    assert [g["grid_id"] for g in mine["grids"]] == [api.ids["grid_a"]]
    assert (mine["residents"], mine["safe"], mine["closed_at"]) == (1, 1, None)
    listed = api.request("wang", "GET", "/notices").json()
    assert listed["count"] == 1 and (listed["data"][0]["residents"], listed["data"][0]["safe"]) == (
        1,
        1,
    )

    assert confirm("li", chen).status_code == 200
    overall = api.request("zhao", "GET", f"/notices/{nid}").json()
    assert (overall["residents"], overall["safe"]) == (2, 2)
    assert overall["closed_at"] is not None
    progress = {g["grid_id"]: (g["safe"], g["pending"]) for g in overall["grids"]}
    assert progress == {api.ids["grid_a"]: (1, 0), api.ids["grid_b"]: (1, 0)}
    assert api.request("qian", "GET", "/notices").json()["count"] == 0
    assert api.request("admin", "GET", "/notices/999999").status_code == 404
