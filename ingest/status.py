"""What the ingester knows of each device: online or not, last seen, battery, worn, last reading.

The book is updated on the hot path, so it only assigns fields and remembers
which devices changed (`dirty`); `ingest.statesync` turns that into database
rows every few seconds, off the hot path.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.models import (
    BinTelemetry,
    Kind,
    Reading,
    StatusChange,
    WristbandEvent,
    WristbandTelemetry,
)

Telemetry = WristbandTelemetry | BinTelemetry


@dataclass(slots=True)
class DeviceStatus:
    """One device as the ingester last saw it (its row in the registry: `device_state`)."""

    kind: Kind
    online: bool | None = None  # None until the device's status topic says
    status_since_ms: int | None = None
    last_seen_ms: int = 0  # 0: no reading yet (only a status message)
    battery: float | None = None
    worn: bool | None = None
    messages: int = 0
    # The newest telemetry body by device ts, kept as the (frozen) Struct itself: it
    # becomes a dict only when synced to the database (`ingest.statesync`).
    last_telemetry: Telemetry | None = None


class DeviceStatusBook:
    """Per-device state kept by the ingest loop; only this worker's devices (DESIGN: scaling)."""

    def __init__(self) -> None:
        self.devices: dict[str, DeviceStatus] = {}
        self.online = 0
        # Devices changed since the last `take_dirty()`: what the state sync writes next.
        self.dirty: set[str] = set()

    def _state(self, device_id: str, kind: Kind) -> DeviceStatus:
        state = self.devices.get(device_id)
        if state is None:
            state = self.devices[device_id] = DeviceStatus(kind)
        return state

    def seen(self, reading: Reading, now_ms: int) -> None:
        """A valid reading from the device at `now_ms`: last seen, battery, worn, last telemetry."""
        # The hot path: one dict lookup, a few assignments, one set add.
        device_id = reading.device_id
        state = self.devices.get(device_id)
        if state is None:
            state = self.devices[device_id] = DeviceStatus(reading.kind)
        state.last_seen_ms = now_ms
        state.messages += 1
        self.dirty.add(device_id)
        body = reading.body
        # Decoded bodies are exact Struct types (never subclasses): `type() is` is cheaper
        # than an isinstance chain.
        if type(body) is WristbandTelemetry:
            if body.battery is not None:
                state.battery = body.battery
            if body.worn is not None:
                state.worn = body.worn
            last = state.last_telemetry
            if last is None or body.ts >= last.ts:  # a late message is no newer reading
                state.last_telemetry = body
        elif type(body) is BinTelemetry:
            if body.battery is not None:
                state.battery = body.battery
            last = state.last_telemetry
            if last is None or body.ts >= last.ts:
                state.last_telemetry = body
        elif type(body) is WristbandEvent:
            if body.type == "off_wrist":
                state.worn = False
            elif body.type == "on_wrist":
                state.worn = True

    def status(self, change: StatusChange) -> None:
        """The device's retained status changed (online, or offline by its last will)."""
        state = self._state(change.device_id, change.kind)
        if state.online is not change.online:
            self.online += (1 if change.online else 0) - (1 if state.online else 0)
        state.online = change.online
        state.status_since_ms = change.received_ms
        self.dirty.add(change.device_id)

    def take_dirty(self) -> set[str]:
        """The devices changed since the last call; from now on changes collect in a new set."""
        dirty = self.dirty
        self.dirty = set()
        return dirty

    def restore_dirty(self, device_ids: set[str]) -> None:
        """Mark devices changed again (a sync that failed gives back what it took)."""
        self.dirty |= device_ids
