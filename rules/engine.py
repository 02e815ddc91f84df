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
        self._out = Emitter()
        self.stats: EngineStats = self._out.stats
        # The rule modules hold these very dicts: they are filled and emptied, never rebound.
        self.wristbands: dict[str, Wristband] = {}
        self.bins: dict[str, Bin] = {}
        self.buildings: dict[str, BuildingState] = {}
        self.baselines: dict[str, Baseline] = {}
        self._device = DeviceStateRules(self._contexts, self._out, clock)
        self._baseline = BaselineRules(self._contexts, self._out, self.baselines)
        self._wristband = WristbandRules(
            self._contexts, self._out, clock, self.wristbands, self._device, self._baseline
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
        """New registry context (and with it, limits); state is kept."""
        self._contexts.replace(contexts)

    def set_rules(self, rules: RuleSet, contexts: Mapping[str, DeviceContext]) -> None:
        """Reload: new rules and the contexts built from them; every subject keeps its state.

        Only what a rule no longer watches goes: a threshold removed or disabled, NEWS2,
        wandering or baselines switched off. Their open findings clear (else nothing would
        ever clear them), their pending runs are dropped.
        """
        self._contexts.rules = rules
        self.set_contexts(contexts)
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
                st = self.wristbands[device_id] = Wristband()
            self._wristband.telemetry(device_id, body, st)
        elif type(body) is BinTelemetry:
            bst = self.bins.get(device_id)
            if bst is None:
                bst = self.bins[device_id] = Bin()
            self._bin.telemetry(device_id, body, bst)
        elif type(body) is WristbandEvent:
            st = self.wristbands.get(device_id)
            if st is None:
                st = self.wristbands[device_id] = Wristband()
            self._wristband.event(device_id, body, st)
        elif type(body) is BinEvent:
            bst = self.bins.get(device_id)
            if bst is None:
                bst = self.bins[device_id] = Bin()
            self._bin.event(device_id, body, bst)

    def _status(self, item: StatusChange) -> None:
        device_id = item.device_id
        st: Wristband | Bin
        if item.kind is Kind.WRISTBAND:
            st = self.wristbands.get(device_id) or self.wristbands.setdefault(
                device_id, Wristband()
            )
        else:
            st = self.bins.get(device_id) or self.bins.setdefault(device_id, Bin())
        self._device.status(item, st)

    # -- time --------------------------------------------------------------------

    def tick(self, now: int) -> None:
        """Judge what the passing of time reveals, as of clock time `now` (ms)."""
        offset = self.rules.utc_offset_ms
        day_start = now - (now + offset) % DAY_MS
        minute = ((now + offset) % DAY_MS) // MINUTE_MS
        # Every device on every tick, so the context lookup is spelled out here.
        contexts = self._contexts.devices
        of = self._contexts.of
        silence = self._device.silence
        waking = self._wristband.tick
        for device_id, st in self.wristbands.items():
            ctx = contexts.get(device_id)
            if ctx is None or ctx.kind is not Kind.WRISTBAND:
                ctx = of(device_id, Kind.WRISTBAND)
            if not silence(ctx, st, now, st.worn):
                waking(ctx, st, now, day_start, minute)
        for device_id, bst in self.bins.items():
            ctx = contexts.get(device_id)
            if ctx is None or ctx.kind is not Kind.BIN:
                ctx = of(device_id, Kind.BIN)
            silence(ctx, bst, now, False)
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
