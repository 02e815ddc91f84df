"""InfluxDB line protocol: escaping and the tag and field sets of one point.

Encoded by hand because it is per message: the output is byte-equal to
influxdb-client's `Point.to_line_protocol()` (tests/unit/ingest/test_points.py
proves it over generated inputs), about five times faster. Numbers are written
as floats except counters (`steps`, `count`) so a field never changes type
between points, which InfluxDB would refuse as a field type conflict.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

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


def fields_of(body: object, names: tuple[str, ...]) -> str:
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
