"""The rule engine, rule by rule: durations, hysteresis, inhibition, event time, restarts.

Every test replays exact sequences on a fake clock (tests/unit/rules_helpers.py);
readings are built as the Structs the decoder would produce.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.models import Category, Kind, Reading, StatusChange
from rules.config import parse_rules
from rules.context import build_contexts
from rules.engine import RuleEngine, seed_baseline
from rules.findings import Finding, Severity, SubjectKind
from rules.state import Baseline, Run
from tests.support.rules import (
    HOME,
    HOUR,
    MIN,
    SEC,
    T0,
    Rig,
    at,
    band,
    bev,
    bin_,
    brief,
    btm,
    ev,
    north_of_home,
    open_rules,
    tm,
)

VITAL_RULES = (
    "hr_high",
    "hr_low",
    "spo2_low",
    "spo2_critical",
    "sbp_high",
    "temp_high",
    "temp_low",
    "news2",
)


def series(
    rig: Rig, field: str, values: Sequence[float], start: int = T0, **extra: Any
) -> list[tuple[int, str, bool]]:
    """One reading of `field` a minute; (minute, rule, active) of each finding."""
    out = []
    for minute, value in enumerate(values):
        for f in rig.feed(tm(start + minute * MIN, "w1", **{field: value}, **extra)):
            out.append((minute, f.rule, f.active))
    return out


def only(found: list[tuple[int, str, bool]], rule: str) -> list[tuple[int, bool]]:
    return [(minute, active) for minute, r, active in found if r == rule]


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


# -- inhibition: off-wrist, offline, flat ----------------------------------------------------


def test_off_wrist_silences_vitals_and_not_worn_speaks() -> None:
    rig = Rig()
    series(rig, "hr", [130] * 3)
    rig.feed(ev(T0 + 2 * MIN + 30 * SEC, "off_wrist"))
    series(rig, "hr", [135] * 40, start=T0 + 3 * MIN, worn=False, spo2=80)
    assert brief(rig.findings) == []
    assert rig.engine.stats.inhibited == 40
    assert rig.tick(T0 + 32 * MIN) == []
    assert brief(rig.tick(T0 + 32 * MIN + 30 * SEC)) == [("not_worn", True)]
    assert rig.findings[-1].since == T0 + 2 * MIN + 30 * SEC


@pytest.mark.parametrize(
    "gap",
    ["off_wrist", "worn_false", "status_offline", "power_off", "silence", "flat"],
)
def test_pending_runs_do_not_span_a_gap(gap: str) -> None:
    """hr 130 for 3 min, a gap, hr 130 again: the 5 min hold counts from after the gap."""
    rig = Rig()
    series(rig, "hr", [130] * 3)  # minutes 0-2
    back = T0 + 10 * MIN
    if gap == "off_wrist":
        rig.feed(ev(T0 + 3 * MIN, "off_wrist"), ev(back - SEC, "on_wrist"))
    elif gap == "worn_false":
        rig.feed(tm(T0 + 3 * MIN, worn=False), tm(back - SEC, worn=True))
    elif gap == "status_offline":
        rig.clock.now = T0 + 3 * MIN
        rig.status(False)
        rig.clock.now = back - SEC
        rig.status(True)
    elif gap == "power_off":
        rig.feed(ev(T0 + 3 * MIN, "power_off"))
    elif gap == "silence":
        assert brief(rig.tick(T0 + 6 * MIN)) == [("no_data", True)]
    else:
        series(rig, "hr", [130] * 4, start=T0 + 3 * MIN, battery=4)
    found = only(series(rig, "hr", [130] * 6, start=back, battery=80), "hr_high")
    assert found == [(5, True)]  # not at minute 0 after the gap, when 0..back would span 5 min
    assert "hr_high" not in {f.rule for f in rig.findings if f.ts < back + 5 * MIN}


def test_flat_battery_silences_vitals_and_battery_speaks() -> None:
    rig = Rig()
    found = series(rig, "hr", [135] * 10, battery=4)
    assert [(m, r) for m, r, _ in found] == [(0, "battery_low")]
    assert rig.engine.stats.inhibited == 10
    # At 6 % the band is low but not flat: the vital rules speak again.
    found = series(rig, "hr", [135] * 6, start=T0 + 10 * MIN, battery=6)
    assert ("hr_high", True) in brief(rig.findings)
    assert only(found, "hr_high") == [(5, True)]


def test_a_clear_does_not_span_a_gap_either() -> None:
    """An open finding stays open while off the wrist; its clear starts again afterwards."""
    rig = Rig()
    series(rig, "hr", [125] * 6 + [100])  # open at 5, clearing from 6
    rig.feed(ev(T0 + 6 * MIN + 30 * SEC, "off_wrist"), ev(T0 + 30 * MIN - SEC, "on_wrist"))
    found = only(series(rig, "hr", [100] * 3, start=T0 + 30 * MIN), "hr_high")
    assert found == [(2, False)]


# -- device state ----------------------------------------------------------------------------


def test_offline_from_status_after_grace_and_back() -> None:
    rig = Rig()
    rig.feed(tm(T0, hr=70))
    rig.clock.now = T0 + 10 * SEC
    rig.status(False)
    assert rig.tick(T0 + 10 * SEC + 2 * MIN - 1) == []
    offline = rig.tick(T0 + 10 * SEC + 2 * MIN)
    assert brief(offline) == [("offline", True)]
    assert offline[0].since == T0 + 10 * SEC
    assert offline[0].detail == {"reason": "status"}
    rig.status(True)
    assert brief(rig.findings[-1:]) == [("offline", False)]


def test_online_restarts_the_silence_clock() -> None:
    """Back online after an outage, a band has three intervals to send before `no_data`."""
    rig = Rig()
    rig.feed(tm(T0, hr=70))
    rig.clock.now = T0 + 10 * SEC
    rig.status(False)
    rig.tick(T0 + 3 * MIN)
    rig.clock.now = T0 + 10 * MIN
    rig.status(True)
    assert brief(rig.findings) == [("offline", True), ("offline", False)]
    assert rig.tick(T0 + 13 * MIN) == []
    assert brief(rig.tick(T0 + 13 * MIN + 1)) == [("no_data", True)]


def test_a_reconnect_within_grace_is_not_offline() -> None:
    rig = Rig()
    rig.feed(tm(T0, hr=70))
    rig.status(False)
    rig.clock.now = T0 + MIN
    rig.status(True)
    assert rig.tick(T0 + 2 * MIN + 1) == []


def test_power_off_is_offline_at_once_and_data_brings_it_back() -> None:
    rig = Rig()
    rig.feed(tm(T0, hr=70), ev(T0 + SEC, "power_off"))
    found = rig.tick(T0 + 2 * SEC)
    assert brief(found) == [("offline", True)]
    assert found[0].detail == {"reason": "power_off"}
    assert brief(rig.feed(tm(T0 + MIN, hr=70))) == [("offline", False)]


@pytest.mark.parametrize(
    ("profile", "worn", "rule", "silent_ms"),
    [
        (band(), True, "no_data", 3 * MIN),  # a worn band that says nothing: no data
        (band(), False, "offline", 3 * MIN),  # a band on the table: just offline
        (band(interval_s=600), True, "no_data", 30 * MIN),  # three of its own intervals
        (bin_(), None, "offline", 3 * MIN),
    ],
    ids=["worn", "not-worn", "long-interval", "bin"],
)
def test_silence_past_three_intervals(
    profile: Any, worn: bool | None, rule: str, silent_ms: int
) -> None:
    rig = Rig(profiles=[profile])
    if profile.kind is Kind.BIN:
        rig.feed(btm(T0, device=profile.device_id, fill=10))
    else:
        rig.feed(tm(T0, device=profile.device_id, battery=80, worn=worn))
    assert rig.tick(T0 + silent_ms) == []
    found = rig.tick(T0 + silent_ms + 1)
    assert brief(found) == [(rule, True)]
    assert (found[0].since, found[0].subject) == (T0, profile.device_id)
    assert rig.tick(T0 + silent_ms + HOUR) == []  # once
    again = (
        btm(T0 + HOUR, device=profile.device_id, fill=10)
        if profile.kind is Kind.BIN
        else tm(T0 + HOUR, device=profile.device_id, battery=80)
    )
    assert brief(rig.feed(again)) == [(rule, False)]


def test_any_message_ends_silence() -> None:
    rig = Rig()
    rig.feed(tm(T0, hr=70))
    rig.tick(T0 + 4 * MIN)
    assert brief(rig.feed(ev(T0 + 5 * MIN, "on_wrist"))) == [("no_data", False)]


BATTERY: list[tuple[str, Sequence[float], list[tuple[int, bool]]]] = [
    ("above 15", [80, 50, 16, 15], []),
    ("below 15", [16, 14.9], [(1, True)]),
    ("hovering does not flap", [14, 16, 14, 19, 14], [(0, True)]),
    ("clears at 20", [14, 19, 20], [(0, True), (2, False)]),
]


@pytest.mark.parametrize(("case", "levels", "expected"), BATTERY, ids=[c[0] for c in BATTERY])
@pytest.mark.parametrize("kind", [Kind.WRISTBAND, Kind.BIN])
def test_battery_low(
    case: str, levels: list[float], expected: list[tuple[int, bool]], kind: Kind
) -> None:
    rig = Rig(profiles=[bin_()])
    found = []
    for minute, level in enumerate(levels):
        ts = T0 + minute * MIN
        reading = tm(ts, battery=level) if kind is Kind.WRISTBAND else btm(ts, battery=level)
        found += [(minute, f.active) for f in rig.feed(reading) if f.rule == "battery_low"]
    assert found == expected
    subject_kind = SubjectKind.WRISTBAND if kind is Kind.WRISTBAND else SubjectKind.BIN
    assert all(f.subject_kind is subject_kind for f in rig.findings)


NOT_WORN: list[tuple[str, int, list[int], int | None]] = [
    ("after 30 min", at(10), [at(10, 29), at(10, 30)], at(10, 30)),
    ("not before", at(10), [at(10, 29)], None),
    ("not in the evening", at(20, 40), [at(20, 59), at(21, 30), at(23)], None),
    ("a night off the wrist counts from 07:00", at(22), [at(7, 0, 2), at(7, 29, 2)], None),
    ("... and speaks at 07:30", at(22), [at(7, 0, 2), at(7, 30, 2)], at(7, 30, 2)),
    ("off at 06:50: 30 min of waking time", at(6, 50), [at(7, 20), at(7, 30)], at(7, 30)),
]


@pytest.mark.parametrize(("case", "off", "ticks", "fires"), NOT_WORN, ids=[c[0] for c in NOT_WORN])
def test_not_worn_only_in_waking_hours(
    case: str, off: int, ticks: list[int], fires: int | None
) -> None:
    rig = Rig(profiles=[band(interval_s=8 * 3600)], now=off)
    rig.feed(tm(off, worn=False, battery=90))
    found = {t: brief(rig.tick(t)) for t in ticks}
    expected = {t: [("not_worn", True)] if t == fires else [] for t in ticks}
    assert found == expected
    if fires is not None:
        assert rig.findings[-1].since == off
        back = rig.feed(tm(fires + MIN, worn=True, battery=90))
        assert brief(back) == [("not_worn", False)]


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


def test_late_bin_and_event_readings_are_counted() -> None:
    rig = Rig(profiles=[bin_()])
    rig.feed(btm(T0 + 10 * MIN, fill=50), btm(T0, fill=95), bev(T0, "lid_jam"))
    rig.feed(tm(T0 + 10 * MIN, hr=70), ev(T0, "off_wrist"))
    assert rig.engine.stats.late == 3
    assert rig.findings == []


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


# -- restart -----------------------------------------------------------------------------------


def restarted(rig: Rig, down_ms: int) -> Rig:
    """A new engine (and clock) that restores `rig`'s checkpoint after `down_ms` of downtime."""
    saved = rig.engine.snapshot()
    new = Rig(profiles=rig.profiles.values(), now=rig.clock.now + down_ms)
    new.engine.restore(saved)
    return new


