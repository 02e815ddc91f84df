"""The ingest loop: every message decoded once, batched, made durable, then acknowledged.

Acknowledged only once durable and settled by every consumer: docs/ingest.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ingest.deadletter import DeadLetters
from ingest.exceptions import SpoolError
from ingest.metrics import IngestMetrics
from ingest.points import LineEncoder
from ingest.status import DeviceStatusBook
from protocol.decode import Decoded, Decoder
from protocol.models import Reading, Rejection, StatusChange
from protocol.topics import partition_of

log = logging.getLogger(__name__)

Item = Reading | StatusChange
_CHUNK = 1000  # items a consumer handles before it settles them
_WRITES_IN_FLIGHT = 2  # batches written to InfluxDB at once (acknowledged in order)


class ReadingConsumer(Protocol):
    """What a consumer (the rule engine) implements to see every valid reading and status change.

    Items come in chunks: `handle` each, then `settle` once. After `settle`
    returns, the chunk is done with (the rule engine has made its findings
    durable) and its messages may be acknowledged to the broker. One `settle`
    per chunk rather than per reading lets a burst of falls share one
    transaction.
    """

    async def handle(self, item: Item) -> None:
        """Take one reading or status change of the chunk."""

    async def settle(self) -> None:
        """Finish the chunk: its messages may be acknowledged once this returns."""


class BatchSink(Protocol):
    """Where batches go (`ingest.writer.TelemetryWriter`): returns once the batch is durable."""

    async def write(self, body: bytes, points: int) -> None:
        """Return once the batch of line protocol is durable."""


class FlowControl(Protocol):
    """The broker side: acknowledge, pause and resume (an `ingest.mqtt.MqttSubscriber`)."""

    generation: int

    def ack(self, packet_ids: list[int], generation: int) -> bool:
        """Acknowledge messages of connection `generation`; False if it is gone."""

    def pause(self) -> None:
        """Stop reading from the broker."""

    def resume(self) -> None:
        """Read from the broker again."""


@dataclass(slots=True)
class _Batch:
    generation: int
    lines: list[str] = field(default_factory=list)
    acks: list[int] = field(default_factory=list)
    messages: int = 0
    # Per consumer, how many items it must have handled before this batch is acked.
    marks: tuple[int, ...] = ()


class _Downstream:
    """A bounded hand-off to one consumer; past `high` items it asks for a pause."""

    def __init__(
        self, consumer: ReadingConsumer, high: int, pressure: Callable[[bool], None]
    ) -> None:
        self.consumer = consumer
        self.queue: deque[Item] = deque()
        self.high = high
        self._pressure = pressure
        self._ready = asyncio.Event()
        self.paused = False
        self.put_count = 0
        self.done_count = 0
        self._progress = asyncio.Event()

    def put(self, item: Item) -> None:
        self.queue.append(item)
        self.put_count += 1
        self._ready.set()
        if not self.paused and len(self.queue) >= self.high:
            self.paused = True
            self._pressure(True)

    async def run(self) -> None:
        queue = self.queue
        consumer = self.consumer
        while True:
            await self._ready.wait()
            while queue:
                chunk = 0
                while queue and chunk < _CHUNK:
                    item = queue.popleft()
                    chunk += 1
                    try:
                        await consumer.handle(item)
                    except Exception:
                        # One faulty consumer must not stop ingest; the reading is in InfluxDB.
                        log.exception("downstream consumer failed on %r", item)
                try:
                    await consumer.settle()
                except Exception:
                    log.exception("downstream consumer failed to settle %d items", chunk)
                self.done_count += chunk
                self._progress.set()
                if self.paused and len(queue) <= self.high // 2:
                    self.paused = False
                    self._pressure(False)
            self._ready.clear()

    async def caught_up(self, mark: int) -> None:
        """Return once `mark` items have been handled."""
        while self.done_count < mark:
            self._progress.clear()
            await self._progress.wait()


class Ingester:
    """Turns MQTT messages into durable points; `on_publish` is the per-message hot path."""

    def __init__(
        self,
        *,
        decoder: Decoder,
        encoder: LineEncoder,
        writer: BatchSink,
        deadletters: DeadLetters,
        metrics: IngestMetrics,
        status: DeviceStatusBook,
        batch_size: int = 5000,
        flush_interval: float = 0.2,
        max_pending: int = 50_000,
        deadletter_topic: str = "cw/v1/deadletter",
        consumers: Sequence[ReadingConsumer] = (),
        downstream_high: int = 10_000,
        clock: Callable[[], int] = time.time_ns,
        share: tuple[int, int] | None = None,
    ) -> None:
        self._decoder = decoder
        self._share = share  # (i, n): keep only the devices of partition i of n
        self._encoder = encoder
        self._writer = writer
        self._deadletters = deadletters
        self.metrics = metrics
        self.status = status
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._max_pending = max_pending
        self._deadletter_topic = deadletter_topic
        self._clock = clock
        self._flow: FlowControl | None = None
        self._batch = _Batch(0)
        self._full: deque[_Batch] = deque()
        self._wakeup = asyncio.Event()
        self._drain_lock = asyncio.Lock()
        self._paused_by: set[object] = set()
        # Last (seq, ts) per device: a message no newer in both is a redelivery.
        self._last_seq: dict[str, tuple[int, int]] = {}
        self._downstream = [
            _Downstream(c, downstream_high, self._pressure_from(c)) for c in consumers
        ]

    def attach(self, flow: FlowControl) -> None:
        """The broker side to acknowledge, pause and resume (the subscriber)."""
        self._flow = flow

    # -- the hot path -------------------------------------------------------

    def on_publish(self, topic: str, payload: bytes, packet_id: int, qos: int, dup: bool) -> None:
        """Handle one PUBLISH from the broker; never raises."""
        metrics = self.metrics
        metrics.received += 1
        batch = self._batch
        flow = self._flow
        if flow is not None and flow.generation != batch.generation:
            self._cut()
            batch = self._batch = _Batch(flow.generation)
        now_ms = self._clock() // 1_000_000
        share = self._share
        try:
            if share is not None and partition_of(topic, share[1]) != share[0]:
                metrics.foreign += 1  # another worker's device: acknowledged, not kept
                item = None
            else:
                item = self._decoder.decode(topic, payload, now_ms)
            if type(item) is Reading:
                body = item.body
                seq = body.seq
                device_id = item.device_id
                last = self._last_seq.get(device_id) if seq is not None else None
                if last is not None and seq <= last[0] and body.ts <= last[1]:  # type: ignore[operator]
                    metrics.redelivered += 1
                else:
                    if seq is not None:
                        self._last_seq[device_id] = (seq, body.ts)
                    batch.lines.append(self._encoder.encode(item))
                    self.status.seen(item, now_ms)
                    for downstream in self._downstream:
                        downstream.put(item)
            elif item is not None:
                self._not_a_reading(item, topic, payload, now_ms)
        except Exception:
            # A bug here must cost one message, not the connection; keep it visible.
            metrics.rejected["internal_error"] += 1
            log.exception("failed on a message from %s: %r", topic[:120], payload[:200])
        if qos:
            batch.acks.append(packet_id)
        batch.messages += 1
        metrics.pending += 1
        if len(batch.lines) >= self._batch_size or len(batch.acks) >= self._batch_size * 2:
            self._cut()
            if metrics.pending >= self._max_pending:
                self._pressure("writer", True)

    def _not_a_reading(self, item: Decoded, topic: str, payload: bytes, now_ms: int) -> None:
        # Off the hot path (status changes and rejects are rare): a call more costs nothing.
        metrics = self.metrics
        if type(item) is StatusChange:
            metrics.status_changes += 1
            self.status.status(item)
            metrics.devices_online = self.status.online
            for downstream in self._downstream:
                downstream.put(item)
        elif topic != self._deadletter_topic:
            assert isinstance(item, Rejection)
            metrics.rejected[item.reason] += 1
            self._deadletters.record(item, topic, payload, now_ms)

    # -- batching and durability ---------------------------------------------

    def _cut(self) -> None:
        batch = self._batch
        if batch.messages:
            if self._downstream:
                batch.marks = tuple(d.put_count for d in self._downstream)
            self._full.append(batch)
            self._batch = _Batch(batch.generation)
            self._wakeup.set()

    async def flush_forever(self) -> None:
        """Write batches as they fill, or every flush interval when traffic is thin."""
        while True:
            if not self._full:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), self._flush_interval)
                self._wakeup.clear()
                if not self._full:
                    self._cut()
            await self._drain()

    async def _drain(self) -> None:
        # One drainer at a time: batches are written, spooled and acknowledged in order.
        async with self._drain_lock:
            await self._drain_locked()

    async def _drain_locked(self) -> None:
        metrics = self.metrics
        while self._full:
            # Two writes in flight: one slow InfluxDB answer (a compaction) does not hold the
            # stream. They settle and are acknowledged in order, as MQTT wants PUBACKs.
            ahead = list(itertools.islice(self._full, _WRITES_IN_FLIGHT))
            outcomes = await asyncio.gather(
                *(self._write(batch) for batch in ahead), return_exceptions=True
            )
            for batch, outcome in zip(ahead, outcomes, strict=True):
                if isinstance(outcome, SpoolError):
                    # Neither InfluxDB nor the disk takes it: keep it unacknowledged (the
                    # broker keeps the messages) and try again shortly.
                    log.critical("%s; InfluxDB is down too, retrying in 1 s", outcome)
                    await asyncio.sleep(1.0)
                    return
                if isinstance(outcome, BaseException):
                    raise outcome
                for downstream, mark in zip(self._downstream, batch.marks, strict=True):
                    await downstream.caught_up(mark)
                self._full.popleft()
                metrics.batches += 1
                if self._flow is not None and batch.acks:
                    self._flow.ack(batch.acks, batch.generation)
                metrics.pending -= batch.messages
                if "writer" in self._paused_by and metrics.pending < self._max_pending // 2:
                    self._pressure("writer", False)
        metrics.downstream_depth = sum(len(d.queue) for d in self._downstream)

    async def _write(self, batch: _Batch) -> None:
        if batch.lines:
            await self._writer.write("\n".join(batch.lines).encode(), len(batch.lines))

    async def flush(self) -> None:
        """Make everything received so far durable and acknowledged (shutdown, tests)."""
        self._cut()
        await self._drain()

    async def run_downstream(self) -> None:
        """Feed each consumer its queue, chunk by chunk, until cancelled."""
        await asyncio.gather(*(d.run() for d in self._downstream))

    # -- backpressure -----------------------------------------------------------

    def _pressure_from(self, key: object) -> Callable[[bool], None]:
        return lambda on: self._pressure(key, on)

    def _pressure(self, key: object, on: bool) -> None:
        was_paused = bool(self._paused_by)
        if on:
            self._paused_by.add(key)
        else:
            self._paused_by.discard(key)
        if self._flow is None:
            return
        if self._paused_by and not was_paused:
            # A consumer is named by its class (RuleService), not its repr.
            name = key if isinstance(key, str) else type(key).__name__
            log.info("pausing reads from the broker: %s is behind", name)
            self._flow.pause()
        elif was_paused and not self._paused_by:
            self._flow.resume()
