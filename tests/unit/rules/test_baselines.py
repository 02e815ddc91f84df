"""The personal baseline: today's resting median against the resident's past days."""

from __future__ import annotations

import pytest

from rules.baselines import seed_baseline
from rules.config import parse_rules
from rules.context import build_contexts
from rules.findings import Finding, Severity
from rules.state import Baseline
from tests.support.rules import HOUR, MIN, Rig, at, band, brief, tm

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