def test_restart_keeps_a_sustained_clock() -> None:
    rig = Rig()
    series(rig, "hr", [125] * 4)  # minutes 0-3: pending
    new = restarted(rig, 30 * SEC)
    found = [f for f in new.feed(tm(T0 + 4 * MIN, hr=125), tm(T0 + 5 * MIN, hr=125))]
    assert [(f.rule, f.ts, f.since) for f in found] == [("hr_high", T0 + 5 * MIN, T0)]


def test_restart_keeps_an_open_finding_and_its_clear() -> None:
    rig = Rig()
    series(rig, "hr", [125] * 6 + [100])
    new = restarted(rig, 30 * SEC)
    assert brief(new.engine.active()) == [("hr_high", True)]
    assert only(series(new, "hr", [100], start=T0 + 8 * MIN), "hr_high") == [(0, False)]


def test_restart_keeps_a_latched_fall() -> None:
    rig = Rig()
    fall = ev(T0, "fall", confidence=0.9)
    rig.feed(fall)
    new = restarted(rig, 10 * MIN)
    active = new.engine.active()
    assert [(f.rule, f.latched, f.severity, f.since) for f in active] == [
        ("fall", True, Severity.CRITICAL, T0)
    ]
    assert new.feed(fall) == []  # the broker redelivers it after the restart
    assert new.engine.resolve("w1", "fall", T0 + HOUR) is True


