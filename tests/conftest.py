"""Shared fixtures: a real Mosquitto and a real influxd on free ports in temporary folders."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from carewatch.localstack import InfluxDB, Mosquitto


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def influxdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB]:
    """One influxd for the session (it takes seconds to start); tests use their own database."""
    server = InfluxDB(tmp_path_factory.mktemp("influxdb"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def database(request: pytest.FixtureRequest) -> str:
    """A database name unique to the test, so tests never see each other's points."""
    return "t_" + re.sub(r"[^A-Za-z0-9_]", "_", request.node.name)[:60]
