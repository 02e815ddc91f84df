"""Alerts through the real app: scope, ack / resolve / comment, the timeline, response-time
figures on constructed rows, and the ack links (GET shows, POST acknowledges)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from alerts import links
from alerts.service import AlertService
from alerts.stats import AlertTimes, figures, percentile
from alerts.tables import Alert, Notification
from rules.findings import Finding, Severity, SubjectKind
from tests.integration.api.conftest import Api

T = TypeVar("T")

RESIDENT: dict[str, Any] = {
    "name": "张建国",
    "gender": "男",
    "birth_year": 1942,
    "unit": "2单元",
    "room": "201",
    "health_notes": "高血压",
    "contacts": [
        {
            "name": "张小明",
            "relation": "儿子",
            "phone": "13800138000",
            "channels": ["sms", "wechat"],
            "wechat": "wxpusher://T/UID_1",
        },
        {"name": "李芳", "relation": "女儿", "phone": "13900139000"},
    ],
}


def resident(api: Api, grid: str = "grid_a", **extra: Any) -> dict[str, Any]:
    body = {**RESIDENT, "grid_id": api.ids[grid], **extra}
    response = api.request("admin", "POST", "/residents", json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def service(api: Api) -> AlertService:
    return api.client.app.state.alerts  # type: ignore[attr-defined,no-any-return]


def db(api: Api, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in a session of the app's database, on the app's loop, and commit."""

    async def run() -> T:
        async with service(api).database.sessions() as session:
            result = await work(session)
            await session.commit()
            return result

    return api.client.portal.call(run)  # type: ignore[union-attr]


def fire(
    api: Api,
    who: dict[str, Any],
    rule: str = "fall",
    severity: Severity = Severity.CRITICAL,
    *,
    with_grid: bool = True,
) -> int:
    """Publish an active finding for a resident's band; the id of its alert."""
    now = int(time.time() * 1000)
    subject = f"w{who['id']:04d}"
    finding = Finding(
        rule=rule,
        subject_kind=SubjectKind.WRISTBAND,
        subject=subject,
        active=True,
        severity=severity,
        ts=now,
        since=now,
        device_id=subject,
        resident_id=who["id"],
        grid_id=who["grid_id"] if with_grid else None,
    )
    api.client.portal.call(service(api).publish, [finding])  # type: ignore[union-attr]

    async def find(session: AsyncSession) -> int:
        alert = await session.scalar(select(Alert).where(Alert.open_key == f"{subject}|{rule}"))
        assert alert is not None
        return alert.id

    return db(api, find)


def notifications(api: Api, alert_id: int) -> list[Notification]:
    async def rows(session: AsyncSession) -> list[Notification]:
        query = select(Notification).where(Notification.alert_id == alert_id)
        return list((await session.scalars(query.order_by(Notification.id))).all())

    return db(api, rows)


def alert_row(api: Api, alert_id: int) -> Alert:
    async def row(session: AsyncSession) -> Alert:
        alert = await session.get(Alert, alert_id)
        assert alert is not None
        return alert

    return db(api, row)


def ids(page: dict[str, Any]) -> list[int]:
    return [a["id"] for a in page["data"]]


# -- scope ------------------------------------------------------------------------------


def test_alerts_are_seen_within_scope_only(api: Api) -> None:
    in_a = fire(api, resident(api))
    in_b = fire(api, resident(api, "grid_b", name="李秀英"))
    # No grid on the finding: the resident's grid decides.
    gridless = fire(api, resident(api, name="王桂兰"), with_grid=False)
    assert sorted(ids(api.request("admin", "GET", "/alerts").json())) == [in_a, in_b, gridless]
    assert sorted(ids(api.request("wang", "GET", "/alerts").json())) == [in_a, gridless]
    assert ids(api.request("li", "GET", "/alerts").json()) == [in_b]
    assert len(ids(api.request("zhao", "GET", "/alerts").json())) == 3
    assert api.request("qian", "GET", "/alerts").json() == {"data": [], "count": 0}
    listed = api.request("wang", "GET", "/alerts").json()["data"]
    assert {a["grid_id"] for a in listed} == {api.ids["grid_a"]}
    assert {a["resident_name"] for a in listed} == {"张建国", "王桂兰"}

    # Outside the scope an alert does not exist, whatever one does with it.
    for method, path, body in (
        ("GET", f"/alerts/{in_b}", None),
        ("POST", f"/alerts/{in_b}/ack", None),
        ("POST", f"/alerts/{in_b}/resolve", {"note": "看过了"}),
        ("POST", f"/alerts/{in_b}/comments", {"text": "x"}),
    ):
        response = api.request("wang", method, path, json=body)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"]["message"] == "未找到该告警"
    assert api.request("qian", "GET", f"/alerts/{in_a}").status_code == 404
    assert alert_row(api, in_b).state == "firing"
    assert api.request("admin", "GET", "/alerts/999999").status_code == 404


