"""Readings as InfluxDB points (schema: docs/protocol.md), with each device's registry tags."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from core.lineprotocol import field_string, fields_of, tag_string
from devices.directory import DeviceInfo
from protocol.models import (
    READING_FIELDS,
    BinEvent,
    BinTelemetry,
    Reading,
    WristbandEvent,
    WristbandTelemetry,
)

_VITALS: Final = READING_FIELDS[WristbandTelemetry]
_BIN: Final = READING_FIELDS[BinTelemetry]
_WB_EVENT: Final = tuple(sorted(("confidence", "count", "lat", "lon")))


class DeviceTags:
    """Registry context of one device, escaped once: what each of its points carries."""

    __slots__ = ("building", "category", "grid", "vitals", "wristband_event_prefix")

    def __init__(
        self,
        device_id: str,
        *,
        grid: str | None = None,
        building: str | None = None,
        category: str | None = None,
    ) -> None:
        self.grid = grid
        self.building = building
        self.category = category
        self.vitals = "vitals" + tag_string({"device_id": device_id, "grid": grid})
        self.wristband_event_prefix = "wristband_event" + tag_string({"device_id": device_id})


class LineEncoder:
    """Encodes readings; holds the per-device tag strings, built once per device."""

    def __init__(self, context: Mapping[str, DeviceTags] | None = None) -> None:
        self._context: dict[str, DeviceTags] = dict(context or {})

    @classmethod
    def from_devices(cls, devices: Mapping[str, DeviceInfo]) -> LineEncoder:
        """An encoder with the registry tags of each device in the directory."""
        return cls(
            {
                d.device_id: DeviceTags(
                    d.device_id,
                    grid=d.grid,
                    building=d.building,
                    category=d.category.value if d.category else None,
                )
                for d in devices.values()
            }
        )

    def set_context(self, device_id: str, tags: DeviceTags) -> None:
        """Set (or replace) the tags of one device's points."""
        self._context[device_id] = tags

    def _tags(self, device_id: str) -> DeviceTags:
        tags = self._context.get(device_id)
        if tags is None:
            tags = self._context[device_id] = DeviceTags(device_id)
        return tags

    def encode(self, reading: Reading) -> str:
        """One line of line protocol, timestamp in milliseconds."""
        body = reading.body
        ctx = self._tags(reading.device_id)
        if isinstance(body, WristbandTelemetry):
            return f"{ctx.vitals} {fields_of(body, _VITALS)} {body.ts}"
        if isinstance(body, BinTelemetry):
            tags = tag_string(
                {"device_id": reading.device_id, "building": ctx.building, "category": ctx.category}
            )
            return f"bin{tags} {fields_of(body, _BIN)} {body.ts}"
        if isinstance(body, WristbandEvent):
            fields = field_string(
                {"count": 1, "confidence": body.confidence, "lat": body.lat, "lon": body.lon}
            )
            return f"{ctx.wristband_event_prefix},type={body.type} {fields} {body.ts}"
        return self._bin_event(reading.device_id, body, ctx)

    @staticmethod
    def _bin_event(device_id: str, body: BinEvent, ctx: DeviceTags) -> str:
        if body.type == "deposit":
            tags = tag_string(
                {
                    "device_id": device_id,
                    "building": ctx.building,
                    "category": ctx.category,
                    "detected": body.detected,
                }
            )
            correct = None if ctx.category is None else body.detected == ctx.category
            # `count` keeps the point valid when neither `correct` nor `weight_g` is known.
            fields = field_string({"correct": correct, "count": 1, "weight_g": body.weight_g})
            return f"bin_deposit{tags} {fields} {body.ts}"
        tags = tag_string({"device_id": device_id, "building": ctx.building, "type": body.type})
        return f"bin_event{tags} count=1i {body.ts}"
