"""The partial NEWS2 bands, at every boundary of the RCP 2017 chart."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from rules.news2 import (
    partial_news2,
    pulse_score,
    spo2_score,
    systolic_score,
    temperature_score,
)

BANDS: list[tuple[Callable[[float], int], float, int]] = [
    # pulse: <=40:3, 41-50:1, 51-90:0, 91-110:1, 111-130:2, >=131:3
    (pulse_score, 25, 3),
    (pulse_score, 40, 3),
    (pulse_score, 41, 1),
    (pulse_score, 50, 1),
    (pulse_score, 51, 0),
    (pulse_score, 90, 0),
    (pulse_score, 91, 1),
    (pulse_score, 110, 1),
    (pulse_score, 111, 2),
    (pulse_score, 130, 2),
    (pulse_score, 131, 3),
    (pulse_score, 220, 3),
    # SpO2 scale 1: <=91:3, 92-93:2, 94-95:1, >=96:0
    (spo2_score, 70, 3),
    (spo2_score, 91, 3),
    (spo2_score, 92, 2),
    (spo2_score, 93, 2),
    (spo2_score, 94, 1),
    (spo2_score, 95, 1),
    (spo2_score, 96, 0),
    (spo2_score, 100, 0),
    # systolic: <=90:3, 91-100:2, 101-110:1, 111-219:0, >=220:3
    (systolic_score, 70, 3),
    (systolic_score, 90, 3),
    (systolic_score, 91, 2),
    (systolic_score, 100, 2),
    (systolic_score, 101, 1),
    (systolic_score, 110, 1),
    (systolic_score, 111, 0),
    (systolic_score, 219, 0),
    (systolic_score, 220, 3),
    (systolic_score, 250, 3),
    # temperature: <=35.0:3, 35.1-36.0:1, 36.1-38.0:0, 38.1-39.0:1, >=39.1:2
    (temperature_score, 33.0, 3),
    (temperature_score, 35.0, 3),
    (temperature_score, 35.1, 1),
    (temperature_score, 36.0, 1),
    (temperature_score, 36.1, 0),
    (temperature_score, 38.0, 0),
    (temperature_score, 38.1, 1),
    (temperature_score, 39.0, 1),
    (temperature_score, 39.1, 2),
    (temperature_score, 41.0, 2),
]


@pytest.mark.parametrize(
    ("score", "value", "points"), BANDS, ids=[f"{s.__name__}-{v}" for s, v, _ in BANDS]
)
def test_band(score: Callable[[float], int], value: float, points: int) -> None:
    assert score(value) == points


@pytest.mark.parametrize(
    ("hr", "spo2", "sbp", "temp", "total", "red"),
    [
        (70, 98, 120, 36.8, 0, False),
        (None, None, None, None, 0, False),
        (135, None, None, None, 3, True),  # one parameter alone can be a 3
        (115, 94, 105, 38.6, 5, False),  # 2 + 1 + 1 + 1: medium by total, no single 3
        (115, 92, 105, 39.5, 7, False),  # 2 + 2 + 1 + 2: high
        (45, 91, 95, 34.5, 9, True),  # 1 + 3 + 2 + 3
        (95, None, 100, None, 3, False),  # missing parameters score nothing
    ],
)
def test_partial_total(
    hr: float | None,
    spo2: float | None,
    sbp: float | None,
    temp: float | None,
    total: int,
    red: bool,
) -> None:
    assert partial_news2(hr, spo2, sbp, temp) == (total, red)
