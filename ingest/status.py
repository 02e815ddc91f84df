"""What the ingester knows of each device: online or not, last seen, battery, worn."""

from __future__ import annotations

from dataclasses import dataclass

from devices.models import (
    BinTelemetry,
    Kind,
    Reading,
    StatusChange,
    WristbandEvent,
    WristbandTelemetry,
)


@dataclass(slots=True)
class DeviceState:
    kind: Kind
    online: bool | None = None  # None until the device's status topic says
    status_since_ms: int | None = None
    last_seen_ms: int = 0
    battery: float | None = None
    worn: bool | None = None
    messages: int = 0


class DeviceStatusBook:
    """Per-device state kept by the ingest loop; only this worker's devices (DESIGN: scaling)."""

    def __init__(self) -> None:
        self.devices: dict[str, DeviceState] = {}
        self.online = 0

    def _state(self, device_id: str, kind: Kind) -> DeviceState:
        state = self.devices.get(device_id)
        if state is None:
            state = self.devices[device_id] = DeviceState(kind)
        return state

    def seen(self, reading: Reading, now_ms: int) -> None:
        state = self._state(reading.device_id, reading.kind)
        state.last_seen_ms = now_ms
        state.messages += 1
        body = reading.body
        if isinstance(body, WristbandTelemetry):
            if body.battery is not None:
                state.battery = body.battery
            if body.worn is not None:
                state.worn = body.worn
        elif isinstance(body, BinTelemetry):
            if body.battery is not None:
                state.battery = body.battery
        elif isinstance(body, WristbandEvent):
            if body.type == "off_wrist":
                state.worn = False
            elif body.type == "on_wrist":
                state.worn = True

    def status(self, change: StatusChange) -> None:
        state = self._state(change.device_id, change.kind)
        if state.online is not change.online:
            self.online += (1 if change.online else 0) - (1 if state.online else 0)
        state.online = change.online
        state.status_since_ms = change.received_ms
