"""Response-time figures the programme is judged by: time to acknowledge and to resolve.

Pure functions over the times of alerts (no clock, no I/O), grouped per grid and
ISO week by the caller. Definitions, as the API documents them:

- an alert is *answered* when a person acknowledged it, or resolved it without
  acknowledging first; time to acknowledge runs from opening to that answer;
- time to resolve counts alerts resolved by a person; those the system closed
  when the condition cleared are counted apart (`auto_resolved`);
- the share *within target* is over the alerts that needed an answer: it leaves
  out alerts the system closed before the target passed with nobody answering,
  and alerts still open and unanswered that are younger than the target.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Final

SYSTEM: Final = "system"  # `resolved_by` of alerts closed because the condition cleared
TARGET: Final = timedelta(minutes=30)  # the programme's target (2 hours before)


@dataclass(frozen=True, slots=True)
class AlertTimes:
    opened_at: datetime
    acked_at: datetime | None
    resolved_at: datetime | None
    resolved_by: str | None

    @property
    def by_person(self) -> bool:
        return self.resolved_at is not None and self.resolved_by != SYSTEM

    @property
    def answered_at(self) -> datetime | None:
        if self.acked_at is not None:
            return self.acked_at
        return self.resolved_at if self.by_person else None


@dataclass(frozen=True, slots=True)
class Figures:
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
