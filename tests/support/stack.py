"""The ingester under test, in a thread or a child process, and the settings of a local stack."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from carewatch.localstack import Mosquitto
from carewatch.migrations import migrate
from core.settings import Settings
from ingest.service import IngestService

if TYPE_CHECKING:
    from alerts.service import AlertService


def healthy(listen: str) -> bool:
    """Whether the service at host:port answers /healthz with 200 (subscribed to the broker)."""
    try:
        with urllib.request.urlopen(f"http://{listen}/healthz", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def stack_settings(
    broker: Mosquitto, influx_url: str, database: str, state_dir: Path, **overrides: Any
) -> Settings:
    """Settings of a service wired to the test's broker and InfluxDB database."""
    return Settings(
        mqtt_url=broker.url(),
        influx_url=influx_url,
        influx_database=database,
        state_dir=state_dir,
        **overrides,
    )


class ThreadedIngest:
    """The ingest service on its own event loop in a thread, for tests that look inside it."""

    def __init__(
        self, settings: Settings, *, with_registry: bool = False, with_alerts: bool = False
    ) -> None:
        self.settings = settings
        self.with_registry = with_registry or with_alerts
        self.with_alerts = with_alerts
        self.service: IngestService | None = None
        self.alerts: AlertService | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self._ready = threading.Event()

    def start(self) -> ThreadedIngest:
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()
        self._ready.wait(10)
        return self

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            database = None
            if self.with_registry:
                from core.db import Database

                database = Database(self.settings.database_url_resolved)
                await migrate(database)
            sinks: list[AlertService] = []
            if self.with_alerts:
                from alerts.service import AlertService

                assert database is not None
                self.alerts = AlertService(self.settings, database)
                sinks.append(self.alerts)
            self.service = IngestService(self.settings, database=database, finding_sinks=sinks)
            if self.alerts is not None and self.service.rules is not None:
                self.alerts.unlatch = self.service.rules.resolve
            self._ready.set()
            try:
                parts = [self.service.run(self._stop)]
                if self.alerts is not None:
                    parts.append(self.alerts.run(self._stop))
                await asyncio.gather(*parts)
            finally:
                if database is not None:
                    await database.dispose()

        try:
            asyncio.run(main())
        except BaseException as exc:  # surfaced by stop()
            self.error = exc
            self._ready.set()

    def stop(self) -> None:
        """Stop and wait; raise what the service raised. Safe to call twice."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(self._stop.set)
        thread.join(30)
        if self.error is not None:
            raise self.error


def ingest_env(settings_env: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(settings_env)
    return env


class IngestProcess:
    """`carewatch ingest` as a child process, for tests that kill it."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> IngestProcess:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "carewatch", "ingest"],
                env=ingest_env(self.env),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


class StartIngest(Protocol):
    """The `start_ingest` fixture: start the ingester in a thread, stopped after the test."""

    def __call__(self, settings: Settings, *, with_alerts: bool = False) -> ThreadedIngest: ...


StartProcess = Callable[[dict[str, str]], IngestProcess]
