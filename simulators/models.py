"""Dataclasses shared by the simulators: fleet config, devices, incidents, messages, reports."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from core.durations import format_duration
from protocol.models import Category, Channel, Kind

DEFAULT_SECRET: Final = "carewatch-dev-secret"
SECRET_ENV: Final = "CAREWATCH_DEVICE_SECRET"


def default_secret() -> str:
    """The device secret from the environment, else the development default."""
    return os.environ.get(SECRET_ENV) or DEFAULT_SECRET


class Scenario(StrEnum):
    """What an incident does to a device; see scenarios.SCENARIOS for the rules."""

    FALL = "fall"
    SOS = "sos"
    TACHYCARDIA = "tachycardia"
    SPO2_DROP = "spo2_drop"
    NO_MOVEMENT = "no_movement"
    OFF_WRIST = "off_wrist"
    LOW_BATTERY = "low_battery"
    SILENT = "silent"
    BIN_OVERFLOW = "bin_overflow"
    SORTING_ERRORS = "sorting_errors"
    BIN_FIRE = "bin_fire"


@dataclass(frozen=True, slots=True)
class Incident:
    """One scripted incident: a scenario on one device from `start` to `end` (seconds)."""

    scenario: Scenario
    device_id: str
    start: float
    end: float | None = None  # None: instantaneous (fall, sos) or until the run stops

    def active(self, elapsed: float) -> bool:
        """Whether a windowed incident covers this offset from the simulation start."""
        return self.start <= elapsed and (self.end is None or elapsed < self.end)

    def window_ms(self, start_ms: int) -> tuple[int, int | None]:
        """The incident's wall-clock window (ms) for a run that started at start_ms."""
        end = None if self.end is None else start_ms + round(self.end * 1000)
        return start_ms + round(self.start * 1000), end

    @property
    def spec(self) -> str:
        """The CLI text for this incident, e.g. `tachycardia@w0001+2m-10m`."""
        text = f"{self.scenario.value}@{self.device_id}+{format_duration(self.start)}"
        return text if self.end is None else f"{text}-{format_duration(self.end)}"


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One row of the fleet manifest CSV, the registry context the ingester tags points with."""

    device_id: str
    kind: Kind
    grid: str
    building: str
    category: Category | None = None


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """A simulated device: its manifest row plus what only the simulator needs."""

    entry: ManifestEntry
    name: str  # the id without the run prefix: seeds the RNG, so prefixes do not change data
    home_lat: float
    home_lon: float

    @property
    def device_id(self) -> str:
        """The full device id (with the run prefix)."""
        return self.entry.device_id

    @property
    def kind(self) -> Kind:
        """Wristband or bin."""
        return self.entry.kind


@dataclass(frozen=True, slots=True)
class FleetConfig:
    """Everything that shapes a simulated fleet; same config and seed, same payloads."""

    wristbands: int = 50
    bins: int = 10
    interval: float = 10.0  # seconds between telemetry messages of one device
    seed: int = 1
    prefix: str = ""
    secret: str = DEFAULT_SECRET
    incidents: tuple[Incident, ...] = ()
    sorting_error_rate: float = 0.1
    duration: float | None = None  # seconds; None runs until stopped
    shared_account: bool = False
    connections: int = 4  # shared connections in --shared-account and --load modes
    location: bool = True  # wristbands report lat/lon near home
    deposit_rate: float = 1.0  # multiplies the daily deposit curve of each bin
    connect_concurrency: int = 64  # connection attempts in flight at most
    connect_rate: float = 400.0  # new connections started per second at most (stagger)
    max_inflight: int = 1000  # QoS 1 messages awaiting PUBACK per shared connection
    outbox_limit: int = 10_000  # messages a device buffers while disconnected
    publish_timeout: float = 10.0  # seconds to wait for a PUBACK before reconnecting
    progress_interval: float = 5.0


@dataclass(frozen=True, slots=True)
class Message:
    """One payload a device publishes, with what tests need to check it without decoding."""

    device_id: str
    kind: Kind
    channel: Channel
    topic: str
    payload: bytes
    ts: int
    seq: int


@dataclass(slots=True)
class DeviceCounts:
    """Per-device counts: `acked` messages are on the broker, so the ingester must store them."""

    device_id: str
    kind: Kind
    generated: int = 0  # telemetry and events made by the simulator (status excluded)
    published: int = 0  # handed to the MQTT client at least once
    acked: int = 0  # PUBACK received
    telemetry_acked: int = 0
    event_acked: int = 0
    dropped: int = 0  # outbox overflow while disconnected: never published
    connects: int = 0
    last_acked_seq: int | None = None


@dataclass(slots=True)
class FleetProgress:
    """A snapshot printed every few seconds."""

    elapsed: float
    published: int
    acked: int
    connected: int
    devices: int
    rate: float  # acked messages per second since the previous snapshot


@dataclass(slots=True)
class FleetReport:
    """What a run did; integration tests compare `acked` per device with what was stored."""

    start_ms: int
    end_ms: int
    devices: dict[str, DeviceCounts]
    incidents: tuple[Incident, ...]
    all_connected_after: float | None = None  # seconds until every device was connected once
    peak_connected: int = 0
    # ts of the first and last message each incident shaped (silent incidents shape none).
    effects: dict[Incident, tuple[int, int]] = field(default_factory=dict)

    @property
    def published(self) -> int:
        """Messages of every device handed to the client."""
        return sum(d.published for d in self.devices.values())

    @property
    def acked(self) -> int:
        """Messages of every device the broker acknowledged."""
        return sum(d.acked for d in self.devices.values())

    @property
    def generated(self) -> int:
        """Messages every device generated."""
        return sum(d.generated for d in self.devices.values())


@dataclass(slots=True)
class LoadReport:
    """Throughput of a load run."""

    published: int
    acked: int
    seconds: float
    connections: int
    per_device_acked: dict[str, int] = field(default_factory=dict)
    reconnects: int = 0
    refused: int = 0  # PUBACKs with a failure reason code (MQTT 5): not on the broker

    @property
    def publish_rate(self) -> float:
        """Messages published per second."""
        return self.published / self.seconds if self.seconds > 0 else 0.0

    @property
    def ack_rate(self) -> float:
        """Messages acknowledged per second."""
        return self.acked / self.seconds if self.seconds > 0 else 0.0
