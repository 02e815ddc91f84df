"""A wristband's rules: vital-sign thresholds, NEWS2, falls and SOS, wandering, inactivity,
and event time (late, out of order, redelivered).

Every test replays exact sequences on a fake clock (tests/support/rules.py);
readings are built as the Structs the decoder would produce.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.models import Reading
from rules.findings import Finding, Severity, SubjectKind
from tests.support.rules import (
    HOME,
    HOUR,
    MIN,
    SEC,
    T0,
    Rig,
    at,
    band,
    brief,
    ev,
    north_of_home,
    only,
    open_rules,
    series,
    tm,
)

# -- vital-sign thresholds: durations and hysteresis ------------------------------------------

THRESHOLDS: list[tuple[str, str, Sequence[float], str, list[tuple[int, bool]]]] = [
    ("hr_high fires when the hold is reached", "hr", [125] * 6, "hr_high", [(5, True)]),
    ("hr_high not before the hold", "hr", [125] * 5 + [100], "hr_high", []),
    ("hr_high: the limit itself is not above", "hr", [120] * 10, "hr_high", []),
    ("hr_high: hovering at the limit does not open", "hr", [121, 119] * 10, "hr_high", []),
    (
        "hr_high: between clear level and limit it stays open",
        "hr",
        [125] * 6 + [115] * 20,
        "hr_high",
        [(5, True)],
    ),
    (
        "hr_high: hovering at the limit once open does not flap",
        "hr",
        [125] * 6 + [119, 121] * 10,
        "hr_high",
        [(5, True)],
    ),
    (
        "hr_high: clear needs the clear level for clear_for, unbroken",
        "hr",
        [125] * 6 + [110, 110, 111, 110, 110, 110, 110],
        "hr_high",
        [(5, True), (11, False)],
    ),
    ("hr_low fires after 5 min", "hr", [44] * 6, "hr_low", [(5, True)]),
    ("hr_low: the limit itself is not below", "hr", [45] * 10, "hr_low", []),
    ("hr_low clears at 50 for 2 min", "hr", [44] * 6 + [50] * 3, "hr_low", [(5, True), (8, False)]),
    ("spo2_low after 2 min", "spo2", [89] * 3, "spo2_low", [(2, True)]),
    ("spo2_low not at 90", "spo2", [90] * 5, "spo2_low", []),
    ("spo2_low not before 2 min", "spo2", [89, 89, 91, 89, 89, 91], "spo2_low", []),
    ("spo2_critical at once", "spo2", [84], "spo2_critical", [(0, True)]),
    ("spo2_critical not at 85", "spo2", [85] * 5, "spo2_critical", []),
    (
        "spo2_critical clears at 88 for 2 min",
        "spo2",
        [84, 87, 88, 88, 88],
        "spo2_critical",
        [(0, True), (4, False)],
    ),
    ("sbp_high at 180 at once", "sbp", [180], "sbp_high", [(0, True)]),
    ("sbp_high not at 179", "sbp", [179] * 5, "sbp_high", []),
    (
        "sbp_high clears at 165 for 10 min",
        "sbp",
        [185] + [165] * 11,
        "sbp_high",
        [(0, True), (11, False)],
    ),
    ("temp_high at 38.5", "temp", [38.5], "temp_high", [(0, True)]),
    ("temp_high not at 38.4", "temp", [38.4] * 3, "temp_high", []),
    ("temp_low below 35", "temp", [34.9], "temp_low", [(0, True)]),
    ("temp_low not at 35.0", "temp", [35.0] * 3, "temp_low", []),
]


@pytest.mark.parametrize(
    ("case", "field", "values", "rule", "expected"), THRESHOLDS, ids=[c[0] for c in THRESHOLDS]
)
def test_threshold(
    case: str, field: str, values: Sequence[float], rule: str, expected: list[tuple[int, bool]]
) -> None:
    rig = Rig()
    assert only(series(rig, field, values), rule) == expected


def test_threshold_finding_fields() -> None:
    rig = Rig(profiles=[band(resident_id=7, grid_id=3, grid="网格01")])
    series(rig, "hr", [125, 131, 126, 125, 125, 125, 100, 100, 100])
    opened, cleared = [f for f in rig.findings if f.rule == "hr_high"]
    assert opened == Finding(
        rule="hr_high",
        subject_kind=SubjectKind.WRISTBAND,
        subject="w1",
        active=True,
        severity=Severity.WARNING,
        ts=T0 + 5 * MIN,
        since=T0,
        device_id="w1",
        resident_id=7,
        grid_id=3,
        value=131,  # the peak
        limit=120,
    )
    assert (cleared.active, cleared.since, cleared.ts, cleared.value) == (
        False,
        T0,
        T0 + 8 * MIN,
        100,
    )


@pytest.mark.parametrize(
    ("steps_per_min", "expected"),
    [(0, [(5, True)]), (5, [(5, True)]), (100, [])],
    ids=["still", "pottering", "walking"],
)
def test_hr_high_counts_only_at_rest(steps_per_min: int, expected: list[tuple[int, bool]]) -> None:
    rig = Rig()
    found = []
    for minute in range(8):
        reading = tm(T0 + minute * MIN, hr=130, steps=1000 + steps_per_min * minute)
        found += [(minute, f.active) for f in rig.feed(reading) if f.rule == "hr_high"]
    assert found == expected


def test_walking_breaks_a_pending_run() -> None:
    rig = Rig()
    steps = [1000, 1000, 1000, 1000, 1200, 1200, 1200, 1200, 1200, 1200, 1200]
    found = []
    for minute, count in enumerate(steps):
        found += [
            (minute, f.active)
            for f in rig.feed(tm(T0 + minute * MIN, hr=130, steps=count))
            if f.rule == "hr_high"
        ]
    assert found == [(10, True)]  # from minute 5, the first still minute after the walk


# -- NEWS2 -----------------------------------------------------------------------------------

NORMAL = {"hr": 70, "spo2": 98, "sbp": 120, "temp": 36.8}  # total 0
MEDIUM = {"hr": 115, "spo2": 94, "sbp": 105, "temp": 38.2}  # 2 + 1 + 1 + 1 = 5
HIGH = {"hr": 115, "spo2": 92, "sbp": 105, "temp": 39.5}  # 2 + 2 + 1 + 2 = 7
LOWISH = {"hr": 95, "spo2": 95, "sbp": 108, "temp": 36.8}  # 1 + 1 + 1 = 3: may clear
FOUR = {"hr": 95, "spo2": 94, "sbp": 108, "temp": 38.2}  # 4: neither opens nor clears


def news2_run(rows: Sequence[Mapping[str, float]]) -> list[tuple[int, bool, Severity]]:
    rig = Rig()
    out = []
    for minute, row in enumerate(rows):
        for f in rig.feed(tm(T0 + minute * MIN, "w1", **row)):
            if f.rule == "news2":
                out.append((minute, f.active, f.severity))
    return out


NEWS2: list[tuple[str, Sequence[Mapping[str, float]], list[tuple[int, bool, Severity]]]] = [
    ("normal", [NORMAL] * 20, []),
    ("medium at a total of 5, after the hold", [MEDIUM] * 3, [(2, True, Severity.WARNING)]),
    ("not before the hold", [MEDIUM, MEDIUM, NORMAL] * 4, []),
    ("a total of 4 is not medium", [FOUR] * 10, []),
    ("medium at any single 3", [{"hr": 135}] * 3, [(2, True, Severity.WARNING)]),
    ("high at 7", [HIGH] * 3, [(2, True, Severity.CRITICAL)]),
    (
        "worse while open: the same finding, raised",
        [MEDIUM] * 3 + [HIGH],
        [(2, True, Severity.WARNING), (3, True, Severity.CRITICAL)],
    ),
    (
        "clears at a total of 3 or less for 10 min",
        [MEDIUM] * 3 + [LOWISH] * 11,
        [(2, True, Severity.WARNING), (13, False, Severity.WARNING)],
    ),
    ("a total of 4 does not clear", [MEDIUM] * 3 + [FOUR] * 20, [(2, True, Severity.WARNING)]),
    (
        "a stale parameter stops counting after 15 min",
        [{"spo2": 91}] + [{"hr": 70}] * 30,
        [(2, True, Severity.WARNING), (26, False, Severity.WARNING)],
    ),
]


@pytest.mark.parametrize(("case", "rows", "expected"), NEWS2, ids=[c[0] for c in NEWS2])
def test_news2(
    case: str, rows: Sequence[Mapping[str, float]], expected: list[tuple[int, bool, Severity]]
) -> None:
    assert news2_run(rows) == expected


# -- falls and SOS -----------------------------------------------------------------------------


def test_fall_is_critical_latched_until_resolved() -> None:
    rig = Rig()
    opened = rig.feed(ev(T0, "fall", confidence=0.9, lat=31.0, lon=121.0))
    assert brief(opened) == [("fall", True)]
    assert (opened[0].severity, opened[0].latched) == (Severity.CRITICAL, True)
    assert opened[0].detail == {"confidence": 0.9, "lat": 31.0, "lon": 121.0}
    # Nothing the band says afterwards clears it, only a person.
    series(rig, "hr", [70] * 30, start=T0 + MIN, steps=100)
    rig.tick(T0 + 31 * MIN)
    assert open_rules(rig) == {"fall"}
    assert rig.engine.resolve("w1", "fall", T0 + HOUR) is True
    cleared = rig.engine.take()
    assert [(f.rule, f.active, f.latched, f.since) for f in cleared] == [("fall", False, True, T0)]
    assert rig.engine.resolve("w1", "fall", T0 + HOUR) is False


@pytest.mark.parametrize(
    ("event", "severity"),
    [
        ({"type": "fall"}, Severity.CRITICAL),
        ({"type": "fall", "confidence": 0.5}, Severity.CRITICAL),
        ({"type": "fall", "confidence": 0.49}, Severity.WARNING),
        ({"type": "fall", "confidence": 0.0}, Severity.WARNING),
        ({"type": "sos"}, Severity.CRITICAL),
        ({"type": "sos", "confidence": 0.1}, Severity.CRITICAL),
    ],
)
def test_fall_and_sos_severity(event: dict[str, Any], severity: Severity) -> None:
    rig = Rig()
    found = rig.feed(ev(T0, **event))
    assert [(f.rule, f.severity) for f in found] == [(event["type"], severity)]
    # What a dispatcher starting up is told agrees with what was sent.
    assert [(f.rule, f.severity) for f in rig.engine.active()] == [(event["type"], severity)]


def test_redelivered_fall_is_one_finding_even_after_resolve() -> None:
    rig = Rig()
    fall = ev(T0, "fall", confidence=0.9)
    assert len(rig.feed(fall, fall)) == 1
    assert rig.engine.stats.duplicates == 1
    rig.engine.resolve("w1", "fall", T0 + MIN)
    rig.engine.take()
    assert rig.feed(fall) == []  # a QoS 1 redelivery after a person resolved it
    assert brief(rig.feed(ev(T0 + 2 * MIN, "fall"))) == [("fall", True)]  # a new fall


def test_falls_are_never_inhibited_nor_late() -> None:
    rig = Rig()
    rig.feed(ev(T0, "off_wrist"), ev(T0 + SEC, "sos"))
    series(rig, "hr", [70] * 61, start=T0 + 2 * SEC, worn=False)
    buffered = rig.feed(ev(T0 - 30 * MIN, "fall", confidence=0.8))  # an hour old by now
    assert brief(rig.findings, "fall", "sos") == [("sos", True), ("fall", True)]
    assert buffered[0].since == T0 - 30 * MIN


def test_a_second_fall_updates_the_open_one() -> None:
    rig = Rig()
    rig.feed(ev(T0, "fall", confidence=0.3), ev(T0 + MIN, "fall", confidence=0.9))
    first, second = rig.findings
    assert (first.severity, second.severity) == (Severity.WARNING, Severity.CRITICAL)
    assert second.since == T0
    rig.engine.resolve("w1", "fall", T0 + HOUR)
    assert rig.engine.take()[0].severity is Severity.CRITICAL


def test_resolve_only_clears_latched_rules() -> None:
    rig = Rig()
    series(rig, "hr", [125] * 6)
    assert rig.engine.resolve("w1", "hr_high", T0 + HOUR) is False
    assert rig.engine.resolve("nobody", "fall", T0 + HOUR) is False
    assert rig.engine.take() == []


# -- wandering ---------------------------------------------------------------------------------


def wander(distances: list[float], **profile: Any) -> list[tuple[int, bool]]:
    rig = Rig(profiles=[band(home_lat=HOME[0], home_lon=HOME[1], **profile)])
    found = []
    for minute, metres in enumerate(distances):
        lat, lon = north_of_home(metres)
        reading = tm(T0 + minute * MIN, lat=lat, lon=lon, hr=70)
        found += [(minute, f.active) for f in rig.feed(reading) if f.rule == "wandering"]
    return found


WANDERING: list[tuple[str, Sequence[float], list[tuple[int, bool]]]] = [
    ("at home", [0, 50, 300] * 20, []),
    ("outside for 30 min", [600] * 31, [(30, True)]),
    ("not before 30 min", [600] * 30 + [100], []),
    ("hovering at the radius does not open", [520, 480] * 30, []),
    ("between the radii it stays open", [600] * 31 + [450] * 30, [(30, True)]),
    ("back inside the clear radius", [600] * 31 + [450, 390], [(30, True), (32, False)]),
]


@pytest.mark.parametrize(
    ("case", "distances", "expected"), WANDERING, ids=[c[0] for c in WANDERING]
)
def test_wandering(case: str, distances: list[float], expected: list[tuple[int, bool]]) -> None:
    assert wander(distances) == expected


def test_wandering_needs_a_home() -> None:
    rig = Rig()
    for minute in range(40):
        lat, lon = north_of_home(5000)
        rig.feed(tm(T0 + minute * MIN, lat=lat, lon=lon))
    assert rig.findings == []


# -- inactivity ------------------------------------------------------------------------------


INACTIVITY: list[tuple[str, int, list[int], int | None]] = [
    ("4 h without steps", at(7), [at(10, 59), at(11)], at(11)),
    ("counted from getting up, not from the night", at(3), [at(7), at(10, 59), at(11)], at(11)),
    ("not after waking hours", at(17, 30), [at(20, 59), at(21, 30), at(23, 59)], None),
    ("from the last step", at(9), [at(12, 59), at(13)], at(13)),
]


@pytest.mark.parametrize(
    ("case", "first", "ticks", "fires"), INACTIVITY, ids=[c[0] for c in INACTIVITY]
)
def test_inactivity_only_in_waking_hours(
    case: str, first: int, ticks: list[int], fires: int | None
) -> None:
    rig = Rig(profiles=[band(interval_s=2 * 3600)], now=first)
    found: dict[int, list[tuple[str, bool]]] = {}
    ts = first
    for t in ticks:
        while ts <= t:  # a still band keeps reporting the same count
            rig.feed(tm(ts, steps=4321, hr=70))
            ts += 30 * MIN
        found[t] = brief(rig.tick(t))
    assert found == {t: [("inactivity", True)] if t == fires else [] for t in ticks}
    if fires is not None:
        assert rig.findings[-1].since == max(first, at(7, 0, 1))
        assert brief(rig.feed(tm(ts, steps=4400))) == [("inactivity", False)]


def test_no_inactivity_while_not_worn() -> None:
    rig = Rig(profiles=[band(interval_s=2 * 3600)], now=at(7))
    rig.feed(tm(at(7), steps=10), tm(at(7, 5), worn=False))
    assert brief(rig.tick(at(12)), "inactivity") == []


# -- event time: late, out of order, duplicates ------------------------------------------------


def test_readings_older_than_the_tolerance_are_ignored_and_counted() -> None:
    rig = Rig()
    series(rig, "hr", [125] * 5)  # minutes 0-4
    rig.feed(tm(T0 + MIN, hr=100))  # 3 min behind the newest: too late to break the run
    assert rig.engine.stats.late == 1
    assert only(series(rig, "hr", [125], start=T0 + 5 * MIN), "hr_high") == [(0, True)]


def test_a_late_break_within_the_tolerance_counts() -> None:
    rig = Rig()
    series(rig, "hr", [125] * 5)
    rig.feed(tm(T0 + 3 * MIN, hr=100))  # 1 min behind: it breaks the run at minute 3
    assert rig.engine.stats.late == 0
    # The run starts again after minute 3 and lasts 5 min at minute 9.
    assert only(series(rig, "hr", [125] * 5, start=T0 + 5 * MIN), "hr_high") == [(4, True)]


def test_a_late_break_before_the_run_does_not_move_its_start() -> None:
    rig = Rig()
    rig.feed(tm(T0 + MIN, hr=125), tm(T0, hr=100))  # the normal reading before it, late
    series(rig, "hr", [125] * 6, start=T0 + 2 * MIN)
    opened = [f for f in rig.findings if f.rule == "hr_high"]
    assert [(f.ts, f.since) for f in opened] == [(T0 + 6 * MIN, T0 + MIN)]


PHASES = {"normal": 80, "between": 115, "high": 130, "low_spo2": 87, "spo2_ok": 96}


@st.composite
def episodes(draw: st.DrawFn) -> tuple[list[Reading], list[Reading]]:
    """Phases longer than any hold or clear plus the tolerance, shuffled within 2 min.

    Each phase outlasts the longest hold or clear (NEWS2's 10 min) by more than the
    tolerance and a reading, so no verdict hangs on the last reading before a change.
    """
    step = draw(st.sampled_from([20 * SEC, 30 * SEC, MIN]))
    values: list[tuple[float, float]] = []
    for _ in range(draw(st.integers(1, 6))):
        hr = PHASES[draw(st.sampled_from(["normal", "between", "high"]))]
        spo2 = PHASES[draw(st.sampled_from(["spo2_ok", "low_spo2"]))]
        values += [(hr, spo2)] * (draw(st.integers(14, 25)) * MIN // step)
    readings = [tm(T0 + i * step, hr=hr, spo2=spo2, seq=i) for i, (hr, spo2) in enumerate(values)]
    # Each reading may be delayed by up to the tolerance: arrival in order of ts + delay.
    delays = draw(st.lists(st.integers(0, 120 * SEC), min_size=len(values), max_size=len(values)))
    arrival = [r for _, r in sorted(zip(delays, readings, strict=True), key=_arrival)]
    return readings, arrival


def _arrival(pair: tuple[int, Reading]) -> tuple[int, int]:
    delay, reading = pair
    return (reading.body.ts + delay, reading.body.ts)


def _verdicts(readings: list[Reading]) -> list[tuple[str, bool, int, Severity]]:
    rig = Rig()
    rig.feed(*readings)
    assert rig.engine.stats.late == 0
    return sorted((f.rule, f.active, f.since, f.severity) for f in rig.findings)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(episodes())
def test_out_of_order_within_the_tolerance_gives_the_same_findings(
    case: tuple[list[Reading], list[Reading]],
) -> None:
    in_order, shuffled = case
    assert _verdicts(shuffled) == _verdicts(in_order)


def test_redelivered_telemetry_changes_nothing() -> None:
    readings = [tm(T0 + m * MIN, hr=125, steps=10, battery=12) for m in range(8)]
    once = Rig()
    once.feed(*readings)
    twice = Rig()
    for reading in readings:
        twice.feed(reading, reading)
    assert twice.findings == once.findings
    assert brief(once.findings) == [("battery_low", True), ("hr_high", True)]
