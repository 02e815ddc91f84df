"""A bin's rules (full, full soon, fire, lid jam) and its building's sorting accuracy."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import pytest

from protocol.models import Category, Reading
from rules.findings import Severity, SubjectKind
from tests.support.rules import HOUR, MIN, SEC, T0, Rig, at, bev, bin_, brief, btm, deposits

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
