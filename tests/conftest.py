"""Shared fixtures: a real Mosquitto and a real influxd on free ports in temporary folders."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.settings import Settings
from tests.support.servers import InfluxDB, Mosquitto, PostgreSQL
from tests.support.stack import IngestProcess, Stack, StartIngest, ThreadedIngest

_INTEGRATION = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The folder sets the tier: everything under tests/integration talks to real servers."""
    for item in items:
        if item.path.is_relative_to(_INTEGRATION):
            item.add_marker(pytest.mark.integration)


def _unique_name(request: pytest.FixtureRequest) -> str:
    """A database name for this test: readable, unique even where long names share a prefix."""
    readable = re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:40]
    return f"t_{readable}_{hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:8]}"


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A broker for one test, in its temporary folder."""
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
def own_influxdb(tmp_path: Path) -> Iterator[InfluxDB]:
    """An influxd for one test alone, for tests that stop and start it."""
    server = InfluxDB(tmp_path / "own-influxdb")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def start_ingest() -> Iterator[StartIngest]:
    """Start the ingest service in a thread; whatever a test leaves running is stopped after it."""
    started: list[ThreadedIngest] = []

    def start(settings: Settings, *, with_alerts: bool = False) -> ThreadedIngest:
        ingest = ThreadedIngest(settings, with_alerts=with_alerts).start()
        started.append(ingest)
        return ingest

    yield start
    for ingest in started:
        ingest.stop()


@pytest.fixture
def stack(
    mosquitto: Mosquitto,
    influxdb: InfluxDB,
    database: str,
    tmp_path: Path,
    start_ingest: StartIngest,
) -> Stack:
    """A broker and influxd for the test, and the service on them when it calls `start()`."""
    return Stack(mosquitto, influxdb, database, tmp_path / "state", start_ingest)


@pytest.fixture
def ingest_process(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], IngestProcess]]:
    """`carewatch ingest` as a child process (to be killed); stopped after the test."""
    started: list[IngestProcess] = []

    def start(env: dict[str, str]) -> IngestProcess:
        proc = IngestProcess(env, tmp_path / f"ingest-{len(started)}.log").start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgreSQL]:
    """One throwaway PostgreSQL cluster for the session; tests create their own databases."""
    # As root the server runs as `postgres`, which must be able to reach its folder.
    folder = Path(tempfile.mkdtemp(prefix="cw-pg-"))
    os.chmod(folder, 0o755)
    server = PostgreSQL(folder / "cluster")
    server.start()
    yield server
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A registry of the test's own, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
    postgres: PostgreSQL = request.getfixturevalue("postgres")
    return postgres.create_database(_unique_name(request))


@pytest.fixture
def database(request: pytest.FixtureRequest) -> str:
    """A database name unique to the test, so tests never see each other's points."""
    return _unique_name(request)
