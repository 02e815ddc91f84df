"""The one parser of duration texts such as `500ms`, `10s`, `2m`, `1h30m`."""

from __future__ import annotations

import re
from typing import Final


class DurationError(ValueError):
    """A duration text such as `10s` that could not be parsed."""


_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART: Final = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_WHOLE: Final = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+")


def parse_duration(text: str) -> float:
    """Seconds in a duration text; a bare number means seconds."""
    value = text.strip().lower()
    try:
        seconds = float(value)
    except ValueError:
        if not _WHOLE.fullmatch(value):
            msg = (
                f"bad duration {text!r}: use a number with a unit, "
                "such as 500ms, 10s, 2m, 1h or 1h30m"
            )
            raise DurationError(msg) from None
        seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(value))
    if seconds != seconds or seconds < 0 or seconds == float("inf"):
        msg = f"bad duration {text!r}: must be a finite number of seconds >= 0"
        raise DurationError(msg)
    return seconds


def format_duration(seconds: float) -> str:
    """A compact text that parse_duration reads back to the same value."""
    if seconds == int(seconds):
        whole = int(seconds)
        for unit, size in (("h", 3600), ("m", 60)):
            if whole and whole % size == 0:
                return f"{whole // size}{unit}"
        return f"{whole}s"
    return f"{round(seconds * 1000)}ms" if seconds * 1000 == int(seconds * 1000) else f"{seconds}s"
