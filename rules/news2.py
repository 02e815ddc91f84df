"""A partial NEWS2 (Royal College of Physicians, 2017) from what a wristband measures.

Pulse, SpO2 on scale 1, systolic pressure and temperature are scored 0-3 with
the chart's bands and summed. Respiration rate, supplemental oxygen and
consciousness are not measured, so the total is lower than a full NEWS2 would
be: a triage signal for a grid worker, not a clinical score or a diagnosis.
"""

from __future__ import annotations


def pulse_score(hr: float) -> int:
    if hr <= 40:
        return 3
    if hr <= 50:
        return 1
    if hr <= 90:
        return 0
    if hr <= 110:
        return 1
    if hr <= 130:
        return 2
    return 3


def spo2_score(spo2: float) -> int:
    """SpO2 scale 1 (no hypercapnic respiratory failure target)."""
    if spo2 <= 91:
        return 3
    if spo2 <= 93:
        return 2
    if spo2 <= 95:
        return 1
    return 0


def systolic_score(sbp: float) -> int:
    if sbp <= 90:
        return 3
    if sbp <= 100:
        return 2
    if sbp <= 110:
        return 1
    if sbp <= 219:
        return 0
    return 3


def temperature_score(temp: float) -> int:
    if temp <= 35.0:
        return 3
    if temp <= 36.0:
        return 1
    if temp <= 38.0:
        return 0
    if temp <= 39.0:
        return 1
    return 2


def partial_news2(
    hr: float | None, spo2: float | None, sbp: float | None, temp: float | None
) -> tuple[int, bool]:
    """(total, whether any single parameter scored 3) over the parameters given."""
    # Spelled out rather than looped over (value, scorer) pairs: this runs for nearly
    # every wristband reading, and a loop would build those pairs each time.
    total = 0
    red = False
    if hr is not None:
        points = pulse_score(hr)
        total += points
        red = points == 3
    if spo2 is not None:
        points = spo2_score(spo2)
        total += points
        red = red or points == 3
    if sbp is not None:
        points = systolic_score(sbp)
        total += points
        red = red or points == 3
    if temp is not None:
        points = temperature_score(temp)
        total += points
        red = red or points == 3
    return total, red
