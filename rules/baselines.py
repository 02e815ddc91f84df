"""Each resident's own normal: `baseline_hr` and `baseline_spo2`, today against the past days.

A baseline follows the resident, not the band (keyed `r<resident id>`, else the device id).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Final

import numpy as np

from protocol.models import Kind
from rules.config import Limits
from rules.context import Contexts, DeviceContext
from rules.emit import Detail, Emitter
from rules.state import HR_BINS, HR_LOW, SPO2_BINS, SPO2_LOW, Baseline, Run

DAY_MS: Final = 86_400_000
# A day's median hardly moves in half an hour; judging more often costs throughput.
_BASELINE_EVERY_MS: Final = 30 * 60_000

_Past = tuple[float, float, int]  # usual (median), spread (scaled MAD), days with data


class BaselineRules:
    """The baselines of the residents this worker sees; their state lives in `baselines`."""

    __slots__ = ("_contexts", "_dirty", "_history", "_out", "_subjects", "baselines")

    def __init__(self, contexts: Contexts, out: Emitter, baselines: dict[str, Baseline]) -> None:
        self._contexts = contexts
        self._subjects = contexts.subjects  # the same dict for life: sampled per resting reading
        self._out = out
        self.baselines = baselines
        self._dirty: set[str] = set()
        # Per baseline: (its day count, (usual, spread, days) of hr and of SpO2); derived.
        self._history: dict[str, tuple[int, _Past, _Past]] = {}

    def sample(
        self, ctx: DeviceContext, hr: float | None, spo2: float | None, ts: int, limits: Limits
    ) -> None:
        """Count one resting reading into today's histogram."""
        key = f"r{ctx.resident_id}" if ctx.resident_id is not None else ctx.device_id
        baseline = self.baselines.get(key)
        if baseline is None:
            baseline = self.baselines[key] = Baseline.new(limits.baseline.days)
        day = (ts + self._contexts.rules.utc_offset_ms) // DAY_MS
        if day != baseline.day:
            if day < baseline.day:
                return  # a late reading from a day already closed
            _close_day(baseline, limits.baseline.min_samples)
            baseline.day = day
        hist = baseline.hist
        if hr is not None:
            index = int(hr) - HR_LOW
            if 0 <= index < HR_BINS:
                hist[index] += 1
        if spo2 is not None:
            index = int(spo2) - SPO2_LOW
            if 0 <= index < SPO2_BINS:
                hist[HR_BINS + index] += 1
        baseline.samples += 1
        self._dirty.add(key)
        self._subjects[key] = ctx

    def tick(self, now: int) -> None:
        """Judge the baselines that had samples, at most every half hour each."""
        for key in list(self._dirty):
            baseline = self.baselines[key]
            if now - baseline.evaluated >= _BASELINE_EVERY_MS:
                self._judge(key, baseline, now)
                self._dirty.discard(key)

    def _judge(self, key: str, baseline: Baseline, now: int) -> None:
        baseline.evaluated = now
        ctx = self.context(key)
        spec = ctx.limits.baseline
        past_days = min(baseline.head, len(baseline.days))
        if baseline.samples < spec.min_samples or past_days < spec.min_days:
            return  # not enough of today, or of the past, to judge
        # The past days' figures change only when a day closes: kept until then.
        cached = self._history.get(key)
        if cached is None or cached[0] != baseline.head:
            cached = self._history[key] = (baseline.head, *_history(baseline))
        _, hr_past, spo2_past = cached
        hr_today = _median(baseline.hist[:HR_BINS]) + HR_LOW
        spo2_today = _median(baseline.hist[HR_BINS:]) + SPO2_LOW
        self._judge_one(
            ctx, baseline, hr_past, "baseline_hr", spec.hr_min_delta, False, hr_today, now
        )
        self._judge_one(
            ctx, baseline, spo2_past, "baseline_spo2", spec.spo2_min_delta, True, spo2_today, now
        )

    def _judge_one(
        self,
        ctx: DeviceContext,
        baseline: Baseline,
        past: _Past,
        rule: str,
        min_delta: float,
        low_only: bool,
        today: float,
        now: int,
    ) -> None:
        """Open or clear one baseline rule: today's median against the past days' band."""
        spec = ctx.limits.baseline
        usual, spread, days = past
        if days < spec.min_days:
            return
        band = max(spec.k * spread, min_delta)
        departure = today - usual
        away = -departure if low_only else abs(departure)
        runs = baseline.runs
        active = runs is not None and rule in runs
        detail: Detail = {"usual": round(usual, 1), "band": round(band, 1), "days": days}
        if not active and away > band:
            if baseline.runs is None:
                baseline.runs = {}
            baseline.runs[rule] = Run(active=True, since=now, peak=today)
            self._out.emit(ctx, rule, True, spec.severity, now, now, today, usual, detail=detail)
        elif active and away <= band * 0.8:
            assert baseline.runs is not None
            run = baseline.runs.pop(rule)
            self._out.emit(
                ctx, rule, False, spec.severity, now, run.since, today, usual, detail=detail
            )

    def context(self, key: str) -> DeviceContext:
        """The context a baseline is judged with: its last sample's, else its resident's."""
        ctx = self._contexts.subjects.get(key)
        if ctx is not None:
            return ctx
        if key.startswith("r") and key[1:].isdigit():
            resident = int(key[1:])
            for ctx in self._contexts.devices.values():
                if ctx.resident_id == resident:
                    return ctx
        return self._contexts.of(key, Kind.WRISTBAND)

    def retire(self, now: int) -> None:
        """After a reload: baselines switched off clear their open findings."""
        for key, baseline in self.baselines.items():
            ctx = self.context(key)
            if baseline.runs and not ctx.limits.baseline.enabled:
                for name, run in baseline.runs.items():
                    self._out.emit(
                        ctx, name, False, ctx.limits.baseline.severity, now, run.since, None, None
                    )
                baseline.runs = None

    def list_active(self) -> None:
        """Emit every open baseline finding again (for a dispatcher starting up)."""
        for key, baseline in self.baselines.items():
            ctx = self.context(key)
            for name, run in (baseline.runs or {}).items():
                self._out.emit(
                    ctx,
                    name,
                    True,
                    ctx.limits.baseline.severity,
                    run.since,
                    run.since,
                    run.peak,
                    None,
                )

    def forget_history(self) -> None:
        """Drop the derived figures of past days (the baselines were replaced)."""
        self._history.clear()


