"""Names and limits the registry's resources share."""

from __future__ import annotations

from datetime import timedelta
from typing import Final

# How often each service need asks for a visit.
NEED_PERIODS: Final = {
    "daily_check": timedelta(days=1),
    "weekly_visit": timedelta(days=7),
    "monthly_visit": timedelta(days=30),
}
KINDS: Final = ("wristband", "bin")
CATEGORIES: Final = ("kitchen", "recyclable", "hazardous", "other")
LOW_BATTERY: Final = 15.0  # percent
OFFLINE_INTERVALS: Final = 3  # silent for this many reporting intervals counts as offline