def test_restart_does_not_count_downtime_as_silence() -> None:
    rig = Rig()
    rig.feed(tm(T0, hr=70))
    rig.clock.now = T0 + MIN  # saved a minute after the band's last reading
    down = HOUR
    new = restarted(rig, down)
    back = T0 + MIN + down  # 1 min of silence before the save, the rest after the restore
    assert new.tick(back + 2 * MIN) == []
    assert brief(new.tick(back + 2 * MIN + 1)) == [("no_data", True)]


def test_restart_keeps_an_offline_grace_and_the_bins_and_buildings() -> None:
    rig = Rig(profiles=[bin_(), bin_("b2")])
    rig.feed(btm(T0, fill=95), bev(T0 + SEC, "lid_jam"))
    for i in range(60):
        rig.feed(bev(T0 + 2 * SEC + i * SEC, "deposit", device="b2", detected="other"))
    rig.status(False, "b1", Kind.BIN)
    rig.clock.now += MIN
    new = restarted(rig, HOUR)
    assert new.tick(new.clock.now + MIN - 1) == []  # the grace left: 1 min, not 0
    assert brief(new.tick(new.clock.now + MIN)) == [("offline", True)]
    assert sorted(brief(new.engine.active())) == [
        ("bin_full", True),
        ("lid_jam", True),
        ("offline", True),
    ]
    new.feed(bev(T0 + 70 * SEC, "deposit", device="b2", detected="kitchen"))
    assert new.engine.buildings["7"].buckets.sum(axis=0).tolist() == [1, 61]


