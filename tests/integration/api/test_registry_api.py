"""The registry through the real app: files, devices, bindings, visits, and every role boundary."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.api.conftest import Api

RESIDENT: dict[str, Any] = {
    "name": "张建国",
    "birth_year": 1942,
    "unit": "2单元",
    "room": "201",
    "health_notes": "高血压，服用氨氯地平",
    "service_needs": ["daily_check", "weekly_visit"],
    "tags": ["lives-alone"],
    "vital_limits": {"sbp_high": 170},
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


def resident(api: Api, who: str = "admin", grid: str = "grid_a", **extra: Any) -> dict[str, Any]:
    body = {**RESIDENT, "grid_id": api.ids[grid], **extra}
    response = api.request(who, "POST", "/residents", json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def test_resident_file_round_trip(api: Api) -> None:
    created = resident(api, building_id=api.ids["building_a"])
    assert [c["name"] for c in created["contacts"]] == ["张小明", "李芳"]
    assert created["vital_limits"] == {"sbp_high": 170}
    changed = api.request(
        "wang",
        "PATCH",
        f"/residents/{created['id']}",
        json={"health_notes": "高血压，糖尿病", "contacts": RESIDENT["contacts"][1:]},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["health_notes"] == "高血压，糖尿病"
    assert [c["name"] for c in changed.json()["contacts"]] == ["李芳"]
    listed = api.request("admin", "GET", "/residents", params={"tag": "lives-alone"}).json()
    assert listed["count"] == 1


def test_grid_worker_sees_only_their_grid(api: Api) -> None:
    mine = resident(api, "wang")
    theirs = resident(api, "li", grid="grid_b")
    assert api.request("wang", "GET", f"/residents/{mine['id']}").status_code == 200
    # Guessing another grid's id answers "not found": existence is not leaked.
    for method, path, body in (
        ("GET", f"/residents/{theirs['id']}", None),
        ("PATCH", f"/residents/{theirs['id']}", {"name": "x"}),
        ("DELETE", f"/residents/{theirs['id']}", None),
        ("GET", f"/residents/{theirs['id']}/export", None),
        ("POST", f"/residents/{theirs['id']}/visits", {"notes": "x"}),
    ):
        response = api.request("wang", method, path, json=body)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"]["message"].startswith("未找到")
    listing = api.request("wang", "GET", "/residents").json()
    assert [r["id"] for r in listing["data"]] == [mine["id"]]
    # Nor can a worker open a file in someone else's grid, or move one there.
    assert (
        api.request(
            "wang", "POST", "/residents", json={**RESIDENT, "grid_id": api.ids["grid_b"]}
        ).status_code
        == 404
    )
    assert (
        api.request(
            "wang", "PATCH", f"/residents/{mine['id']}", json={"grid_id": api.ids["grid_b"]}
        ).status_code
        == 404
    )


def test_supervisor_reads_their_community_only(api: Api) -> None:
    a = resident(api, grid="grid_a")
    b = resident(api, grid="grid_b")
    assert api.request("zhao", "GET", "/residents").json()["count"] == 2
    assert api.request("qian", "GET", "/residents").json()["count"] == 0
    assert api.request("qian", "GET", f"/residents/{a['id']}").status_code == 404
    # Supervisors read; they do not edit files.
    assert (
        api.request("zhao", "PATCH", f"/residents/{b['id']}", json={"name": "x"}).status_code == 403
    )


@pytest.mark.parametrize("who", ["wang", "zhao"])
def test_only_admins_manage_organisation_and_devices(api: Api, who: str) -> None:
    for path, body in (
        ("/communities", {"name": "新社区"}),
        ("/grids", {"community_id": api.ids["community"], "name": "网格C"}),
        (
            "/users",
            {"username": "x1", "password": "longenough1", "full_name": "x", "role": "admin"},
        ),
        ("/devices", {"id": "w9", "kind": "wristband"}),
    ):
        response = api.request(who, "POST", path, json=body)
        assert response.status_code == 403, (path, response.text)


def test_unauthenticated_and_bad_tokens(api: Api) -> None:
    assert api.client.get("/api/v1/residents").status_code == 401
    bad = api.client.get("/api/v1/residents", headers={"Authorization": "Bearer forged"})
    assert bad.status_code == 401
    assert bad.json()["error"]["message_en"].startswith("not authenticated")
    wrong = api.client.post("/api/v1/auth/token", data={"username": "admin", "password": "nope"})
    assert wrong.status_code == 401


def test_api_keys_act_as_their_user_until_revoked(api: Api) -> None:
    created = api.request("wang", "POST", "/auth/api-keys", json={"name": "平板"}).json()
    headers = {"X-API-Key": created["key"]}
    assert api.client.get("/api/v1/auth/me", headers=headers).json()["username"] == "wang"
    assert api.request("wang", "DELETE", f"/auth/api-keys/{created['id']}").status_code == 204
    assert api.client.get("/api/v1/auth/me", headers=headers).status_code == 401


def test_device_registration_binding_history_and_revocation(api: Api) -> None:
    first = resident(api)
    second = resident(api, name="王秀英")
    reg = api.request(
        "admin", "POST", "/devices", json={"id": "w0001", "kind": "wristband", "interval_s": 30}
    )
    assert reg.status_code == 201, reg.text
    creds = reg.json()
    assert creds["mqtt_username"] == "w0001" and len(creds["mqtt_password"]) >= 20
    assert api.provisioner.added["w0001"] == creds["mqtt_password"]
    assert (
        api.request(
            "admin", "POST", "/devices", json={"id": "w0001", "kind": "wristband"}
        ).status_code
        == 409
    )
    bind = api.request("wang", "POST", "/devices/w0001/bind", json={"resident_id": first["id"]})
    assert bind.status_code == 200, bind.text
    rebind = api.request("wang", "POST", "/devices/w0001/bind", json={"resident_id": second["id"]})
    assert rebind.status_code == 200
    history = api.request("admin", "GET", "/devices/w0001/bindings").json()
    assert [h["resident_id"] for h in history] == [first["id"], second["id"]]
    assert history[0]["end"] is not None and history[1]["end"] is None
    # A bin needs a building and a category; a wristband cannot bind to a building.
    api.request("admin", "POST", "/devices", json={"id": "b0001", "kind": "bin"})
    assert (
        api.request(
            "admin", "POST", "/devices/b0001/bind", json={"building_id": api.ids["building_a"]}
        ).status_code
        == 422
    )
    assert (
        api.request(
            "admin",
            "POST",
            "/devices/b0001/bind",
            json={"building_id": api.ids["building_a"], "category": "kitchen"},
        ).status_code
        == 200
    )
    revoked = api.request("admin", "POST", "/devices/w0001/revoke")
    assert revoked.json()["revoked"] is True and api.provisioner.revoked == ["w0001"]
    assert (
        api.request(
            "wang", "POST", "/devices/w0001/bind", json={"resident_id": first["id"]}
        ).status_code
        == 409
    )
    restored = api.request("admin", "POST", "/devices/w0001/restore").json()
    assert restored["mqtt_password"] != creds["mqtt_password"]


def test_visits_move_the_due_date(api: Api) -> None:
    created = resident(api, service_needs=["daily_check"])
    due = api.request("wang", "GET", "/visits/due").json()
    assert [(d["resident_id"], d["need"]) for d in due] == [(created["id"], "daily_check")]
    visit = api.request(
        "wang",
        "POST",
        f"/residents/{created['id']}/visits",
        json={"need": "daily_check", "notes": "精神好", "readings": {"sbp": 135}},
    )
    assert visit.status_code == 201, visit.text
    due = api.request("wang", "GET", "/visits/due").json()
    assert due and due[0]["overdue"] is False and due[0]["last_visit"] is not None
    assert api.request("li", "GET", "/visits/due").json() == []


def test_export_and_erasure(api: Api) -> None:
    created = resident(api)
    api.request("admin", "POST", "/devices", json={"id": "w0002", "kind": "wristband"})
    api.request("wang", "POST", "/devices/w0002/bind", json={"resident_id": created["id"]})
    api.request("wang", "POST", f"/residents/{created['id']}/visits", json={"notes": "ok"})
    export = api.request("wang", "GET", f"/residents/{created['id']}/export").json()
    assert export["resident"]["name"] == "张建国"
    assert len(export["visits"]) == 1 and export["bindings"][0]["device_id"] == "w0002"
    assert api.request("wang", "DELETE", f"/residents/{created['id']}").status_code == 204
    assert api.request("admin", "GET", f"/residents/{created['id']}").status_code == 404
    history = api.request("admin", "GET", "/devices/w0002/bindings").json()
    assert history[0]["resident_id"] is None and history[0]["end"] is not None


def test_invalid_input_is_json_in_two_languages(api: Api) -> None:
    response = api.request(
        "admin",
        "POST",
        "/residents",
        json={
            **RESIDENT,
            "grid_id": api.ids["grid_a"],
            "birth_year": 1700,
            "service_needs": ["dance"],
        },
    )
    assert response.status_code == 422
    body = response.json()["error"]
    assert body["message"] == "输入不符合要求" and body["message_en"] == "invalid input"
    assert {p["field"] for p in body["problems"]} >= {"body.birth_year", "body.service_needs.0"}


def store_states(api: Api) -> None:
    """What the ingester would have kept for w1, w2, w3, b1 (grid A) and w9 (grid B)."""
    import time

    from devices.tables import DeviceState

    now = int(time.time() * 1000)
    states = [
        DeviceState(
            device_id="w1",
            online=True,
            last_seen_ms=now - 5_000,
            battery=80,
            worn=True,
            last_reading={"hr": 72, "spo2": 97},
        ),
        DeviceState(
            device_id="w2", online=True, last_seen_ms=now - 400_000, battery=10, worn=False
        ),
        DeviceState(device_id="w3", online=False, last_seen_ms=now - 5_000, battery=50, worn=True),
        DeviceState(device_id="b1", online=True, last_seen_ms=now - 90_000, battery=90),
        DeviceState(device_id="w9", online=False, last_seen_ms=now, battery=5),
    ]

    async def store() -> None:
        database = api.client.app.state.database  # type: ignore[attr-defined]
        async with database.sessions() as session:
            session.add_all(states)
            await session.commit()

    api.client.portal.call(store)  # type: ignore[union-attr]


def test_device_status_filters_come_from_the_registry(api: Api) -> None:
    """The state the ingester keeps answers: offline, silent, low battery, not worn."""
    for device_id, kind in (
        ("w1", "wristband"),
        ("w2", "wristband"),
        ("w3", "wristband"),
        ("b1", "bin"),
    ):
        api.request(
            "admin",
            "POST",
            "/devices",
            json={"id": device_id, "kind": kind, "grid_id": api.ids["grid_a"], "interval_s": 60},
        )
    api.request(
        "admin",
        "POST",
        "/devices",
        json={"id": "w9", "kind": "wristband", "grid_id": api.ids["grid_b"]},
    )
    store_states(api)

    def ids(who: str, **params: Any) -> list[str]:
        response = api.request(who, "GET", "/status/devices", params=params)
        assert response.status_code == 200, response.text
        return [d["device_id"] for d in response.json()["data"]]

    assert ids("admin", state="offline") == ["w2", "w3", "w9"]  # w2 silent 400 s > 3 x 60 s
    assert ids("admin", state="silent") == ["b1", "w2"]
    assert ids("admin", state="low_battery") == ["w2", "w9"]
    assert ids("admin", state="not_worn") == ["w2"]
    assert ids("admin", state="online") == ["b1", "w1"]
    assert ids("admin", kind="bin") == ["b1"]
    assert ids("wang", state="low_battery") == ["w2"]  # w9 is another grid's
    assert ids("qian") == []
    one = api.request("zhao", "GET", "/status/devices", params={"kind": "wristband", "limit": 1})
    body = one.json()
    assert body["count"] == 4 and body["data"][0]["last_reading"] == {"hr": 72, "spo2": 97}
    assert body["data"][0]["online"] is True


def test_review_regressions(api: Api) -> None:
    """Bugs found in review, each pinned: see the commit that fixed them."""
    # A resident moved to another grid takes their wristband (and its visibility) along.
    moved = resident(api)
    api.request("admin", "POST", "/devices", json={"id": "w-mv", "kind": "wristband"})
    api.request("wang", "POST", "/devices/w-mv/bind", json={"resident_id": moved["id"]})
    assert (
        api.request(
            "admin", "PATCH", f"/residents/{moved['id']}", json={"grid_id": api.ids["grid_b"]}
        ).status_code
        == 200
    )
    assert api.request("li", "GET", "/devices/w-mv").status_code == 200
    assert api.request("wang", "GET", "/devices/w-mv").status_code == 404
    # Times keep their instant whatever the offset sent, on SQLite as on PostgreSQL.
    visit = api.request(
        "li",
        "POST",
        f"/residents/{moved['id']}/visits",
        json={"visited_at": "2024-05-01T10:00:00+08:00"},
    ).json()
    from datetime import datetime

    stored = api.request("li", "GET", f"/residents/{moved['id']}/visits").json()
    stored_at = datetime.fromisoformat(stored[0]["visited_at"].replace("Z", "+00:00"))
    assert stored_at == datetime.fromisoformat("2024-05-01T02:00:00+00:00")
    assert stored_at.utcoffset() is not None and visit["id"] == stored[0]["id"]
    # NaN readings are refused, not stored as garbage or a 500.
    nan = api.client.post(
        f"/api/v1/residents/{moved['id']}/visits",
        content=b'{"readings": {"sbp": NaN}}',
        headers={"Authorization": f"Bearer {api.token('li')}", "Content-Type": "application/json"},
    )
    assert nan.status_code == 422
    organisation_regressions(api)


def organisation_regressions(api: Api) -> None:
    """A grid with no workers, a user of a missing community, an absurd id, a new resident."""
    assert (
        api.request(
            "admin", "POST", "/grids", json={"community_id": api.ids["community"], "name": "空网格"}
        ).status_code
        == 201
    )
    assert (
        api.request(
            "admin",
            "POST",
            "/users",
            json={
                "username": "sun",
                "password": "longenough1",
                "full_name": "孙丽",
                "role": "supervisor",
                "community_id": 999,
            },
        ).status_code
        == 404
    )
    assert api.request("admin", "GET", f"/residents/{2**63}").status_code == 422
    # A resident registered a moment ago is due today, but not yet overdue.
    fresh = resident(api, grid="grid_b", service_needs=["daily_check"])
    due = [
        d for d in api.request("li", "GET", "/visits/due").json() if d["resident_id"] == fresh["id"]
    ]
    assert due and due[0]["overdue"] is False
