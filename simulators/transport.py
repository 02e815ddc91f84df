"""MQTT connections of the live simulator; every aiomqtt call of the package is in this module.

Links, wills and the connect gate: simulators/README.md, "Live fleet".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import ssl
from collections.abc import AsyncIterator
from typing import Final

import aiomqtt

from core.settings import MqttTarget
from simulators.exceptions import LinkDown

log = logging.getLogger(__name__)

ONLINE: Final = b"online"
OFFLINE: Final = b"offline"
_BACKOFF_FIRST: Final = 0.5
_BACKOFF_MAX: Final = 30.0
_GOODBYE_TIMEOUT: Final = 2.0


class ConnectGate:
    """Caps concurrent connection attempts and spaces their starts 1/rate seconds apart."""

    def __init__(self, concurrency: int, rate: float) -> None:
        self._slots = asyncio.Semaphore(max(1, concurrency))
        self._spacing = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one attempt slot, after waiting for this attempt's turn."""
        async with self._slots:
            loop = asyncio.get_running_loop()
            now = loop.time()
            at = max(now, self._next)
            self._next = at + self._spacing
            if at > now:
                await asyncio.sleep(at - now)
            yield


async def wait_first(*events: asyncio.Event, timeout: float | None = None) -> None:
    """Return when any event is set, or after timeout seconds."""
    if any(e.is_set() for e in events):
        return
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


class Link:
    """One MQTT connection that reconnects until `stop` is set."""

    def __init__(
        self,
        broker: MqttTarget,
        *,
        client_id: str,
        username: str | None,
        password: str | None,
        gate: ConnectGate,
        status_topic: str | None = None,
        max_inflight: int = 20,
        publish_timeout: float = 10.0,
    ) -> None:
        self.client_id = client_id
        self.connects = 0
        self.connected = asyncio.Event()
        self._broker = broker
        self._username = username
        self._password = password
        self._gate = gate
        self._status_topic = status_topic
        self._max_inflight = max_inflight
        self._timeout = publish_timeout
        self._client: aiomqtt.Client | None = None
        self._generation = 0
        self._broken = asyncio.Event()
        self._drop = asyncio.Event()
        self._released = asyncio.Event()
        self._released.set()
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._jitter = random.Random(client_id)  # backoff jitter only; payloads use their own RNG

    def _new_client(self) -> aiomqtt.Client:
        will = None
        if self._status_topic is not None:
            will = aiomqtt.Will(self._status_topic, OFFLINE, qos=1, retain=True)
        tls_context = ssl.create_default_context() if self._broker.tls else None
        client = aiomqtt.Client(
            self._broker.host,
            self._broker.port,
            username=self._username,
            password=self._password,
            identifier=self.client_id,
            will=will,
            clean_session=True,
            keepalive=60,
            timeout=self._timeout,
            max_inflight_messages=self._max_inflight,
            tls_context=tls_context,
        )
        # Many devices share a connection: hundreds of pending publishes are normal there.
        client.pending_calls_threshold = max(10, self._max_inflight)
        return client

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish at QoS 1 and wait for the PUBACK; raise LinkDown if that fails."""
        client = self._client
        generation = self._generation
        if client is None:
            msg = f"{self.client_id}: not connected"
            raise LinkDown(msg)
        self._in_flight += 1
        self._idle.clear()
        try:
            await client.publish(topic, payload, qos=1, retain=retain, timeout=self._timeout)
        except aiomqtt.MqttError as exc:
            if generation == self._generation:
                self._broken.set()  # only the current connection's failure triggers a reconnect
            msg = f"{self.client_id}: publish to {topic} failed: {exc}"
            raise LinkDown(msg) from exc
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()

    def drop(self) -> None:
        """Cut the connection without a DISCONNECT (so the broker sends the will); stay down."""
        self._released.clear()
        self._drop.set()

    def release(self) -> None:
        """Let a dropped link connect again."""
        self._drop.clear()
        self._released.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, reconnect with backoff on loss, and disconnect cleanly once stop is set."""
        backoff = _BACKOFF_FIRST
        while not stop.is_set():
            if not self._released.is_set():
                await wait_first(self._released, stop)
                continue
            try:
                await self._session(stop)
                backoff = _BACKOFF_FIRST
            except aiomqtt.MqttError as exc:
                log.debug("%s: connection failed: %s", self.client_id, exc)
                delay = backoff * self._jitter.uniform(0.5, 1.5)
                backoff = min(backoff * 2, _BACKOFF_MAX)
                await wait_first(stop, timeout=delay)
            finally:
                self._client = None
                self.connected.clear()

    async def _session(self, stop: asyncio.Event) -> None:
        client = self._new_client()
        async with contextlib.AsyncExitStack() as stack:
            async with self._gate.slot():
                if stop.is_set():
                    return
                await stack.enter_async_context(client)
            if self._status_topic is not None:
                await client.publish(self._status_topic, ONLINE, qos=1, retain=True)
            self._broken.clear()
            self._generation += 1
            self._client = client
            self.connects += 1
            self.connected.set()
            await wait_first(stop, self._broken, self._drop)
            if stop.is_set() and not (self._broken.is_set() or self._drop.is_set()):
                # Let publishes in flight get their PUBACK, so what was sent is counted.
                await wait_first(self._idle, timeout=self._timeout)
            self._client = None
            self.connected.clear()
            if self._drop.is_set():
                self._cut(client)
                # Let paho notice the closed socket, so leaving the context sends no DISCONNECT.
                await asyncio.sleep(0.05)
                self._forget_loss(client)
            elif stop.is_set() and self._status_topic is not None:
                # A device switched off on purpose says so; only a lost one leaves it to the will.
                with contextlib.suppress(aiomqtt.MqttError):
                    await client.publish(
                        self._status_topic, OFFLINE, qos=1, retain=True, timeout=_GOODBYE_TIMEOUT
                    )

    @staticmethod
    def _cut(client: aiomqtt.Client) -> None:
        # aiomqtt has no API for an unclean disconnect; shutting the socket down through
        # paho's public `socket()` does what a lost network or dead battery does.
        sock = client._client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    @staticmethod
    def _forget_loss(client: aiomqtt.Client) -> None:
        # The expected loss after _cut would otherwise be logged as a never-retrieved error.
        lost = client._disconnected
        if lost.done() and not lost.cancelled():
            lost.exception()
