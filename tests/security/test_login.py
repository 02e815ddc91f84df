"""Guessing passwords: slowed per username and per address, and no faster for unknown users."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import core.secrets
from api.main import create_app
from api.throttle import LoginThrottle
from core.db import Database
from core.settings import Settings
from tests.integration.api.conftest import PASSWORD, RecordingProvisioner, seed_admin


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[TestClient, Clock]]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}")

    asyncio.run(seed_admin(database))
    asyncio.run(database.dispose())  # the app's loop opens its own connections
    settings = Settings(state_dir=tmp_path / "state", influx_url="http://127.0.0.1:9")
    application = create_app(settings, database=database, provisioner=RecordingProvisioner())
    clock = Clock()
    application.state.login_throttle = LoginThrottle(
        per_user=3, per_address=5, window=300, clock=clock
    )
    with TestClient(application) as client:
        yield client, clock
    asyncio.run(database.dispose())


def login(client: TestClient, username: str, password: str) -> Any:
    return client.post("/api/v1/auth/token", data={"username": username, "password": password})


def test_a_username_is_locked_for_a_while_after_failures(app: tuple[TestClient, Clock]) -> None:
    client, clock = app
    for _ in range(3):
        assert login(client, "admin", "guess").status_code == 401
    refused = login(client, "admin", PASSWORD)  # even the right one, for now
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "too_many_attempts"
    assert "登录失败次数过多" in refused.json()["error"]["message"]
    assert 0 < int(refused.headers["Retry-After"]) <= 300
    clock.now += 301
    assert login(client, "admin", PASSWORD).status_code == 200


def test_an_address_trying_many_usernames_is_slowed(app: tuple[TestClient, Clock]) -> None:
    client, _ = app
    for i in range(5):
        assert login(client, f"user{i}", "guess").status_code == 401
    assert login(client, "admin", PASSWORD).status_code == 429


def test_the_right_password_forgives_the_username(app: tuple[TestClient, Clock]) -> None:
    client, _ = app
    for _ in range(2):
        assert login(client, "admin", "typo").status_code == 401
    assert login(client, "admin", PASSWORD).status_code == 200
    for _ in range(2):
        assert login(client, "admin", "typo").status_code == 401  # not locked: 2 of 3


def test_an_unknown_username_is_checked_like_a_wrong_password(
    app: tuple[TestClient, Clock], monkeypatch: pytest.MonkeyPatch
) -> None:
    """So the answer's time does not tell which usernames exist."""
    client, _ = app
    checked: list[str] = []
    real = core.secrets._hasher.verify

    def verify(password: str, password_hash: str) -> bool:
        checked.append(password_hash)
        return real(password, password_hash)

    monkeypatch.setattr(core.secrets._hasher, "verify", verify)
    assert login(client, "nobody", "guess").status_code == 401
    assert login(client, "admin", "guess").status_code == 401
    assert len(checked) == 2 and all(h.startswith("$argon2") for h in checked)


def test_the_throttle_forgets_the_oldest_keys_past_its_bound() -> None:
    throttle = LoginThrottle(per_user=1, per_address=1000, max_keys=10)
    for i in range(50):
        throttle.failed(f"u{i}", "10.0.0.1")
    assert throttle.retry_after("u49", "10.0.0.2") > 0
    assert throttle.retry_after("u0", "10.0.0.2") == 0  # forgotten