def test_restore_refuses_another_version() -> None:
    rig = Rig()
    rig.feed(tm(T0, hr=70))
    data = rig.engine.snapshot().replace(b"\xa7version\x01", b"\xa7version\x09")
    with pytest.raises(ValueError, match="checkpoint version 9"):
        Rig().engine.restore(data)


# -- reloading rules, grids and residents ------------------------------------------------------


def test_reload_keeps_state() -> None:
    rig = Rig(profiles=[band()])
    series(rig, "hr", [125] * 4)  # pending
    series(rig, "spo2", [84], start=T0 + 4 * MIN)  # open
    rules = parse_rules({"threshold": {"hr_high": {"above": 122}}})
    rig.engine.set_rules(rules, build_contexts(rig.profiles, rules))
    found = series(rig, "hr", [125, 125], start=T0 + 4 * MIN + 30 * SEC)
    assert [(m, r, a) for m, r, a in found] == [(1, "hr_high", True)]
    assert rig.findings[-1].since == T0  # the clock ran on through the reload
    assert "spo2_critical" in open_rules(rig)


def test_reload_clears_what_a_rule_no_longer_watches() -> None:
    rig = Rig(profiles=[band()])
    series(rig, "spo2", [84])
    series(rig, "hr", [125] * 3, start=T0 + MIN)  # hr_high pending; news2 open (3 + 2)
    assert open_rules(rig) == {"spo2_critical", "news2"}
    rules = parse_rules(
        {
            "threshold": {"spo2_critical": {"enabled": False}, "hr_high": {"enabled": False}},
            "news2": {"enabled": False},
        }
    )
    rig.engine.set_rules(rules, build_contexts(rig.profiles, rules))
    assert sorted(brief(rig.engine.take())) == [("news2", False), ("spo2_critical", False)]
    assert rig.engine.active() == []
    assert series(rig, "hr", [125] * 10, start=T0 + 4 * MIN) == []


def test_grid_limits() -> None:
    rig = Rig(
        {"grids": {"3": {"threshold": {"hr_high": {"above": 130, "clear_at": 120}}}}},
        profiles=[band("a", grid_id=3), band("b", grid_id=4)],
    )
    for minute in range(6):
        rig.feed(tm(T0 + minute * MIN, "a", hr=125), tm(T0 + minute * MIN, "b", hr=125))
    assert [(f.subject, f.rule) for f in rig.findings] == [("b", "hr_high")]


@pytest.mark.parametrize(
    ("limits", "values", "expected"),
    [
        ({}, [125] * 6, [(5, True)]),
        ({"hr_high": 130}, [125] * 10, []),
        ({"hr_high": 130}, [131] * 6, [(5, True)]),
        ({"hr_high": 130}, [131] * 6 + [119] * 3, [(5, True), (8, False)]),  # clears at 120
        ({}, [131] * 6 + [119] * 3, [(5, True)]),  # the default clears at 110
    ],
)
def test_personal_limits(
    limits: dict[str, float], values: Sequence[float], expected: list[tuple[int, bool]]
) -> None:
    rig = Rig(profiles=[band(resident_id=1, vital_limits=limits)])
    assert only(series(rig, "hr", values), "hr_high") == expected


# -- the personal baseline ---------------------------------------------------------------------

USUAL = [(70.0, 97.0), (72.0, 96.0), (69.0, 97.0), (71.0, 98.0), (70.0, 97.0), (73.0, 96.0)]


