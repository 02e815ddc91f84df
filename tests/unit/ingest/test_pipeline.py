"""The ingest loop with recording fakes at its seams: acks follow durability, backpressure."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from ingest.deadletter import DeadLetters
from ingest.exceptions import SpoolError
from ingest.metrics import IngestMetrics
from ingest.pipeline import Ingester, Item
from ingest.points import LineEncoder
from ingest.status import DeviceStatusBook
from protocol.decode import Decoder

NOW_NS = 1_790_000_000_000 * 1_000_000
NOW_MS = NOW_NS // 1_000_000


class RecordingFlow:
    def __init__(self) -> None:
        self.generation = 1
        self.acks: list[tuple[int, list[int]]] = []
        self.paused = False
        self.pauses = 0

    def ack(self, packet_ids: list[int], generation: int) -> bool:
        if generation != self.generation:
            return False
        self.acks.append((generation, list(packet_ids)))
        return True

    def pause(self) -> None:
        self.paused = True
        self.pauses += 1

    def resume(self) -> None:
        self.paused = False

    @property
    def acked(self) -> list[int]:
        return [pid for _, pids in self.acks for pid in pids]


class RecordingSink:
    def __init__(self, gate: asyncio.Event | None = None, fail: int = 0) -> None:
        self.bodies: list[bytes] = []
        self.gate = gate
        self.fail = fail

    async def write(self, body: bytes, points: int) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            self.fail -= 1
            raise SpoolError("disk full")
        self.bodies.append(body)

    @property
    def lines(self) -> list[str]:
        return [line for body in self.bodies for line in body.decode().split("\n")]


class SlowConsumer:
    def __init__(self) -> None:
        self.items: list[Item] = []

    async def handle(self, item: Item) -> None:
        await asyncio.sleep(0.0005)
        self.items.append(item)

    async def settle(self) -> None:
        pass


def make(tmp_path: Path, sink: RecordingSink, **kwargs: object) -> tuple[Ingester, RecordingFlow]:
    ingester = Ingester(
        decoder=Decoder(),
        encoder=LineEncoder(),
        writer=sink,
        deadletters=DeadLetters(tmp_path / "dl.jsonl"),
        metrics=IngestMetrics(),
        status=DeviceStatusBook(),
        clock=lambda: NOW_NS,
        **kwargs,  # type: ignore[arg-type]
    )
    flow = RecordingFlow()
    ingester.attach(flow)
    return ingester, flow


def telemetry(seq: int, device: str = "w1") -> tuple[str, bytes]:
    return (
        f"cw/v1/wristband/{device}/telemetry",
        json.dumps({"ts": NOW_MS - 10_000 + seq, "seq": seq, "hr": 70}).encode(),
    )


def test_acks_only_after_the_batch_is_durable(tmp_path: Path) -> None:
    async def run() -> None:
        gate = asyncio.Event()
        sink = RecordingSink(gate)
        ingester, flow = make(tmp_path, sink, batch_size=10)
        for pid in range(1, 26):
            ingester.on_publish(*telemetry(pid), pid, 1, False)
        flusher = asyncio.create_task(ingester.flush_forever())
        await asyncio.sleep(0.05)
        assert flow.acked == []  # writes are stuck: nothing acknowledged
        gate.set()
        await asyncio.sleep(0.05)
        await ingester.flush()
        assert flow.acked == list(range(1, 26))  # in order, each once
        assert len(sink.lines) == 25
        assert ingester.metrics.pending == 0
        flusher.cancel()

    asyncio.run(run())


def test_rejects_and_duplicates_are_acked_but_not_written(tmp_path: Path) -> None:
    async def run() -> None:
        sink = RecordingSink()
        ingester, flow = make(tmp_path, sink)
        ingester.on_publish(*telemetry(1), 1, 1, False)
        ingester.on_publish(*telemetry(1), 2, 1, True)  # redelivered
        ingester.on_publish("cw/v1/wristband/w1/telemetry", b"garbage", 3, 1, False)
        ingester.on_publish(*telemetry(2), 4, 1, False)
        await ingester.flush()
        assert flow.acked == [1, 2, 3, 4]
        assert len(sink.lines) == 2
        assert ingester.metrics.redelivered == 1
        assert ingester.metrics.rejected == {"bad_json": 1}

    asyncio.run(run())


def test_a_device_restart_resets_seq_without_being_dropped(tmp_path: Path) -> None:
    async def run() -> None:
        sink = RecordingSink()
        ingester, _ = make(tmp_path, sink)
        ingester.on_publish(*telemetry(500), 1, 1, False)
        topic = "cw/v1/wristband/w1/telemetry"
        later = json.dumps({"ts": NOW_MS - 100, "seq": 0, "hr": 71}).encode()
        ingester.on_publish(topic, later, 2, 1, False)
        await ingester.flush()
        assert len(sink.lines) == 2

    asyncio.run(run())


def test_acks_of_a_lost_connection_are_not_sent_on_the_new_one(tmp_path: Path) -> None:
    async def run() -> None:
        sink = RecordingSink()
        ingester, flow = make(tmp_path, sink)
        ingester.on_publish(*telemetry(1), 7, 1, False)
        flow.generation = 2  # reconnected before the batch was durable
        ingester.on_publish(*telemetry(2), 7, 1, False)
        await ingester.flush()
        assert flow.acks == [(2, [7])]
        assert len(sink.lines) == 2  # the old batch is still written

    asyncio.run(run())


def test_spool_failure_keeps_messages_unacknowledged_and_retries(tmp_path: Path) -> None:
    async def run() -> None:
        sink = RecordingSink(fail=1)
        ingester, flow = make(tmp_path, sink)
        ingester.on_publish(*telemetry(1), 1, 1, False)
        await ingester.flush()
        assert flow.acked == []
        await ingester.flush()
        assert flow.acked == [1]

    asyncio.run(run())


def test_slow_consumer_pauses_reading_and_bounds_the_queue(tmp_path: Path) -> None:
    async def run() -> None:
        sink = RecordingSink()
        consumer = SlowConsumer()
        ingester, flow = make(tmp_path, sink, consumers=[consumer], downstream_high=100)
        downstream = asyncio.create_task(ingester.run_downstream())
        flusher = asyncio.create_task(ingester.flush_forever())
        deepest = 0
        for pid in range(1, 2001):
            while flow.paused:  # what the transport does: no reads while paused
                await asyncio.sleep(0.001)
            ingester.on_publish(*telemetry(pid, f"w{pid % 7}"), pid % 65535, 1, False)
            deepest = max(deepest, sum(len(d.queue) for d in ingester._downstream))
            if pid % 50 == 0:
                await asyncio.sleep(0)
        while len(consumer.items) < 2000:
            await asyncio.sleep(0.01)
        await ingester.flush()
        assert deepest <= 100
        assert flow.pauses > 0
        assert len(sink.lines) == 2000
        downstream.cancel()
        flusher.cancel()

    asyncio.run(run())


class GatedConsumer:
    """Handles nothing until `gate` is set: a rule engine making a finding durable."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.items: list[Item] = []

    async def handle(self, item: Item) -> None:
        await self.gate.wait()
        self.items.append(item)

    async def settle(self) -> None:
        pass


