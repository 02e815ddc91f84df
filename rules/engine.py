"""The rule engine: per-device state fed with readings in event time, ticked by an injected clock.

`feed` is the hot path (one reading, no I/O); `tick(now_ms)` judges what only
the passing of time reveals (silence, inactivity, not worn, baselines, bin
predictions, sorting accuracy). Both append findings to `pending`, which the
caller takes with `take()`. Nothing here reads a wall clock, sleeps or does
I/O, so tests replay exact sequences and the recorded-day benchmark runs a
simulated day in seconds.

Every rule and its finding are described in docs/rules.md. Rule names are
stable: they key alerts (`Finding.key`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from devices.models import (
    BinEvent,
    BinTelemetry,
    Kind,
    Reading,
    StatusChange,
    WristbandEvent,
    WristbandTelemetry,
)
from rules.config import Limits, RuleSet, Threshold
from rules.context import DeviceContext, default_context
from rules.findings import Finding, Severity, SubjectKind
from rules.news2 import partial_news2
from rules.state import (
    CHECKPOINT_VERSION,
    HR_BINS,
    HR_LOW,
    SPO2_BINS,
    SPO2_LOW,
    Baseline,
    Bin,
    Building,
    Checkpoint,
    Run,
    Wristband,
    decode_checkpoint,
    encode_checkpoint,
)

DAY_MS: Final = 86_400_000
MINUTE_MS: Final = 60_000
_SORTING_BUCKETS: Final = 24  # the sorting window in 24 slices
_BASELINE_EVERY_MS: Final = 5 * MINUTE_MS
_EMPTIED_DROP: Final = 20.0  # a fill falling this much means the bin was emptied
_FILL_POINTS: Final = 16
_M_PER_DEG: Final = 111_320.0

# Rules whose findings only a person clears.
LATCHED: Final = frozenset({"fall", "sos"})


@dataclass(slots=True)
class EngineStats:
    readings: int = 0
    late: int = 0  # older than the lateness tolerance: not evaluated
    duplicates: int = 0  # repeated events (redeliveries)
    inhibited: int = 0  # vitals not judged: off-wrist, offline or flat
    findings: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)


class RuleEngine:
    """The rules over the devices this worker sees (DESIGN.md, scaling: never all of them)."""

    def __init__(
        self,
        rules: RuleSet,
        clock: Callable[[], int],
        contexts: Mapping[str, DeviceContext] | None = None,
    ) -> None:
        self.rules = rules
        self._clock = clock
        self._contexts: dict[str, DeviceContext] = dict(contexts or {})
        self.wristbands: dict[str, Wristband] = {}
        self.bins: dict[str, Bin] = {}
        self.buildings: dict[str, Building] = {}
        self.baselines: dict[str, Baseline] = {}
        self.pending: list[Finding] = []
        self.stats = EngineStats()
        self._dirty_baselines: set[str] = set()
        self._dirty_bins: set[str] = set()
        self._dirty_buildings: set[str] = set()
        # The context a building's or a baseline's last sample came with (not checkpointed:
        # both are judged only after a new sample).
        self._subject_ctx: dict[str, DeviceContext] = {}

    # -- configuration -----------------------------------------------------------

    def set_contexts(self, contexts: Mapping[str, DeviceContext]) -> None:
        """New registry context (and with it, limits); state is kept."""
        self._contexts = dict(contexts)

    def set_rules(self, rules: RuleSet, contexts: Mapping[str, DeviceContext]) -> None:
        """Reload: new rules and the contexts built from them; every subject keeps its state."""
        self.rules = rules
        self.set_contexts(contexts)

    def context(self, device_id: str, kind: Kind) -> DeviceContext:
        ctx = self._contexts.get(device_id)
        if ctx is None or ctx.kind is not kind:
            ctx = self._contexts[device_id] = default_context(device_id, kind, self.rules)
        return ctx

    def take(self) -> list[Finding]:
        """The findings produced since the last call, oldest first."""
        out = self.pending
        self.pending = []
        return out

    # -- the hot path ------------------------------------------------------------

    def feed(self, item: Reading | StatusChange) -> None:
        """Judge one reading or status change (in any order within the lateness tolerance)."""
        if type(item) is StatusChange:
            self._status(item)
            return
        assert type(item) is Reading
        self.stats.readings += 1
        body = item.body
        device_id = item.device_id
        if type(body) is WristbandTelemetry:
            st = self.wristbands.get(device_id)
            if st is None:
                st = self.wristbands[device_id] = Wristband()
            self._wristband_telemetry(device_id, body, st)
        elif type(body) is BinTelemetry:
            bst = self.bins.get(device_id)
            if bst is None:
                bst = self.bins[device_id] = Bin()
            self._bin_telemetry(device_id, body, bst)
        elif type(body) is WristbandEvent:
            st = self.wristbands.get(device_id)
            if st is None:
                st = self.wristbands[device_id] = Wristband()
            self._wristband_event(device_id, body, st)
        elif type(body) is BinEvent:
            bst = self.bins.get(device_id)
            if bst is None:
                bst = self.bins[device_id] = Bin()
            self._bin_event(device_id, body, bst)

    def _wristband_telemetry(self, device_id: str, body: WristbandTelemetry, st: Wristband) -> None:
        ts = body.ts
        newest = ts >= st.last_ts
        if newest:
            st.last_ts = ts
        elif ts < st.last_ts - self.rules.lateness_ms:
            self.stats.late += 1
            return
        st.last_rx = self._clock()
        ctx = self._contexts.get(device_id)
        if ctx is None or ctx.kind is not Kind.WRISTBAND:
            ctx = self.context(device_id, Kind.WRISTBAND)
        limits = ctx.limits
        if not st.online:
            # Data after the will (or a power-off) means the band is back.
            st.online = True
            st.offline_since = -1
            st.offline_reason = ""
        runs = st.runs
        if runs is not None:
            # Data flows again: the silence findings clear.
            if "no_data" in runs:
                self._clear(ctx, st, "no_data", ts)
            if "offline" in runs:
                self._clear(ctx, st, "offline", ts)
        if newest:
            worn = body.worn
            if worn is not None and worn != st.worn:
                self._set_worn(ctx, st, worn, ts)
            battery = body.battery
            if battery is not None:
                st.battery = battery
                self._battery(ctx, st, battery, ts, limits)
        steps = body.steps
        if steps is not None and ts > st.steps_ts:
            self._steps(ctx, st, steps, ts, limits)
        if not st.worn or (0 <= st.battery <= limits.device.battery_flat) or not st.online:
            self.stats.inhibited += 1
            return
        # Vital signs: fixed thresholds first.
        runs = st.runs
        for rule in limits.thresholds:
            value = getattr(body, rule.field)
            if value is None:
                continue
            run = runs.get(rule.name) if runs is not None else None
            if run is None:
                if not _triggers(rule, value) or (rule.at_rest and not st.at_rest):
                    continue
                if runs is None:
                    runs = st.runs = {}
                run = runs[rule.name] = Run()
            self._threshold(ctx, st, rule, run, value, ts)
        hr = body.hr
        spo2 = body.spo2
        sbp = body.sbp
        temp = body.temp
        if hr is not None or spo2 is not None or sbp is not None or temp is not None:
            if limits.news2.enabled:
                self._news2(ctx, st, body, ts, limits)
            if st.at_rest and limits.baseline.enabled and (hr is not None or spo2 is not None):
                self._baseline_sample(ctx, hr, spo2, ts, limits)
        if body.lat is not None and body.lon is not None and ctx.home_lat is not None:
            self._position(ctx, st, body.lat, body.lon, ts, limits)

    def _threshold(
        self, ctx: DeviceContext, st: Wristband, rule: Threshold, run: Run, value: float, ts: int
    ) -> None:
        if run.active:
            if run.observe(ts, rule.clears(value), rule.clear_ms):
                self._finish(ctx, st, rule.name, run, ts, rule.severity, value, rule.limit)
            elif (value > run.peak) if rule.high else (value < run.peak):
                run.peak = value
            return
        hit = _triggers(rule, value) and (st.at_rest or not rule.at_rest)
        if hit and (run.start < 0 or ((value > run.peak) if rule.high else (value < run.peak))):
            run.peak = value
        if run.observe(ts, hit, rule.hold_ms):
            run.flip(ts)
            self._emit(ctx, rule.name, True, rule.severity, ts, run.since, run.peak, rule.limit)
        elif run.idle and st.runs is not None:
            del st.runs[rule.name]

    def _news2(
        self, ctx: DeviceContext, st: Wristband, body: WristbandTelemetry, ts: int, limits: Limits
    ) -> None:
        spec = limits.news2
        # Spelled out per parameter: this runs for nearly every reading.
        if body.hr is not None and ts >= st.hr_ts:
            st.hr = body.hr
            st.hr_ts = ts
        if body.spo2 is not None and ts >= st.spo2_ts:
            st.spo2 = body.spo2
            st.spo2_ts = ts
        if body.sbp is not None and ts >= st.sbp_ts:
            st.sbp = body.sbp
            st.sbp_ts = ts
        if body.temp is not None and ts >= st.temp_ts:
            st.temp = body.temp
            st.temp_ts = ts
        stale = ts - round(spec.stale_after * 1000)
        total, red = partial_news2(
            st.hr if st.hr_ts >= stale else None,
            st.spo2 if st.spo2_ts >= stale else None,
            st.sbp if st.sbp_ts >= stale else None,
            st.temp if st.temp_ts >= stale else None,
        )
        level = 2 if total >= spec.high_total else 1 if (total >= spec.medium_total or red) else 0
        runs = st.runs
        run = runs.get("news2") if runs is not None else None
        if run is None:
            if level == 0:
                return
            if runs is None:
                runs = st.runs = {}
            run = runs["news2"] = Run()
        if run.active:
            if level > run.level:
                # Worse while open: the same finding again, with the higher severity.
                run.level = level
                run.peak = total
                self._emit(ctx, "news2", True, _news2_severity(level), ts, run.since, total, None)
            cleared = total <= spec.clear_total and not red
            if run.observe(ts, cleared, round(spec.clear_for * 1000)):
                self._finish(ctx, st, "news2", run, ts, _news2_severity(run.level), total, None)
            return
        if level:
            run.level = max(run.level, level)
            run.peak = max(run.peak, total)
        if run.observe(ts, level > 0, round(spec.hold * 1000)):
            run.flip(ts)
            self._emit(
                ctx, "news2", True, _news2_severity(run.level), ts, run.since, run.peak, None
            )
        elif run.idle and st.runs is not None:
            del st.runs["news2"]

    def _steps(
        self, ctx: DeviceContext, st: Wristband, steps: int, ts: int, limits: Limits
    ) -> None:
        previous = st.steps
        if previous >= 0:
            delta = steps - previous if steps >= previous else steps  # a decrease is a reset
            minutes = (ts - st.steps_ts) / MINUTE_MS
            st.at_rest = minutes <= 0 or delta / minutes < limits.baseline.rest_steps_per_min
            if delta > 0:
                st.moved_ts = ts
                runs = st.runs
                if runs is not None and "inactivity" in runs:
                    self._clear(ctx, st, "inactivity", ts)
        elif st.moved_ts < 0:
            st.moved_ts = ts  # the clock of inactivity starts with the first count
        st.steps = steps
        st.steps_ts = ts

    def _battery(
        self, ctx: DeviceContext, st: Wristband | Bin, battery: float, ts: int, limits: Limits
    ) -> None:
        spec = limits.device
        runs = st.runs
        active = runs is not None and "battery_low" in runs
        if not active and battery < spec.battery_low:
            run = self._open(st, "battery_low", ts, battery)
            kind = SubjectKind.WRISTBAND if ctx.kind is Kind.WRISTBAND else SubjectKind.BIN
            self._emit(
                ctx,
                "battery_low",
                True,
                Severity.WARNING,
                ts,
                ts,
                battery,
                spec.battery_low,
                subject_kind=kind,
            )
            run.peak = battery
        elif active and battery >= spec.battery_clear:
            self._clear(ctx, st, "battery_low", ts, battery)

    def _set_worn(self, ctx: DeviceContext, st: Wristband, worn: bool, ts: int) -> None:
        st.worn = worn
        if worn:
            st.not_worn_since = -1
            if st.runs is not None and "not_worn" in st.runs:
                self._clear(ctx, st, "not_worn", ts)
        else:
            st.not_worn_since = ts
            self._drop_pending(st)

    def _drop_pending(self, st: Wristband) -> None:
        """A run cannot span a gap in wearing: pending vital runs start again afterwards."""
        runs = st.runs
        if runs:
            for name in [n for n, r in runs.items() if not r.active]:
                del runs[name]

    def _position(
        self, ctx: DeviceContext, st: Wristband, lat: float, lon: float, ts: int, limits: Limits
    ) -> None:
        spec = limits.wandering
        if not spec.enabled or ctx.home_lat is None or ctx.home_lon is None:
            return
        north = (lat - ctx.home_lat) * _M_PER_DEG
        east = (lon - ctx.home_lon) * _M_PER_DEG * math.cos(math.radians(ctx.home_lat))
        distance = math.hypot(north, east)
        runs = st.runs
        run = runs.get("wandering") if runs is not None else None
        if run is None:
            if distance <= spec.radius_m:
                return
            if runs is None:
                runs = st.runs = {}
            run = runs["wandering"] = Run()
        if run.active:
            run.peak = max(run.peak, distance)
            if run.observe(ts, distance <= spec.clear_radius_m, 0):
                self._finish(ctx, st, "wandering", run, ts, spec.severity, distance, spec.radius_m)
            return
        outside = distance > spec.radius_m
        if outside:
            run.peak = max(run.peak, distance)
        if run.observe(ts, outside, round(spec.hold * 1000)):
            run.flip(ts)
            self._emit(
                ctx,
                "wandering",
                True,
                spec.severity,
                ts,
                run.since,
                round(run.peak),
                spec.radius_m,
                detail={"lat": lat, "lon": lon},
            )
        elif run.idle and st.runs is not None:
            del st.runs["wandering"]

    def _wristband_event(self, device_id: str, body: WristbandEvent, st: Wristband) -> None:
        ctx = self.context(device_id, Kind.WRISTBAND)
        ts = body.ts
        kind = body.type
        if kind in LATCHED:
            # Never dropped for lateness: a fall the band buffered for an hour still matters.
            runs = st.runs
            run = runs.get(kind) if runs is not None else None
            if run is not None and ts <= run.end:
                self.stats.duplicates += 1
                return
            if run is None:
                run = self._open(st, kind, ts, body.confidence or 1.0)
            run.end = ts
            confident = body.confidence is None or (
                body.confidence >= ctx.limits.events.fall_min_confidence
            )
            severity = Severity.CRITICAL if kind == "sos" or confident else Severity.WARNING
            detail: dict[str, str | float | int | bool] = {}
            if body.confidence is not None:
                detail["confidence"] = body.confidence
            if body.lat is not None and body.lon is not None:
                detail["lat"] = body.lat
                detail["lon"] = body.lon
            self._emit(
                ctx,
                kind,
                True,
                severity,
                ts,
                run.since,
                body.confidence,
                None,
                latched=True,
                detail=detail,
            )
            return
        if ts < st.last_ts - self.rules.lateness_ms:
            self.stats.late += 1
            return
        st.last_rx = self._clock()
        if kind == "off_wrist":
            if st.worn:
                self._set_worn(ctx, st, False, ts)
        elif kind == "on_wrist":
            if not st.worn:
                self._set_worn(ctx, st, True, ts)
        elif kind == "power_off":
            st.online = False
            st.offline_since = self._clock()
            st.offline_reason = "power_off"
            self._drop_pending(st)

    # -- bins ----------------------------------------------------------------------

    def _bin_telemetry(self, device_id: str, body: BinTelemetry, st: Bin) -> None:
        ts = body.ts
        newest = ts >= st.last_ts
        if newest:
            st.last_ts = ts
        elif ts < st.last_ts - self.rules.lateness_ms:
            self.stats.late += 1
            return
        st.last_rx = self._clock()
        ctx = self.context(device_id, Kind.BIN)
        limits = ctx.limits
        spec = limits.bins
        if not st.online:
            st.online = True
            st.offline_since = -1
            st.offline_reason = ""
        runs = st.runs
        if runs is not None and "offline" in runs:
            self._clear(ctx, st, "offline", ts)
            runs = st.runs
        fill = body.fill
        if fill is not None and newest:
            fills = st.fills
            if fills and fill <= fills[-1][1] - _EMPTIED_DROP:
                fills.clear()
            fills.append((ts, fill))
            if len(fills) > _FILL_POINTS:
                del fills[0]
            self._dirty_bins.add(device_id)
            full = runs is not None and "bin_full" in runs
            if not full and fill >= spec.full:
                self._open(st, "bin_full", ts, fill)
                self._emit(ctx, "bin_full", True, Severity.WARNING, ts, ts, fill, spec.full)
                if "bin_full_soon" in (st.runs or {}):
                    self._clear(ctx, st, "bin_full_soon", ts, fill)
            elif full and fill <= spec.full_clear:
                self._clear(ctx, st, "bin_full", ts, fill)
        temp = body.temp
        if temp is not None:
            fire = runs is not None and "bin_fire" in runs
            if not fire and temp > spec.fire:
                self._open(st, "bin_fire", ts, temp)
                self._emit(ctx, "bin_fire", True, Severity.CRITICAL, ts, ts, temp, spec.fire)
            elif fire and temp <= spec.fire_clear and newest:
                self._clear(ctx, st, "bin_fire", ts, temp)
        if body.battery is not None and newest:
            st.battery = body.battery
            self._battery(ctx, st, body.battery, ts, limits)
        lid_moved = body.lid_open is not None and newest
        if lid_moved and runs is not None and "lid_jam" in runs and ts > runs["lid_jam"].since:
            self._clear(ctx, st, "lid_jam", ts)

    def _bin_event(self, device_id: str, body: BinEvent, st: Bin) -> None:
        ctx = self.context(device_id, Kind.BIN)
        ts = body.ts
        if ts < st.last_ts - self.rules.lateness_ms:
            self.stats.late += 1
            return
        st.last_rx = self._clock()
        kind = body.type
        if kind == "deposit":
            if ts <= st.last_deposit_ts:
                self.stats.duplicates += 1  # deposits count: a redelivery must not count twice
                return
            st.last_deposit_ts = ts
            runs = st.runs
            if runs is not None and "lid_jam" in runs and ts > runs["lid_jam"].since:
                self._clear(ctx, st, "lid_jam", ts)
            if ctx.category is None or body.detected is None or ctx.building_key is None:
                return  # no compartment or building on record: no verdict on sorting
            self._deposit(ctx, ts, body.detected == ctx.category.value)
        elif kind == "lid_jam":
            runs = st.runs
            if runs is None or "lid_jam" not in runs:
                self._open(st, "lid_jam", ts, 1.0)
                self._emit(ctx, "lid_jam", True, Severity.WARNING, ts, ts, None, None)

    def _deposit(self, ctx: DeviceContext, ts: int, correct: bool) -> None:
        key = ctx.building_key
        assert key is not None
        self._subject_ctx[key] = ctx
        bucket_ms = round(ctx.limits.bins.sorting_window * 1000) // _SORTING_BUCKETS
        building = self.buildings.get(key)
        if building is None:
            building = self.buildings[key] = Building(
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
            self.stats.late += 1  # older than the window
            return
        slot = buckets[number % _SORTING_BUCKETS]
        slot[1] += 1
        if correct:
            slot[0] += 1
        self._dirty_buildings.add(key)

    # -- status ------------------------------------------------------------------------

    def _status(self, item: StatusChange) -> None:
        device_id = item.device_id
        st: Wristband | Bin
        if item.kind is Kind.WRISTBAND:
            st = self.wristbands.get(device_id) or self.wristbands.setdefault(
                device_id, Wristband()
            )
        else:
            st = self.bins.get(device_id) or self.bins.setdefault(device_id, Bin())
        now = self._clock()
        if item.online:
            st.online = True
            st.offline_since = -1
            st.offline_reason = ""
            if st.runs is not None and "offline" in st.runs:
                self._clear(self.context(device_id, item.kind), st, "offline", now)
        elif st.online:
            st.online = False
            st.offline_since = now
            st.offline_reason = "status"
            if isinstance(st, Wristband):
                self._drop_pending(st)

    # -- time --------------------------------------------------------------------------

    def tick(self, now: int) -> None:
        """Judge what the passing of time reveals, as of clock time `now` (ms)."""
        offset = self.rules.utc_offset_ms
        day_start = now - (now + offset) % DAY_MS
        minute = ((now + offset) % DAY_MS) // MINUTE_MS
        for device_id, st in self.wristbands.items():
            ctx = self.context(device_id, Kind.WRISTBAND)
            self._tick_wristband(ctx, st, now, day_start, minute)
        for device_id, bst in self.bins.items():
            ctx = self.context(device_id, Kind.BIN)
            self._tick_silence(ctx, bst, now, worn=False)
        for device_id in self._dirty_bins:
            self._predict_fill(self.context(device_id, Kind.BIN), self.bins[device_id], now)
        self._dirty_bins.clear()
        for key in self._dirty_buildings:
            self._sorting(key, now)
        self._dirty_buildings.clear()
        for key in list(self._dirty_baselines):
            baseline = self.baselines[key]
            if now - baseline.evaluated >= _BASELINE_EVERY_MS:
                self._judge_baseline(key, baseline, now)
                self._dirty_baselines.discard(key)

    def _tick_wristband(
        self, ctx: DeviceContext, st: Wristband, now: int, day_start: int, minute: int
    ) -> None:
        limits = ctx.limits
        if self._tick_silence(ctx, st, now, worn=st.worn):
            return
        waking = limits.waking_start_min <= minute < limits.waking_end_min
        runs = st.runs
        if not st.worn:
            if (
                waking
                and st.not_worn_since >= 0
                and (runs is None or "not_worn" not in runs)
                and now - st.not_worn_since >= limits.device.not_worn_for * 1000
            ):
                self._open(st, "not_worn", st.not_worn_since, 0.0)
                self._emit(
                    ctx, "not_worn", True, Severity.WARNING, now, st.not_worn_since, None, None
                )
            return
        if st.moved_ts < 0 or not waking:
            return
        idle_from = max(st.moved_ts, day_start + limits.waking_start_min * MINUTE_MS)
        spec = limits.inactivity
        if (
            runs is None or "inactivity" not in runs
        ) and now - idle_from >= spec.no_steps_for * 1000:
            self._open(st, "inactivity", idle_from, 0.0)
            self._emit(
                ctx,
                "inactivity",
                True,
                spec.severity,
                now,
                idle_from,
                round((now - idle_from) / MINUTE_MS),
                round(spec.no_steps_for / 60),
            )

    def _tick_silence(self, ctx: DeviceContext, st: Wristband | Bin, now: int, worn: bool) -> bool:
        """Offline (status, power-off or silence) or, for a band last worn, no data. True if so."""
        spec = ctx.limits.device
        runs = st.runs
        silent_ms = ctx.interval_ms * spec.offline_intervals
        kind = SubjectKind.WRISTBAND if ctx.kind is Kind.WRISTBAND else SubjectKind.BIN
        if runs is not None and ("offline" in runs or "no_data" in runs):
            return True
        if not st.online:
            grace = 0 if st.offline_reason == "power_off" else spec.offline_grace * 1000
            if now - st.offline_since >= grace:
                self._open(st, "offline", st.offline_since, 0.0)
                self._emit(
                    ctx,
                    "offline",
                    True,
                    Severity.WARNING,
                    now,
                    st.offline_since,
                    None,
                    None,
                    subject_kind=kind,
                    detail={"reason": st.offline_reason},
                )
                return True
            return False
        if st.last_rx and now - st.last_rx > silent_ms:
            rule = "no_data" if worn else "offline"
            self._open(st, rule, st.last_rx, 0.0)
            self._emit(
                ctx,
                rule,
                True,
                Severity.WARNING,
                now,
                st.last_rx,
                round((now - st.last_rx) / 1000),
                round(silent_ms / 1000),
                subject_kind=kind,
                detail={"reason": "silent"},
            )
            if isinstance(st, Wristband):
                self._drop_pending(st)
            return True
        return False

    def _predict_fill(self, ctx: DeviceContext, st: Bin, now: int) -> None:
        spec = ctx.limits.bins
        fills = st.fills
        runs = st.runs
        soon = runs is not None and "bin_full_soon" in runs
        if (runs is not None and "bin_full" in runs) or len(fills) < spec.predict_min_points:
            if soon and len(fills) < spec.predict_min_points:
                self._clear(ctx, st, "bin_full_soon", now)
            return
        points = np.array(fills, dtype=np.float64)
        t = (points[:, 0] - points[-1, 0]) / 3_600_000  # hours, 0 at the newest
        slope, intercept = np.polyfit(t, points[:, 1], 1)
        hours = (spec.full - intercept) / slope if slope > 0 else math.inf
        if not soon and hours <= spec.predict_hours:
            self._open(st, "bin_full_soon", now, float(hours))
            self._emit(
                ctx,
                "bin_full_soon",
                True,
                Severity.INFO,
                now,
                now,
                round(float(hours), 1),
                spec.predict_hours,
                subject_kind=SubjectKind.BIN,
            )
        elif soon and hours > spec.predict_hours * 1.5:
            self._clear(ctx, st, "bin_full_soon", now)

    def _sorting(self, key: str, now: int) -> None:
        building = self.buildings[key]
        correct, total = (int(x) for x in building.buckets.sum(axis=0))
        ctx = self._subject_ctx.get(key)
        spec = ctx.limits.bins if ctx is not None else self.rules.default.bins
        # The registry's per-building target wins over the rules file's.
        target = spec.sorting_target
        if ctx is not None and ctx.sorting_target is not None:
            target = ctx.sorting_target
        if total < spec.sorting_min_deposits:
            return
        accuracy = correct / total
        runs = building.runs
        active = runs is not None and "sorting_accuracy" in runs
        detail: dict[str, str | float | int | bool] = {"deposits": total, "errors": total - correct}
        if not active and accuracy < target:
            if building.runs is None:
                building.runs = {}
            building.runs["sorting_accuracy"] = Run(active=True, since=now, peak=accuracy)
            self._emit_building(key, building, True, now, now, accuracy, target, detail)
        elif active and accuracy >= target + spec.sorting_clear_margin:
            assert building.runs is not None
            run = building.runs.pop("sorting_accuracy")
            self._emit_building(key, building, False, now, run.since, accuracy, target, detail)

    # -- baselines -------------------------------------------------------------------------

    def _baseline_sample(
        self, ctx: DeviceContext, hr: float | None, spo2: float | None, ts: int, limits: Limits
    ) -> None:
        key = f"r{ctx.resident_id}" if ctx.resident_id is not None else ctx.device_id
        baseline = self.baselines.get(key)
        if baseline is None:
            baseline = self.baselines[key] = Baseline.new(limits.baseline.days)
        day = (ts + self.rules.utc_offset_ms) // DAY_MS
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
        self._dirty_baselines.add(key)
        self._subject_ctx[key] = ctx

    def _judge_baseline(self, key: str, baseline: Baseline, now: int) -> None:
        baseline.evaluated = now
        ctx = self._baseline_context(key)
        spec = ctx.limits.baseline
        if baseline.samples < spec.min_samples:
            return
        history = baseline.days[: min(baseline.head, len(baseline.days))]
        for column, rule, min_delta, low_only, today in (
            (0, "baseline_hr", spec.hr_min_delta, False, _median(baseline.hist[:HR_BINS]) + HR_LOW),
            (
                1,
                "baseline_spo2",
                spec.spo2_min_delta,
                True,
                _median(baseline.hist[HR_BINS:]) + SPO2_LOW,
            ),
        ):
            past = history[:, column]
            past = past[~np.isnan(past)]
            if len(past) < spec.min_days:
                continue
            usual = float(np.median(past))
            spread = float(np.median(np.abs(past - usual))) * 1.4826
            band = max(spec.k * spread, min_delta)
            departure = today - usual
            away = -departure if low_only else abs(departure)
            runs = baseline.runs
            active = runs is not None and rule in runs
            detail: dict[str, str | float | int | bool] = {
                "usual": round(usual, 1),
                "band": round(band, 1),
                "days": len(past),
            }
            if not active and away > band:
                if baseline.runs is None:
                    baseline.runs = {}
                baseline.runs[rule] = Run(active=True, since=now, peak=today)
                self._emit(ctx, rule, True, spec.severity, now, now, today, usual, detail=detail)
            elif active and away <= band * 0.8:
                assert baseline.runs is not None
                run = baseline.runs.pop(rule)
                self._emit(
                    ctx, rule, False, spec.severity, now, run.since, today, usual, detail=detail
                )

    def _baseline_context(self, key: str) -> DeviceContext:
        ctx = self._subject_ctx.get(key)
        if ctx is not None:
            return ctx
        if key.startswith("r") and key[1:].isdigit():
            resident = int(key[1:])
            for ctx in self._contexts.values():
                if ctx.resident_id == resident:
                    return ctx
        return self.context(key, Kind.WRISTBAND)

    # -- latched findings -------------------------------------------------------------------

    def resolve(self, device_id: str, rule: str, now: int) -> bool:
        """A person resolved a latched finding (fall, SOS): clear it. False if none was open."""
        st = self.wristbands.get(device_id)
        if st is None or st.runs is None or rule not in st.runs:
            return False
        self._clear(self.context(device_id, Kind.WRISTBAND), st, rule, now)
        return True

    def active(self) -> list[Finding]:
        """Every condition that holds now, as findings (for a dispatcher starting up)."""
        out: list[Finding] = []
        saved = self.pending
        self.pending = out
        try:
            for device_id, st in self.wristbands.items():
                ctx = self.context(device_id, Kind.WRISTBAND)
                for name, run in (st.runs or {}).items():
                    if run.active:
                        self._emit(
                            ctx,
                            name,
                            True,
                            _severity_of(ctx, name, run),
                            run.end,
                            run.since,
                            run.peak,
                            None,
                            latched=name in LATCHED,
                        )
            for device_id, bst in self.bins.items():
                ctx = self.context(device_id, Kind.BIN)
                for name, run in (bst.runs or {}).items():
                    self._emit(
                        ctx,
                        name,
                        True,
                        _severity_of(ctx, name, run),
                        run.end,
                        run.since,
                        run.peak,
                        None,
                        subject_kind=SubjectKind.BIN,
                    )
            for key, building in self.buildings.items():
                for run in (building.runs or {}).values():
                    self._emit_building(
                        key, building, True, run.since, run.since, run.peak, None, {}
                    )
            for key, baseline in self.baselines.items():
                ctx = self._baseline_context(key)
                for name, run in (baseline.runs or {}).items():
                    self._emit(
                        ctx,
                        name,
                        True,
                        ctx.limits.baseline.severity,
                        run.since,
                        run.since,
                        run.peak,
                        None,
                    )
        finally:
            self.pending = saved
            self.stats.findings -= len(out)
        return out

    # -- checkpoints -------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        return encode_checkpoint(
            Checkpoint(
                version=CHECKPOINT_VERSION,
                saved_ms=self._clock(),
                wristbands=self.wristbands,
                bins=self.bins,
                buildings=self.buildings,
                baselines=self.baselines,
            )
        )

    def restore(self, data: bytes) -> None:
        """Take the state of a checkpoint; silence is measured from the restore, not the save."""
        checkpoint = decode_checkpoint(data)
        if checkpoint.version != CHECKPOINT_VERSION:
            msg = f"checkpoint version {checkpoint.version}, expected {CHECKPOINT_VERSION}"
            raise ValueError(msg)
        now = self._clock()
        devices: list[Wristband | Bin] = [
            *checkpoint.wristbands.values(),
            *checkpoint.bins.values(),
        ]
        for st in devices:
            if st.last_rx:
                # The time we were down is not the devices' silence.
                st.last_rx = max(st.last_rx, now - (checkpoint.saved_ms - st.last_rx))
            if not st.online and st.offline_since >= 0:
                st.offline_since = now - (checkpoint.saved_ms - st.offline_since)
        self.wristbands = checkpoint.wristbands
        self.bins = checkpoint.bins
        self.buildings = checkpoint.buildings
        self.baselines = checkpoint.baselines

    # -- emitting ------------------------------------------------------------------------------

    def _open(self, st: Wristband | Bin, rule: str, since: int, peak: float) -> Run:
        runs = st.runs
        if runs is None:
            runs = st.runs = {}
        run = runs[rule] = Run(active=True, since=since, peak=peak, reset=since)
        return run

    def _clear(
        self,
        ctx: DeviceContext,
        st: Wristband | Bin,
        rule: str,
        ts: int,
        value: float | None = None,
    ) -> None:
        assert st.runs is not None
        run = st.runs.pop(rule)
        kind = SubjectKind.WRISTBAND if ctx.kind is Kind.WRISTBAND else SubjectKind.BIN
        self._emit(
            ctx,
            rule,
            False,
            _severity_of(ctx, rule, run),
            ts,
            run.since,
            value,
            None,
            subject_kind=kind,
            latched=rule in LATCHED,
        )

    def _finish(
        self,
        ctx: DeviceContext,
        st: Wristband,
        rule: str,
        run: Run,
        ts: int,
        severity: Severity,
        value: float,
        limit: float | None,
    ) -> None:
        since = run.since
        assert st.runs is not None
        del st.runs[rule]
        self._emit(ctx, rule, False, severity, ts, since, value, limit)

    def _emit(
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
        detail: dict[str, str | float | int | bool] | None = None,
    ) -> None:
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

    def _emit_building(
        self,
        key: str,
        building: Building,
        active: bool,
        ts: int,
        since: int,
        value: float,
        limit: float | None,
        detail: dict[str, str | float | int | bool],
    ) -> None:
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


def _triggers(rule: Threshold, value: float) -> bool:
    if rule.high:
        return value >= rule.limit if rule.inclusive else value > rule.limit
    return value <= rule.limit if rule.inclusive else value < rule.limit


def _news2_severity(level: int) -> Severity:
    return Severity.CRITICAL if level >= 2 else Severity.WARNING


def _severity_of(ctx: DeviceContext, rule: str, run: Run) -> Severity:
    if rule == "news2":
        return _news2_severity(run.level)
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


def _median(hist: np.ndarray) -> float:
    """The median bin of a histogram (0-based); NaN when empty."""
    total = int(hist.sum())
    if total == 0:
        return math.nan
    return float(np.searchsorted(np.cumsum(hist), (total + 1) / 2))


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
