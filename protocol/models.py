"""Protocol v1 payloads as frozen msgspec Structs, with their physical ranges.

Parse once at the edge (`protocol.decode`); nothing past `ingest/` sees raw bytes.
Unknown fields are ignored so newer firmware can add readings; a known field of
the wrong type or outside its range rejects the whole message.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Final, Literal

import msgspec
from msgspec import Meta

# Physical ranges: what a working sensor on a living person (or a bin) can report.
Ts = Annotated[int, Meta(ge=0)]
Seq = Annotated[int, Meta(ge=0)]
HeartRate = Annotated[float, Meta(ge=20, le=250)]
SpO2 = Annotated[float, Meta(ge=50, le=100)]
Systolic = Annotated[float, Meta(ge=50, le=260)]
Diastolic = Annotated[float, Meta(ge=30, le=160)]
BodyTemp = Annotated[float, Meta(ge=30, le=45)]
Steps = Annotated[int, Meta(ge=0, le=10_000_000)]
Percent = Annotated[float, Meta(ge=0, le=100)]
Latitude = Annotated[float, Meta(ge=-90, le=90)]
Longitude = Annotated[float, Meta(ge=-180, le=180)]
Confidence = Annotated[float, Meta(ge=0, le=1)]
BinWeight = Annotated[float, Meta(ge=0, le=500)]
BinTemp = Annotated[float, Meta(ge=-40, le=150)]
DepositWeight = Annotated[float, Meta(ge=0, le=50_000)]


class Kind(StrEnum):
    WRISTBAND = "wristband"
    BIN = "bin"


class Channel(StrEnum):
    TELEMETRY = "telemetry"
    EVENT = "event"
    STATUS = "status"


class Category(StrEnum):
    """A bin compartment, and what a bin's sensor saw in a deposit."""

    KITCHEN = "kitchen"
    RECYCLABLE = "recyclable"
    HAZARDOUS = "hazardous"
    OTHER = "other"


WristbandEventType = Literal["fall", "sos", "off_wrist", "on_wrist", "power_off"]
BinEventType = Literal["deposit", "lid_jam", "tilt"]
DetectedCategory = Literal["kitchen", "recyclable", "hazardous", "other"]

_STRUCT = {"frozen": True, "gc": False, "omit_defaults": True}


class WristbandTelemetry(msgspec.Struct, **_STRUCT):
    ts: Ts
    seq: Seq | None = None
    hr: HeartRate | None = None
    spo2: SpO2 | None = None
    sbp: Systolic | None = None
    dbp: Diastolic | None = None
    temp: BodyTemp | None = None
    steps: Steps | None = None
    battery: Percent | None = None
    worn: bool | None = None
    lat: Latitude | None = None
    lon: Longitude | None = None


class WristbandEvent(msgspec.Struct, **_STRUCT):
    ts: Ts
    type: WristbandEventType
    seq: Seq | None = None
    confidence: Confidence | None = None
    lat: Latitude | None = None
    lon: Longitude | None = None


class BinTelemetry(msgspec.Struct, **_STRUCT):
    ts: Ts
    seq: Seq | None = None
    fill: Percent | None = None
    weight: BinWeight | None = None
    temp: BinTemp | None = None
    battery: Percent | None = None
    lid_open: bool | None = None


class BinEvent(msgspec.Struct, **_STRUCT):
    ts: Ts
    type: BinEventType
    seq: Seq | None = None
    detected: DetectedCategory | None = None
    weight_g: DepositWeight | None = None


Body = WristbandTelemetry | WristbandEvent | BinTelemetry | BinEvent

# The readings of each telemetry kind (everything but ts and seq), in sorted order.
READING_FIELDS: Final[dict[type[Body], tuple[str, ...]]] = {
    cls: tuple(sorted(f for f in cls.__struct_fields__ if f not in ("ts", "seq")))
    for cls in (WristbandTelemetry, WristbandEvent, BinTelemetry, BinEvent)
}


class Reading(msgspec.Struct, frozen=True, gc=False):
    """One valid message from one device: what the ingester writes and the rules read."""

    device_id: str
    kind: Kind
    body: Body


class StatusChange(msgspec.Struct, frozen=True, gc=False):
    """A device's retained `online` / `offline` (its last will) on the status channel."""

    device_id: str
    kind: Kind
    online: bool
    received_ms: int


class Rejection(msgspec.Struct, frozen=True, gc=False):
    """Why a message was refused: `reason` is a stable counter label, `detail` for people."""

    reason: str
    detail: str
    device_id: str | None = None


# Stable rejection reasons (metric labels, dead-letter `reason`); see docs/protocol.md.
REJECT_REASONS: Final = (
    "bad_topic",
    "unknown_kind",
    "unknown_channel",
    "oversized",
    "bad_json",
    "invalid",
    "out_of_range",
    "ts_future",
    "ts_too_old",
    "no_reading",
    "bad_status",
)
