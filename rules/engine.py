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

from protocol.models import (
    BinEvent,
    BinTelemetry,
    Kind,
    Reading,
    StatusChange,
    WristbandEvent,
    WristbandTelemetry,
)
from rules.config import BinsSpec, Limits, RuleSet, Threshold
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
# A day's median hardly moves in half an hour; judging more often costs throughput.
_BASELINE_EVERY_MS: Final = 30 * MINUTE_MS
# A fill falling this much at once means the bin was emptied (or partly): smaller falls
# are the sensor's jitter or the contents settling, and count in the bin's pace.
_EMPTIED_DROP: Final = 10.0
_PACE_POINTS: Final = 16  # the fill history kept per bin (see state.Bin.pace)
_RECENT_DEPOSITS: Final = 64  # deposit times kept to spot redeliveries (within the lateness)
_M_PER_DEG: Final = 111_320.0

# Rules whose findings only a person clears.
LATCHED: Final = frozenset({"fall", "sos"})
# A wristband's rules that are not vital-sign rules: never inhibited, never retired on reload.
_DEVICE_RULES: Final = frozenset(
    {"fall", "sos", "battery_low", "not_worn", "inactivity", "no_data", "offline"}
)


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
        # Per baseline: (its day count, (usual, spread, days) of hr and of SpO2); derived.
        self._history: dict[str, tuple[int, _Past, _Past]] = {}

    # -- configuration -----------------------------------------------------------

    def set_contexts(self, contexts: Mapping[str, DeviceContext]) -> None:
        """New registry context (and with it, limits); state is kept."""
        self._contexts = dict(contexts)
        # Buildings and baselines are judged with the context of their last sample: renew it.
        self._subject_ctx = {
            key: self.context(ctx.device_id, ctx.kind) for key, ctx in self._subject_ctx.items()
        }

    def set_rules(self, rules: RuleSet, contexts: Mapping[str, DeviceContext]) -> None:
        """Reload: new rules and the contexts built from them; every subject keeps its state.

        Only what a rule no longer watches goes: a threshold removed or disabled, NEWS2,
        wandering or baselines switched off. Their open findings clear (else nothing would
        ever clear them), their pending runs are dropped.
        """
        self.rules = rules
        self.set_contexts(contexts)
        now = self._clock()
        for device_id, st in self.wristbands.items():
            runs = st.runs
            if not runs:
                continue
            ctx = self.context(device_id, Kind.WRISTBAND)
            watched = _watched(ctx.limits)
            for name in [n for n in runs if n not in _DEVICE_RULES and n not in watched]:
                if runs[name].active:
                    self._clear(ctx, st, name, now)
                else:
                    del runs[name]
        for key, baseline in self.baselines.items():
            ctx = self._baseline_context(key)
            if baseline.runs and not ctx.limits.baseline.enabled:
                for name, run in baseline.runs.items():
                    self._emit(
                        ctx, name, False, ctx.limits.baseline.severity, now, run.since, None, None
                    )
                baseline.runs = None

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
            # Off the wrist, offline or flat: the device-state finding speaks, and no vital
            # run may span the gap (pending ones go, clears start again afterwards).
            self.stats.inhibited += 1
            if st.runs:
                self._drop_pending(st)
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
                self._finish(ctx, rule.name, run, ts, rule.severity, value, rule.limit)
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
        # The reading's own values, and the latest of the others unless stale: so a late
        # reading is scored as it was taken. Spelled out: this runs for nearly every reading.
        stale = ts - round(spec.stale_after * 1000)
        hr = body.hr
        if hr is not None:
            if ts >= st.hr_ts:
                st.hr = hr
                st.hr_ts = ts
        elif st.hr_ts >= stale:
            hr = st.hr
        spo2 = body.spo2
        if spo2 is not None:
            if ts >= st.spo2_ts:
                st.spo2 = spo2
                st.spo2_ts = ts
        elif st.spo2_ts >= stale:
            spo2 = st.spo2
        sbp = body.sbp
        if sbp is not None:
            if ts >= st.sbp_ts:
                st.sbp = sbp
                st.sbp_ts = ts
        elif st.sbp_ts >= stale:
            sbp = st.sbp
        temp = body.temp
        if temp is not None:
            if ts >= st.temp_ts:
                st.temp = temp
                st.temp_ts = ts
        elif st.temp_ts >= stale:
            temp = st.temp
        total, red = partial_news2(hr, spo2, sbp, temp)
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
                self._finish(ctx, "news2", run, ts, _news2_severity(run.level), total, None)
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
        """A run cannot span a gap in wearing or reporting: pending runs go, clears restart."""
        runs = st.runs
        if runs:
            for name in [n for n, r in runs.items() if not r.active]:
                del runs[name]
            for run in runs.values():
                if run.start >= 0:
                    run.restart()

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
                self._finish(ctx, "wandering", run, ts, spec.severity, distance, spec.radius_m)
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
        if kind == "fall" or kind == "sos":
            # Never dropped for lateness: a fall the band buffered for an hour still matters.
            # One no newer than the newest seen is a redelivery, also after a person resolved it.
            if ts <= (st.fall_ts if kind == "fall" else st.sos_ts):
                self.stats.duplicates += 1
                return
            if kind == "fall":
                st.fall_ts = ts
            else:
                st.sos_ts = ts
            self._alive(ctx, st, ts)
            confidence = 1.0 if body.confidence is None else body.confidence
            runs = st.runs
            run = runs.get(kind) if runs is not None else None
            if run is None:
                run = self._open(st, kind, ts, confidence)
            elif confidence > run.peak:
                # A surer fall raises the open one's severity; a vaguer one cannot lower it.
                run.peak = confidence
            severity = _severity_of(ctx, kind, run)
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
        self._alive(ctx, st, ts)
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

    def _alive(self, ctx: DeviceContext, st: Wristband | Bin, ts: int) -> None:
        """A message from the device (telemetry inlines this): it is online and not silent."""
        st.last_rx = self._clock()
        if not st.online:
            st.online = True
            st.offline_since = -1
            st.offline_reason = ""
        runs = st.runs
        if runs is not None:
            if "no_data" in runs:
                self._clear(ctx, st, "no_data", ts)
            if "offline" in runs:
                self._clear(ctx, st, "offline", ts)

    # -- bins ----------------------------------------------------------------------

    def _bin_telemetry(self, device_id: str, body: BinTelemetry, st: Bin) -> None:
        ts = body.ts
        newest = ts >= st.last_ts
        if newest:
            st.last_ts = ts
        elif ts < st.last_ts - self.rules.lateness_ms:
            self.stats.late += 1
            return
        ctx = self.context(device_id, Kind.BIN)
        self._alive(ctx, st, ts)
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
                self._open(st, "bin_fire", ts, temp)
                self._emit(ctx, "bin_fire", True, Severity.CRITICAL, ts, ts, temp, spec.fire)
            elif fire and temp <= spec.fire_clear and newest:
                self._clear(ctx, st, "bin_fire", ts, temp)
        if body.battery is not None and newest:
            st.battery = body.battery
            self._battery(ctx, st, body.battery, ts, limits)
        lid_open = body.lid_open
        if lid_open is not None and newest:
            runs = st.runs
            lid = 1 if lid_open else 0
            # The same word again is a lid still stuck; a change means it moves again.
            jammed = runs is not None and "lid_jam" in runs and ts > runs["lid_jam"].since
            if jammed and st.lid >= 0 and lid != st.lid:
                self._clear(ctx, st, "lid_jam", ts)
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
                    self._clear(ctx, st, "bin_full_soon", ts, fill)
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
            self._open(st, "bin_full", ts, fill)
            self._emit(ctx, "bin_full", True, Severity.WARNING, ts, ts, fill, spec.full)
            if "bin_full_soon" in (st.runs or {}):
                self._clear(ctx, st, "bin_full_soon", ts, fill)
        elif full and fill <= spec.full_clear:
            self._clear(ctx, st, "bin_full", ts, fill)

    def _bin_event(self, device_id: str, body: BinEvent, st: Bin) -> None:
        ctx = self.context(device_id, Kind.BIN)
        ts = body.ts
        lateness = self.rules.lateness_ms
        if ts < st.last_ts - lateness:
            self.stats.late += 1
            return
        kind = body.type
        if kind == "deposit":
            # Deposits are counted, so a redelivery must not count twice; an out-of-order
            # deposit is no redelivery. Their times within the lateness tell them apart.
            if ts < st.last_deposit_ts - lateness:
                self.stats.late += 1
                return
            seen = st.deposits
            if ts in seen:
                self.stats.duplicates += 1
                return
            seen.append(ts)
            if ts > st.last_deposit_ts:
                st.last_deposit_ts = ts
                if seen[0] < ts - lateness or len(seen) > _RECENT_DEPOSITS:
                    st.deposits = [t for t in seen if t >= ts - lateness][-_RECENT_DEPOSITS:]
            self._alive(ctx, st, ts)
            runs = st.runs
            if runs is not None and "lid_jam" in runs and ts > runs["lid_jam"].since:
                self._clear(ctx, st, "lid_jam", ts)
            if ctx.category is None or body.detected is None or ctx.building_key is None:
                return  # no compartment or building on record: no verdict on sorting
            self._deposit(ctx, ts, body.detected == ctx.category.value)
            return
        self._alive(ctx, st, ts)
        if kind == "lid_jam":
            runs = st.runs
            if runs is None or "lid_jam" not in runs:
                self._open(st, "lid_jam", ts, 1.0)
                st.lid = -1  # what the lid reports from now on tells whether it moves
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
            if not st.online:
                st.last_rx = now  # silence counts from the reconnect, not from before the outage
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
        # Every device on every tick, so the context lookup is spelled out here.
        contexts = self._contexts
        for device_id, st in self.wristbands.items():
            ctx = contexts.get(device_id)
            if ctx is None or ctx.kind is not Kind.WRISTBAND:
                ctx = self.context(device_id, Kind.WRISTBAND)
            self._tick_wristband(ctx, st, now, day_start, minute)
        for device_id, bst in self.bins.items():
            ctx = contexts.get(device_id)
            if ctx is None or ctx.kind is not Kind.BIN:
                ctx = self.context(device_id, Kind.BIN)
            self._tick_silence(ctx, bst, now, False)
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
        if self._tick_silence(ctx, st, now, st.worn):
            return
        limits = ctx.limits
        if not limits.waking_start_min <= minute < limits.waking_end_min:
            return  # not worn and inactivity only count in waking hours
        waking_start = day_start + limits.waking_start_min * MINUTE_MS
        runs = st.runs
        if not st.worn:
            # Counted in waking time only: a band charged overnight is not "not worn" at 07:00.
            if (
                st.not_worn_since >= 0
                and (runs is None or "not_worn" not in runs)
                and now - max(st.not_worn_since, waking_start) >= limits.device.not_worn_for * 1000
            ):
                self._open(st, "not_worn", st.not_worn_since, 0.0)
                self._emit(
                    ctx, "not_worn", True, Severity.WARNING, now, st.not_worn_since, None, None
                )
            return
        if st.moved_ts < 0:
            return
        idle_from = max(st.moved_ts, waking_start)
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
        runs = st.runs
        if runs is not None and ("offline" in runs or "no_data" in runs):
            return True
        kind = SubjectKind.WRISTBAND if ctx.kind is Kind.WRISTBAND else SubjectKind.BIN
        if not st.online:
            grace = (
                0 if st.offline_reason == "power_off" else ctx.limits.device.offline_grace * 1000
            )
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
        last_rx = st.last_rx
        silent_ms = ctx.interval_ms * ctx.limits.device.offline_intervals
        if last_rx and now - last_rx > silent_ms:
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
                self._open(st, "bin_full_soon", now, hours)
                self._emit(
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
            self._clear(
                ctx, st, "bin_full_soon", now, None if math.isinf(hours) else round(hours, 1)
            )

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
        # Below target, and likely not by chance: the upper end of a one-sided 80 % Wilson
        # interval is below it too. At 50 deposits, 84 % is noise and 80 % is not.
        if not active and accuracy < target and _wilson_upper(correct, total) < target:
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
        past_days = min(baseline.head, len(baseline.days))
        if baseline.samples < spec.min_samples or past_days < spec.min_days:
            return  # not enough of today, or of the past, to judge
        # The past days' figures change only when a day closes: kept until then.
        cached = self._history.get(key)
        if cached is None or cached[0] != baseline.head:
            cached = self._history[key] = (baseline.head, *_history(baseline))
        _, hr_past, spo2_past = cached
        for (usual, spread, days), rule, min_delta, low_only, today in (
            (
                hr_past,
                "baseline_hr",
                spec.hr_min_delta,
                False,
                _median(baseline.hist[:HR_BINS]) + HR_LOW,
            ),
            (
                spo2_past,
                "baseline_spo2",
                spec.spo2_min_delta,
                True,
                _median(baseline.hist[HR_BINS:]) + SPO2_LOW,
            ),
        ):
            if days < spec.min_days:
                continue
            band = max(spec.k * spread, min_delta)
            departure = today - usual
            away = -departure if low_only else abs(departure)
            runs = baseline.runs
            active = runs is not None and rule in runs
            detail: dict[str, str | float | int | bool] = {
                "usual": round(usual, 1),
                "band": round(band, 1),
                "days": days,
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
        """A person resolved a latched finding (fall, SOS): clear it. False if none was open.

        Other findings clear when their condition does; resolving one is refused (False).
        """
        st = self.wristbands.get(device_id)
        if rule not in LATCHED or st is None or st.runs is None or rule not in st.runs:
            return False
        self._clear(self.context(device_id, Kind.WRISTBAND), st, rule, now)
        return True

    def active(self) -> list[Finding]:
        """Every condition that holds now, as findings (for a dispatcher starting up)."""
        out: list[Finding] = []
        saved = self.pending
        counted = (self.stats.findings, dict(self.stats.by_rule))
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
                            _last_seen(run),
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
                        _last_seen(run),
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
            self.stats.findings, self.stats.by_rule = counted  # a listing, not new findings
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
        for baseline in checkpoint.baselines.values():
            baseline.hist = baseline.hist.astype(np.uint32, copy=False)  # saved as uint16 once
        self.wristbands = checkpoint.wristbands
        self.bins = checkpoint.bins
        self.buildings = checkpoint.buildings
        self.baselines = checkpoint.baselines
        self._history.clear()

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
        rule: str,
        run: Run,
        ts: int,
        severity: Severity,
        value: float,
        limit: float | None,
    ) -> None:
        since = run.since
        run.settle(ts)  # kept idle: a trigger older than this clear re-opens nothing
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


def _last_seen(run: Run) -> int:
    """The newest event time a run knows: an opened device finding has no `end` of its own."""
    return max(run.since, run.reset, run.end)


def _watched(limits: Limits) -> set[str]:
    """The names of the sustained wristband rules these limits evaluate."""
    names = {t.name for t in limits.thresholds}
    if limits.news2.enabled:
        names.add("news2")
    if limits.wandering.enabled:
        names.add("wandering")
    return names


def _wilson_upper(successes: int, total: int, z: float = 0.8416) -> float:
    """The upper end of the Wilson score interval (one-sided 80 % at z = 0.8416)."""
    p = successes / total
    z2n = z * z / total
    centre = p + z2n / 2
    half = z * math.sqrt(p * (1 - p) / total + z2n / (4 * total))
    return (centre + half) / (1 + z2n)


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


_Past = tuple[float, float, int]  # usual (median), spread (scaled MAD), days with data


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
