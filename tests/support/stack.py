"""The service under test, in a thread or a child process, and the settings of a local stack."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from core.settings import Settings
from tests.support.servers import InfluxDB, Mosquitto
from tests.support.waiting import wait_until

if TYPE_CHECKING:  # the unit tests load this module too: they need none of the services
    from alerts.service import AlertService
    from carewatch.build import Parts
    from ingest.service import IngestService
    from rules.service import RuleService

T = TypeVar("T")


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
    """The ingest service on its own event loop in a thread, built as `carewatch run` builds it."""

    def __init__(
        self, settings: Settings, *, with_registry: bool = False, with_alerts: bool = False
    ) -> None:
        self.settings = settings
        self.with_registry = with_registry or with_alerts
        self.with_alerts = with_alerts
        self.parts: Parts | None = None
        self.service: IngestService | None = None
        self.rules: RuleService | None = None
        self.alerts: AlertService | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self._ready = threading.Event()

    def start(self) -> ThreadedIngest:
        """Start the thread; return once the parts are built (or failed to build: `error`)."""
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()
        self._ready.wait(10)
        return self

    def run_on_loop(self, work: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        """Run `work` on the service's own loop (its database, its dispatcher) and wait for it."""
        assert self._loop is not None, self.error
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(timeout)

    async def _serve(self) -> None:
        from carewatch.build import assembled

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with assembled(
            self.settings,
            registry=self.with_registry,
            ingest=True,
            alerts=self.with_alerts,
        ) as parts:
            self.parts = parts
            self.service, self.rules, self.alerts = parts.ingest, parts.rules, parts.alerts
            self._ready.set()
            await asyncio.gather(*parts.start(self._stop))

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
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
    """This process's environment with the service's settings laid over it."""
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
        """Start `carewatch ingest`, its output appended to the log."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "carewatch", "ingest"],
                env=ingest_env(self.env),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self

    def kill(self) -> None:
        """SIGKILL: no flush, no goodbye."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int:
        """SIGTERM and wait (SIGKILL after 30 s); the exit status."""
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


@dataclass
class Stack:
    """The `stack` fixture: a broker, influxd and a database of the test's own, and a state folder.

    `settings()` points a service at them; `start()` runs one in a thread and returns
    once it is subscribed to the broker. Whatever it started is stopped after the test.
    """

    broker: Mosquitto
    influx: InfluxDB
    database: str  # the test's own InfluxDB database
    state_dir: Path
    start_ingest: StartIngest

    @property
    def influx_url(self) -> str:
        """The InfluxDB base URL."""
        return self.influx.url

    def settings(self, **overrides: Any) -> Settings:
        """Settings of a service wired to this stack; `overrides` as `Settings` takes them."""
        return stack_settings(
            self.broker, self.influx.url, self.database, self.state_dir, **overrides
        )

    def start(
        self, settings: Settings | None = None, *, with_alerts: bool = False
    ) -> ThreadedIngest:
        """Start the service (by default with `settings()`); return once it is subscribed."""
        ingest = self.start_ingest(settings or self.settings(), with_alerts=with_alerts)
        service = ingest.service
        assert service is not None, ingest.error
        wait_until(service.subscriber.connected.is_set, 10, "the subscription")
        return ingest
