"""The engine as a whole: reloads, grid and personal limits, `active()`, strangers, lateness."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from protocol.models import Kind, StatusChange
from rules.config import parse_rules
from rules.context import build_contexts
from rules.engine import RuleEngine
from tests.support.rules import (
    HOUR,
    MIN,
    SEC,
    T0,
    Rig,
    band,
    bev,
    bin_,
    brief,
    btm,
    deposits,
    ev,
    only,
    open_rules,
    series,
    tm,
)

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


def test_unknown_devices_get_the_default_rules() -> None:
    engine = RuleEngine(parse_rules({}), lambda: T0)
    for minute in range(6):
        engine.feed(tm(T0 + minute * MIN, "stranger", hr=125))
    engine.feed(StatusChange("stranger", Kind.WRISTBAND, True, T0))
    assert brief(engine.take(), "hr_high") == [("hr_high", True)]


# -- event time across kinds ------------------------------------------------------------------


def test_late_bin_and_event_readings_are_counted() -> None:
    rig = Rig(profiles=[bin_()])
    rig.feed(btm(T0 + 10 * MIN, fill=50), btm(T0, fill=95), bev(T0, "lid_jam"))
    rig.feed(tm(T0 + 10 * MIN, hr=70), ev(T0, "off_wrist"))
    assert rig.engine.stats.late == 3
    assert rig.findings == []