def baseline_day(
    days: list[tuple[float, float]], hr: float | None, spo2: float | None, samples: int = 60
) -> list[Finding]:
    """A resident with these past daily medians; an hour of resting readings today."""
    rig = Rig(profiles=[band(resident_id=5)])
    baseline = rig.engine.baselines["r5"] = Baseline.new(14)
    seed_baseline(baseline, days)
    start = at(9)
    for i in range(samples):
        fields = {k: v for k, v in (("hr", hr), ("spo2", spo2)) if v is not None}
        rig.feed(tm(start + i * MIN, "w1", **fields))
    rig.tick(start + samples * MIN)
    return [f for f in rig.findings if f.rule.startswith("baseline_")]


BASELINE: list[tuple[str, list[tuple[float, float]], float | None, float | None, list[str]]] = [
    ("a usual day", USUAL, 74, 97, []),
    ("resting heart rate far above usual", USUAL, 90, 97, ["baseline_hr"]),
    ("far below usual", USUAL, 52, 97, ["baseline_hr"]),
    ("within the band", USUAL, 80, 97, []),
    ("spo2 below usual", USUAL, 70, 93, ["baseline_spo2"]),
    ("spo2 above usual is fine", [(70.0, 94.0)] * 6, 70, 99, []),
    ("not before min_days", USUAL[:4], 95, 90, []),
    ("no spo2 today: no spo2 verdict", USUAL, 95, None, ["baseline_hr"]),
]


@pytest.mark.parametrize(
    ("case", "days", "hr", "spo2", "rules"), BASELINE, ids=[c[0] for c in BASELINE]
)
def test_baseline(
    case: str,
    days: list[tuple[float, float]],
    hr: float | None,
    spo2: float | None,
    rules: list[str],
) -> None:
    found = baseline_day(days, hr, spo2)
    assert [f.rule for f in found] == rules
    for f in found:
        assert (f.active, f.resident_id, f.severity) == (True, 5, Severity.WARNING)


def test_baseline_counts_a_day_at_one_hertz() -> None:
    rig = Rig(profiles=[band(resident_id=5)])
    rig.feed(tm(at(0, 1), spo2=98))
    baseline = rig.engine.baselines["r5"]
    baseline.hist[-3] = 70_000  # SpO2 98 % all day from a band reporting every second
    rig.feed(tm(at(0, 2), spo2=98))
    assert baseline.hist[-3] == 70_001


def test_baseline_switched_off_clears_its_findings() -> None:
    rig = Rig(profiles=[band(resident_id=5)])
    seed_baseline(rig.engine.baselines.setdefault("r5", Baseline.new(14)), USUAL)
    for i in range(60):
        rig.feed(tm(at(9) + i * MIN, hr=95))
    assert brief(rig.tick(at(10)), "baseline_hr") == [("baseline_hr", True)]
    rules = parse_rules({"baseline": {"enabled": False}})
    rig.engine.set_rules(rules, build_contexts(rig.profiles, rules))
    assert brief(rig.engine.take()) == [("baseline_hr", False)]
    assert rig.engine.active() == []


def test_baseline_needs_enough_samples_today() -> None:
    assert baseline_day(USUAL, 95, 90, samples=59) == []


def test_baseline_learns_from_days_of_data() -> None:
    rig = Rig(profiles=[band(resident_id=5)])
    found: list[Finding] = []
    for day in range(1, 8):
        hr = 95 if day == 7 else 68 + day % 3
        start = at(9, 0, day)
        for i in range(60):
            rig.feed(tm(start + i * MIN, hr=hr, spo2=97, steps=500))
        found += [f for f in rig.tick(start + HOUR) if f.rule.startswith("baseline_")]
    assert [(f.rule, f.ts) for f in found] == [("baseline_hr", at(10, 0, 7))]
    assert found[0].limit == 69  # the usual resting heart rate
    # A walk does not count as rest, and a calmer next day clears it.
    start = at(9, 0, 8)
    for i in range(60):
        rig.feed(tm(start + i * MIN, hr=110, steps=500 + 50 * i))
    for i in range(60):
        rig.feed(tm(start + HOUR + i * MIN, hr=70, steps=3500))
    assert brief(rig.tick(start + 2 * HOUR), "baseline_hr") == [("baseline_hr", False)]


# -- bins --------------------------------------------------------------------------------------


def bin_series(field: str, values: Sequence[float], rule: str) -> list[tuple[int, bool]]:
    rig = Rig(profiles=[bin_()])
    found = []
    for minute, value in enumerate(values):
        found += [
            (minute, f.active)
            for f in rig.feed(btm(T0 + minute * MIN, "b1", **{field: value}))
            if f.rule == rule
        ]
    return found


