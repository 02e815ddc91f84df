"""The MQTT 5 packets CareWatch writes by hand: CONNECT, SUBSCRIBE, PUBLISH, PUBACK.

Shared by ingest's subscriber (ingest/mqtt.py) and the simulators' fast publisher
(simulators/wire.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

# Packet types (upper nibble of the first byte).
CONNECT: Final = 0x10
CONNACK: Final = 0x20
PUBLISH: Final = 0x30
PUBACK: Final = 0x40
SUBSCRIBE: Final = 0x82
SUBACK: Final = 0x90
PINGREQ: Final = b"\xc0\x00"
PINGRESP: Final = 0xD0
DISCONNECT: Final = 0xE0

# Every PUBACK there can be, so a batch of acks is one bytes.join.
_PUBACKS: Final = tuple(bytes((PUBACK, 2, pid >> 8, pid & 0xFF)) for pid in range(65536))

CONNACK_REASONS: Final = {
    0x80: "unspecified error",
    0x84: "unsupported protocol version",
    0x85: "client identifier not valid",
    0x86: "bad user name or password",
    0x87: "not authorized",
    0x88: "server unavailable",
    0x89: "server busy",
    0x8A: "banned",
    0x8C: "bad authentication method",
    0x95: "packet too large",
    0x97: "quota exceeded",
    0x9F: "connection rate exceeded",
}

# on_publish(topic, payload, packet_id, qos, dup); packet_id is 0 for QoS 0.
PublishHandler = Callable[[str, bytes, int, int, bool], None]


def encode_varint(value: int) -> bytes:
    """MQTT's variable byte integer (the remaining length, property lengths)."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_string(value: str) -> bytes:
    """An MQTT UTF-8 string: two length bytes, then the bytes."""
    raw = value.encode()
    return len(raw).to_bytes(2, "big") + raw


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + encode_varint(len(body)) + body


@dataclass(frozen=True, slots=True)
class SessionOptions:
    """How to connect: the broker, who we are, what to subscribe to."""

    host: str
    port: int
    client_id: str
    topic_filter: str
    username: str | None = None
    password: str | None = None
    tls: bool = False
    keepalive: int = 30
    session_expiry: int = 7 * 24 * 3600
    receive_maximum: int = 20_000
    connect_timeout: float = 10.0


def connect_packet(opts: SessionOptions) -> bytes:
    flags = 0  # clean start off: the broker keeps what arrives while we are away
    payload = encode_string(opts.client_id)
    if opts.username is not None:
        flags |= 0x80
        payload += encode_string(opts.username)
    if opts.password is not None:
        flags |= 0x40
        payload += encode_string(opts.password)
    props = (
        b"\x11"
        + opts.session_expiry.to_bytes(4, "big")
        + b"\x21"
        + opts.receive_maximum.to_bytes(2, "big")
    )
    variable = (
        encode_string("MQTT")
        + bytes((5, flags))
        + opts.keepalive.to_bytes(2, "big")
        + encode_varint(len(props))
        + props
    )
    return _packet(CONNECT, variable + payload)


def subscribe_packet(packet_id: int, topic_filter: str, qos: int = 1) -> bytes:
    body = packet_id.to_bytes(2, "big") + b"\x00" + encode_string(topic_filter) + bytes((qos,))
    return _packet(SUBSCRIBE, body)


def publish_qos0_packet(topic: str, payload: bytes) -> bytes:
    return _packet(PUBLISH, encode_string(topic) + b"\x00" + payload)


def puback_packets(packet_ids: Iterable[int]) -> bytes:
    table = _PUBACKS
    return b"".join([table[pid] for pid in packet_ids])