def _median(hist: np.ndarray) -> float:
    """The median bin of a histogram (0-based); NaN when empty."""
    total = int(hist.sum())
    if total == 0:
        return math.nan
    return float(np.searchsorted(np.cumsum(hist), (total + 1) / 2))


def _history(baseline: Baseline) -> tuple[_Past, _Past]:
    """The past days' median and spread of resting hr and of SpO2."""
    rows = baseline.days[: min(baseline.head, len(baseline.days))]
    out = []
    for column in (0, 1):
        past = rows[:, column]
        past = past[~np.isnan(past)]
        if len(past) == 0:
            out.append((math.nan, math.nan, 0))
            continue
        usual = float(np.median(past))
        out.append((usual, float(np.median(np.abs(past - usual))) * 1.4826, len(past)))
    return out[0], out[1]


def _close_day(baseline: Baseline, min_samples: int) -> None:
    """Push the finished day's medians into the ring (if it had enough samples), start afresh."""
    if baseline.day >= 0 and baseline.samples >= min_samples:
        hist = baseline.hist
        row = baseline.head % len(baseline.days)
        baseline.days[row, 0] = _median(hist[:HR_BINS]) + HR_LOW
        baseline.days[row, 1] = _median(hist[HR_BINS:]) + SPO2_LOW
        baseline.head += 1
    baseline.hist[:] = 0
    baseline.samples = 0


def seed_baseline(baseline: Baseline, days: Iterable[tuple[float, float]]) -> None:
    """Write past daily medians (hr, spo2) into a baseline: migration from another system, tests."""
    for hr, spo2 in days:
        row = baseline.head % len(baseline.days)
        baseline.days[row] = (hr, spo2)
        baseline.head += 1
