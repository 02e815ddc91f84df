"""The load generator's batching MQTT 5 QoS 1 publisher, on the packets of `protocol.codec`.

Why not aiomqtt here, and what it implements: simulators/README.md, "Load mode".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import Final

from core.settings import MqttTarget
from protocol.codec import (
    CONNACK,
    CONNACK_REASONS,
    DISCONNECT,
    PINGREQ,
    Connack,
    clean_connect_packet,
    parse_acks,
    parse_connack,
    publish_qos1_packet,
    remaining_length,
)
from simulators.exceptions import BrokerRefused, LinkDown

log = logging.getLogger(__name__)

_KEEPALIVE: Final = 60
_MAX_PACKET_ID: Final = 65_535
_DISCONNECT: Final = bytes((DISCONNECT, 0))  # normal disconnection, no properties

# A message waiting for its PUBACK: (tag, topic, payload), kept to resend it.
Pending = tuple[int, bytes, bytes]


class Publisher:
    """One QoS 1 connection: `send()` queues PUBLISHes, `acked` grows as PUBACKs arrive."""

    def __init__(
        self, broker: MqttTarget, client_id: str, *, window: int, ack_counts: list[int]
    ) -> None:
        self.client_id = client_id
        self.ack_counts = ack_counts  # acked messages by tag (the caller's device index)
        self._wanted_window = max(1, min(window, 65_000))
        self.window = self._wanted_window  # lowered to the broker's Receive Maximum on connect
        self.acked = 0
        self.refused = 0  # PUBACKs with a failure reason code: the broker did not take those
        self.pending: dict[int, Pending] = {}  # packet id -> message until its PUBACK
        self.room = asyncio.Event()
        self._broker = broker
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._next_mid = 1
        self.lost = asyncio.Event()

    @property
    def up(self) -> bool:
        """Whether the connection is open and usable."""
        return self._writer is not None and not self.lost.is_set()

    async def connect(self, timeout: float = 10.0) -> None:
        """Open the socket, log in, and resend what was in flight when the last one broke."""
        reader, writer = await self._open(timeout)
        broker = self._broker
        writer.write(
            clean_connect_packet(
                self.client_id, broker.username, broker.password, keepalive=_KEEPALIVE
            )
        )
        try:
            connack = await asyncio.wait_for(_read_connack(reader), timeout)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
            writer.close()
            msg = f"{self.client_id}: no CONNACK from the broker: {exc!r}"
            raise LinkDown(msg) from exc
        if connack.reason_code >= 0x80:
            writer.close()
            reason = CONNACK_REASONS.get(connack.reason_code, f"code 0x{connack.reason_code:02x}")
            detail = f" ({connack.reason})" if connack.reason else ""
            msg = f"{self.client_id}: broker refused the connection: {reason}{detail}"
            raise BrokerRefused(msg, connack.reason_code)
        window = max(1, min(self._wanted_window, connack.receive_maximum))
        if window < self._wanted_window and window != self.window:
            # MQTT 5 forbids more unacknowledged publishes than the broker's Receive Maximum
            # (Mosquitto's max_inflight_messages); a small one caps the rate.
            log.info("%s: the broker allows %d messages in flight", self.client_id, window)
        self.window = window
        self._writer = writer
        self.lost.clear()
        # Whatever was unacknowledged goes again, flagged DUP (the ingester drops repeats).
        for mid, (_, topic, payload) in self.pending.items():
            writer.write(publish_qos1_packet(topic, mid, payload, dup=True))
        self._reader_task = asyncio.create_task(self._read(reader))
        self._update_room()

    async def _open(self, timeout: float) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        ssl_context = ssl.create_default_context() if self._broker.tls else None
        try:
            return await asyncio.wait_for(
                asyncio.open_connection(self._broker.host, self._broker.port, ssl=ssl_context),
                timeout,
            )
        except (OSError, TimeoutError) as exc:
            msg = f"{self.client_id}: cannot reach {self._broker.host}:{self._broker.port}: {exc}"
            raise LinkDown(msg) from exc

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
        for message in batch:
            mid = self._next_mid
            while mid in pending:
                mid = mid % _MAX_PACKET_ID + 1
            self._next_mid = mid % _MAX_PACKET_ID + 1
            pending[mid] = message
            chunks.append(publish_qos1_packet(message[1], mid, message[2]))
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
            self._writer.write(PINGREQ)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        buffer = b""
        try:
            while data := await reader.read(65_536):
                buffer += data
                acks, others, used = parse_acks(buffer)
                buffer = buffer[used:]
                self._settle(acks)
                self._control(others)
                self._update_room()
        except ValueError as exc:
            log.error("%s: unreadable packet from the broker: %s", self.client_id, exc)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._mark_lost()

    def _settle(self, acks: list[tuple[int, int]]) -> None:
        pending = self.pending
        ack_counts = self.ack_counts
        for mid, reason in acks:
            entry = pending.pop(mid, None)
            if entry is None:
                continue
            if reason < 0x80:  # 0x10 "no matching subscribers" is a success too
                self.acked += 1
                ack_counts[entry[0]] += 1
            else:
                if not self.refused:
                    log.warning("%s: the broker refused a message (0x%02x)", self.client_id, reason)
                self.refused += 1

    def _control(self, packets: list[tuple[int, bytes]]) -> None:
        for first, body in packets:
            if first == DISCONNECT:  # the broker says why before it closes (MQTT 5)
                reason = body[0] if body else 0
                log.warning("%s: the broker disconnected us (0x%02x)", self.client_id, reason)
        # PINGRESP needs nothing: a dead connection shows as a failed read or write.

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


async def _read_connack(reader: asyncio.StreamReader) -> Connack:
    """Read one packet, which must be the CONNACK."""
    header = await reader.readexactly(2)
    while (parsed := remaining_length(header)) is None:
        header += await reader.readexactly(1)
    body = await reader.readexactly(parsed[0])
    if header[0] != CONNACK:
        msg = f"expected a CONNACK, got packet type 0x{header[0]:02x}"
        raise ValueError(msg)
    return parse_connack(body)
