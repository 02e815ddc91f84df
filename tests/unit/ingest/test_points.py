"""Our line protocol is byte-equal to influxdb-client's Point.to_line_protocol()."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from influxdb_client import Point

from ingest.points import DeviceTags, LineEncoder
from protocol.models import (
    BinEvent,
    BinTelemetry,
    Kind,
    Reading,
    WristbandEvent,
    WristbandTelemetry,
)

ids = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)
# Registry text: Chinese names with spaces, commas, equals signs, backslashes.
names = st.one_of(
    st.none(),
    st.text(
        alphabet=st.sampled_from(list("幸福小区3栋 ,=\\\"'网格01abc")), min_size=1, max_size=20
    ),
)
ts = st.integers(min_value=0, max_value=2**41)


def floats(lo: float, hi: float) -> st.SearchStrategy[float | None]:
    return st.one_of(st.none(), st.floats(min_value=lo, max_value=hi, allow_nan=False))


def opt(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


vitals = st.builds(
    WristbandTelemetry,
    ts=ts,
    seq=opt(st.integers(0, 2**31)),
    hr=floats(20, 250),
    spo2=floats(50, 100),
    sbp=floats(50, 260),
    dbp=floats(30, 160),
    temp=floats(30, 45),
    steps=opt(st.integers(0, 10_000_000)),
    battery=floats(0, 100),
    worn=opt(st.booleans()),
    lat=floats(-90, 90),
    lon=floats(-180, 180),
)
bin_telemetry = st.builds(
    BinTelemetry,
    ts=ts,
    fill=floats(0, 100),
    weight=floats(0, 500),
    temp=floats(-40, 150),
    battery=floats(0, 100),
    lid_open=opt(st.booleans()),
)
wb_events = st.builds(
    WristbandEvent,
    ts=ts,
    type=st.sampled_from(["fall", "sos", "off_wrist", "on_wrist", "power_off"]),
    confidence=floats(0, 1),
    lat=floats(-90, 90),
    lon=floats(-180, 180),
)
bin_events = st.builds(
    BinEvent,
    ts=ts,
    type=st.sampled_from(["deposit", "lid_jam", "tilt"]),
    detected=st.sampled_from(["kitchen", "recyclable", "hazardous", "other"]),
    weight_g=floats(0, 50_000),
)
categories = st.one_of(st.none(), st.sampled_from(["kitchen", "recyclable", "hazardous", "other"]))


def reference(
    device_id: str, body: Any, grid: str | None, building: str | None, category: str | None
) -> str:
    """The same point built with influxdb-client."""

    def fields(names: tuple[str, ...]) -> dict[str, Any]:
        return {n: getattr(body, n) for n in names}

    if isinstance(body, WristbandTelemetry):
        p = Point("vitals").tag("device_id", device_id).tag("grid", grid)
        values = fields(
            ("hr", "spo2", "sbp", "dbp", "temp", "steps", "battery", "worn", "lat", "lon")
        )
    elif isinstance(body, BinTelemetry):
        p = (
            Point("bin")
            .tag("device_id", device_id)
            .tag("building", building)
            .tag("category", category)
        )
        values = fields(("fill", "weight", "temp", "battery", "lid_open"))
    elif isinstance(body, WristbandEvent):
        p = Point("wristband_event").tag("device_id", device_id).tag("type", body.type)
        values = {"count": 1, **fields(("confidence", "lat", "lon"))}
    elif body.type == "deposit":
        p = (
            Point("bin_deposit")
            .tag("device_id", device_id)
            .tag("building", building)
            .tag("category", category)
            .tag("detected", body.detected)
        )
        correct = None if category is None else body.detected == category
        values = {"correct": correct, "count": 1, "weight_g": body.weight_g}
    else:
        p = (
            Point("bin_event")
            .tag("device_id", device_id)
            .tag("building", building)
            .tag("type", body.type)
        )
        values = {"count": 1}
    for key, value in values.items():
        if value is not None:
            p = p.field(key, value)
    return str(p.time(body.ts, write_precision="ms").to_line_protocol())


@settings(max_examples=400, deadline=None)
@given(
    device_id=ids,
    body=st.one_of(vitals, bin_telemetry, wb_events, bin_events),
    grid=names,
    building=names,
    category=categories,
)
def test_encoder_matches_influxdb_client(
    device_id: str, body: Any, grid: str | None, building: str | None, category: str | None
) -> None:
    kind = Kind.WRISTBAND if isinstance(body, (WristbandTelemetry, WristbandEvent)) else Kind.BIN
    encoder = LineEncoder(
        {device_id: DeviceTags(device_id, grid=grid, building=building, category=category)}
    )
    expected = reference(device_id, body, grid, building, category)
    if isinstance(body, (WristbandTelemetry, BinTelemetry)) and not expected:
        return  # no reading at all: the decoder rejects such a message before encoding
    assert encoder.encode(Reading(device_id, kind, body)) == expected


def test_chinese_building_with_space_and_comma_is_escaped() -> None:
    encoder = LineEncoder({"b1": DeviceTags("b1", building="幸福小区 3栋,东", category="kitchen")})
    line = encoder.encode(Reading("b1", Kind.BIN, BinTelemetry(ts=5, fill=42.5)))
    assert line == r"bin,building=幸福小区\ 3栋\,东,category=kitchen,device_id=b1 fill=42.5 5"
