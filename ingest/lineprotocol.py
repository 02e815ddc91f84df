"""InfluxDB line protocol for readings, the schema of DESIGN.md.

Encoded by hand because it is per message: the output is byte-equal to
influxdb-client's `Point.to_line_protocol()` (tests/unit/test_lineprotocol.py
proves it over generated inputs), about five times faster. Numbers are written
as floats except counters (`steps`, `count`) so a field never changes type
between points, which InfluxDB would refuse as a field type conflict.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from devices.directory import DeviceInfo
from devices.models import (
    READING_FIELDS,
    BinEvent,
    BinTelemetry,
    Reading,
    WristbandEvent,
    WristbandTelemetry,
)

_KEY_ESCAPES: Final = str.maketrans(
    {",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"}
)
_MEASUREMENT_ESCAPES: Final = str.maketrans(
    {",": r"\,", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"}
)
_INT_FIELDS: Final = frozenset({"steps", "count"})


def escape_key(value: str) -> str:
    """Escape a tag key, tag value or field key."""
    return value.translate(_KEY_ESCAPES)


def escape_tag_value(value: str) -> str:
    escaped = value.translate(_KEY_ESCAPES)
    # A trailing backslash would escape the separator after it.
    return escaped + " " if escaped.endswith("\\") else escaped


def escape_measurement(value: str) -> str:
    return value.translate(_MEASUREMENT_ESCAPES)


def format_float(value: float) -> str:
    text = repr(value)
    return text[:-2] if text.endswith(".0") else text


def tag_string(tags: Mapping[str, str | None]) -> str:
    """`,k=v,...` for the given tags, sorted by key, empty values left out."""
    parts = []
    for key in sorted(tags):
        raw = tags[key]
        if raw is None:
            continue
        k, v = escape_key(key), escape_tag_value(raw)
        if k and v:
            parts.append(f"{k}={v}")
    return "," + ",".join(parts) if parts else ""


def field_string(fields: Mapping[str, float | int | bool | None]) -> str:
    """`k=v,...` sorted by key; bools as true/false, ints with `i`, the rest as floats."""
    parts = []
    for key in sorted(fields):
        value = fields[key]
        if value is None:
            continue
        if isinstance(value, bool):
            parts.append(f"{escape_key(key)}={'true' if value else 'false'}")
        elif isinstance(value, int):
            parts.append(f"{escape_key(key)}={value}i")
        else:
            if value != value or value in (float("inf"), float("-inf")):
                continue
            parts.append(f"{escape_key(key)}={format_float(value)}")
    return ",".join(parts)


def _fields_of(body: object, names: tuple[str, ...]) -> str:
    # The hot loop: field names are plain identifiers, so no escaping is needed.
    parts = []
    for name in names:
        value = getattr(body, name)
        if value is None:
            continue
        if value is True:
            parts.append(f"{name}=true")
        elif value is False:
            parts.append(f"{name}=false")
        elif name in _INT_FIELDS:
            parts.append(f"{name}={value}i")
        else:
            text = repr(value)
            parts.append(f"{name}={text[:-2] if text.endswith('.0') else text}")
    return ",".join(parts)


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
            return f"{ctx.vitals} {_fields_of(body, _VITALS)} {body.ts}"
        if isinstance(body, BinTelemetry):
            tags = tag_string(
                {"device_id": reading.device_id, "building": ctx.building, "category": ctx.category}
            )
            return f"bin{tags} {_fields_of(body, _BIN)} {body.ts}"
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
