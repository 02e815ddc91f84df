"""A minimal MQTT 3.1.1 publisher for load mode: CONNECT, QoS 1 PUBLISH, PUBACK, nothing else.

Why not paho or aiomqtt here: both handle one message at a time (a socket write
per publish, an object or two per PUBACK), which caps one Python process at
about 16,000 messages a second on a two-core machine, below what the ingester
takes. This publisher writes many PUBLISH packets per socket write, parses
PUBACKs in bulk, and resends unacknowledged messages (DUP) after reconnecting,
as any QoS 1 client must. It never subscribes, so it needs no more of MQTT.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Final

from core.settings import MqttTarget
from protocol.codec import encode_string, encode_varint
from simulators.exceptions import LinkDown, SimulatorError

_CONNECT: Final = 0x10
_CONNACK: Final = 0x20
_PUBLISH_QOS1: Final = 0x32
_DUP: Final = 0x08
_PUBACK: Final = 0x40
_PINGREQ: Final = b"\xc0\x00"
_DISCONNECT: Final = b"\xe0\x00"
_CONNACK_CODES: Final = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


def publish_packet(topic: bytes, mid: int, payload: bytes, *, dup: bool = False) -> bytes:
    """One QoS 1 PUBLISH packet (topic already UTF-8 encoded)."""
    body_len = 2 + len(topic) + 2 + len(payload)
    header = bytes((_PUBLISH_QOS1 | (_DUP if dup else 0),)) + encode_varint(body_len)
    return b"".join((header, len(topic).to_bytes(2, "big"), topic, mid.to_bytes(2, "big"), payload))


def _skip(buffer: bytes, pos: int, end: int) -> int | None:
    """The offset after the packet at pos, or None if it is not complete yet."""
    length, multiplier, i = 0, 1, pos + 1
    while True:
        if i >= end:
            return None
        byte = buffer[i]
        length += (byte & 0x7F) * multiplier
        multiplier *= 128
        i += 1
        if not byte & 0x80:
            break
    return i + length if end - i >= length else None


class WireError(SimulatorError):
    """The broker refused the connection (CONNACK with a non-zero return code)."""


class Publisher:
    """One QoS 1 connection: `send()` queues PUBLISHes, `acked` grows as PUBACKs arrive."""

    def __init__(
        self, broker: MqttTarget, client_id: str, *, window: int, ack_counts: list[int]
    ) -> None:
        self.client_id = client_id
        self.ack_counts = ack_counts  # acked messages by tag (the caller's device index)
        self.window = max(1, min(window, 65_000))
        self.acked = 0
        self.pending: dict[int, tuple[int, bytes]] = {}  # mid -> (tag, packet) until PUBACK
        self.room = asyncio.Event()
        self._broker = broker
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._next_mid = 1
        self.lost = asyncio.Event()

    @property
    def up(self) -> bool:
        return self._writer is not None and not self.lost.is_set()

    async def connect(self, timeout: float = 10.0) -> None:
        """Open the socket, log in, and resend what was in flight when the last one broke."""
        ssl_context = ssl.create_default_context() if self._broker.tls else None
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self._broker.host, self._broker.port, ssl=ssl_context),
                timeout,
            )
        except (OSError, TimeoutError) as exc:
            msg = f"{self.client_id}: cannot reach {self._broker.host}:{self._broker.port}: {exc}"
            raise LinkDown(msg) from exc
        flags = 0x02  # clean session
        payload = encode_string(self.client_id)
        if self._broker.username is not None:
            flags |= 0x80
            payload += encode_string(self._broker.username)
            if self._broker.password is not None:
                flags |= 0x40
                payload += encode_string(self._broker.password)
        variable = encode_string("MQTT") + bytes((4, flags)) + (60).to_bytes(2, "big")
        writer.write(
            bytes((_CONNECT,)) + encode_varint(len(variable) + len(payload)) + variable + payload
        )
        try:
            connack = await asyncio.wait_for(reader.readexactly(4), timeout)
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            writer.close()
            msg = f"{self.client_id}: no CONNACK from the broker: {exc!r}"
            raise LinkDown(msg) from exc
        if connack[0] != _CONNACK or connack[3] != 0:
            writer.close()
            reason = _CONNACK_CODES.get(connack[3], f"code {connack[3]}")
            msg = f"{self.client_id}: broker refused the connection: {reason}"
            raise WireError(msg)
        self._writer = writer
        self.lost.clear()
        # Whatever was unacknowledged goes again, flagged DUP (the ingester drops repeats).
        for mid, (tag, packet) in list(self.pending.items()):
            packet = bytes((packet[0] | _DUP,)) + packet[1:]
            self.pending[mid] = (tag, packet)
            writer.write(packet)
        self._reader_task = asyncio.create_task(self._read(reader))
        self._update_room()

    def _update_room(self) -> None:
        if len(self.pending) < self.window:
            self.room.set()
        else:
            self.room.clear()

    def free(self) -> int:
        """How many more messages fit in the in-flight window."""
        return self.window - len(self.pending)

    def send(self, batch: list[tuple[int, bytes, bytes]]) -> None:
        """Queue PUBLISHes of (tag, topic, payload) in one socket write; the window must allow."""
        writer = self._writer
        if writer is None or self.lost.is_set():
            msg = f"{self.client_id}: not connected"
            raise LinkDown(msg)
        chunks = []
        pending = self.pending
        for tag, topic, payload in batch:
            mid = self._next_mid
            while mid in pending:
                mid = mid % 65_535 + 1
            self._next_mid = mid % 65_535 + 1
            packet = publish_packet(topic, mid, payload)
            pending[mid] = (tag, packet)
            chunks.append(packet)
        writer.write(b"".join(chunks))
        self._update_room()

    async def drain(self) -> None:
        """Wait until the socket buffer has room (backpressure from the kernel)."""
        writer = self._writer
        if writer is not None:
            try:
                await writer.drain()
            except (OSError, RuntimeError) as exc:
                self._mark_lost()
                msg = f"{self.client_id}: write failed: {exc}"
                raise LinkDown(msg) from exc

    def ping(self) -> None:
        """Keep the session alive while nothing is published."""
        if self._writer is not None and not self.lost.is_set():
            self._writer.write(_PINGREQ)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        buffer = b""
        pending = self.pending
        ack_counts = self.ack_counts
        try:
            while True:
                data = await reader.read(65_536)
                if not data:
                    break
                buffer += data
                pos = 0
                end = len(buffer)
                while end - pos >= 2:
                    kind = buffer[pos]
                    if kind == _PUBACK and buffer[pos + 1] == 2:
                        if end - pos < 4:
                            break
                        entry = pending.pop(int.from_bytes(buffer[pos + 2 : pos + 4], "big"), None)
                        if entry is not None:
                            self.acked += 1
                            ack_counts[entry[0]] += 1
                        pos += 4
                        continue
                    # Anything else (PINGRESP): skip it by its remaining length.
                    after = _skip(buffer, pos, end)
                    if after is None:
                        break
                    pos = after
                buffer = buffer[pos:]
                self._update_room()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._mark_lost()

    def _mark_lost(self) -> None:
        self.lost.set()
        self.room.set()  # wake a waiting producer, which then sees the loss
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    async def close(self) -> None:
        """Send DISCONNECT and close."""
        writer = self._writer
        if writer is not None and not self.lost.is_set():
            writer.write(_DISCONNECT)
            with contextlib.suppress(OSError, TimeoutError, RuntimeError):
                await asyncio.wait_for(writer.drain(), 2.0)
        if self._reader_task is not None:
            self._reader_task.cancel()
        self._mark_lost()
