"""The ingest side of MQTT 5: a lean asyncio subscriber with explicit acknowledgements.

Why hand-written, and what of MQTT 5 it speaks: docs/ingest.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from typing import Any

from ingest.exceptions import MqttProtocolError, MqttRefusedError
from protocol.codec import (
    CONNACK,
    CONNACK_REASONS,
    DISCONNECT,
    PINGREQ,
    PINGRESP,
    PUBLISH,
    SUBACK,
    PublishHandler,
    SessionOptions,
    connect_packet,
    puback_packets,
    publish_qos0_packet,
    subscribe_packet,
)

log = logging.getLogger(__name__)


def _after_long_properties(buf: bytearray, j: int) -> int:
    """The index after a properties block whose length takes more than one byte (rare)."""
    plen, shift = 0, 0
    while True:
        byte = buf[j]
        j += 1
        plen |= (byte & 0x7F) << shift
        if byte < 0x80:
            return j + plen
        shift += 7


class _Protocol(asyncio.Protocol):
    """One connection: parses what arrives, hands PUBLISH to the handler."""

    def __init__(self, on_publish: PublishHandler) -> None:
        self._on_publish = on_publish
        self._buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.connack: asyncio.Future[tuple[bool, int]] = asyncio.get_running_loop().create_future()
        self.suback: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()
        self.last_pingresp = asyncio.get_running_loop().time()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        for fut in (self.connack, self.suback):
            if not fut.done():
                fut.set_exception(ConnectionError("connection closed by the broker"))
        if not self.closed.done():
            self.closed.set_result(exc)

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        n = len(buf)
        pos = 0
        on_publish = self._on_publish
        try:
            while n - pos >= 2:
                first = buf[pos]
                # Remaining length: a variable byte integer of at most four bytes.
                i = pos + 1
                length = 0
                shift = 0
                complete = False
                while i < n:
                    byte = buf[i]
                    i += 1
                    length |= (byte & 0x7F) << shift
                    if byte < 0x80:
                        complete = True
                        break
                    shift += 7
                    if shift > 21:
                        msg = "malformed remaining length"
                        raise MqttProtocolError(msg)
                if not complete:
                    break
                end = i + length
                if end > n:
                    break
                if first & 0xF0 == PUBLISH:
                    qos = (first >> 1) & 0x03
                    tlen = (buf[i] << 8) | buf[i + 1]
                    j = i + 2 + tlen
                    topic = buf[i + 2 : j].decode(errors="replace")
                    if qos:
                        packet_id = (buf[j] << 8) | buf[j + 1]
                        j += 2
                    else:
                        packet_id = 0
                    # Properties: a variable byte integer length, then that many bytes.
                    plen = buf[j]
                    j = j + 1 + plen if plen < 0x80 else _after_long_properties(buf, j)
                    on_publish(topic, bytes(buf[j:end]), packet_id, qos, bool(first & 0x08))
                else:
                    self._control(first, bytes(buf[i:end]))
                pos = end
        except (MqttProtocolError, IndexError, UnicodeDecodeError) as exc:
            log.error("closing the MQTT connection: unreadable packet from the broker: %s", exc)
            del buf[:]
            if self.transport is not None:
                self.transport.close()
            return
        del buf[:pos]

    def _control(self, first: int, body: bytes) -> None:
        kind = first & 0xF0
        if kind == CONNACK:
            if not self.connack.done():
                self.connack.set_result((bool(body[0] & 0x01), body[1]))
        elif kind == SUBACK & 0xF0:
            # packet id (2), properties, then one reason code per filter.
            plen = body[2]
            code = body[3 + plen] if len(body) > 3 + plen else 0x80
            if not self.suback.done():
                self.suback.set_result(code)
        elif kind == PINGRESP:
            self.last_pingresp = asyncio.get_running_loop().time()
        elif kind == DISCONNECT:
            reason = body[0] if body else 0
            log.warning("the broker disconnected us, reason code 0x%02x", reason)
        # PUBACK for our QoS 0 publishes cannot happen; anything else is ignored.


class MqttSubscriber:
    """A persistent MQTT 5 subscription that reconnects with jittered backoff.

    `generation` grows by one per connection: packet ids are only meaningful on
    the connection they came from, so acks for an older one are dropped (the
    broker redelivers those messages, and writes are idempotent).
    """

    def __init__(
        self,
        opts: SessionOptions,
        on_publish: PublishHandler,
        *,
        backoff_min: float = 0.5,
        backoff_max: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        self._opts = opts
        self._on_publish = on_publish
        self._backoff_min = backoff_min
        self._backoff_max = backoff_max
        self._rng = rng or random.Random()
        self._proto: _Protocol | None = None
        self.generation = 0
        self.connected = asyncio.Event()
        self.connects = 0
        self._paused = False

    async def run(self, stop: asyncio.Event) -> None:
        """Stay connected and subscribed until `stop` is set."""
        delay = self._backoff_min
        while not stop.is_set():
            try:
                await self._session(stop)
                delay = self._backoff_min
            except MqttRefusedError as exc:
                log.error("%s", exc)
            except (OSError, ConnectionError, TimeoutError, MqttProtocolError) as exc:
                log.warning(
                    "MQTT connection to %s:%d failed: %s", self._opts.host, self._opts.port, exc
                )
            if stop.is_set():
                break
            sleep = delay * (0.5 + self._rng.random())
            delay = min(delay * 2, self._backoff_max)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=sleep)

    async def _session(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        opts = self._opts
        ssl_ctx = ssl.create_default_context() if opts.tls else None
        _, proto = await asyncio.wait_for(
            loop.create_connection(
                lambda: _Protocol(self._on_publish), opts.host, opts.port, ssl=ssl_ctx
            ),
            timeout=opts.connect_timeout,
        )
        assert proto.transport is not None
        transport = proto.transport
        # A new generation from the first byte: with a session present the broker
        # sends queued messages right after CONNACK, before our SUBACK.
        self.generation += 1
        self._proto = proto
        if self._paused:
            transport.pause_reading()
        try:
            transport.write(connect_packet(opts))
            session_present, code = await asyncio.wait_for(proto.connack, opts.connect_timeout)
            if code >= 0x80:
                reason = CONNACK_REASONS.get(code, "refused")
                msg = (
                    f"the broker at {opts.host}:{opts.port} refused us: {reason} (0x{code:02x});"
                    " check the user name and password in CAREWATCH_MQTT_URL and the broker ACL"
                )
                raise MqttRefusedError(msg)
            transport.write(subscribe_packet(1, opts.topic_filter))
            code = await asyncio.wait_for(proto.suback, opts.connect_timeout)
            if code >= 0x80:
                msg = (
                    f"the broker refused our subscription to {opts.topic_filter!r} (0x{code:02x});"
                    " the service user needs read access to it in the ACL"
                )
                raise MqttRefusedError(msg)
            self.connects += 1
            self.connected.set()
            log.info(
                "MQTT connected to %s:%d as %s (session present: %s), subscribed to %s",
                opts.host,
                opts.port,
                opts.client_id,
                session_present,
                opts.topic_filter,
            )
            await self._keepalive(proto, stop)
        finally:
            self.connected.clear()
            self._proto = None
            if not transport.is_closing():
                if stop.is_set():
                    transport.write(bytes((DISCONNECT, 0)))
                transport.close()

    async def _keepalive(self, proto: _Protocol, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        interval = max(self._opts.keepalive / 2, 0.5)
        stopping: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
        try:
            while True:
                watched: set[asyncio.Future[Any]] = {proto.closed, stopping}
                done, _ = await asyncio.wait(
                    watched, timeout=interval, return_when="FIRST_COMPLETED"
                )
                if stopping in done:
                    return
                if proto.closed in done:
                    exc = proto.closed.result()
                    raise ConnectionError(f"connection lost: {exc or 'closed by the broker'}")
                if loop.time() - proto.last_pingresp > self._opts.keepalive * 1.5:
                    raise TimeoutError("the broker stopped answering pings")
                if proto.transport is not None:
                    proto.transport.write(PINGREQ)
        finally:
            stopping.cancel()

    def ack(self, packet_ids: list[int], generation: int) -> bool:
        """Send PUBACKs for messages of connection `generation`; False if it is gone."""
        proto = self._proto
        if proto is None or generation != self.generation or proto.transport is None:
            return False
        if packet_ids:
            proto.transport.write(puback_packets(packet_ids))
        return True

    def publish(self, topic: str, payload: bytes) -> bool:
        """QoS 0 publish on the current connection (dead letters); False when offline."""
        proto = self._proto
        if proto is None or proto.transport is None:
            return False
        proto.transport.write(publish_qos0_packet(topic, payload))
        return True

    def pause(self) -> None:
        """Stop reading from the broker (backpressure); MQTT flow control does the rest."""
        self._paused = True
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.pause_reading()

    def resume(self) -> None:
        """Read from the broker again once the backlog has drained."""
        self._paused = False
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.resume_reading()
