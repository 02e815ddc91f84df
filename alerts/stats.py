"""Response-time figures the programme is judged by: time to acknowledge and to resolve.

`figures` is pure (no clock, no I/O); `response_times` reads the alerts and groups them
per grid and ISO week. The definitions: docs/alerts.md, "Response times".
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Final

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.tables import Alert
from devices.access import Scope
from devices.tables import Grid, Resident

SYSTEM: Final = "system"  # `resolved_by` of alerts closed because the condition cleared
TARGET: Final = timedelta(minutes=30)  # the programme's target (2 hours before)

# The alert's grid, else its resident's (the grid whose workers the ladder reaches).
alert_grid: ColumnElement[int] = func.coalesce(Alert.grid_id, Resident.grid_id)


@dataclass(frozen=True, slots=True)
class AlertTimes:
    """When an alert opened, was acknowledged and resolved, and by whom."""

    opened_at: datetime
    acked_at: datetime | None
    resolved_at: datetime | None
    resolved_by: str | None

    @property
    def by_person(self) -> bool:
        """Resolved by a person, not closed by the system when the condition cleared."""
        return self.resolved_at is not None and self.resolved_by != SYSTEM

    @property
    def answered_at(self) -> datetime | None:
        """Acknowledged, or resolved by a person without an acknowledgement first."""
        if self.acked_at is not None:
            return self.acked_at
        return self.resolved_at if self.by_person else None


@dataclass(frozen=True, slots=True)
class Figures:
    """The response figures of a group of alerts; times in minutes."""

    alerts: int
    acknowledged: int
    resolved: int
    auto_resolved: int
    ack_median_min: float | None
    ack_p90_min: float | None
    resolve_median_min: float | None
    resolve_p90_min: float | None
    within_target: float | None


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100), linear between closest ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _minutes(delta: timedelta) -> float:
    return max(delta.total_seconds(), 0.0) / 60


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def figures(rows: Iterable[AlertTimes], now: datetime, target: timedelta = TARGET) -> Figures:
    """Counts, medians and 90th percentiles, and the share answered within `target`."""
    rows = list(rows)
    to_ack: list[float] = []
    to_resolve: list[float] = []
    needed = met = auto = 0
    for row in rows:
        answered = row.answered_at
        if answered is not None:
            to_ack.append(_minutes(answered - row.opened_at))
        if row.by_person and row.resolved_at is not None:
            to_resolve.append(_minutes(row.resolved_at - row.opened_at))
        elif row.resolved_at is not None:
            auto += 1
        if answered is not None:
            needed += 1
            met += answered - row.opened_at <= target
            continue
        # Unanswered: did it need an answer within the target?
        closed_or_now = row.resolved_at if row.resolved_at is not None else now
        if closed_or_now - row.opened_at >= target:
            needed += 1
    return Figures(
        alerts=len(rows),
        acknowledged=len(to_ack),
        resolved=len(to_resolve),
        auto_resolved=auto,
        ack_median_min=_round(statistics.median(to_ack)) if to_ack else None,
        ack_p90_min=_round(percentile(to_ack, 90)),
        resolve_median_min=_round(statistics.median(to_resolve)) if to_resolve else None,
        resolve_p90_min=_round(percentile(to_resolve, 90)),
        within_target=round(met / needed, 3) if needed else None,
    )


def iso_week(at: datetime, zone: tzinfo) -> str:
    """2026-W05: the ISO week of a moment in local time (weeks start on Monday)."""
    year, week, _ = at.astimezone(zone).isocalendar()
    return f"{year}-W{week:02d}"


@dataclass(frozen=True, slots=True)
class GridFigures:
    """The figures of one grid over one ISO week (`week` None: over the whole range)."""

    grid_id: int | None
    grid_name: str | None
    week: str | None
    figures: Figures


@dataclass(frozen=True, slots=True)
class ResponseReport:
    """The figures per grid and week, and per grid."""

    weeks: list[GridFigures]  # per grid and ISO week
    totals: list[GridFigures]  # per grid over the whole range


async def response_times(
    session: AsyncSession,
    scope: Scope,
    *,
    start: datetime,
    end: datetime,
    now: datetime,
    zone: tzinfo,
    grid_id: int | None = None,
) -> ResponseReport:
    """Warning and critical alerts the caller may see opened in [start, end), a grouped
    incident counted once, per grid and week (in `zone`) and per grid."""
    query = (
        select(Alert.opened_at, Alert.acked_at, Alert.resolved_at, Alert.resolved_by, alert_grid)
        .outerjoin(Resident, Resident.id == Alert.resident_id)
        .where(
            scope.grid_filter(alert_grid),
            Alert.severity.in_(("warning", "critical")),
            Alert.group_id.is_(None),
            Alert.opened_at >= start,
            Alert.opened_at < end,
        )
    )
    if grid_id is not None:
        query = query.where(alert_grid == grid_id)
    rows = (await session.execute(query)).all()
    grid_ids = {row[4] for row in rows if row[4] is not None}
    names: dict[int, str] = dict(
        (await session.execute(select(Grid.id, Grid.name).where(Grid.id.in_(grid_ids)))).all()
    )
    weekly: dict[tuple[int | None, str], list[AlertTimes]] = defaultdict(list)
    whole: dict[int | None, list[AlertTimes]] = defaultdict(list)
    for opened, acked, resolved, resolved_by, grid in rows:
        times = AlertTimes(opened, acked, resolved, resolved_by)
        weekly[(grid, iso_week(opened, zone))].append(times)
        whole[grid].append(times)

    def one(grid: int | None, week: str | None, group: Sequence[AlertTimes]) -> GridFigures:
        name = names.get(grid) if grid is not None else None
        return GridFigures(grid, name, week, figures(group, now))

    return ResponseReport(
        weeks=[
            one(grid, week, weekly[(grid, week)])
            for grid, week in sorted(weekly, key=lambda k: (_grid_order(k[0]), k[1]))
        ],
        totals=[one(grid, None, whole[grid]) for grid in sorted(whole, key=_grid_order)],
    )


def _grid_order(grid: int | None) -> int:
    return -1 if grid is None else grid
