"""A bin's rules (full, full soon, fire, lid jam) and its building's sorting accuracy."""

from __future__ import annotations

import math
from typing import Final

import numpy as np

from protocol.models import BinEvent, BinTelemetry, Kind
from rules.config import BinsSpec
from rules.context import Contexts, DeviceContext
from rules.device_state import DeviceStateRules
from rules.emit import Detail, Emitter, last_seen, open_run, severity_of
from rules.findings import Severity, SubjectKind
from rules.state import Bin, BuildingState, Run

_SORTING_BUCKETS: Final = 24  # the sorting window in 24 slices
# A fill falling this much at once means the bin was emptied (or partly): smaller falls
# are the sensor's jitter or the contents settling, and count in the bin's pace.
_EMPTIED_DROP: Final = 10.0
_PACE_POINTS: Final = 16  # the fill history kept per bin (see state.Bin.pace)
_RECENT_DEPOSITS: Final = 64  # deposit times kept to spot redeliveries (within the lateness)


class BinRules:
    """The rules over the bins this worker sees, and over the buildings they stand in."""

    __slots__ = (
        "_contexts",
        "_device",
        "_dirty_bins",
        "_dirty_buildings",
        "_out",
        "_stats",
        "bins",
        "buildings",
    )

    def __init__(
        self,
        contexts: Contexts,
        out: Emitter,
        bins: dict[str, Bin],
        buildings: dict[str, BuildingState],
        device: DeviceStateRules,
    ) -> None:
        self._contexts = contexts
        self._out = out
        self._stats = out.stats
        self.bins = bins
        self.buildings = buildings
        self._device = device
        self._dirty_bins: set[str] = set()
        self._dirty_buildings: set[str] = set()

    # -- telemetry -------------------------------------------------------------------

    def telemetry(self, device_id: str, body: BinTelemetry, st: Bin) -> None:
        """Judge one telemetry reading (in any order within the lateness tolerance)."""
        ts = body.ts
        newest = ts >= st.last_ts
        if newest:
            st.last_ts = ts
        elif ts < st.last_ts - self._contexts.rules.lateness_ms:
            self._stats.late += 1
            return
        ctx = self._contexts.of(device_id, Kind.BIN)
        self._device.alive(ctx, st, ts)
        limits = ctx.limits
        spec = limits.bins
        fill = body.fill
        if fill is not None and newest:
            self._fill(ctx, st, fill, ts, spec)
        temp = body.temp
        if temp is not None:
            runs = st.runs
            fire = runs is not None and "bin_fire" in runs
            if not fire and temp > spec.fire:
                open_run(st, "bin_fire", ts, temp)
                self._out.emit(ctx, "bin_fire", True, Severity.CRITICAL, ts, ts, temp, spec.fire)
            elif fire and temp <= spec.fire_clear and newest:
                self._out.clear(ctx, st, "bin_fire", ts, temp)
        if body.battery is not None and newest:
            st.battery = body.battery
            self._device.battery(ctx, st, body.battery, ts, limits)
        lid_open = body.lid_open
        if lid_open is not None and newest:
            runs = st.runs
            lid = 1 if lid_open else 0
            # The same word again is a lid still stuck; a change means it moves again.
            jammed = runs is not None and "lid_jam" in runs and ts > runs["lid_jam"].since
            if jammed and st.lid >= 0 and lid != st.lid:
                self._out.clear(ctx, st, "lid_jam", ts)
            st.lid = lid

    def _fill(self, ctx: DeviceContext, st: Bin, fill: float, ts: int, spec: BinsSpec) -> None:
        previous = st.fill
        st.fill = fill
        if previous >= 0:
            change = fill - previous
            if change > -_EMPTIED_DROP:
                st.added += change  # sensor jitter up and down cancels out
            else:
                st.emptied_ts = ts
                runs = st.runs  # emptied: "full soon" no longer holds
                if runs is not None and "bin_full_soon" in runs:
                    self._out.clear(ctx, st, "bin_full_soon", ts, fill)
        pace = st.pace
        step = round(spec.predict_window * 1000) // (_PACE_POINTS - 1)
        if len(pace) >= 2 and pace[-1][0] - pace[-2][0] < step:
            pace[-1] = (ts, st.added)  # the newest point moves on until it is a step on
        else:
            pace.append((ts, st.added))
            if len(pace) > _PACE_POINTS:
                del pace[0]
        self._dirty_bins.add(ctx.device_id)
        runs = st.runs
        full = runs is not None and "bin_full" in runs
        if not full and fill >= spec.full:
            open_run(st, "bin_full", ts, fill)
            self._out.emit(ctx, "bin_full", True, Severity.WARNING, ts, ts, fill, spec.full)
            if "bin_full_soon" in (st.runs or {}):
                self._out.clear(ctx, st, "bin_full_soon", ts, fill)
        elif full and fill <= spec.full_clear:
            self._out.clear(ctx, st, "bin_full", ts, fill)

    # -- events ----------------------------------------------------------------------

    def event(self, device_id: str, body: BinEvent, st: Bin) -> None:
        """A deposit, a lid jam, a tilt."""
        ctx = self._contexts.of(device_id, Kind.BIN)
        ts = body.ts
        if ts < st.last_ts - self._contexts.rules.lateness_ms:
            self._stats.late += 1
            return
        kind = body.type
        if kind == "deposit":
            self._deposit_event(ctx, st, body)
            return
        self._device.alive(ctx, st, ts)
        if kind == "lid_jam":
            runs = st.runs
            if runs is None or "lid_jam" not in runs:
                open_run(st, "lid_jam", ts, 1.0)
                st.lid = -1  # what the lid reports from now on tells whether it moves
                self._out.emit(ctx, "lid_jam", True, Severity.WARNING, ts, ts, None, None)

    def _deposit_event(self, ctx: DeviceContext, st: Bin, body: BinEvent) -> None:
        # Deposits are counted, so a redelivery must not count twice; an out-of-order
        # deposit is no redelivery. Their times within the lateness tell them apart.
        ts = body.ts
        lateness = self._contexts.rules.lateness_ms
        if ts < st.last_deposit_ts - lateness:
            self._stats.late += 1
            return
        seen = st.deposits
        if ts in seen:
            self._stats.duplicates += 1
            return
        seen.append(ts)
        if ts > st.last_deposit_ts:
            st.last_deposit_ts = ts
            if seen[0] < ts - lateness or len(seen) > _RECENT_DEPOSITS:
                st.deposits = [t for t in seen if t >= ts - lateness][-_RECENT_DEPOSITS:]
        self._device.alive(ctx, st, ts)
        runs = st.runs
        if runs is not None and "lid_jam" in runs and ts > runs["lid_jam"].since:
            self._out.clear(ctx, st, "lid_jam", ts)
        if ctx.category is None or body.detected is None or ctx.building_key is None:
            return  # no compartment or building on record: no verdict on sorting
        self._deposit(ctx, ts, body.detected == ctx.category.value)

    def _deposit(self, ctx: DeviceContext, ts: int, correct: bool) -> None:
        key = ctx.building_key
        assert key is not None
        self._contexts.subjects[key] = ctx
        bucket_ms = round(ctx.limits.bins.sorting_window * 1000) // _SORTING_BUCKETS
        building = self.buildings.get(key)
        if building is None:
            building = self.buildings[key] = BuildingState(
                buckets=np.zeros((_SORTING_BUCKETS, 2), np.int32),
                name=ctx.building,
                grid_id=ctx.grid_id,
            )
        number = ts // bucket_ms
        buckets = building.buckets
        if number > building.head:
            # Slide the window: zero the slots of the buckets skipped over.
            for skipped in range(max(building.head + 1, number - _SORTING_BUCKETS + 1), number + 1):
                buckets[skipped % _SORTING_BUCKETS] = 0
            building.head = number
        elif number <= building.head - _SORTING_BUCKETS:
            self._stats.late += 1  # older than the window
            return
        slot = buckets[number % _SORTING_BUCKETS]
        slot[1] += 1
        if correct:
            slot[0] += 1
        self._dirty_buildings.add(key)

    # -- time ------------------------------------------------------------------------

    def tick(self, now: int) -> None:
        """Forecast the bins that reported a fill, judge the buildings that had deposits."""
        for device_id in self._dirty_bins:
            self._predict_fill(self._contexts.of(device_id, Kind.BIN), self.bins[device_id], now)
        self._dirty_bins.clear()
        for key in self._dirty_buildings:
            self._sorting(key, now)
        self._dirty_buildings.clear()

    def _predict_fill(self, ctx: DeviceContext, st: Bin, now: int) -> None:
        """Full within `predict_hours` at the pace of the last `predict_window`?

        A day's pace, collections left out, rather than a line through the last hour:
        deposits come in rushes and lulls, and the last hour's pace would swing the forecast
        open and shut. Opens only on a bin that is filling (`predict_min_rise` added over at
        least `predict_min_span`, and that long since its last emptying); clears when the bin
        is emptied or full (both in `_fill`) or at its pace it is no longer full within
        `predict_clear_hours`.
        """
        spec = ctx.limits.bins
        runs = st.runs
        if runs is not None and "bin_full" in runs:
            return
        pace = st.pace
        if len(pace) < 2:
            return
        (first_ts, first_added), (last_ts, last_added) = pace[0], pace[-1]
        span_h = (last_ts - first_ts) / 3_600_000
        # Enough history, and as much since the last emptying: a forecast cleared by a
        # collection does not open again on the spot.
        min_span_ms = spec.predict_min_span * 1000
        if last_ts - first_ts < min_span_ms or last_ts - st.emptied_ts < min_span_ms:
            return
        added = last_added - first_added
        per_hour = added / span_h if span_h > 0 else 0.0
        hours = (spec.full - st.fill) / per_hour if per_hour > 0 else math.inf
        if runs is None or "bin_full_soon" not in runs:
            if added >= spec.predict_min_rise and hours <= spec.predict_hours:
                open_run(st, "bin_full_soon", now, hours)
                self._out.emit(
                    ctx,
                    "bin_full_soon",
                    True,
                    Severity.INFO,
                    now,
                    now,
                    round(hours, 1),
                    spec.predict_hours,
                    subject_kind=SubjectKind.BIN,
                    detail={"fill": st.fill, "per_hour": round(per_hour, 1)},
                )
        elif hours > spec.predict_clear_hours:
            rounded = None if math.isinf(hours) else round(hours, 1)
            self._out.clear(ctx, st, "bin_full_soon", now, rounded)

    def _sorting(self, key: str, now: int) -> None:
        building = self.buildings[key]
        correct, total = (int(x) for x in building.buckets.sum(axis=0))
        ctx = self._contexts.subjects.get(key)
        spec = ctx.limits.bins if ctx is not None else self._contexts.rules.default.bins
        # The registry's per-building target wins over the rules file's.
        target = spec.sorting_target
        if ctx is not None and ctx.sorting_target is not None:
            target = ctx.sorting_target
        if total < spec.sorting_min_deposits:
            return
        accuracy = correct / total
        runs = building.runs
        active = runs is not None and "sorting_accuracy" in runs
        detail: Detail = {"deposits": total, "errors": total - correct}
        # Below target, and likely not by chance: the upper end of a one-sided 80 % Wilson
        # interval is below it too. At 50 deposits, 84 % is noise and 80 % is not.
        if not active and accuracy < target and _wilson_upper(correct, total) < target:
            if building.runs is None:
                building.runs = {}
            building.runs["sorting_accuracy"] = Run(active=True, since=now, peak=accuracy)
            self._out.emit_building(key, building, True, now, now, accuracy, target, detail)
        elif active and accuracy >= target + spec.sorting_clear_margin:
            assert building.runs is not None
            run = building.runs.pop("sorting_accuracy")
            self._out.emit_building(key, building, False, now, run.since, accuracy, target, detail)

    # -- the engine's housekeeping -----------------------------------------------------

    def list_active(self) -> None:
        """Emit every open bin and building finding again (for a dispatcher starting up)."""
        for device_id, st in self.bins.items():
            ctx = self._contexts.of(device_id, Kind.BIN)
            for name, run in (st.runs or {}).items():
                self._out.emit(
                    ctx,
                    name,
                    True,
                    severity_of(ctx, name, run),
                    last_seen(run),
                    run.since,
                    run.peak,
                    None,
                    subject_kind=SubjectKind.BIN,
                )
        for key, building in self.buildings.items():
            for run in (building.runs or {}).values():
                self._out.emit_building(
                    key, building, True, run.since, run.since, run.peak, None, {}
                )


def _wilson_upper(successes: int, total: int, z: float = 0.8416) -> float:
    """The upper end of the Wilson score interval (one-sided 80 % at z = 0.8416)."""
    p = successes / total
    z2n = z * z / total
    centre = p + z2n / 2
    half = z * math.sqrt(p * (1 - p) / total + z2n / (4 * total))
    return (centre + half) / (1 + z2n)
