"""How every rule reports: findings appended to one outbox, counted; a run opened or cleared."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.constants import LATCHED_RULES
from protocol.models import Kind
from rules.context import DeviceContext
from rules.deadlines import Deadlines
from rules.findings import Finding, Severity, SubjectKind
from rules.state import Bin, BuildingState, Run, Wristband

Detail = dict[str, str | float | int | bool]


@dataclass(slots=True)
class EngineStats:
    """What the engine counted since it started (the service's metrics)."""

    readings: int = 0
    late: int = 0  # older than the lateness tolerance: not evaluated
    duplicates: int = 0  # repeated events (redeliveries)
    inhibited: int = 0  # vitals not judged: off-wrist, offline or flat
    findings: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)


class Emitter:
    """The findings produced since the caller last took them, and the counters."""

    __slots__ = ("_deadlines", "pending", "stats")

    def __init__(self, deadlines: Deadlines) -> None:
        self.pending: list[Finding] = []
        self.stats = EngineStats()
        self._deadlines = deadlines

    def emit(
        self,
        ctx: DeviceContext,
        rule: str,
        active: bool,
        severity: Severity,
        ts: int,
        since: int,
        value: float | None,
        limit: float | None,
        *,
        subject_kind: SubjectKind = SubjectKind.WRISTBAND,
        latched: bool = False,
        detail: Detail | None = None,
    ) -> None:
        """One finding about a device (a bin's always says so, whatever `subject_kind`)."""
        if ctx.kind is Kind.BIN:
            subject_kind = SubjectKind.BIN
        self.pending.append(
            Finding(
                rule=rule,
                subject_kind=subject_kind,
                subject=ctx.device_id,
                active=active,
                severity=severity,
                ts=ts,
                since=since,
                device_id=ctx.device_id,
                resident_id=ctx.resident_id,
                grid_id=ctx.grid_id,
                building=ctx.building,
                value=value,
                limit=limit,
                latched=latched,
                detail=detail or {},
            )
        )
        stats = self.stats
        stats.findings += 1
        stats.by_rule[rule] = stats.by_rule.get(rule, 0) + 1

    def emit_building(
        self,
        key: str,
        building: BuildingState,
        active: bool,
        ts: int,
        since: int,
        value: float,
        limit: float | None,
        detail: Detail,
    ) -> None:
        """One sorting-accuracy finding about a building."""
        self.pending.append(
            Finding(
                rule="sorting_accuracy",
                subject_kind=SubjectKind.BUILDING,
                subject=key,
                active=active,
                severity=Severity.INFO,
                ts=ts,
                since=since,
                grid_id=building.grid_id,
                building=building.name,
                value=round(value, 3),
                limit=limit,
                detail=detail,
            )
        )
        self.stats.findings += 1
        self.stats.by_rule["sorting_accuracy"] = self.stats.by_rule.get("sorting_accuracy", 0) + 1

    def clear(
        self,
        ctx: DeviceContext,
        st: Wristband | Bin,
        rule: str,
        ts: int,
        value: float | None = None,
    ) -> None:
        """Close a device's open `rule` (its run goes) and say so.

        The device is woken: with `offline`, `no_data`, `inactivity` or `not_worn` closed,
        the clock watches for it again.
        """
        assert st.runs is not None
        run = st.runs.pop(rule)
        self._deadlines.wake(ctx.device_id)
        kind = SubjectKind.WRISTBAND if ctx.kind is Kind.WRISTBAND else SubjectKind.BIN
        self.emit(
            ctx,
            rule,
            False,
            severity_of(ctx, rule, run),
            ts,
            run.since,
            value,
            None,
            subject_kind=kind,
            latched=rule in LATCHED_RULES,
        )

    def finish(
        self,
        ctx: DeviceContext,
        rule: str,
        run: Run,
        ts: int,
        severity: Severity,
        value: float,
        limit: float | None,
    ) -> None:
        """A sustained rule's clear held long enough: the run goes idle, the finding clears."""
        since = run.since
        run.settle(ts)  # kept idle: a trigger older than this clear re-opens nothing
        self.emit(ctx, rule, False, severity, ts, since, value, limit)


def open_run(st: Wristband | Bin, rule: str, since: int, peak: float) -> Run:
    """An active run of `rule` on a device, from `since`."""
    runs = st.runs
    if runs is None:
        runs = st.runs = {}
    run = runs[rule] = Run(active=True, since=since, peak=peak, reset=since)
    return run


def last_seen(run: Run) -> int:
    """The newest event time a run knows: an opened device finding has no `end` of its own."""
    return max(run.since, run.reset, run.end)


def news2_severity(level: int) -> Severity:
    """NEWS2's level as a severity: high is critical, medium a warning."""
    return Severity.CRITICAL if level >= 2 else Severity.WARNING


def severity_of(ctx: DeviceContext, rule: str, run: Run) -> Severity:
    """The severity an open run of `rule` has under the device's limits."""
    if rule == "news2":
        return news2_severity(run.level)
    if rule in ("sos", "bin_fire"):
        return Severity.CRITICAL
    if rule == "fall":
        confident = run.peak >= ctx.limits.events.fall_min_confidence
        return Severity.CRITICAL if confident else Severity.WARNING
    if rule == "bin_full_soon":
        return Severity.INFO
    for threshold in ctx.limits.thresholds:
        if threshold.name == rule:
            return threshold.severity
    if rule == "inactivity":
        return ctx.limits.inactivity.severity
    if rule == "wandering":
        return ctx.limits.wandering.severity
    if rule.startswith("baseline_"):
        return ctx.limits.baseline.severity
    return Severity.WARNING
