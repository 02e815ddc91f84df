"""The simulated day the device, signal and incident tests read, generated once."""

from __future__ import annotations

import pytest

from simulators.device import simulate
from simulators.models import Message
from tests.unit.simulators.day import DAY, MIDNIGHT_MS, day_config


@pytest.fixture(scope="package")
def day() -> list[Message]:
    """A simulated day of a small fleet with every scenario, starting at local midnight."""
    return list(simulate(day_config(), start_ms=MIDNIGHT_MS, duration=DAY))
