"""What a device says of itself: online or offline, silent, worn or not, its battery.

The findings `offline`, `no_data`, `not_worn` and `battery_low` (docs/rules.md, device state).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from protocol.models import Kind, StatusChange
from rules.config import Limits
from rules.context import Contexts, DeviceContext
from rules.deadlines import Deadlines
from rules.emit import Emitter, open_run
from rules.findings import Severity, SubjectKind
from rules.state import Bin, Wristband


class DeviceStateRules:
    """The device-state rules of wristbands and bins, sharing the engine's contexts and outbox."""

    __slots__ = ("_clock", "_contexts", "_deadlines", "_out")

    def __init__(
        self, contexts: Contexts, out: Emitter, clock: Callable[[], int], deadlines: Deadlines
    ) -> None:
        self._contexts = contexts
        self._out = out
        self._clock = clock
        self._deadlines = deadlines

    def status(self, item: StatusChange, st: Wristband | Bin) -> None:
        """The status topic's word (`online`, or the last will's `offline`)."""
        now = self._clock()
        if item.online:
            if not st.online:
                st.last_rx = now  # silence counts from the reconnect, not from before the outage
            st.online = True
            st.offline_since = -1
            st.offline_reason = ""
            if st.runs is not None and "offline" in st.runs:
                self._out.clear(self._contexts.of(item.device_id, item.kind), st, "offline", now)
        elif st.online:
            st.online = False
            st.offline_since = now
            st.offline_reason = "status"
            self._deadlines.wake(item.device_id)  # `offline` after its grace
            if isinstance(st, Wristband):
                drop_pending(st)

    def alive(self, ctx: DeviceContext, st: Wristband | Bin, ts: int) -> None:
        """A message from the device (wristband telemetry inlines this): online, not silent."""
        st.last_rx = self._clock()
        if not st.online:
            st.online = True
            st.offline_since = -1
            st.offline_reason = ""
        runs = st.runs
        if runs is not None and ("no_data" in runs or "offline" in runs):
            self.heard(ctx, st, ts)

    def heard(self, ctx: DeviceContext, st: Wristband | Bin, ts: int) -> None:
        """Data flows again: the silence findings (`no_data`, `offline`) clear."""
        runs = st.runs
        assert runs is not None
        if "no_data" in runs:
            self._out.clear(ctx, st, "no_data", ts)
        if "offline" in runs:
            self._out.clear(ctx, st, "offline", ts)

    def battery(
        self, ctx: DeviceContext, st: Wristband | Bin, battery: float, ts: int, limits: Limits
    ) -> None:
        """`battery_low` opens below its limit and clears at the higher clear level."""
        spec = limits.device
        runs = st.runs
        active = runs is not None and "battery_low" in runs
        if not active and battery < spec.battery_low:
            run = open_run(st, "battery_low", ts, battery)
            kind = SubjectKind.WRISTBAND if ctx.kind is Kind.WRISTBAND else SubjectKind.BIN
            self._out.emit(
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
            self._out.clear(ctx, st, "battery_low", ts, battery)

    def set_worn(self, ctx: DeviceContext, st: Wristband, worn: bool, ts: int) -> None:
        """On or off the wrist: `not_worn` clears, or its clock starts and pending runs go."""
        st.worn = worn
        self._deadlines.wake(ctx.device_id)  # `not_worn`, or `inactivity` again
        if worn:
            st.not_worn_since = -1
            if st.runs is not None and "not_worn" in st.runs:
                self._out.clear(ctx, st, "not_worn", ts)
        else:
            st.not_worn_since = ts
            drop_pending(st)

    def power_off(self, ctx: DeviceContext, st: Wristband) -> None:
        """The band said it is switching off: offline at once, no grace."""
        self._deadlines.wake(ctx.device_id)
        st.online = False
        st.offline_since = self._clock()
        st.offline_reason = "power_off"
        drop_pending(st)

    def silence(self, ctx: DeviceContext, st: Wristband | Bin, now: int, worn: bool) -> bool:
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
                open_run(st, "offline", st.offline_since, 0.0)
                self._out.emit(
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
            open_run(st, rule, st.last_rx, 0.0)
            self._out.emit(
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
                drop_pending(st)
            return True
        return False

    def deadline(self, ctx: DeviceContext, st: Wristband | Bin, now: int) -> int | None:
        """The earliest clock time `silence` could open a finding; None: not before a wake."""
        runs = st.runs
        if runs is not None and ("offline" in runs or "no_data" in runs):
            return None  # their clear wakes the device
        # Exact to the ms (`silence` compares with >= and >), so a tick finds what it did
        # when it visited every device.
        if not st.online:
            grace = (
                0 if st.offline_reason == "power_off" else ctx.limits.device.offline_grace * 1000
            )
            return max(math.ceil(st.offline_since + grace), now + 1)
        silent_ms = ctx.interval_ms * ctx.limits.device.offline_intervals
        # Never heard yet (known from a status message only): look again a silence later.
        return max(math.floor((st.last_rx or now) + silent_ms) + 1, now + 1)

    def not_worn(self, ctx: DeviceContext, st: Wristband, now: int, waking_start: int) -> None:
        """`not_worn` once the band was off for `not_worn_for` of waking time (ticked then)."""
        # Counted in waking time only: a band charged overnight is not "not worn" at 07:00.
        runs = st.runs
        if (
            st.not_worn_since >= 0
            and (runs is None or "not_worn" not in runs)
            and now - max(st.not_worn_since, waking_start) >= ctx.limits.device.not_worn_for * 1000
        ):
            open_run(st, "not_worn", st.not_worn_since, 0.0)
            self._out.emit(
                ctx, "not_worn", True, Severity.WARNING, now, st.not_worn_since, None, None
            )


def drop_pending(st: Wristband) -> None:
    """A run cannot span a gap in wearing or reporting: pending runs go, clears restart."""
    runs = st.runs
    if runs:
        for name in [n for n, r in runs.items() if not r.active]:
            del runs[name]
        for run in runs.values():
            if run.start >= 0:
                run.restart()