BINS: list[tuple[str, str, Sequence[float], str, list[tuple[int, bool]]]] = [
    ("not full at 89", "fill", [50, 80, 89], "bin_full", []),
    ("full at 90", "fill", [50, 90, 100], "bin_full", [(1, True)]),
    ("stays full until emptied", "fill", [95, 89, 60, 31, 89, 95], "bin_full", [(0, True)]),
    (
        "clears when emptied",
        "fill",
        [95, 30, 40, 95],
        "bin_full",
        [(0, True), (1, False), (3, True)],
    ),
    ("no fire at 60", "temp", [25, 59, 60], "bin_fire", []),
    ("fire above 60", "temp", [25, 61], "bin_fire", [(1, True)]),
    ("fire clears at 50", "temp", [61, 80, 55, 51, 50], "bin_fire", [(0, True), (4, False)]),
]


@pytest.mark.parametrize(
    ("case", "field", "values", "rule", "expected"), BINS, ids=[c[0] for c in BINS]
)
def test_bin_levels(
    case: str, field: str, values: Sequence[float], rule: str, expected: list[tuple[int, bool]]
) -> None:
    assert bin_series(field, values, rule) == expected


def test_bin_fire_is_critical_and_names_the_building() -> None:
    rig = Rig(profiles=[bin_(grid_id=2)])
    (fire,) = rig.feed(btm(T0, temp=75))
    assert (fire.severity, fire.subject_kind, fire.building, fire.grid_id) == (
        Severity.CRITICAL,
        SubjectKind.BIN,
        "1栋",
        2,
    )


@pytest.mark.parametrize(
    ("after", "clears"),
    [
        ([bev(T0 + MIN, "deposit", detected="kitchen")], True),
        ([bev(T0 - MIN, "deposit", detected="kitchen")], False),  # from before the jam
        ([btm(T0 + MIN, lid_open=True), btm(T0 + 2 * MIN, lid_open=True)], False),  # still stuck
        ([btm(T0 + MIN, lid_open=True), btm(T0 + 2 * MIN, lid_open=False)], True),  # it moved
        ([bev(T0 + MIN, "lid_jam")], False),
    ],
    ids=["deposit", "older-deposit", "stuck-open", "lid-moved", "jam-again"],
)
def test_lid_jam(after: list[Reading], clears: bool) -> None:
    rig = Rig(profiles=[bin_()])
    rig.feed(btm(T0 - 2 * MIN, lid_open=True))
    assert brief(rig.feed(bev(T0, "lid_jam"))) == [("lid_jam", True)]
    found = rig.feed(*after)
    assert brief(found, "lid_jam") == ([("lid_jam", False)] if clears else [])


def fill_day(
    fills: list[tuple[int, float]], *, tick: bool = True, rules: dict[str, Any] | None = None
) -> list[tuple[int, str, bool]]:
    """Bin telemetry at (ms after T0, fill), ticked after each: (ms, rule, active) found."""
    rig = Rig(rules, profiles=[bin_()])
    found = []
    for offset, fill in fills:
        ts = T0 + offset
        out = rig.feed(btm(ts, fill=fill))
        if tick:
            out += rig.tick(ts)
        found += [(offset, f.rule, f.active) for f in out if f.rule.startswith("bin_full")]
    return found


def steady(
    rate_per_h: float, start: float, hours: float, every: int = 5 * MIN
) -> list[tuple[int, float]]:
    return [
        (i * every, round(min(100.0, start + rate_per_h * i * every / HOUR), 1))
        for i in range(int(hours * HOUR / every) + 1)
    ]


SIX_HOURS: dict[str, Any] = {"bins": {"predict_hours": 6.0}}


def test_fill_prediction_opens_once_before_full() -> None:
    found = fill_day(steady(10, 20, 8), rules=SIX_HOURS)
    # 10 %/h from 20 %: within 6 h of 90 % from 30 % on, but not before two hours of
    # history; full at 7 h.
    assert [(r, a) for _, r, a in found] == [
        ("bin_full_soon", True),
        ("bin_full", True),
        ("bin_full_soon", False),
    ]
    opened = found[0][0]
    assert opened == 2 * HOUR
    assert found[1][0] == found[2][0] == 7 * HOUR


@pytest.mark.parametrize(
    ("case", "fills"),
    [
        ("flat", [(i * 5 * MIN, 85.0) for i in range(150)]),
        (
            "flat and noisy",
            [(i * 5 * MIN, 84 + random.Random(i).uniform(-2, 2)) for i in range(150)],
        ),
        ("slowly filling", steady(1, 50, 12)),
        ("emptying", steady(-5, 85, 12)),
        ("one deposit high up", [(i * MIN, 80.0 if i < 20 else 83.0) for i in range(120)]),
    ],
)
def test_fill_prediction_never_opens_on_a_bin_not_filling(
    case: str, fills: list[tuple[int, float]]
) -> None:
    assert fill_day(fills) == []


