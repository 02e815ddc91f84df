"""A wristband's rules: vital-sign thresholds, NEWS2, steps and inactivity, wandering, falls, SOS.

`telemetry` runs for nearly every reading the engine sees: it is spelled out, not layered.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Final

from core.constants import LATCHED_RULES
from protocol.models import Kind, WristbandEvent, WristbandTelemetry
from rules.baselines import DAY_MS, BaselineRules
from rules.config import Limits, News2Spec, Threshold
from rules.context import Contexts, DeviceContext
from rules.deadlines import Deadlines
from rules.device_state import DeviceStateRules, drop_pending
from rules.emit import (
    Detail,
    Emitter,
    last_seen,
    news2_severity,
    open_run,
    severity_of,
)
from rules.news2 import partial_news2
from rules.state import Run, Wristband

MINUTE_MS: Final = 60_000
_M_PER_DEG: Final = 111_320.0
# A wristband's rules that are not vital-sign rules: never inhibited, never retired on reload.
_DEVICE_RULES: Final = frozenset(
    {"fall", "sos", "battery_low", "not_worn", "inactivity", "no_data", "offline"}
)


class WristbandRules:
    """The rules over the wristbands this worker sees; their state lives in `wristbands`."""

    __slots__ = (
        "_baselines",
        "_clock",
        "_contexts",
        "_deadlines",
        "_device",
        "_devices",
        "_out",
        "_stats",
        "wristbands",
    )

    def __init__(
        self,
        contexts: Contexts,
        out: Emitter,
        clock: Callable[[], int],
        wristbands: dict[str, Wristband],
        device: DeviceStateRules,
        baselines: BaselineRules,
        deadlines: Deadlines,
    ) -> None:
        self._contexts = contexts
        self._devices = contexts.devices  # the same dict for life: one lookup less per reading
        self._out = out
        self._stats = out.stats
        self._clock = clock
        self.wristbands = wristbands
        self._device = device
        self._baselines = baselines
        self._deadlines = deadlines

    # -- telemetry -------------------------------------------------------------------

    def telemetry(self, device_id: str, body: WristbandTelemetry, st: Wristband) -> None:
        """Judge one telemetry reading (in any order within the lateness tolerance)."""
        ts = body.ts
        newest = ts >= st.last_ts
        if newest:
            st.last_ts = ts
        elif ts < st.last_ts - self._contexts.rules.lateness_ms:
            self._stats.late += 1
            return
        st.last_rx = self._clock()
        ctx = self._devices.get(device_id)
        if ctx is None or ctx.kind is not Kind.WRISTBAND:
            ctx = self._contexts.of(device_id, Kind.WRISTBAND)
        limits = ctx.limits
        if not st.online:
            # Data after the will (or a power-off) means the band is back.
            st.online = True
            st.offline_since = -1
            st.offline_reason = ""
        runs = st.runs
        if runs is not None and ("no_data" in runs or "offline" in runs):
            self._device.heard(ctx, st, ts)
        if newest:
            worn = body.worn
            if worn is not None and worn != st.worn:
                self._device.set_worn(ctx, st, worn, ts)
            battery = body.battery
            if battery is not None:
                st.battery = battery
                self._device.battery(ctx, st, battery, ts, limits)
        steps = body.steps
        if steps is not None and ts > st.steps_ts:
            self._steps(ctx, st, steps, ts, limits)
        if not st.worn or (0 <= st.battery <= limits.device.battery_flat) or not st.online:
            # Off the wrist, offline or flat: the device-state finding speaks, and no vital
            # run may span the gap (pending ones go, clears start again afterwards).
            self._stats.inhibited += 1
            drop_pending(st)
            return
        self._vitals(ctx, st, body, ts, limits)

    def _vitals(
        self, ctx: DeviceContext, st: Wristband, body: WristbandTelemetry, ts: int, limits: Limits
    ) -> None:
        """Vital signs: fixed thresholds first, then NEWS2, the baseline, the position."""
        runs = st.runs
        for rule in limits.thresholds:
            value = getattr(body, rule.field)
            if value is None:
                continue
            run = runs.get(rule.name) if runs is not None else None
            if run is None:
                if not rule.triggers(value) or (rule.at_rest and not st.at_rest):
                    continue
                if runs is None:
                    runs = st.runs = {}
                run = runs[rule.name] = Run()
            self._threshold(ctx, st, rule, run, value, ts)
        hr = body.hr
        spo2 = body.spo2
        if hr is not None or spo2 is not None or body.sbp is not None or body.temp is not None:
            if limits.news2.enabled:
                self._news2(ctx, st, body, ts, limits.news2)
            if st.at_rest and limits.baseline.enabled and (hr is not None or spo2 is not None):
                self._baselines.sample(ctx, hr, spo2, ts, limits)
        if body.lat is not None and body.lon is not None and ctx.home_lat is not None:
            self._position(ctx, st, body.lat, body.lon, ts, limits)

    def _threshold(
        self, ctx: DeviceContext, st: Wristband, rule: Threshold, run: Run, value: float, ts: int
    ) -> None:
        if run.active:
            if run.observe(ts, rule.clears(value), rule.clear_ms):
                self._out.finish(ctx, rule.name, run, ts, rule.severity, value, rule.limit)
            elif (value > run.peak) if rule.high else (value < run.peak):
                run.peak = value
            return
        hit = rule.triggers(value) and (st.at_rest or not rule.at_rest)
        if hit and (run.start < 0 or ((value > run.peak) if rule.high else (value < run.peak))):
            run.peak = value
        if run.observe(ts, hit, rule.hold_ms):
            run.flip(ts)
            self._out.emit(ctx, rule.name, True, rule.severity, ts, run.since, run.peak, rule.limit)
        elif run.idle and st.runs is not None:
            del st.runs[rule.name]

    def _news2(
        self, ctx: DeviceContext, st: Wristband, body: WristbandTelemetry, ts: int, spec: News2Spec
    ) -> None:
        # The reading's own values, and the latest of the others unless stale: so a late
        # reading is scored as it was taken. Spelled out: this runs for nearly every reading.
        stale = ts - round(spec.stale_after * 1000)
        hr = body.hr
        if hr is None:
            hr = st.hr if st.hr_ts >= stale else None
        elif ts >= st.hr_ts:
            st.hr = hr
            st.hr_ts = ts
        spo2 = body.spo2
        if spo2 is None:
            spo2 = st.spo2 if st.spo2_ts >= stale else None
        elif ts >= st.spo2_ts:
            st.spo2 = spo2
            st.spo2_ts = ts
        sbp = body.sbp
        if sbp is None:
            sbp = st.sbp if st.sbp_ts >= stale else None
        elif ts >= st.sbp_ts:
            st.sbp = sbp
            st.sbp_ts = ts
        temp = body.temp
        if temp is None:
            temp = st.temp if st.temp_ts >= stale else None
        elif ts >= st.temp_ts:
            st.temp = temp
            st.temp_ts = ts
        total, red = partial_news2(hr, spo2, sbp, temp)
        level = 2 if total >= spec.high_total else 1 if (total >= spec.medium_total or red) else 0
        runs = st.runs
        run = runs.get("news2") if runs is not None else None
        if run is None:
            if level == 0:
                return  # the usual case: nothing pending, nothing open
            if runs is None:
                runs = st.runs = {}
            run = runs["news2"] = Run()
        self._news2_run(ctx, st, run, total, red, level, ts, spec)

    def _news2_run(
        self,
        ctx: DeviceContext,
        st: Wristband,
        run: Run,
        total: int,
        red: bool,
        level: int,
        ts: int,
        spec: News2Spec,
    ) -> None:
        if run.active:
            if level > run.level:
                # Worse while open: the same finding again, with the higher severity.
                run.level = level
                run.peak = total
                self._out.emit(
                    ctx, "news2", True, news2_severity(level), ts, run.since, total, None
                )
            cleared = total <= spec.clear_total and not red
            if run.observe(ts, cleared, round(spec.clear_for * 1000)):
                self._out.finish(ctx, "news2", run, ts, news2_severity(run.level), total, None)
            return
        if level:
            run.level = max(run.level, level)
            run.peak = max(run.peak, total)
        if run.observe(ts, level > 0, round(spec.hold * 1000)):
            run.flip(ts)
            self._out.emit(
                ctx, "news2", True, news2_severity(run.level), ts, run.since, run.peak, None
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
                    self._out.clear(ctx, st, "inactivity", ts)
        elif st.moved_ts < 0:
            st.moved_ts = ts  # the clock of inactivity starts with the first count
            self._deadlines.wake(ctx.device_id)
        st.steps = steps
        st.steps_ts = ts

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
                self._out.finish(ctx, "wandering", run, ts, spec.severity, distance, spec.radius_m)
            return
        outside = distance > spec.radius_m
        if outside:
            run.peak = max(run.peak, distance)
        if run.observe(ts, outside, round(spec.hold * 1000)):
            run.flip(ts)
            self._out.emit(
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

    # -- events ----------------------------------------------------------------------

    def event(self, device_id: str, body: WristbandEvent, st: Wristband) -> None:
        """A fall, an SOS, on or off the wrist, a power-off."""
        ctx = self._contexts.of(device_id, Kind.WRISTBAND)
        ts = body.ts
        kind = body.type
        if kind == "fall" or kind == "sos":
            self._alarm(ctx, st, body, kind)
            return
        if ts < st.last_ts - self._contexts.rules.lateness_ms:
            self._stats.late += 1
            return
        self._device.alive(ctx, st, ts)
        if kind == "off_wrist":
            if st.worn:
                self._device.set_worn(ctx, st, False, ts)
        elif kind == "on_wrist":
            if not st.worn:
                self._device.set_worn(ctx, st, True, ts)
        elif kind == "power_off":
            self._device.power_off(ctx, st)

    def _alarm(self, ctx: DeviceContext, st: Wristband, body: WristbandEvent, kind: str) -> None:
        """A fall or an SOS: latched until a person resolves it."""
        ts = body.ts
        # Never dropped for lateness: a fall the band buffered for an hour still matters.
        # One no newer than the newest seen is a redelivery, also after a person resolved it.
        if ts <= (st.fall_ts if kind == "fall" else st.sos_ts):
            self._stats.duplicates += 1
            return
        if kind == "fall":
            st.fall_ts = ts
        else:
            st.sos_ts = ts
        self._device.alive(ctx, st, ts)
        confidence = 1.0 if body.confidence is None else body.confidence
        runs = st.runs
        run = runs.get(kind) if runs is not None else None
        if run is None:
            run = open_run(st, kind, ts, confidence)
        elif confidence > run.peak:
            # A surer fall raises the open one's severity; a vaguer one cannot lower it.
            run.peak = confidence
        detail: Detail = {}
        if body.confidence is not None:
            detail["confidence"] = body.confidence
        if body.lat is not None and body.lon is not None:
            detail["lat"] = body.lat
            detail["lon"] = body.lon
        self._out.emit(
            ctx,
            kind,
            True,
            severity_of(ctx, kind, run),
            ts,
            run.since,
            body.confidence,
            None,
            latched=True,
            detail=detail,
        )

    # -- time ------------------------------------------------------------------------

    def tick(
        self, ctx: DeviceContext, st: Wristband, now: int, day_start: int, minute: int
    ) -> None:
        """Not worn and inactivity, which only count in waking hours (a band not silent)."""
        limits = ctx.limits
        if not limits.waking_start_min <= minute < limits.waking_end_min:
            return
        waking_start = day_start + limits.waking_start_min * MINUTE_MS
        if not st.worn:
            self._device.not_worn(ctx, st, now, waking_start)
            return
        if st.moved_ts < 0:
            return
        idle_from = max(st.moved_ts, waking_start)
        spec = limits.inactivity
        runs = st.runs
        if (
            runs is None or "inactivity" not in runs
        ) and now - idle_from >= spec.no_steps_for * 1000:
            open_run(st, "inactivity", idle_from, 0.0)
            self._out.emit(
                ctx,
                "inactivity",
                True,
                spec.severity,
                now,
                idle_from,
                round((now - idle_from) / MINUTE_MS),
                round(spec.no_steps_for / 60),
            )

    def deadline(self, ctx: DeviceContext, st: Wristband, now: int, day_start: int) -> int | None:
        """The earliest clock time a tick could open a finding on this band (see `tick`)."""
        due = self._device.deadline(ctx, st, now)
        if due is None:
            return None  # silent or offline: the waking rules wait for it to be heard
        limits = ctx.limits
        runs = st.runs
        if not st.worn:
            if st.not_worn_since < 0 or (runs is not None and "not_worn" in runs):
                return due
            since, hold_ms = st.not_worn_since, limits.device.not_worn_for * 1000
        else:
            if st.moved_ts < 0 or (runs is not None and "inactivity" in runs):
                return due
            since, hold_ms = st.moved_ts, limits.inactivity.no_steps_for * 1000
        start = day_start + limits.waking_start_min * MINUTE_MS
        end = day_start + limits.waking_end_min * MINUTE_MS
        if start >= end:
            return due  # no waking hours: these rules never open
        if now >= end:  # today's waking hours are over: tomorrow's
            start += DAY_MS
            end += DAY_MS
        # Counted from the later of `since` and the waking start, within waking hours; if not
        # today, look again when tomorrow's begin.
        waking_due = math.ceil(max(since, start) + hold_ms)
        if waking_due >= end:
            waking_due = start + DAY_MS if now >= start else start
        return min(due, max(waking_due, now + 1))

    # -- the engine's housekeeping -----------------------------------------------------

    def retire(self, now: int) -> None:
        """After a reload: what a rule no longer watches goes; its open findings clear."""
        for device_id, st in self.wristbands.items():
            runs = st.runs
            if not runs:
                continue
            ctx = self._contexts.of(device_id, Kind.WRISTBAND)
            watched = _watched(ctx.limits)
            for name in [n for n in runs if n not in _DEVICE_RULES and n not in watched]:
                if runs[name].active:
                    self._out.clear(ctx, st, name, now)
                else:
                    del runs[name]

    def list_active(self) -> None:
        """Emit every open wristband finding again (for a dispatcher starting up)."""
        for device_id, st in self.wristbands.items():
            ctx = self._contexts.of(device_id, Kind.WRISTBAND)
            for name, run in (st.runs or {}).items():
                if run.active:
                    self._out.emit(
                        ctx,
                        name,
                        True,
                        severity_of(ctx, name, run),
                        last_seen(run),
                        run.since,
                        run.peak,
                        None,
                        latched=name in LATCHED_RULES,
                    )


def _watched(limits: Limits) -> set[str]:
    """The names of the sustained wristband rules these limits evaluate."""
    names = {t.name for t in limits.thresholds}
    if limits.news2.enabled:
        names.add("news2")
    if limits.wandering.enabled:
        names.add("wandering")
    return names
