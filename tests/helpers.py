"""Helpers shared by the integration tests: run the ingester in a thread or a process, count points."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from carewatch.settings import Settings
from ingest.service import IngestService


def influx_query(url: str, database: str, q: str) -> list[dict[str, Any]]:
    data = urllib.parse.urlencode({"db": database, "q": q, "epoch": "ms"}).encode()
    with urllib.request.urlopen(f"{url}/query", data=data, timeout=30) as resp:
        body = json.load(resp)
    result = body["results"][0]
    if "error" in result:
        raise AssertionError(result["error"])
    series: list[dict[str, Any]] = result.get("series", [])
    return series


def count_by_device(url: str, database: str, measurement: str, field: str) -> dict[str, int]:
    """Points per device_id in one measurement (COUNT of one field)."""
    series = influx_query(
        url, database, f'SELECT COUNT("{field}") FROM "{measurement}" GROUP BY "device_id"'
    )
    return {s["tags"]["device_id"]: int(s["values"][0][1]) for s in series}


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, step: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class ThreadedIngest:
    """The ingest service on its own event loop in a thread, for tests that look inside it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.service: IngestService | None = None
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
            self.service = IngestService(self.settings)
            self._ready.set()
            await self.service.run(self._stop)

        try:
            asyncio.run(main())
        except BaseException as exc:  # surfaced by stop()
            self.error = exc
            self._ready.set()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(30)
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
                env=ingest_env(self.env), stdout=out, stderr=subprocess.STDOUT,
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
