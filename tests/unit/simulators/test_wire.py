"""The load generator's MQTT 5 publisher: its packets, and a session against a scripted broker."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from core.settings import MqttTarget
from protocol.codec import (
    CONNACK,
    PUBACK,
    clean_connect_packet,
    parse_acks,
    parse_connack,
    publish_qos1_packet,
    remaining_length,
)
from simulators.exceptions import BrokerRefused
from simulators.wire import Publisher

Packet = tuple[int, bytes]
Broker = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def test_publish_packet_encoding() -> None:
    packet = publish_qos1_packet(b"a/b", 258, b"{}")
    # remaining length 10: topic length, topic, packet id, no properties (0), payload
    assert packet == b"\x32\x0a\x00\x03a/b\x01\x02\x00{}"
    assert publish_qos1_packet(b"a/b", 1, b"{}", dup=True)[0] == 0x3A


def test_connect_packet_is_mqtt5_with_clean_start() -> None:
    packet = clean_connect_packet("cw-loadgen-0", "loadgen", "pw", keepalive=60)
    header = remaining_length(packet)
    assert packet[0] == 0x10 and header is not None
    length, start = header
    assert len(packet) == start + length
    body = packet[start:]
    assert body[:6] == b"\x00\x04MQTT"
    assert body[6] == 5  # protocol level: MQTT 5
    assert body[7] == 0x80 | 0x40 | 0x02  # user name, password, clean start
    assert body[8:10] == (60).to_bytes(2, "big")
    assert body[10] == 0  # no properties
    assert body[11:] == b"\x00\x0ccw-loadgen-0\x00\x07loadgen\x00\x02pw"
    anonymous = clean_connect_packet("c")
    assert anonymous[-3:] == b"\x00\x01c" and anonymous[9] == 0x02


def test_parse_connack_reads_receive_maximum_and_reason() -> None:
    plain = parse_connack(b"\x00\x00")
    assert (plain.session_present, plain.reason_code, plain.receive_maximum) == (False, 0, 65535)
    # Mosquitto's: maximum packet size, then Receive Maximum 20, then topic alias maximum
    limited = parse_connack(b"\x00\x00\x0b\x27\x00\x00\x40\x00\x21\x00\x14\x22\x00\x0a")
    assert limited.receive_maximum == 20
    refused = parse_connack(b"\x00\x86\x08\x1f\x00\x05nope!")
    assert refused.reason_code == 0x86 and refused.reason == "nope!"
    with pytest.raises(ValueError, match="CONNACK"):
        parse_connack(b"\x00")
    with pytest.raises(ValueError, match="property"):
        parse_connack(b"\x00\x00\x02\x7f\x00")


def test_parse_acks_takes_whole_packets_only() -> None:
    stream = b"".join(
        (
            bytes((PUBACK, 2, 0, 1)),  # success, the short form
            bytes((PUBACK, 3, 0, 2, 0x10)),  # no matching subscribers: still a success
            bytes((PUBACK, 4, 0, 3, 0x87, 0)),  # not authorized, with empty properties
            b"\xd0\x00",  # PINGRESP
            bytes((0xE0, 1, 0x8E)),  # DISCONNECT: session taken over
            bytes((PUBACK, 2, 0, 4)),
        )
    )
    acks, others, used = parse_acks(stream)
    assert acks == [(1, 0), (2, 0x10), (3, 0x87), (4, 0)]
    assert others == [(0xD0, b""), (0xE0, b"\x8e")]
    assert used == len(stream)
    for cut in range(len(stream)):
        acks, _, used = parse_acks(stream[:cut])
        assert used <= cut and len(acks) == sum(1 for a in (4, 9, 15, 24) if a <= cut)


async def _read_packet(reader: asyncio.StreamReader) -> Packet:
    header = await reader.readexactly(2)
    while (parsed := remaining_length(header)) is None:
        header += await reader.readexactly(1)
    return header[0], await reader.readexactly(parsed[0])


async def _with_broker(broker: Broker, client: Callable[[MqttTarget], Awaitable[None]]) -> None:
    server = await asyncio.start_server(broker, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    target = MqttTarget(host="127.0.0.1", port=port, tls=False, username="u", password="p")
    async with server:
        await asyncio.wait_for(client(target), 10)


def test_publisher_keeps_the_receive_maximum_and_counts_refusals() -> None:
    publishes: list[Packet] = []

    async def broker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first, _ = await _read_packet(reader)
        assert first == 0x10
        writer.write(bytes((CONNACK, 6, 0, 0, 3, 0x21, 0, 3)))  # Receive Maximum 3
        for reason in (0, 0x10, 0x87):
            publishes.append(await _read_packet(reader))
            packet_id = publishes[-1][1][5:7]  # after the topic length and the topic "t/x"
            writer.write(bytes((PUBACK, 3)) + packet_id + bytes((reason,)))
        await reader.read()

    async def client(target: MqttTarget) -> None:
        counts = [0, 0]
        publisher = Publisher(target, "pub", window=100, ack_counts=counts)
        await publisher.connect()
        assert publisher.window == 3 and publisher.free() == 3
        publisher.send([(0, b"t/x", b"a"), (1, b"t/x", b"b"), (1, b"t/x", b"c")])
        assert publisher.free() == 0 and not publisher.room.is_set()
        while publisher.pending:
            await asyncio.sleep(0.01)
        assert (publisher.acked, publisher.refused, counts) == (2, 1, [1, 1])
        await publisher.close()

    asyncio.run(_with_broker(broker, client))
    assert [p[0] for p in publishes] == [0x32, 0x32, 0x32]
    assert [p[1][-1:] for p in publishes] == [b"a", b"b", b"c"]


def test_publisher_resends_unacknowledged_messages_as_dup_after_a_reconnect() -> None:
    sessions: list[list[Packet]] = []

    async def broker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_packet(reader)
        writer.write(bytes((CONNACK, 3, 0, 0, 0)))
        seen = [await _read_packet(reader)]
        sessions.append(seen)
        if len(sessions) == 1:
            writer.close()  # lost before the PUBACK
            return
        writer.write(bytes((PUBACK, 2)) + seen[0][1][5:7])
        await reader.read()

    async def client(target: MqttTarget) -> None:
        publisher = Publisher(target, "pub", window=10, ack_counts=[0])
        await publisher.connect()
        publisher.send([(0, b"t/x", b"a")])
        await publisher.lost.wait()
        assert not publisher.up and len(publisher.pending) == 1
        await publisher.connect()
        while publisher.pending:
            await asyncio.sleep(0.01)
        assert publisher.acked == 1
        await publisher.close()

    asyncio.run(_with_broker(broker, client))
    assert [s[0][0] for s in sessions] == [0x32, 0x3A]  # the second time flagged DUP
    assert sessions[0][0][1] == sessions[1][0][1]


def test_publisher_refused_by_the_broker_says_why() -> None:
    async def broker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_packet(reader)
        writer.write(bytes((CONNACK, 3, 0, 0x86, 0)))
        await reader.read()

    async def client(target: MqttTarget) -> None:
        publisher = Publisher(target, "pub", window=10, ack_counts=[0])
        with pytest.raises(BrokerRefused, match="bad user name or password") as info:
            await publisher.connect()
        assert info.value.reason_code == 0x86

    asyncio.run(_with_broker(broker, client))