def test_list_filters_and_paging(api: Api) -> None:
    fall = fire(api, resident(api))
    hr = fire(api, resident(api, name="刘强"), "hr_high", Severity.WARNING)
    other = fire(api, resident(api, "grid_b", name="赵敏"), "sos")

    async def age(session: AsyncSession) -> None:
        hours_ago = datetime.now(UTC) - timedelta(hours=2)
        await session.execute(update(Alert).where(Alert.id == hr).values(opened_at=hours_ago))

    db(api, age)

    def listed(**params: Any) -> list[int]:
        response = api.request("admin", "GET", "/alerts", params=params)
        assert response.status_code == 200, response.text
        return ids(response.json())

    assert listed() == [other, fall, hr]  # newest first
    assert listed(severity="warning") == [hr]
    assert listed(rule="sos") == [other]
    assert listed(grid_id=api.ids["grid_b"]) == [other]
    assert listed(min_age=60) == [hr]
    page = api.request("admin", "GET", "/alerts", params={"limit": 2, "offset": 1}).json()
    assert page["count"] == 3 and ids(page) == [fall, hr]
    assert api.request("admin", "POST", f"/alerts/{fall}/resolve", json={"note": "误报"}).is_success
    assert listed() == [other, hr]
    assert listed(state="resolved") == [fall]
    assert listed(state="all") == [other, fall, hr]
    assert api.request("admin", "GET", "/alerts", params={"state": "gone"}).status_code == 422


# -- the verbs -----------------------------------------------------------------------------


def test_ack_stops_the_escalation(api: Api) -> None:
    alert_id = fire(api, resident(api))
    before = alert_row(api, alert_id)
    assert before.state == "firing" and before.next_step_at is not None
    queued = notifications(api, alert_id)
    # Critical: every channel of every contact at once (the workers have none here).
    assert {(n.recipient_name, n.channel, n.state) for n in queued} == {
        ("张小明", "sms", "pending"),
        ("张小明", "wechat", "pending"),
        ("李芳", "sms", "pending"),
    }
    assert api.request("li", "POST", f"/alerts/{alert_id}/ack").status_code == 404

    response = api.request("wang", "POST", f"/alerts/{alert_id}/ack")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["state"] == "acknowledged" and body["acked_by"] == "wang"
    assert body["next_step_at"] is None
    after = alert_row(api, alert_id)
    assert after.next_step_at is None and after.acked_at is not None
    assert {n.state for n in notifications(api, alert_id)} == {"cancelled"}
    kinds = [e["kind"] for e in body["events"]]
    assert kinds[0] == "raised" and kinds[-2:] == ["cancelled", "acknowledged"]
    assert body["events"][-1]["actor"] == "wang"
    assert body["events"][-1]["detail"] == {"via": "api"}

    again = api.request("admin", "POST", f"/alerts/{alert_id}/ack")
    assert again.status_code == 200
    assert again.json()["acked_by"] == "wang"
    assert again.json()["acked_at"] == body["acked_at"]


def test_supervisors_acknowledge_and_comment_but_do_not_resolve(api: Api) -> None:
    alert_id = fire(api, resident(api, "grid_b"))
    assert api.request("qian", "POST", f"/alerts/{alert_id}/ack").status_code == 404
    response = api.request("zhao", "POST", f"/alerts/{alert_id}/ack")
    assert response.status_code == 200, response.text
    assert response.json()["acked_by"] == "zhao"
    comment = api.request("zhao", "POST", f"/alerts/{alert_id}/comments", json={"text": "已联系"})
    assert comment.status_code == 201
    refused = api.request("zhao", "POST", f"/alerts/{alert_id}/resolve", json={"note": "好了"})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"
    assert alert_row(api, alert_id).state == "acknowledged"


