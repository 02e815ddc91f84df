"""The real app on SQLite and on PostgreSQL, with users of every role and two grids."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from carewatch.migrations import migrate
from core.db import Database
from core.secrets import hash_password
from core.settings import Settings
from devices.tables import User


@dataclass
class RecordingProvisioner:
    """Stands in for the broker at the seam; the broker itself is tested in test_provisioning."""

    added: dict[str, str] = field(default_factory=dict)
    revoked: list[str] = field(default_factory=list)

    async def add_device(self, device_id: str, password: str) -> None:
        self.added[device_id] = password

    async def revoke_device(self, device_id: str) -> None:
        self.revoked.append(device_id)

    async def restore_device(self, device_id: str, password: str) -> None:
        self.added[device_id] = password


PASSWORD = "correct-horse-9"


class Api:
    """A logged-in view of the app: `as_(user)` switches who is asking."""

    def __init__(self, client: TestClient, provisioner: RecordingProvisioner) -> None:
        self.client = client
        self.provisioner = provisioner
        self._tokens: dict[str, str] = {}
        self.ids: dict[str, Any] = {}

    def token(self, username: str) -> str:
        if username not in self._tokens:
            response = self.client.post(
                "/api/v1/auth/token", data={"username": username, "password": PASSWORD}
            )
            assert response.status_code == 200, response.text
            self._tokens[username] = response.json()["access_token"]
        return self._tokens[username]

    def request(self, who: str, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token(who)}"}
        return self.client.request(method, f"/api/v1{path}", headers=headers, **kwargs)


async def seed_admin(database: Database) -> None:
    """Migrate the registry and add the one admin (password `PASSWORD`)."""
    await migrate(database)
    async with database.sessions() as session:
        session.add(
            User(
                username="admin",
                full_name="管理员",
                role="admin",
                password_hash=hash_password(PASSWORD),
            )
        )
        await session.commit()


def _seed_users(api: Api, community_id: int, other_id: int) -> dict[str, int]:
    users = {}
    for username, role, of_community in (
        ("wang", "grid_worker", None),
        ("li", "grid_worker", None),
        ("zhao", "supervisor", community_id),
        ("qian", "supervisor", other_id),
    ):
        response = api.request(
            "admin",
            "POST",
            "/users",
            json={
                "username": username,
                "password": PASSWORD,
                "full_name": username,
                "role": role,
                "community_id": of_community,
            },
        )
        assert response.status_code == 201, response.text
        users[username] = response.json()["id"]
    return users


def _seed_organisation(api: Api) -> None:
    community = api.request("admin", "POST", "/communities", json={"name": "幸福小区"}).json()
    other = api.request("admin", "POST", "/communities", json={"name": "和平小区"}).json()
    users = _seed_users(api, community["id"], other["id"])
    grid_a = api.request(
        "admin",
        "POST",
        "/grids",
        json={
            "community_id": community["id"],
            "name": "网格A",
            "worker_ids": [users["wang"]],
            "supervisor_id": users["zhao"],
        },
    ).json()
    grid_b = api.request(
        "admin",
        "POST",
        "/grids",
        json={
            "community_id": community["id"],
            "name": "网格B",
            "worker_ids": [users["li"]],
        },
    ).json()
    building = api.request(
        "admin", "POST", "/buildings", json={"grid_id": grid_a["id"], "name": "3栋"}
    ).json()
    api.ids.update(
        community=community["id"],
        other_community=other["id"],
        grid_a=grid_a["id"],
        grid_b=grid_b["id"],
        building_a=building["id"],
        **users,
    )


@pytest.fixture
def api(database_url: str, tmp_path: Path) -> Iterator[Api]:
    """Two communities' worth of organisation: grid A (worker wang), grid B (worker li)."""
    database = Database(database_url)
    asyncio.run(seed_admin(database))
    asyncio.run(database.dispose())  # the app's loop opens its own connections
    provisioner = RecordingProvisioner()
    settings = Settings(
        state_dir=tmp_path / "state", database_url=database_url, influx_url="http://127.0.0.1:9"
    )
    app = create_app(settings, database=database, provisioner=provisioner)
    with TestClient(app) as client:
        api = Api(client, provisioner)
        _seed_organisation(api)
        yield api
    asyncio.run(database.dispose())
