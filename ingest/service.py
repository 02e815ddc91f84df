"""The ingest service assembled from settings: subscriber, pipeline, writer, spool."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from core.db import Database
from core.influx import InfluxClient
from core.settings import Settings
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
from rules.findings import FindingLog, FindingSink
from rules.service import RuleService

log = logging.getLogger(__name__)


class IngestService:
    """Owns the ingest parts and their tasks; `run` until `stop` is set, then flush.

    With `settings.rules.enabled` it also runs the rule engine on every reading
    (DESIGN.md: one ingest+rules worker); findings go to `<state>/findings.jsonl`
    and to `finding_sinks`.
    """

    def __init__(
        self,
        settings: Settings,
        consumers: Sequence[ReadingConsumer] = (),
        database: Database | None = None,
        finding_sinks: Sequence[FindingSink] = (),
    ) -> None:
        tuning = settings.ingest
        self.settings = settings
        self.rules: RuleService | None = None
        if settings.rules.enabled:
            sinks = [FindingLog(settings.state_dir / "findings.jsonl"), *finding_sinks]
            self.rules = RuleService(settings, sinks, database=database)
            consumers = (*consumers, self.rules)
        self.metrics = IngestMetrics()
        self.status = DeviceStatusBook()
        # Device state for the API (`device_state`), upserted every 2 s when a database is given.
        self.statesync = DeviceStateSync(self.status, database) if database is not None else None
        state_dir = settings.state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        self.influx = InfluxClient(
            settings.influx_url, settings.influx_database, settings.influx_token
        )
        self.spool = Spool(state_dir / "spool")
        self.writer = TelemetryWriter(
            self.influx,
            self.spool,
            self.metrics,
            attempts=tuning.retry_attempts,
            backoff=tuning.retry_backoff,
            replay_interval=tuning.spool_replay_interval,
        )
        self.deadletters = DeadLetters(state_dir / "deadletter.jsonl")
        devices = load_devices_csv(tuning.devices_file) if tuning.devices_file else {}
        self.ingester = Ingester(
            decoder=Decoder(
                max_payload_bytes=tuning.max_payload_bytes,
                max_future_ms=int(tuning.max_future_skew * 1000),
                max_age_ms=int(tuning.max_age * 1000),
            ),
            encoder=LineEncoder.from_devices(devices),
            writer=self.writer,
            deadletters=self.deadletters,
            metrics=self.metrics,
            status=self.status,
            batch_size=tuning.batch_size,
            flush_interval=tuning.flush_interval,
            max_pending=tuning.receive_maximum + tuning.batch_size,
            deadletter_topic=tuning.deadletter_topic,
            consumers=consumers,
            downstream_high=tuning.downstream_queue,
        )
        mqtt = settings.mqtt
        topic_filter = SUBSCRIPTION
        if settings.mqtt_share_group:
            topic_filter = f"$share/{settings.mqtt_share_group}/{SUBSCRIPTION}"
        self.subscriber = MqttSubscriber(
            SessionOptions(
                host=mqtt.host,
                port=mqtt.port,
                tls=mqtt.tls,
                username=mqtt.username,
                password=mqtt.password,
                client_id=tuning.client_id,
                topic_filter=topic_filter,
                session_expiry=tuning.session_expiry,
                receive_maximum=tuning.receive_maximum,
            ),
            self.ingester.on_publish,
        )
        self.ingester.attach(self.subscriber)
        deadletter_topic = tuning.deadletter_topic
        self.deadletters.set_publisher(lambda line: self.subscriber.publish(deadletter_topic, line))

    async def run(self, stop: asyncio.Event) -> None:
        await self.influx.ensure_database()
        if len(self.spool):
            log.info("found %d spooled batches from an earlier run; replaying", len(self.spool))
        rules_stop = asyncio.Event()
        rules_task = None
        if self.rules is not None:
            await self.rules.start()
            rules_task = asyncio.create_task(self.rules.run(rules_stop), name="rules")
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
                if rules_task is not None:
                    # Every reading read was judged (the flush waited for it): last checkpoint.
                    rules_stop.set()
                    await rules_task
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
                await self.influx.aclose()
                self.deadletters.close()

    async def _watch(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.metrics.mqtt_connected = self.subscriber.connected.is_set()
            self.metrics.mqtt_connects = self.subscriber.connects
            self.metrics.devices_seen = len(self.status.devices)
            await asyncio.sleep(0.5)
