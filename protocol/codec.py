"""The MQTT 5 packets CareWatch writes and reads by hand: CONNECT, SUBSCRIBE, PUBLISH, PUBACK.

Shared by ingest's subscriber (ingest/mqtt.py) and the simulators' fast publisher
(simulators/wire.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from protocol.exceptions import PacketError

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


# The publisher's side (simulators/wire.py): a clean CONNECT, QoS 1 PUBLISH, and
# parsing CONNACK and PUBACK.

_SERVER_RECEIVE_MAXIMUM: Final = 65535  # what a CONNACK without the property means
# Property identifier -> bytes of its value, for the fixed-size properties;
# 0 marks a UTF-8 string or binary data (two length bytes first), -1 a string
# pair, -2 a variable byte integer.
_PROPERTY_SIZES: Final = {
    0x01: 1, 0x02: 4, 0x03: 0, 0x08: 0, 0x09: 0, 0x0B: -2, 0x11: 4, 0x12: 0,
    0x13: 2, 0x15: 0, 0x16: 0, 0x17: 1, 0x18: 4, 0x19: 1, 0x1A: 0, 0x1C: 0,
    0x1F: 0, 0x21: 2, 0x22: 2, 0x23: 2, 0x24: 1, 0x25: 1, 0x26: -1, 0x27: 4,
    0x28: 1, 0x29: 1, 0x2A: 1,
}  # fmt: skip
_RECEIVE_MAXIMUM: Final = 0x21
_REASON_STRING: Final = 0x1F


@dataclass(frozen=True, slots=True)
class Connack:
    """What a CONNACK says: the reason code and the limits a publisher must keep."""

    session_present: bool
    reason_code: int
    receive_maximum: int = _SERVER_RECEIVE_MAXIMUM  # QoS 1 publishes in flight at most
    reason: str = ""  # the broker's reason string, if it sent one


def clean_connect_packet(
    client_id: str,
    username: str | None = None,
    password: str | None = None,
    *,
    keepalive: int = 60,
) -> bytes:
    """An MQTT 5 CONNECT with clean start and no session kept after the connection."""
    flags = 0x02  # clean start; no session expiry property, so none outlives the connection
    payload = encode_string(client_id)
    if username is not None:
        flags |= 0x80
        payload += encode_string(username)
    if password is not None:
        flags |= 0x40
        payload += encode_string(password)
    variable = encode_string("MQTT") + bytes((5, flags)) + keepalive.to_bytes(2, "big") + b"\x00"
    return _packet(CONNECT, variable + payload)


def publish_qos1_packet(
    topic: bytes, packet_id: int, payload: bytes, *, dup: bool = False
) -> bytes:
    """A QoS 1 PUBLISH without properties; the topic comes UTF-8 encoded (once per device)."""
    first = PUBLISH | 0x02 | (0x08 if dup else 0)
    # topic length (2), topic, packet id (2), property length (1), payload
    size = 5 + len(topic) + len(payload)
    return b"".join(
        (
            bytes((first,)),
            encode_varint(size),
            len(topic).to_bytes(2, "big"),
            topic,
            packet_id.to_bytes(2, "big"),
            b"\x00",
            payload,
        )
    )


def remaining_length(buffer: bytes | bytearray, pos: int = 0) -> tuple[int, int] | None:
    """(remaining length, offset of the body) of the packet at pos; None if the header is cut."""
    length, shift, i, end = 0, 0, pos + 1, len(buffer)
    while i < end:
        byte = buffer[i]
        i += 1
        length |= (byte & 0x7F) << shift
        if byte < 0x80:
            return length, i
        shift += 7
        if shift > 21:
            msg = "malformed remaining length (more than four bytes)"
            raise PacketError(msg)
    return None


def _varint_at(data: bytes, pos: int) -> tuple[int, int]:
    """A variable byte integer at pos inside a complete packet body, and the offset after it."""
    value, shift = 0, 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 21:
            msg = "malformed variable byte integer"
            raise PacketError(msg)


def _properties(data: bytes, pos: int) -> dict[int, int | bytes]:
    """The properties starting at pos (their length first), by identifier; pairs are skipped."""
    length, pos = _varint_at(data, pos)
    end = pos + length
    if end > len(data):
        msg = "properties run past the end of the packet"
        raise PacketError(msg)
    found: dict[int, int | bytes] = {}
    while pos < end:
        ident = data[pos]
        pos += 1
        size = _PROPERTY_SIZES.get(ident)
        if size is None:
            msg = f"unknown property 0x{ident:02x}"
            raise PacketError(msg)
        if size > 0:
            found[ident] = int.from_bytes(data[pos : pos + size], "big")
            pos += size
        elif size == -2:
            found[ident], pos = _varint_at(data, pos)
        else:
            for _ in range(2 if size == -1 else 1):
                start = pos + 2
                pos = start + int.from_bytes(data[pos:start], "big")
                if size == 0:
                    found[ident] = data[start:pos]
    if pos != end:
        msg = "a property runs past the end of the properties"
        raise PacketError(msg)
    return found


def parse_connack(body: bytes) -> Connack:
    """A CONNACK body (after the fixed header): flags, reason code and the properties."""
    if len(body) < 2:
        msg = f"CONNACK of {len(body)} bytes, expected at least 2"
        raise PacketError(msg)
    try:
        props = _properties(body, 2) if len(body) > 2 else {}
    except IndexError:
        msg = "CONNACK properties cut short"
        raise PacketError(msg) from None
    receive_maximum = props.get(_RECEIVE_MAXIMUM, _SERVER_RECEIVE_MAXIMUM)
    reason = props.get(_REASON_STRING, b"")
    return Connack(
        session_present=bool(body[0] & 0x01),
        reason_code=body[1],
        receive_maximum=receive_maximum if isinstance(receive_maximum, int) else 0,
        reason=reason.decode(errors="replace") if isinstance(reason, bytes) else "",
    )


def parse_acks(
    buffer: bytes | bytearray,
) -> tuple[list[tuple[int, int]], list[tuple[int, bytes]], int]:
    """The complete packets at the start of buffer, for a publisher.

    Returns the PUBACKs as (packet id, reason code), every other packet as
    (first byte, body), and how many bytes they took.
    """
    acks: list[tuple[int, int]] = []
    others: list[tuple[int, bytes]] = []
    pos, end = 0, len(buffer)
    while end - pos >= 2:
        first = buffer[pos]
        if first == PUBACK and buffer[pos + 1] == 2:  # success without properties: most of them
            if end - pos < 4:
                break
            acks.append(((buffer[pos + 2] << 8) | buffer[pos + 3], 0))
            pos += 4
            continue
        header = remaining_length(buffer, pos)
        if header is None or header[1] + header[0] > end:
            break
        length, start = header
        body = bytes(buffer[start : start + length])
        if first == PUBACK:
            if length < 2:
                msg = f"PUBACK of {length} bytes has no packet id"
                raise PacketError(msg)
            acks.append(((body[0] << 8) | body[1], body[2] if length > 2 else 0))
        else:
            others.append((first, body))
        pos = start + length
    return acks, others, pos
