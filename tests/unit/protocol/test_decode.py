"""The decoder: every reason for rejection, and no input that makes it raise."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.decode import Decoder
from protocol.models import REJECT_REASONS, Reading, Rejection, StatusChange

NOW = 1_790_000_000_000
WB = "cw/v1/wristband/w-01/telemetry"


def payload(**fields: object) -> bytes:
    return json.dumps({"ts": NOW, **fields}).encode()


@pytest.mark.parametrize(
    ("topic", "raw", "reason"),
    [
        ("cw/v1/wristband/w1", payload(hr=70), "bad_topic"),
        ("cw/v2/wristband/w1/telemetry", payload(hr=70), "bad_topic"),
        ("cw/v1/wristband/w 1/telemetry", payload(hr=70), "bad_topic"),
        ("cw/v1/wristband/" + "x" * 65 + "/telemetry", payload(hr=70), "bad_topic"),
        ("cw/v1/toaster/w1/telemetry", payload(hr=70), "unknown_kind"),
        ("cw/v1/wristband/w1/debug", payload(hr=70), "unknown_channel"),
        (WB, b"{" + b" " * 5000 + b"}", "oversized"),
        (WB, b"{not json", "bad_json"),
        # 2 KB nested 1,000 deep in a field nobody reads: was a RecursionError.
        (WB, b'{"ts":1,"x":' + b"[" * 1000 + b"]" * 1000 + b',"hr":70}', "bad_json"),
        (WB, b"\xff\xfe", "bad_json"),
        (WB, b"[1, 2]", "invalid"),
        (WB, b'"text"', "invalid"),
        (WB, json.dumps({"hr": 70}).encode(), "invalid"),
        (WB, payload(hr="fast"), "invalid"),
        (WB, payload(worn="yes"), "invalid"),
        (WB, payload(steps=1.5), "invalid"),
        (WB, payload(hr=900), "out_of_range"),
        (WB, payload(spo2=101), "out_of_range"),
        (WB, payload(temp=-5), "out_of_range"),
        (WB, payload(lat=91), "out_of_range"),
        (WB, json.dumps({"ts": -1, "hr": 70}).encode(), "out_of_range"),
        (WB, json.dumps({"ts": NOW + 365 * 86_400_000, "hr": 70}).encode(), "ts_future"),
        (WB, json.dumps({"ts": NOW - 30 * 86_400_000, "hr": 70}).encode(), "ts_too_old"),
        (WB, payload(seq=3), "no_reading"),
        ("cw/v1/wristband/w1/event", payload(type="nap"), "invalid"),
        ("cw/v1/wristband/w1/event", payload(confidence=0.9), "invalid"),
        ("cw/v1/bin/b1/telemetry", payload(fill=-3), "out_of_range"),
        ("cw/v1/bin/b1/telemetry", payload(fill=101), "out_of_range"),
        ("cw/v1/bin/b1/event", payload(type="deposit"), "invalid"),
        ("cw/v1/bin/b1/event", payload(type="deposit", detected="plastic"), "invalid"),
        ("cw/v1/bin/b1/status", b"maybe", "bad_status"),
    ],
)
def test_rejections(topic: str, raw: bytes, reason: str) -> None:
    result = Decoder().decode(topic, raw, NOW)
    assert isinstance(result, Rejection), result
    assert result.reason == reason
    assert result.reason in REJECT_REASONS
    assert result.detail


def test_valid_messages() -> None:
    decoder = Decoder()
    reading = decoder.decode(WB, payload(seq=1, hr=72, spo2=97, worn=True, extra={"x": 1}), NOW)
    assert isinstance(reading, Reading)
    assert reading.device_id == "w-01"
    assert reading.body.hr == 72.0  # type: ignore[union-attr]
    deposit = decoder.decode(
        "cw/v1/bin/b1/event", payload(type="deposit", detected="kitchen", weight_g=350), NOW
    )
    assert isinstance(deposit, Reading)
    status = decoder.decode("cw/v1/bin/b1/status", b"offline", NOW)
    assert status == StatusChange("b1", status.kind, False, NOW)  # type: ignore[union-attr]


topics = st.one_of(
    st.text(max_size=80),
    st.builds(
        "cw/v1/{}/{}/{}".format,
        st.sampled_from(["wristband", "bin", "x", ""]),
        st.text(max_size=70),
        st.sampled_from(["telemetry", "event", "status", ""]),
    ),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=20,
)
near_valid = st.dictionaries(
    st.sampled_from(
        [
            "ts",
            "seq",
            "hr",
            "spo2",
            "sbp",
            "dbp",
            "temp",
            "steps",
            "battery",
            "worn",
            "lat",
            "lon",
            "type",
            "confidence",
            "fill",
            "weight",
            "lid_open",
            "detected",
            "weight_g",
        ]
    ),
    json_values | st.integers(min_value=NOW - 10**9, max_value=NOW + 10**9),
    max_size=12,
).map(lambda d: json.dumps(d).encode())


@settings(max_examples=3000, deadline=None)
@given(topic=topics, raw=st.binary(max_size=5000) | near_valid)
def test_decoder_never_raises(topic: str, raw: bytes) -> None:
    result = Decoder().decode(topic, raw, NOW)
    assert isinstance(result, (Reading, StatusChange, Rejection))
    if isinstance(result, Rejection):
        assert result.reason in REJECT_REASONS
