"""The rule engine: per-device state fed with readings in event time, ticked by an injected clock.

It dispatches each reading to the rules of its kind; how it works and why: docs/rules.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from core.constants import LATCHED_RULES
from protocol.models import (
    BinEvent,
    BinTelemetry,
    Kind,
    Reading,
    StatusChange,
    WristbandEvent,
    WristbandTelemetry,
)
from rules.baselines import DAY_MS, BaselineRules
from rules.bins import BinRules
from rules.checkpoint import CHECKPOINT_VERSION, Checkpoint, encode_checkpoint, restore_checkpoint
from rules.config import RuleSet
from rules.context import Contexts, DeviceContext
from rules.deadlines import Deadlines
from rules.device_state import DeviceStateRules
from rules.emit import Emitter, EngineStats
from rules.findings import Finding
from rules.state import Baseline, Bin, BuildingState, Wristband
from rules.wristband import MINUTE_MS, WristbandRules


class RuleEngine:
    """The rules over the devices this worker sees (DESIGN.md, scaling: never all of them).

    `feed` is the hot path (one reading, no I/O); `tick(now_ms)` judges what only the
    passing of time reveals. Both append findings to `pending`; the caller takes them.
    """

    def __init__(
        self,
        rules: RuleSet,
        clock: Callable[[], int],
        contexts: Mapping[str, DeviceContext] | None = None,
    ) -> None:
        self._clock = clock
        self._contexts = Contexts(rules, contexts)
        self._registered: set[str] = set(contexts or ())
        self.deadlines = Deadlines()
        self._out = Emitter(self.deadlines)
        self.stats: EngineStats = self._out.stats
        # The rule modules hold these very dicts: they are filled and emptied, never rebound.
        self.wristbands: dict[str, Wristband] = {}
        self.bins: dict[str, Bin] = {}
        self.buildings: dict[str, BuildingState] = {}
        self.baselines: dict[str, Baseline] = {}
        self._device = DeviceStateRules(self._contexts, self._out, clock, self.deadlines)
        self._baseline = BaselineRules(self._contexts, self._out, self.baselines)
        self._wristband = WristbandRules(
            self._contexts,
            self._out,
            clock,
            self.wristbands,
            self._device,
            self._baseline,
            self.deadlines,
        )
        self._bin = BinRules(self._contexts, self._out, self.bins, self.buildings, self._device)

    # -- configuration -----------------------------------------------------------

    @property
    def rules(self) -> RuleSet:
        """The rules in force."""
        return self._contexts.rules

    @property
    def pending(self) -> list[Finding]:
        """The findings produced since the last `take`, oldest first."""
        return self._out.pending

    def set_contexts(self, contexts: Mapping[str, DeviceContext]) -> None:
        """New registry context (and with it, limits); state is kept.

        Only the devices whose context changed are woken: a refresh that changed nothing
        costs the tick nothing.
        """
        old = self._contexts.devices
        self.deadlines.wake_all(d for d, ctx in contexts.items() if old.get(d) != ctx)
        # No longer registered: the default rules apply to them now.
        self.deadlines.wake_all(d for d in self._registered if d not in contexts)
        self._registered = set(contexts)
        self._contexts.replace(contexts)

    def set_rules(self, rules: RuleSet, contexts: Mapping[str, DeviceContext]) -> None:
        """Reload: new rules and the contexts built from them; every subject keeps its state.

        Only what a rule no longer watches goes: a threshold removed or disabled, NEWS2,
        wandering or baselines switched off. Their open findings clear (else nothing would
        ever clear them), their pending runs are dropped.
        """
        self._contexts.rules = rules
        self.set_contexts(contexts)
        self.deadlines.wake_all(self.wristbands)
        self.deadlines.wake_all(self.bins)
        now = self._clock()
        self._wristband.retire(now)
        self._baseline.retire(now)

    def context(self, device_id: str, kind: Kind) -> DeviceContext:
        """The device's context; a device nobody registered gets the default rules."""
        return self._contexts.of(device_id, kind)

    def take(self) -> list[Finding]:
        """The findings produced since the last call, oldest first."""
        out = self._out.pending
        self._out.pending = []
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
        # Straight to the rules of the reading's kind: no layer in between.
        if type(body) is WristbandTelemetry:
            st = self.wristbands.get(device_id)
            if st is None:
                st = self._new_wristband(device_id)
            self._wristband.telemetry(device_id, body, st)
        elif type(body) is BinTelemetry:
            bst = self.bins.get(device_id)
            if bst is None:
                bst = self._new_bin(device_id)
            self._bin.telemetry(device_id, body, bst)
        elif type(body) is WristbandEvent:
            st = self.wristbands.get(device_id) or self._new_wristband(device_id)
            self._wristband.event(device_id, body, st)
        elif type(body) is BinEvent:
            bst = self.bins.get(device_id) or self._new_bin(device_id)
            self._bin.event(device_id, body, bst)

    def _new_wristband(self, device_id: str) -> Wristband:
        st = self.wristbands[device_id] = Wristband()
        self.deadlines.wake(device_id)
        return st

    def _new_bin(self, device_id: str) -> Bin:
        bst = self.bins[device_id] = Bin()
        self.deadlines.wake(device_id)
        return bst

    def _status(self, item: StatusChange) -> None:
        device_id = item.device_id
        st: Wristband | Bin
        if item.kind is Kind.WRISTBAND:
            st = self.wristbands.get(device_id) or self._new_wristband(device_id)
        else:
            st = self.bins.get(device_id) or self._new_bin(device_id)
        self._device.status(item, st)

    # -- time --------------------------------------------------------------------

    def tick(self, now: int) -> None:
        """Judge what the passing of time reveals, as of clock time `now` (ms).

        Only the devices whose deadline has come or that were woken are visited
        (`rules.deadlines`); each leaves with its next deadline.
        """
        offset = self.rules.utc_offset_ms
        day_start = now - (now + offset) % DAY_MS
        minute = ((now + offset) % DAY_MS) // MINUTE_MS
        contexts = self._contexts.devices
        of = self._contexts.of
        silence = self._device.silence
        waking = self._wristband.tick
        deadlines = self.deadlines
        wristbands = self.wristbands
        bins = self.bins
        for device_id in deadlines.take(now):
            st = wristbands.get(device_id)
            if st is not None:
                ctx = contexts.get(device_id)
                if ctx is None or ctx.kind is not Kind.WRISTBAND:
                    ctx = of(device_id, Kind.WRISTBAND)
                if not silence(ctx, st, now, st.worn):
                    waking(ctx, st, now, day_start, minute)
                deadlines.set(device_id, self._wristband.deadline(ctx, st, now, day_start))
            bst = bins.get(device_id)
            if bst is not None:
                ctx = contexts.get(device_id)
                if ctx is None or ctx.kind is not Kind.BIN:
                    ctx = of(device_id, Kind.BIN)
                silence(ctx, bst, now, False)
                deadlines.set(device_id, self._device.deadline(ctx, bst, now))
        self._bin.tick(now)
        self._baseline.tick(now)

    # -- latched findings --------------------------------------------------------

    def resolve(self, device_id: str, rule: str, now: int) -> bool:
        """A person resolved a latched finding (fall, SOS): clear it. False if none was open.

        Other findings clear when their condition does; resolving one is refused (False).
        """
        st = self.wristbands.get(device_id)
        if rule not in LATCHED_RULES or st is None or st.runs is None or rule not in st.runs:
            return False
        self._out.clear(self.context(device_id, Kind.WRISTBAND), st, rule, now)
        return True

    def active(self) -> list[Finding]:
        """Every condition that holds now, as findings (for a dispatcher starting up)."""
        out = self._out
        stats = self.stats
        saved = out.pending
        counted = (stats.findings, dict(stats.by_rule))
        out.pending = []
        try:
            self._wristband.list_active()
            self._bin.list_active()
            self._baseline.list_active()
            return out.pending
        finally:
            out.pending = saved
            stats.findings, stats.by_rule = counted  # a listing, not new findings

    # -- checkpoints -------------------------------------------------------------

    def snapshot(self, journal_lsn: int = 0) -> bytes:
        """Every subject's state as a checkpoint (`restore` takes it back)."""
        return encode_checkpoint(
            Checkpoint(
                version=CHECKPOINT_VERSION,
                saved_ms=self._clock(),
                wristbands=self.wristbands,
                bins=self.bins,
                buildings=self.buildings,
                baselines=self.baselines,
                journal_lsn=journal_lsn,
            )
        )

    def restore(self, data: bytes) -> None:
        """Take the state of a checkpoint; silence is measured from the restore, not the save."""
        checkpoint = restore_checkpoint(data, self._clock())
        self.wristbands.clear()
        self.wristbands.update(checkpoint.wristbands)
        self.bins.clear()
        self.bins.update(checkpoint.bins)
        self.buildings.clear()
        self.buildings.update(checkpoint.buildings)
        self.baselines.clear()
        self.baselines.update(checkpoint.baselines)
        self._baseline.forget_history()
        self.deadlines.clear()
        self.deadlines.wake_all(self.wristbands)
        self.deadlines.wake_all(self.bins)
