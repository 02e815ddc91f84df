"""Types of the factory fixtures in conftest.py, for annotations in tests."""

from __future__ import annotations

from collections.abc import Callable

from carewatch.settings import Settings
from tests.helpers import IngestProcess, ThreadedIngest

StartIngest = Callable[[Settings], ThreadedIngest]
StartProcess = Callable[[dict[str, str]], IngestProcess]
