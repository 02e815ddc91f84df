"""Builders for the rule engine's unit tests: a fake clock, readings as Structs, a small rig."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from protocol.models import (
    BinEvent,
    BinTelemetry,
    Category,
    Kind,
    Reading,
    StatusChange,
    WristbandEvent,
    WristbandTelemetry,
)
from rules.config import parse_rules
from rules.context import Profile, build_contexts
from rules.engine import RuleEngine
from rules.findings import Finding

TZ = ZoneInfo("Asia/Shanghai")
SEC = 1000
MIN = 60_000
HOUR = 3_600_000


def at(hour: int, minute: int = 0, day: int = 1) -> int:
    """Epoch ms of a local (Asia/Shanghai) time in June 2026."""
    return int(datetime(2026, 6, day, hour, minute, tzinfo=TZ).timestamp() * 1000)


T0 = at(10)  # 2026-06-01 10:00 local: inside waking hours
HOME = (31.2304, 121.4737)


def north_of_home(metres: float) -> tuple[float, float]:
    return HOME[0] + metres / 111_320.0, HOME[1]


class Clock:
    """The engine's clock: a mutable int the tests move."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def tm(ts: int, device: str = "w1", **fields: Any) -> Reading:
    return Reading(device, Kind.WRISTBAND, WristbandTelemetry(ts=ts, **fields))


def ev(ts: int, type: str, device: str = "w1", **fields: Any) -> Reading:
    return Reading(device, Kind.WRISTBAND, WristbandEvent(ts=ts, type=type, **fields))  # type: ignore[arg-type]


def btm(ts: int, device: str = "b1", **fields: Any) -> Reading:
    return Reading(device, Kind.BIN, BinTelemetry(ts=ts, **fields))


def bev(ts: int, type: str, device: str = "b1", **fields: Any) -> Reading:
    return Reading(device, Kind.BIN, BinEvent(ts=ts, type=type, **fields))  # type: ignore[arg-type]


def band(device: str = "w1", **kw: Any) -> Profile:
    return Profile(device, Kind.WRISTBAND, **kw)


def bin_(device: str = "b1", category: Category = Category.KITCHEN, **kw: Any) -> Profile:
    kw.setdefault("building_key", "7")
    kw.setdefault("building", "1栋")
    return Profile(device, Kind.BIN, category=category, **kw)


class Rig:
    """An engine on a fake clock that collects what it reports; readings move the clock."""

    def __init__(
        self,
        rules: Mapping[str, Any] | None = None,
        profiles: Iterable[Profile] = (),
        now: int = T0,
    ) -> None:
        self.profiles = {p.device_id: p for p in profiles}
        self.rules = parse_rules(rules or {})
        self.clock = Clock(now)
        self.engine = RuleEngine(self.rules, self.clock, build_contexts(self.profiles, self.rules))
        self.findings: list[Finding] = []

    def feed(self, *items: Reading | StatusChange) -> list[Finding]:
        out: list[Finding] = []
        for item in items:
            if isinstance(item, Reading):
                self.clock.now = max(self.clock.now, item.body.ts)
            self.engine.feed(item)
            out += self.engine.take()
        self.findings += out
        return out

    def status(self, online: bool, device: str = "w1", kind: Kind = Kind.WRISTBAND) -> None:
        self.feed(StatusChange(device, kind, online, self.clock.now))

    def tick(self, now: int) -> list[Finding]:
        self.clock.now = max(self.clock.now, now)
        self.engine.tick(now)
        out = self.engine.take()
        self.findings += out
        return out


def brief(findings: Iterable[Finding], *rules: str) -> list[tuple[str, bool]]:
    """(rule, active) of each finding, only of `rules` when given."""
    return [(f.rule, f.active) for f in findings if not rules or f.rule in rules]


def open_rules(rig: Rig) -> set[str]:
    """The rules whose last finding for any subject left them open."""
    state: dict[tuple[str, str], bool] = {}
    for f in rig.findings:
        state[f.subject, f.rule] = f.active
    return {rule for (_, rule), active in state.items() if active}


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
    """(minute, active) of the findings of `rule` in what `series` found."""
    return [(minute, active) for minute, r, active in found if r == rule]


def deposits(rig: Rig, start: int, correct: int, wrong: int, device: str = "b1") -> None:
    """`correct` kitchen deposits then `wrong` others into a kitchen bin, a minute apart."""
    for i in range(correct + wrong):
        detected = "kitchen" if i < correct else "other"
        rig.feed(bev(start + i * MIN, "deposit", device=device, detected=detected))