def test_resolve_needs_a_note_and_happens_once(api: Api) -> None:
    alert_id = fire(api, resident(api))
    for body in (None, {}, {"note": ""}, {"note": "   "}):
        response = api.request("wang", "POST", f"/alerts/{alert_id}/resolve", json=body)
        assert response.status_code == 422, (body, response.text)
    assert alert_row(api, alert_id).state == "firing"

    note = "已上门，老人无大碍，家属已到场"
    response = api.request("wang", "POST", f"/alerts/{alert_id}/resolve", json={"note": note})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["state"] == "resolved"
    assert body["resolved_by"] == "wang" and body["resolution_note"] == note
    assert body["events"][-1]["kind"] == "resolved"
    assert body["events"][-1]["detail"] == {"note": note}
    assert {n.state for n in notifications(api, alert_id)} == {"cancelled"}

    twice = api.request("admin", "POST", f"/alerts/{alert_id}/resolve", json={"note": "再次"})
    assert twice.status_code == 409
    error = twice.json()["error"]
    assert error["message"] == "告警已解除"
    assert error["message_en"] == "the alert is already resolved"
    late_ack = api.request("wang", "POST", f"/alerts/{alert_id}/ack")
    assert late_ack.status_code == 409
    assert late_ack.json()["error"]["message"] == "告警已解除，无需确认"
    assert alert_row(api, alert_id).resolution_note == note


def test_timeline_in_order_and_targets_masked(api: Api) -> None:
    alert_id = fire(api, resident(api))
    for text in ("已电话联系儿子", "十分钟后到"):
        response = api.request("wang", "POST", f"/alerts/{alert_id}/comments", json={"text": text})
        assert response.status_code == 201, response.text
    api.request("wang", "POST", f"/alerts/{alert_id}/ack")
    api.request("wang", "POST", f"/alerts/{alert_id}/resolve", json={"note": "无大碍"})
    response = api.request("zhao", "GET", f"/alerts/{alert_id}")
    assert response.status_code == 200
    detail = response.json()
    events = detail["events"]
    assert [e["kind"] for e in events] == [
        "raised",
        "comment",
        "comment",
        "cancelled",
        "acknowledged",
        "resolved",
    ]
    assert [e["detail"].get("text") for e in events[1:3]] == ["已电话联系儿子", "十分钟后到"]
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)
    assert detail["finding"]["rule"] == "fall"
    targets = {(n["recipient_name"], n["channel"]): n["target"] for n in detail["notifications"]}
    assert targets == {
        ("张小明", "sms"): "138****8000",
        ("张小明", "wechat"): "wxpusher://***",
        ("李芳", "sms"): "139****9000",
    }
    assert {n["attempts"] for n in detail["notifications"]} == {0}
    assert {n["sent_at"] for n in detail["notifications"]} == {None}
    assert "13800138000" not in response.text and "UID_1" not in response.text


# -- response times ----------------------------------------------------------------------------


def test_percentiles_and_the_target_share() -> None:
    assert percentile([], 90) is None
    assert percentile([10.0], 90) == 10.0
    assert percentile([10.0, 20.0, 40.0, 60.0], 90) == pytest.approx(54.0)
    t0 = datetime(2026, 3, 2, 2, tzinfo=UTC)
    now = t0 + timedelta(hours=5)

    def at(minutes: float | None) -> datetime | None:
        return None if minutes is None else t0 + timedelta(minutes=minutes)

    rows = [
        AlertTimes(t0, at(10), at(30), "wang"),
        AlertTimes(t0, None, at(20), "wang"),  # resolved without an ack: answered at 20
        AlertTimes(t0, None, at(5), "system"),  # cleared unanswered within the target
        AlertTimes(t0, None, at(45), "system"),  # cleared unanswered after it: missed
        AlertTimes(now - timedelta(minutes=10), None, None, None),  # too young to judge
        AlertTimes(t0, None, None, None),  # open for hours, nobody answered: missed
    ]
    got = figures(rows, now)
    assert (got.alerts, got.acknowledged, got.resolved, got.auto_resolved) == (6, 2, 2, 2)
    assert got.ack_median_min == 15.0
    assert got.resolve_median_min == 25.0
    assert got.within_target == 0.5  # 2 answered in time of 4 that needed an answer


def _times_row(
    grid: int,
    opened: datetime,
    acked: float | None = None,
    resolved: float | None = None,
    by: str = "wang",
    severity: str = "warning",
    group: bool = False,
) -> dict[str, Any]:
    return {
        "grid": grid,
        "opened": opened,
        "acked": None if acked is None else opened + timedelta(minutes=acked),
        "resolved": None if resolved is None else opened + timedelta(minutes=resolved),
        "by": by if resolved is not None else None,
        "severity": severity,
        "group": group,
    }


