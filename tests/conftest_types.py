"""Types of the factory fixtures in conftest.py, for annotations in tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from carewatch.settings import Settings
from tests.helpers import IngestProcess, ThreadedIngest


class StartIngest(Protocol):
    def __call__(self, settings: Settings, *, with_alerts: bool = False) -> ThreadedIngest: ...


StartProcess = Callable[[dict[str, str]], IngestProcess]
