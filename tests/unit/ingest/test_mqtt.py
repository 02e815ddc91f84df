"""The MQTT 5 packet parser of the ingest path, fed byte streams cut at every place."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.mqtt import _Protocol
from protocol.codec import encode_varint, puback_packets


def publish(
    topic: str, payload: bytes, qos: int, packet_id: int, dup: bool = False, props: bytes = b""
) -> bytes:
    variable = len(topic.encode()).to_bytes(2, "big") + topic.encode()
    if qos:
        variable += packet_id.to_bytes(2, "big")
    variable += encode_varint(len(props)) + props
    body = variable + payload
    first = 0x30 | (qos << 1) | (0x08 if dup else 0)
    return bytes((first,)) + encode_varint(len(body)) + body


messages = st.lists(
    st.tuples(
        st.text(min_size=1, max_size=40),
        st.binary(max_size=300),
        st.sampled_from([0, 1]),
        st.integers(1, 65535),
        st.booleans(),
        st.sampled_from([b"", b"\x01\x01", b"\x23\x00\x05", b"\x26" + b"\x00\x01k\x00\x01v" * 20]),
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(msgs=messages, cuts=st.lists(st.integers(1, 400), max_size=60))
def test_parser_reassembles_any_split(
    msgs: list[tuple[str, bytes, int, int, bool, bytes]], cuts: list[int]
) -> None:
    async def run() -> list[tuple[str, bytes, int, int, bool]]:
        got: list[tuple[str, bytes, int, int, bool]] = []
        proto = _Protocol(lambda *args: got.append(args))
        stream = b"".join(publish(t, p, q, pid, d, pr) for t, p, q, pid, d, pr in msgs)
        stream += b"\xd0\x00"  # a PINGRESP between chunks must not disturb anything
        pos = 0
        for cut in cuts:
            proto.data_received(stream[pos : pos + cut])
            pos += cut
        proto.data_received(stream[pos:])
        return got

    got = asyncio.run(run())
    assert got == [(t, p, pid if q else 0, q, d) for t, p, q, pid, d, _ in msgs]


def test_pubacks_are_one_write() -> None:
    assert puback_packets([1, 258]) == b"\x40\x02\x00\x01\x40\x02\x01\x02"


def test_varint() -> None:
    assert encode_varint(0) == b"\x00"
    assert encode_varint(127) == b"\x7f"
    assert encode_varint(128) == b"\x80\x01"
    assert encode_varint(16384) == b"\x80\x80\x01"