def _seed_response_times(api: Api) -> tuple[datetime, str, str]:
    """Alerts of two grids over two weeks (three weeks ago); (week 1, from, to)."""
    zone = ZoneInfo("Asia/Shanghai")
    today = datetime.now(zone).date()
    monday = today - timedelta(days=today.weekday() + 21)  # three weeks ago
    week1 = datetime(monday.year, monday.month, monday.day, 10, tzinfo=zone).astimezone(UTC)
    week2 = week1 + timedelta(days=7)
    grid_a, grid_b = api.ids["grid_a"], api.ids["grid_b"]
    row = _times_row
    rows = [
        row(grid_a, week1, acked=10, resolved=30, severity="critical"),
        row(grid_a, week1, acked=20, resolved=50),
        row(grid_a, week1, acked=40, resolved=90),
        row(grid_a, week1, acked=60, resolved=120),
        row(grid_a, week1, resolved=5, by="system"),  # cleared by itself, nobody needed
        row(grid_a, week1, acked=1, severity="info"),  # digest only: not counted
        row(grid_a, week1, acked=500, group=True),  # folded into another: not counted
        row(grid_b, week2, resolved=15, by="li"),  # resolved without an ack
        row(grid_a, week1 - timedelta(days=400), acked=1),  # out of the range
    ]

    async def store(session: AsyncSession) -> None:
        primary = None
        for n, r in enumerate(rows):
            alert = Alert(
                rule="hr_high",
                subject_kind="wristband",
                subject=f"w9{n:03d}",
                severity=r["severity"],
                state="resolved" if r["resolved"] else "acknowledged",
                grid_id=r["grid"],
                opened_at=r["opened"],
                updated_at=r["opened"],
                acked_at=r["acked"],
                acked_by="wang" if r["acked"] else None,
                resolved_at=r["resolved"],
                resolved_by=r["by"],
                group_id=primary.id if r["group"] and primary else None,
            )
            session.add(alert)
            await session.flush()
            primary = primary or alert

    db(api, store)
    start = (week1 - timedelta(days=1)).isoformat()
    end = (week2 + timedelta(days=3)).isoformat()
    return week1, start, end


