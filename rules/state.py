"""Per-subject state: small msgspec Structs (a wristband's is about 1 KB) that checkpoint as-is.

`Run`, the state machine behind every sustained rule, and what it cannot undo: docs/rules.md.
"""

from __future__ import annotations

from typing import Final

import msgspec
import numpy as np

# Resting heart rate 30..150 bpm and SpO2 70..100 %, one bin per unit, in one histogram.
HR_LOW: Final = 30
HR_BINS: Final = 121
SPO2_LOW: Final = 70
SPO2_BINS: Final = 31


class Run(msgspec.Struct, gc=False):
    """One sustained rule's progress on one subject: pending, active, or just cleared."""

    active: bool = False
    start: int = -1  # earliest ts of the current run, -1: no run
    end: int = -1  # latest ts of the current run
    reset: int = -1  # latest ts of a reading that broke the run; older ones are ignored
    since: int = 0  # when the active condition began
    peak: float = 0.0  # the most extreme value while pending or active
    level: int = 0  # a graded rule's level (NEWS2: 1 medium, 2 high)

    def observe(self, ts: int, hit: bool, hold_ms: int) -> bool:
        """Feed one verdict; True when the run has lasted `hold_ms` and the state must flip."""
        if hit:
            if ts <= self.reset:
                return False  # from before the last break
            if self.start < 0 or ts < self.start:
                self.start = ts
            if ts > self.end:
                self.end = ts
            return self.end - self.start >= hold_ms
        if ts > self.reset:
            self.reset = ts
            if self.end < ts:
                self.start = self.end = -1
            elif self.start <= ts:
                # A break arrived late, inside the run: the hits after it stand. Their times
                # are not kept, so the run counts from just after the break (a bound: it may
                # flip up to one reading early).
                self.start = ts + 1
            # Else the break came before every hit of the run, which stands as it is.
        return False

    def settle(self, ts: int) -> None:
        """Idle again after a clear at `ts`; a late trigger from before it re-opens nothing."""
        self.active = False
        self.start = self.end = -1
        self.reset = ts
        self.peak = 0.0
        self.level = 0

    def restart(self) -> None:
        """Forget the progress of the current phase (a gap in wearing or reporting)."""
        self.start = self.end = -1

    def flip(self, ts: int) -> None:
        """Turn active <-> inactive at `ts`; the next phase starts with readings after it."""
        self.active = not self.active
        if self.active:
            self.since = self.start if self.start >= 0 else ts
        self.start = self.end = -1
        self.reset = ts

    @property
    def idle(self) -> bool:
        """Neither active nor part-way through a run."""
        return not self.active and self.start < 0


class Wristband(msgspec.Struct, gc=False):
    """A wristband's state: its newest values, what it last said of itself, its runs."""

    last_ts: int = -1  # newest device ts
    last_rx: int = 0  # clock ms of the last message: silence is measured against it
    online: bool = True  # the status topic's word (power_off counts as offline)
    offline_since: int = -1  # clock ms of the status `offline`
    offline_reason: str = ""
    worn: bool = True
    not_worn_since: int = -1  # event ts
    fall_ts: int = -1  # newest fall event seen: redeliveries, even after a resolve, are no news
    sos_ts: int = -1
    battery: float = -1.0
    steps: int = -1
    steps_ts: int = -1
    moved_ts: int = -1  # event ts of the last step increase
    at_rest: bool = True
    hr: float = 0.0
    hr_ts: int = -1
    spo2: float = 0.0
    spo2_ts: int = -1
    sbp: float = 0.0
    sbp_ts: int = -1
    temp: float = 0.0
    temp_ts: int = -1
    runs: dict[str, Run] | None = None


class Bin(msgspec.Struct, gc=False):
    """A bin's state: fill history for the forecast, recent deposits, its runs."""

    last_ts: int = -1
    last_rx: int = 0
    online: bool = True
    offline_since: int = -1
    offline_reason: str = ""
    battery: float = -1.0
    last_deposit_ts: int = -1
    deposits: list[int] = []  # ts of the deposits within the lateness of the newest (duplicates)
    lid: int = -1  # lid_open last reported since the last jam: 1 open, 0 closed, -1 not yet
    fill: float = -1.0  # the newest fill reading
    emptied_ts: int = -1  # when it was last emptied
    added: float = 0.0  # fill added since first seen: every rise and fall but the emptyings
    # (ts, added) over the last `predict_window`: 16 points a 15th of it apart (the newest
    # reading moves the newest point on until it is that far from the one before).
    pace: list[tuple[int, float]] = []
    runs: dict[str, Run] | None = None


class BuildingState(msgspec.Struct, gc=False):
    """Deposits per time bucket over the sorting window: [correct, total] per bucket."""

    buckets: np.ndarray
    head: int = -1  # bucket number (ts // bucket_ms) of the newest bucket
    name: str | None = None
    grid_id: int | None = None
    runs: dict[str, Run] | None = None


class Baseline(msgspec.Struct, gc=False):
    """A resident's own normal: today's resting histogram and the medians of past days."""

    hist: np.ndarray  # uint32 (a 1 Hz band fills a uint16 bin in 18 h), HR_BINS + SPO2_BINS
    days: np.ndarray  # float32 (n, 2): daily median resting hr, spo2; NaN: no data
    day: int = -1  # local day number the histogram is for
    samples: int = 0
    head: int = 0  # days written so far (the ring index is head % n)
    evaluated: int = -1  # clock ms of the last evaluation
    runs: dict[str, Run] | None = None

    @classmethod
    def new(cls, days: int) -> Baseline:
        """An empty baseline with room for `days` past days."""
        return cls(
            hist=np.zeros(HR_BINS + SPO2_BINS, np.uint32),
            days=np.full((days, 2), np.nan, np.float32),
        )
