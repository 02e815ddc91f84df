"""What a device says of itself: inhibition of vitals, offline, silence, battery, not worn."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from protocol.models import Kind
from rules.findings import SubjectKind
from tests.support.rules import (
    HOUR,
    MIN,
    SEC,
    T0,
    Rig,
    at,
    band,
    bin_,
    brief,
    btm,
    ev,
    only,
    series,
    tm,
)

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