def test_response_time_figures_per_grid_and_week(api: Api) -> None:
    zone = ZoneInfo("Asia/Shanghai")
    week1, start, end = _seed_response_times(api)
    grid_a, grid_b = api.ids["grid_a"], api.ids["grid_b"]
    response = api.request(
        "zhao", "GET", "/alerts/stats/response-times", params={"from": start, "to": end}
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["target_min"] == 30 and report["timezone"] == "Asia/Shanghai"
    year, week, _ = (week1.astimezone(zone)).isocalendar()
    first = f"{year}-W{week:02d}"
    weeks = {(w["grid_id"], w["week"]): w for w in report["weeks"]}
    assert set(weeks) == {(grid_a, first), (grid_b, report["weeks"][1]["week"])}
    a = weeks[(grid_a, first)]
    assert a["grid_name"] == "网格A"
    assert (a["alerts"], a["acknowledged"], a["resolved"], a["auto_resolved"]) == (5, 4, 4, 1)
    assert (a["ack_median_min"], a["ack_p90_min"]) == (30.0, 54.0)
    assert (a["resolve_median_min"], a["resolve_p90_min"]) == (70.0, 111.0)
    assert a["within_target"] == 0.5  # 10 and 20 of 10, 20, 40, 60; the cleared one left out
    b = report["weeks"][1]
    assert b["grid_id"] == grid_b and b["week"] > first
    assert (b["alerts"], b["acknowledged"], b["ack_median_min"], b["within_target"]) == (
        1,
        1,
        15.0,
        1.0,
    )
    assert [t["grid_id"] for t in report["totals"]] == [grid_a, grid_b]
    assert report["totals"][0]["alerts"] == 5


def test_response_times_within_scope_grid_and_range(api: Api) -> None:
    _, start, end = _seed_response_times(api)
    grid_a, grid_b = api.ids["grid_a"], api.ids["grid_b"]
    # A grid worker sees their own grid only; another community's supervisor nothing.
    mine = api.request(
        "wang", "GET", "/alerts/stats/response-times", params={"from": start, "to": end}
    ).json()
    assert {w["grid_id"] for w in mine["weeks"]} == {grid_a}
    theirs = api.request(
        "qian", "GET", "/alerts/stats/response-times", params={"from": start, "to": end}
    ).json()
    assert theirs["weeks"] == [] and theirs["totals"] == []
    only_b = api.request(
        "admin",
        "GET",
        "/alerts/stats/response-times",
        params={"from": start, "to": end, "grid_id": grid_b},
    ).json()
    assert [w["grid_id"] for w in only_b["weeks"]] == [grid_b]
    # The default range is the last 12 weeks: the rows above are in it.
    assert len(api.request("admin", "GET", "/alerts/stats/response-times").json()["weeks"]) == 2
    for params in ({"from": end, "to": start}, {"from": "2020-01-01", "to": "2022-01-01"}):
        bad = api.request("admin", "GET", "/alerts/stats/response-times", params=params)
        assert bad.status_code == 422
        assert bad.json()["error"]["code"] == "bad_range"


# -- ack links ------------------------------------------------------------------------------


def _token(api: Api, alert_id: int, key: str, lifetime: int = 3600) -> str:
    secret = api.client.app.state.secret_key  # type: ignore[attr-defined]
    return links.sign(secret, alert_id, key, int(time.time()) + lifetime)


def test_ack_link_get_shows_and_post_acknowledges(api: Api) -> None:
    alert_id = fire(api, resident(api))
    son = next(n for n in notifications(api, alert_id) if n.recipient_name == "张小明")
    token = _token(api, alert_id, son.recipient_key)

    shown = api.client.get(f"/a/{token}")
    assert shown.status_code == 200
    assert shown.headers["content-type"].startswith("text/html")
    assert shown.headers["cache-control"] == "no-store"
    page = shown.text
    assert "疑似跌倒" in page and "possible fall" in page and "张**" in page
    assert "张建国" not in page  # a forwarded link shows the name masked
    assert '<form method="post">' in page
    assert alert_row(api, alert_id).state == "firing"  # a link preview acknowledges nothing
    assert alert_row(api, alert_id).acked_at is None

    confirmed = api.client.post(f"/a/{token}")
    assert confirmed.status_code == 200
    assert "谢谢" in confirmed.text and "张小明" in confirmed.text
    alert = alert_row(api, alert_id)
    assert alert.state == "acknowledged" and alert.acked_by == "张小明"
    assert alert.next_step_at is None
    detail = api.request("admin", "GET", f"/alerts/{alert_id}").json()
    assert detail["events"][-1]["kind"] == "acknowledged"
    assert detail["events"][-1]["detail"] == {"via": "link"}
    again = api.client.get(f"/a/{token}")
    assert "已由张小明确认" in again.text and "<form" not in again.text

    api.request("wang", "POST", f"/alerts/{alert_id}/resolve", json={"note": "无大碍"})
    resolved = api.client.post(f"/a/{token}")
    assert resolved.status_code == 409 and "已解除" in resolved.text
    assert "已解除" in api.client.get(f"/a/{token}").text


def test_ack_link_of_an_unknown_recipient_acks_as_its_key(api: Api) -> None:
    alert_id = fire(api, resident(api))
    response = api.client.post(f"/a/{_token(api, alert_id, 'duty:7')}")
    assert response.status_code == 200
    assert alert_row(api, alert_id).acked_by == "duty:7"


def test_ack_links_tampered_or_expired_are_refused(api: Api) -> None:
    alert_id = fire(api, resident(api))
    good = _token(api, alert_id, "contact:1")
    tampered = good[:-1] + ("A" if good[-1] != "A" else "B")
    other_alert = links.sign(  # a signature over another alert id, spliced in
        api.client.app.state.secret_key,  # type: ignore[attr-defined]
        alert_id + 1,
        "contact:1",
        int(time.time()) + 3600,
    )
    spliced = f"{good.rsplit('-', 1)[0]}-{other_alert.rsplit('-', 1)[1]}"
    expired = _token(api, alert_id, "contact:1", lifetime=-60)
    forged = links.sign("not-our-secret", alert_id, "contact:1", int(time.time()) + 3600)
    gone = _token(api, 999_999, "contact:1")
    cases = [
        (tampered, 404, "链接无效"),
        (spliced, 404, "链接无效"),
        (forged, 404, "链接无效"),
        ("garbage", 404, "链接无效"),
        ("x/y/z", 404, "链接无效"),
        (expired, 410, "链接已过期"),
        (gone, 404, "链接无效"),
    ]
    for token, status, phrase in cases:
        for method in ("GET", "POST"):
            response = api.client.request(method, f"/a/{token}")
            assert response.status_code == status, (token, method, response.text)
            assert response.headers["content-type"].startswith("text/html")
            assert phrase in response.text and "Traceback" not in response.text
    assert alert_row(api, alert_id).state == "firing"
    assert "/a/{token}" not in str(api.client.app.openapi()["paths"])  # type: ignore[attr-defined]
