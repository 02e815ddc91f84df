"""One simulated device as a pure, deterministic generator of (topic, payload) messages.

How readings and ts are made: simulators/README.md, "Devices".
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Final

import msgspec

from protocol.models import Category, Channel, Kind
from protocol.topics import device_topic
from simulators import scenarios
from simulators.manifest import CATEGORIES, build_fleet, rng_for
from simulators.models import DeviceSpec, FleetConfig, Incident, Message, Scenario
from simulators.signals import BinSignals, Fields, WristbandSignals

_EPS: Final = 1e-9
_OVERFLOW_RAMP_S: Final = 300.0  # an overflowing bin reaches 100 % within five minutes
_FIRE_START_C: Final = 62.0
_FIRE_RISE_C_PER_MIN: Final = 3.0
_LOW_BATTERY_START: Final = 18.0
_LOW_BATTERY_DRAIN_PER_MIN: Final = 0.5
_encode = msgspec.json.Encoder().encode

# Instant actions scheduled by incidents, in the order they run when simultaneous.
_FALL, _SOS, _OFF, _ON, _EMPTY, _CHARGED = range(6)


class DeviceSimulator:
    """The readings and events of one device; call `advance` at or after `next_due()`."""

    def __init__(
        self,
        device: DeviceSpec,
        config: FleetConfig,
        start_ms: int,
        incidents: Iterable[Incident] = (),
    ) -> None:
        self.device = device
        self.device_id = device.device_id
        self.kind = device.kind
        self.start_ms = start_ms
        self._config = config
        self._rng = rng_for(config.seed, device.name)
        self._incidents = tuple(i for i in incidents if i.device_id == device.device_id)
        self._windows = tuple(
            i for i in self._incidents if not scenarios.SCENARIOS[i.scenario].instant
        )
        self._topics = {
            ch: device_topic(self.kind, self.device_id, ch)
            for ch in (Channel.TELEMETRY, Channel.EVENT)
        }
        self.seq = 0
        self.last_ts = -1
        # Devices of a fleet start at random phases, so their traffic spreads evenly.
        self._next_tick = self._rng.uniform(0, config.interval)
        self._marks: list[tuple[float, int, Incident]] = []
        for incident in self._incidents:
            self._schedule_marks(incident)
        heapq.heapify(self._marks)
        self.effects: dict[Incident, tuple[int, int]] = {}
        self._overflow_from: dict[Incident, float] = {}
        self._wristband: WristbandSignals | None = None
        self._bin: BinSignals | None = None
        self._category = device.entry.category or Category.OTHER
        self._next_deposit = math.inf
        self._next_burst = math.inf
        if self.kind is Kind.WRISTBAND:
            self._wristband = WristbandSignals(
                self._rng, device.home_lat, device.home_lon, start_ms
            )
        else:
            self._bin = BinSignals(self._rng, self._category, start_ms)
            self._schedule_deposit(start_ms)
            self._next_burst = self._burst_after(-math.inf)

    def _schedule_marks(self, incident: Incident) -> None:
        scenario = incident.scenario
        if scenario is Scenario.FALL:
            self._marks.append((incident.start, _FALL, incident))
        elif scenario is Scenario.SOS:
            self._marks.append((incident.start, _SOS, incident))
        elif scenario is Scenario.OFF_WRIST:
            self._marks.append((incident.start, _OFF, incident))
            if incident.end is not None:
                self._marks.append((incident.end, _ON, incident))
        elif scenario is Scenario.BIN_OVERFLOW and incident.end is not None:
            self._marks.append((incident.end, _EMPTY, incident))
        elif scenario is Scenario.LOW_BATTERY and incident.end is not None:
            self._marks.append((incident.end, _CHARGED, incident))

    # Scheduling

    def next_due(self) -> float:
        """Seconds after the simulation start when this device next has something to emit."""
        mark = self._marks[0][0] if self._marks else math.inf
        return min(self._next_tick, mark, self._next_deposit, self._next_burst)

    def silent_window(self, elapsed: float) -> tuple[float, float | None] | None:
        """The `silent` incident covering this offset, as (start, end), if any."""
        for incident in self._windows:
            if incident.scenario is Scenario.SILENT and incident.active(elapsed):
                return incident.start, incident.end
        return None

    def advance(self, elapsed: float, now_ms: int) -> list[Message]:
        """Everything due up to `elapsed` s after the start, stamped no earlier than now_ms."""
        out: list[Message] = []
        while True:
            due = self.next_due()
            if due > elapsed + _EPS:
                return out
            if self._marks and self._marks[0][0] <= due:
                _, action, incident = heapq.heappop(self._marks)
                self._mark(action, incident, due, now_ms, out)
            elif self._next_deposit <= due:
                self._deposit(due, now_ms, out, burst=False)
            elif self._next_burst <= due:
                self._deposit(due, now_ms, out, burst=True)
                self._next_burst = self._burst_after(due)
            else:
                self._next_tick += self._config.interval
                message = self.telemetry(due, now_ms)
                if message is not None:
                    out.append(message)

    def _sim_ms(self, elapsed: float) -> int:
        return self.start_ms + round(elapsed * 1000)

    def _active(self, elapsed: float) -> set[Scenario]:
        return {i.scenario for i in self._windows if i.active(elapsed)}

    def _silent(self, elapsed: float) -> bool:
        return self.silent_window(elapsed) is not None

    # Emitting

    def _emit(self, channel: Channel, fields: Fields, now_ms: int, *touched: Incident) -> Message:
        ts = max(now_ms, self.last_ts + 1)
        self.last_ts = ts
        seq = self.seq
        self.seq += 1
        payload = _encode({"ts": ts, "seq": seq, **fields})
        for incident in touched:
            first, _ = self.effects.get(incident, (ts, ts))
            self.effects[incident] = (first, ts)
        return Message(self.device_id, self.kind, channel, self._topics[channel], payload, ts, seq)

    def _mark(
        self, action: int, incident: Incident, due: float, now_ms: int, out: list[Message]
    ) -> None:
        t_ms = self._sim_ms(due)
        if action == _EMPTY and self._bin is not None:
            self._bin.empty()
            return
        if action == _CHARGED:
            if self._wristband is not None:
                self._wristband.battery = 100.0
            if self._bin is not None:
                self._bin.battery = 100.0
            return
        if self._silent(due) or self._wristband is None:
            return
        fields: Fields
        if action == _FALL:
            fields = {"type": "fall", "confidence": round(self._rng.uniform(0.82, 0.99), 2)}
        elif action == _SOS:
            fields = {"type": "sos"}
        else:
            fields = {"type": "off_wrist" if action == _OFF else "on_wrist"}
        if action in (_FALL, _SOS) and self._config.location:
            fields["lat"], fields["lon"] = self._wristband.position(t_ms)
        out.append(self._emit(Channel.EVENT, fields, now_ms, incident))

    def _schedule_deposit(self, after_ms: int) -> None:
        assert self._bin is not None
        at = self._bin.next_deposit_after(after_ms, self._config.deposit_rate)
        self._next_deposit = math.inf if at is None else (at - self.start_ms) / 1000

    def _burst_after(self, elapsed: float) -> float:
        """The next deposit of a sorting-error burst strictly after `elapsed` (one per interval)."""
        best = math.inf
        for incident in self._windows:
            if incident.scenario is not Scenario.SORTING_ERRORS:
                continue
            at = incident.start if elapsed < incident.start else elapsed + self._config.interval
            if incident.active(at):
                best = min(best, at)
        return best

    def _deposit(self, due: float, now_ms: int, out: list[Message], *, burst: bool) -> None:
        assert self._bin is not None
        t_ms = self._sim_ms(due)
        if not burst:
            self._schedule_deposit(t_ms)
        active = self._active(due)
        self._bin.collect(t_ms, allowed=Scenario.BIN_OVERFLOW not in active)
        wrong = burst or self._rng.random() < self._config.sorting_error_rate
        detected = self._category
        if wrong:
            detected = self._rng.choice([c for c in CATEGORIES if c is not self._category])
        weight_g = self._bin.deposit_weight_g(detected)
        self._bin.add(t_ms, weight_g)
        if Scenario.SILENT in active:
            return
        fields: Fields = {
            "type": "deposit",
            "detected": detected.value,
            "weight_g": round(weight_g),
        }
        touched = [
            i for i in self._windows if i.scenario is Scenario.SORTING_ERRORS and i.active(due)
        ]
        out.append(self._emit(Channel.EVENT, fields, now_ms, *(touched if burst else ())))

    def telemetry(self, elapsed: float, now_ms: int) -> Message | None:
        """A telemetry message for this offset (None while silent); load mode calls it directly."""
        active = self._active(elapsed)
        if Scenario.SILENT in active:
            # Time passes for the sensors even when nothing is sent.
            if self._wristband is not None:
                self._wristband.sample(self._sim_ms(elapsed))
            elif self._bin is not None:
                self._bin.sample(self._sim_ms(elapsed))
            return None
        touched = [i for i in self._windows if i.active(elapsed)]
        if self._wristband is not None:
            fields = self._wristband_fields(elapsed, active)
        else:
            fields = self._bin_fields(elapsed, active)
        return self._emit(Channel.TELEMETRY, fields, now_ms, *touched)

    def _low_battery(self, elapsed: float, battery: float) -> float:
        for incident in self._windows:
            if incident.scenario is Scenario.LOW_BATTERY and incident.active(elapsed):
                drained = _LOW_BATTERY_DRAIN_PER_MIN * (elapsed - incident.start) / 60
                return max(1.0, min(battery, _LOW_BATTERY_START - drained))
        return battery

    def _wristband_fields(self, elapsed: float, active: set[Scenario]) -> Fields:
        signals = self._wristband
        assert signals is not None
        t_ms = self._sim_ms(elapsed)
        off = Scenario.OFF_WRIST in active
        fields = signals.sample(t_ms, moving=not (off or Scenario.NO_MOVEMENT in active))
        if Scenario.LOW_BATTERY in active:
            signals.battery = self._low_battery(elapsed, signals.battery)
            fields["battery"] = round(signals.battery)
        if off:
            # Off the wrist the sensors read nothing: only the band's own state is sent.
            return {"battery": fields["battery"], "worn": False}
        if Scenario.TACHYCARDIA in active:
            fields["hr"] = self._rng.randint(130, 160)
        if Scenario.SPO2_DROP in active:
            fields["spo2"] = self._rng.randint(82, 88)
        if self._config.location:
            fields["lat"], fields["lon"] = signals.position(t_ms)
        return fields

    def _bin_fields(self, elapsed: float, active: set[Scenario]) -> Fields:
        signals = self._bin
        assert signals is not None
        t_ms = self._sim_ms(elapsed)
        overflow = [i for i in self._windows if i.scenario is Scenario.BIN_OVERFLOW]
        signals.collect(t_ms, allowed=Scenario.BIN_OVERFLOW not in active)
        for incident in overflow:
            if incident.active(elapsed):
                start_fill = self._overflow_from.setdefault(incident, signals.fill)
                span = _OVERFLOW_RAMP_S
                if incident.end is not None:
                    span = min(span, (incident.end - incident.start) / 2)
                progress = min(1.0, (elapsed - incident.start) / span) if span > 0 else 1.0
                signals.set_fill(start_fill + (100 - start_fill) * progress)
        fields = signals.sample(t_ms)
        for incident in self._windows:
            if incident.scenario is Scenario.BIN_FIRE and incident.active(elapsed):
                minutes = (elapsed - incident.start) / 60
                fields["temp"] = round(
                    min(140.0, _FIRE_START_C + _FIRE_RISE_C_PER_MIN * minutes), 1
                )
        if Scenario.LOW_BATTERY in active:
            signals.battery = self._low_battery(elapsed, signals.battery)
            fields["battery"] = round(signals.battery)
        return fields


def build_simulators(
    config: FleetConfig, start_ms: int, devices: Sequence[DeviceSpec] | None = None
) -> tuple[list[DeviceSimulator], tuple[Incident, ...]]:
    """One simulator per fleet device, and the incidents resolved to full device ids."""
    devices = build_fleet(config) if devices is None else devices
    incidents = scenarios.resolve(config.incidents, devices)
    return [DeviceSimulator(d, config, start_ms, incidents) for d in devices], incidents


def simulate(
    config: FleetConfig, *, start_ms: int, duration: float | None = None
) -> Iterator[Message]:
    """Every message of the fleet in time order, offline: ts is the simulated time itself.

    Runs for `duration` seconds (default: config.duration; forever if both are None).
    """
    until = config.duration if duration is None else duration
    sims, _ = build_simulators(config, start_ms)
    queue = [(sim.next_due(), index) for index, sim in enumerate(sims)]
    heapq.heapify(queue)
    while queue:
        due, index = heapq.heappop(queue)
        if math.isinf(due) or (until is not None and due > until):
            continue
        sim = sims[index]
        yield from sim.advance(due, start_ms + math.ceil(due * 1000))
        heapq.heappush(queue, (sim.next_due(), index))


def iter_payloads(
    config: FleetConfig, *, start_ms: int, duration: float | None = None
) -> Iterator[tuple[str, bytes]]:
    """(topic, payload) pairs of `simulate`, the shape an MQTT consumer or a benchmark wants."""
    for message in simulate(config, start_ms=start_ms, duration=duration):
        yield message.topic, message.payload