def test_acks_wait_until_every_consumer_handled_the_batch(tmp_path: Path) -> None:
    async def run() -> None:
        sink = RecordingSink()
        consumer = GatedConsumer()
        ingester, flow = make(tmp_path, sink, consumers=[consumer])
        downstream = asyncio.create_task(ingester.run_downstream())
        ingester.on_publish(*telemetry(1), 1, 1, False)
        ingester.on_publish(*telemetry(2), 2, 1, False)
        flush = asyncio.create_task(ingester.flush())
        await asyncio.sleep(0.05)
        assert len(sink.lines) == 2  # durable in InfluxDB ...
        assert flow.acked == []  # ... but not acked while the rules have not seen it
        consumer.gate.set()
        await asyncio.wait_for(flush, 5)
        assert flow.acked == [1, 2]
        assert len(consumer.items) == 2
        downstream.cancel()

    asyncio.run(run())


@pytest.mark.parametrize("payload", [b"", b"\x00" * 10, b"{" * 3000])
def test_garbage_never_escapes(tmp_path: Path, payload: bytes) -> None:
    async def run() -> None:
        ingester, flow = make(tmp_path, RecordingSink())
        ingester.on_publish("cw/v1/bin/b1/event", payload, 1, 1, False)
        await ingester.flush()
        assert flow.acked == [1]
        assert (tmp_path / "dl.jsonl").read_text().count("\n") == 1

    asyncio.run(run())