def bursty_day() -> list[tuple[int, float]]:
    """A bin topped up by bursts of deposits, flat between them (telemetry every minute)."""
    fills, fill = [], 20.0
    for minute in range(10 * 60):
        if minute % 90 < 10:
            fill += 1.0  # 10 points in ten minutes, then an hour and twenty of quiet
        fills.append((minute * MIN, round(min(fill, 89.0), 1)))
    return fills


def test_fill_prediction_does_not_flap_through_lulls() -> None:
    found = fill_day(bursty_day())
    assert [(r, a) for _, r, a in found] == [("bin_full_soon", True)]


def test_fill_prediction_clears_when_emptied() -> None:
    fills = steady(10, 20, 4)
    end = fills[-1][0]
    fills += [(end + 5 * MIN, 2.0), (end + 10 * MIN, 3.0)]
    found = fill_day(fills)
    assert [(r, a) for _, r, a in found] == [("bin_full_soon", True), ("bin_full_soon", False)]
    assert found[-1][0] == end + 5 * MIN


def test_fill_prediction_does_not_reopen_on_emptying() -> None:
    """A bin that fills in 4.5 h at its pace: each collection clears the forecast, and it
    opens again only once the emptied bin has two hours of its own curve."""
    fills = steady(20, 0, 4.4)  # 0 to 88 % in 4.4 h
    end = fills[-1][0]
    fills += [(end + 5 * MIN + offset, fill) for offset, fill in steady(20, 0, 4.4)]
    found = [(offset // MIN, r, a) for offset, r, a in fill_day(fills)]
    again = (end + 5 * MIN + 2 * HOUR) // MIN
    assert found == [
        (120, "bin_full_soon", True),
        ((end + 5 * MIN) // MIN, "bin_full_soon", False),
        (again, "bin_full_soon", True),
    ]


def test_fill_prediction_clears_when_filling_stops_for_good() -> None:
    fills = steady(10, 20, 3)  # opens at 2 h, 40 %
    end = fills[-1][0]
    fills += [(end + i * 10 * MIN, 50.0) for i in range(1, 20 * 6)]  # then 20 quiet hours
    found = fill_day(fills)
    assert [(r, a) for _, r, a in found] == [("bin_full_soon", True), ("bin_full_soon", False)]
    # 30 points in 3 + x hours: no longer full within 24 h once x > 15.
    assert end + 15 * HOUR < found[1][0] <= end + 15 * HOUR + 10 * MIN


def test_fill_prediction_goes_by_the_days_pace_not_a_rush() -> None:
    """A rush of deposits right after a collection, in a bin that fills slowly over a day."""
    fills = steady(2, 0, 20, every=10 * MIN)  # 40 % in 20 h
    end = fills[-1][0]
    fills += [(end + 5 * MIN + offset, fill) for offset, fill in steady(15, 0, 2)]  # emptied
    # The last two hours alone (15 %/h) would say full in 4 h; the day's pace (70 points in
    # 22 h) says 19 h.
    assert fill_day(fills) == []


def test_fill_prediction_finding() -> None:
    rig = Rig(SIX_HOURS, profiles=[bin_()])
    for offset, fill in steady(10, 20, 2):
        rig.feed(btm(T0 + offset, fill=fill))
        rig.tick(T0 + offset)
    (soon,) = rig.findings
    assert (soon.rule, soon.severity, soon.subject_kind, soon.limit) == (
        "bin_full_soon",
        Severity.INFO,
        SubjectKind.BIN,
        6.0,
    )
    assert (soon.value, soon.ts) == (5.0, T0 + 2 * HOUR)  # 50 points to go at 10 %/h
    assert soon.detail == {"fill": 40.0, "per_hour": 10.0}


def deposits(rig: Rig, start: int, correct: int, wrong: int, device: str = "b1") -> None:
    for i in range(correct + wrong):
        detected = "kitchen" if i < correct else "other"
        rig.feed(bev(start + i * MIN, "deposit", device=device, detected=detected))


SORTING: list[tuple[str, list[tuple[int, int]], float | None, list[bool]]] = [
    ("good sorting", [(90, 10)], None, []),
    ("below target", [(40, 10)], None, [True]),
    ("a little below target by chance (84 % of 50)", [(42, 8)], None, []),
    ("well below target", [(30, 20)], None, [True]),
    ("too few deposits to judge", [(12, 8)], None, []),
    ("a poor start within a good day", [(5, 5), (200, 10)], None, []),
    ("the registry's target wins", [(40, 10)], 0.75, []),
    ("recovers past target plus margin", [(40, 10), (40, 0)], None, [True, False]),
    ("does not flap at the target", [(40, 10), (8, 0)], None, [True]),
]


@pytest.mark.parametrize(
    ("case", "batches", "target", "expected"), SORTING, ids=[c[0] for c in SORTING]
)
def test_sorting_accuracy(
    case: str, batches: list[tuple[int, int]], target: float | None, expected: list[bool]
) -> None:
    rig = Rig(profiles=[bin_(sorting_target=target)])
    start = T0
    for correct, wrong in batches:
        deposits(rig, start, correct, wrong)
        start += (correct + wrong) * MIN
        rig.tick(start)
    found = [f for f in rig.findings if f.rule == "sorting_accuracy"]
    assert [f.active for f in found] == expected
    for f in found:
        assert (f.subject_kind, f.subject, f.building, f.device_id) == (
            SubjectKind.BUILDING,
            "7",
            "1栋",
            None,
        )


def test_sorting_accuracy_is_a_buildings_figure_over_the_last_day() -> None:
    rig = Rig(
        profiles=[
            bin_("b1"),
            bin_("b2", Category.RECYCLABLE),
            bin_("x", Category.OTHER, building_key="8"),
        ]
    )
    deposits(rig, at(8), 20, 15, "b1")
    rig.feed(
        *(bev(at(8) + i * SEC, "deposit", device="b2", detected="recyclable") for i in range(30))
    )
    rig.feed(*(bev(at(8) + i * SEC, "deposit", device="x", detected="other") for i in range(30)))
    (found,) = [f for f in rig.tick(at(9)) if f.rule == "sorting_accuracy"]
    assert (found.subject, found.active, found.value, found.limit) == ("7", True, 0.769, 0.85)
    assert found.detail == {"deposits": 65, "errors": 15}
    # A day later the errors have left the window.
    deposits(rig, at(9, 0, 2), 60, 0, "b1")
    assert brief(rig.tick(at(11, 0, 2)), "sorting_accuracy") == [("sorting_accuracy", False)]


def test_deposits_count_once_even_out_of_order() -> None:
    rig = Rig(profiles=[bin_()])
    d1 = bev(T0, "deposit", detected="kitchen")
    d2 = bev(T0 + SEC, "deposit", detected="other")
    rig.feed(d2, d1, d2, d1)
    assert rig.engine.stats.duplicates == 2
    assert rig.engine.buildings["7"].buckets.sum(axis=0).tolist() == [1, 2]


def test_deposits_without_a_compartment_are_not_judged() -> None:
    rig = Rig()  # b1 is in no registry: no category, no building
    deposits(rig, T0, 0, 60)
    rig.tick(T0 + HOUR)
    assert rig.engine.buildings == {}
    assert rig.findings == []


# -- active() and statistics -------------------------------------------------------------------


def test_active_lists_what_holds_now_without_counting_it() -> None:
    rig = Rig(profiles=[bin_(), band(interval_s=7200)])
    series(rig, "hr", [125] * 6)
    rig.feed(btm(T0, fill=95, battery=10), ev(T0 + 7 * MIN, "sos"))
    deposits(rig, T0, 40, 20)
    rig.tick(T0 + HOUR)
    stats = (rig.engine.stats.findings, dict(rig.engine.stats.by_rule))
    active = rig.engine.active()
    assert sorted((f.rule, f.subject) for f in active) == [
        ("battery_low", "b1"),
        ("bin_full", "b1"),
        ("hr_high", "w1"),
        ("sorting_accuracy", "7"),
        ("sos", "w1"),
    ]
    assert all(f.active and f.ts >= f.since > 0 for f in active)
    assert (rig.engine.stats.findings, rig.engine.stats.by_rule) == stats
    assert rig.engine.take() == []


def test_run_ignores_hits_from_before_its_last_break() -> None:
    run = Run()
    assert not run.observe(T0, True, 5 * MIN)
    assert not run.observe(T0 + 2 * MIN, False, 5 * MIN)
    assert not run.observe(T0 + MIN, True, 5 * MIN)  # older than the break
    assert run.idle
    assert not run.observe(T0 + 3 * MIN, True, 5 * MIN)
    assert run.observe(T0 + 8 * MIN, True, 5 * MIN)


def test_unknown_devices_get_the_default_rules() -> None:
    engine = RuleEngine(parse_rules({}), lambda: T0)
    for minute in range(6):
        engine.feed(tm(T0 + minute * MIN, "stranger", hr=125))
    engine.feed(StatusChange("stranger", Kind.WRISTBAND, True, T0))
    assert brief(engine.take(), "hr_high") == [("hr_high", True)]
