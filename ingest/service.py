"""The ingest service assembled from settings: subscriber, pipeline, writer, spool.

Its consumers (the rule engine) and its InfluxDB client come from the root (`carewatch.build`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Protocol

from core.db import Database
from core.influx import InfluxClient
from core.settings import IngestTuning, Settings
from devices.directory import load_devices_csv
from ingest.deadletter import DeadLetters
from ingest.metrics import IngestMetrics
from ingest.mqtt import MqttSubscriber
from ingest.pipeline import Ingester, ReadingConsumer
from ingest.points import LineEncoder
from ingest.spool import Spool
from ingest.statesync import DeviceStateSync
from ingest.status import DeviceStatusBook
from ingest.writer import TelemetryWriter
from protocol.codec import SessionOptions
from protocol.decode import Decoder
from protocol.topics import SUBSCRIPTION

log = logging.getLogger(__name__)


class ManagedConsumer(ReadingConsumer, Protocol):
    """A consumer with work of its own (the rule engine: ticks, checkpoints) that ingest runs."""

    async def start(self) -> None:
        """Get ready before the first reading arrives."""

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set; it is set only once every reading read was settled."""


def decoder_for(tuning: IngestTuning) -> Decoder:
    """The decoder with the configured payload size and clock-skew limits."""
    return Decoder(
        max_payload_bytes=tuning.max_payload_bytes,
        max_future_ms=int(tuning.max_future_skew * 1000),
        max_age_ms=int(tuning.max_age * 1000),
    )


def session_options(settings: Settings) -> SessionOptions:
    """The subscriber's MQTT session: broker, credentials, persistent session, topic filter."""
    mqtt = settings.mqtt
    tuning = settings.ingest
    topic_filter = SUBSCRIPTION
    if settings.mqtt_share_group:
        topic_filter = f"$share/{settings.mqtt_share_group}/{SUBSCRIPTION}"
    return SessionOptions(
        host=mqtt.host,
        port=mqtt.port,
        tls=mqtt.tls,
        username=mqtt.username,
        password=mqtt.password,
        client_id=tuning.client_id,
        topic_filter=topic_filter,
        session_expiry=tuning.session_expiry,
        receive_maximum=tuning.receive_maximum,
    )


class IngestService:
    """Owns the ingest parts and their tasks; `run` until `stop` is set, then flush.

    Every valid reading goes to each of `consumers`, and a message is acknowledged
    only once they settled it. `influx` stays the caller's to close.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        influx: InfluxClient,
        consumers: Sequence[ManagedConsumer] = (),
        database: Database | None = None,
    ) -> None:
        tuning = settings.ingest
        self.settings = settings
        self.consumers = tuple(consumers)
        self.metrics = IngestMetrics()
        self.status = DeviceStatusBook()
        # Device status for the API (`device_state`), upserted every 2 s when a database is given.
        self.statesync = DeviceStateSync(self.status, database) if database is not None else None
        state_dir = settings.state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        self.influx = influx
        self.spool = Spool(state_dir / "spool")
        self.writer = TelemetryWriter(
            influx,
            self.spool,
            self.metrics,
            attempts=tuning.retry_attempts,
            backoff=tuning.retry_backoff,
            replay_interval=tuning.spool_replay_interval,
        )
        self.deadletters = DeadLetters(state_dir / "deadletter.jsonl")
        devices = load_devices_csv(tuning.devices_file) if tuning.devices_file else {}
        self.ingester = Ingester(
            decoder=decoder_for(tuning),
            encoder=LineEncoder.from_devices(devices),
            writer=self.writer,
            deadletters=self.deadletters,
            metrics=self.metrics,
            status=self.status,
            batch_size=tuning.batch_size,
            flush_interval=tuning.flush_interval,
            max_pending=tuning.receive_maximum + tuning.batch_size,
            deadletter_topic=tuning.deadletter_topic,
            consumers=self.consumers,
            downstream_high=tuning.downstream_queue,
            share=tuning.share,
        )
        self.subscriber = MqttSubscriber(session_options(settings), self.ingester.on_publish)
        self.ingester.attach(self.subscriber)
        deadletter_topic = tuning.deadletter_topic
        self.deadletters.set_publisher(lambda line: self.subscriber.publish(deadletter_topic, line))

    async def run(self, stop: asyncio.Event) -> None:
        """Read, write and hand on until `stop` is set; then flush, acknowledge and stop."""
        await self.influx.ensure_database()
        if len(self.spool):
            log.info("found %d spooled batches from an earlier run; replaying", len(self.spool))
        consumers_stop = asyncio.Event()
        consumers = []
        for consumer in self.consumers:
            await consumer.start()
            consumers.append(asyncio.create_task(consumer.run(consumers_stop), name="consumer"))
        mqtt_stop = asyncio.Event()
        mqtt = asyncio.create_task(self.subscriber.run(mqtt_stop), name="ingest-mqtt")
        tasks = [
            asyncio.create_task(self.ingester.flush_forever(), name="ingest-flush"),
            asyncio.create_task(self.writer.replay_forever(), name="ingest-replay"),
            asyncio.create_task(self.ingester.run_downstream(), name="ingest-downstream"),
            asyncio.create_task(self._watch(stop), name="ingest-watch"),
        ]
        sync_stop = asyncio.Event()
        sync = None
        if self.statesync is not None:
            sync = asyncio.create_task(self.statesync.run(sync_stop), name="ingest-statesync")
        try:
            await stop.wait()
        finally:
            # Stop reading, make what was read durable and acknowledge it while the
            # connection stands; whatever stays unacknowledged the broker sends again.
            self.subscriber.pause()
            try:
                await self.ingester.flush()
            finally:
                mqtt_stop.set()
                await mqtt
                # Every reading read was settled (the flush waited for it): the consumers'
                # last work (the rule engine's checkpoint) sees all of it.
                consumers_stop.set()
                for task in consumers:
                    await task
                await self._stop_rest(sync, sync_stop, tasks)

    async def _stop_rest(
        self,
        sync: asyncio.Task[None] | None,
        sync_stop: asyncio.Event,
        tasks: list[asyncio.Task[None]],
    ) -> None:
        if sync is not None:
            # Nothing more is read: the last flush writes the final state (bounded
            # by DeviceStateSync.timeout); the database stays the caller's to dispose.
            sync_stop.set()
            await sync
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.deadletters.close()

    async def _watch(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.metrics.mqtt_connected = self.subscriber.connected.is_set()
            self.metrics.mqtt_connects = self.subscriber.connects
            self.metrics.devices_seen = len(self.status.devices)
            await asyncio.sleep(0.5)
