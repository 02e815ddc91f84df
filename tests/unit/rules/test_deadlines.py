"""Ticks visit only the devices due: the same findings as visiting every device at every tick."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from protocol.models import Kind, StatusChange
from rules.deadlines import Deadlines
from rules.findings import Finding
from tests.support.rules import HOUR, MIN, SEC, Rig, at, band, bin_, btm, ev, tm

# Silence after 3, 60 and 180 minutes: before and after `not_worn` and `inactivity`.
BANDS = {"w1": 60, "w2": 1200, "w3": 3600}
RULES = {
    "device": {"not_worn_for": "20m", "offline_grace": "2m", "offline_intervals": 3},
    "inactivity": {"no_steps_for": "45m"},
    "waking_hours": "07:00-21:00",
}


def test_deadlines_order_woken_first_then_by_time() -> None:
    d = Deadlines()
    d.set("a", 300)
    d.set("b", 100)
    d.set("c", 200)
    d.set("b", 400)  # replaced: its earlier entry is stale
    d.wake("z")
    assert d.take(250) == ["z", "c"]
    assert d.take(1_000) == ["a", "b"]
    assert d.take(10_000) == []
    d.set("a", None)
    assert len(d) == 0


def test_a_quiet_fleet_is_not_visited_between_its_deadlines() -> None:
    rig = Rig(RULES, [band(f"w{i}", interval_s=60) for i in range(1000)], now=at(9))
    for i in range(1000):
        rig.feed(tm(at(9), f"w{i}", hr=70, steps=10))
    rig.tick(at(9) + 5 * SEC)  # every band is visited once, as it was first seen
    assert rig.engine.deadlines.take(at(9) + 10 * SEC) == []  # then not until a deadline
    rig.tick(at(9) + 3 * MIN + 1)  # three intervals of silence: every band is due
    assert {f.rule for f in rig.findings} == {"no_data"}
    assert len(rig.findings) == 1000


@dataclass(frozen=True)
class Step:
    minutes: int  # after the previous step
    what: str
    device: str


steps = st.lists(
    st.builds(
        Step,
        st.integers(0, 90),
        st.sampled_from(
            ["tm", "tm_still", "off", "on", "power_off", "offline", "online", "bin", "tick"]
        ),
        st.sampled_from(sorted(BANDS)),
    ),
    max_size=60,
)


def _run(plan: list[Step], visit_all: bool) -> list[Finding]:
    rig = Rig(
        RULES, [*(band(d, interval_s=s) for d, s in BANDS.items()), bin_("b1", interval_s=600)]
    )
    now = at(6, 30)  # before waking hours: the day crosses their start and end
    rig.clock.now = now
    steps_of = dict.fromkeys(BANDS, 0)
    for step in plan:
        now += step.minutes * MIN + 1_234
        d = step.device
        if step.what in ("tm", "tm_still"):
            steps_of[d] += 10 if step.what == "tm" else 0
            rig.feed(tm(now, d, hr=70, steps=steps_of[d]))
        elif step.what == "off":
            rig.feed(ev(now, "off_wrist", d))
        elif step.what == "on":
            rig.feed(ev(now, "on_wrist", d))
        elif step.what == "power_off":
            rig.feed(ev(now, "power_off", d))
        elif step.what in ("offline", "online"):
            rig.clock.now = now
            rig.feed(StatusChange(d, Kind.WRISTBAND, step.what == "online", now))
        elif step.what == "bin":
            rig.feed(btm(now, "b1", fill=0.2))
        # Ticks every 5 s of clock over the gap would be slow: every minute, and at the step.
        for t in range(now - step.minutes * MIN, now + 1, MIN):
            _tick(rig, t, visit_all)
        _tick(rig, now, visit_all)
    for t in range(now, now + 20 * HOUR, 5 * MIN):  # and a long quiet tail
        _tick(rig, t, visit_all)
    # Within one tick, devices are visited in another order: compare as sets, per tick.
    return sorted(rig.findings, key=lambda f: (f.ts, f.subject, f.rule, f.active))


def _tick(rig: Rig, now: int, visit_all: bool) -> None:
    if visit_all:  # as the engine did before deadlines
        rig.engine.deadlines.wake_all([*rig.engine.wristbands, *rig.engine.bins])
    rig.tick(now)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
# Each earlier deadline a wake exists for, for certain (the search may miss them):
@example([Step(60, "tm", "w3"), Step(10, "off", "w3"), Step(60, "tick", "w3")])  # not_worn
@example([Step(60, "tm_still", "w3"), Step(10, "tm", "w3"), Step(90, "tick", "w3")])  # inactivity
@example([Step(60, "tm", "w1"), Step(1, "offline", "w1"), Step(9, "tick", "w1")])  # offline
@example([Step(60, "tm", "w1"), Step(1, "power_off", "w1"), Step(9, "tick", "w1")])
@example([Step(60, "tm", "w1"), Step(9, "tick", "w1"), Step(1, "tm", "w1"), Step(9, "tick", "w1")])
def test_deadline_ticks_find_what_visiting_every_device_finds(plan: list[Step]) -> None:
    assert _run(plan, visit_all=False) == _run(plan, visit_all=True)
