"""Duration strings of the CLI and scenario specs (core.durations)."""

from __future__ import annotations

import pytest

from core.durations import DurationError, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("10s", 10), ("2m", 120), ("1h", 3600), ("1h30m", 5400), ("7", 7),
     ("1.5m", 90), (" 2M ", 120), ("1d", 86400)],
)  # fmt: skip
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "ten", "10 s", "5x", "-3s", "m", "1h-2m", "nan", "inf"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(DurationError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize("seconds", [0.5, 10, 90, 120, 5400, 3600, 45.25])
def test_format_duration_round_trips(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)
