"""Counters of the ingest path, as plain ints (the hot path only adds) rendered for Prometheus."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from core.metrics import Metric, render_prometheus


@dataclass(slots=True)
class IngestMetrics:
    """What an operator watches: in, written, rejected (by reason), spooled, redelivered, lag."""

    received: int = 0
    written: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    redelivered: int = 0
    foreign: int = 0  # other workers' devices (a partitioned worker): acknowledged, not kept
    spooled: int = 0
    replayed: int = 0
    write_errors: int = 0
    write_refused: int = 0
    batches: int = 0
    pending: int = 0  # received, not yet durable (written or spooled) nor acknowledged
    spool_segments: int = 0
    spool_bytes: int = 0
    downstream_depth: int = 0
    status_changes: int = 0
    mqtt_connected: bool = False
    mqtt_connects: int = 0
    influx_ok: bool = False
    devices_online: int = 0
    devices_seen: int = 0

    @property
    def rejected_total(self) -> int:
        """Messages rejected, whatever the reason."""
        return sum(self.rejected.values())

    def snapshot(self) -> dict[str, object]:
        """A JSON-ready copy, for the health check and the demo display."""
        return {
            "received": self.received,
            "written": self.written,
            "rejected": dict(self.rejected),
            "rejected_total": self.rejected_total,
            "redelivered": self.redelivered,
            "foreign": self.foreign,
            "spooled": self.spooled,
            "replayed": self.replayed,
            "write_errors": self.write_errors,
            "write_refused": self.write_refused,
            "pending": self.pending,
            "spool_segments": self.spool_segments,
            "spool_bytes": self.spool_bytes,
            "downstream_depth": self.downstream_depth,
            "mqtt_connected": self.mqtt_connected,
            "influx_ok": self.influx_ok,
            "devices_online": self.devices_online,
            "devices_seen": self.devices_seen,
        }

    def render_prometheus(self) -> str:
        """The Prometheus text exposition format (version 0.0.4)."""
        return render_prometheus("carewatch_ingest_", self._metrics())

    def _metrics(self) -> list[Metric]:
        return [
            Metric("received_total", "counter", "MQTT messages received.", self.received),
            Metric("written_total", "counter", "Points InfluxDB accepted.", self.written),
            Metric(
                "rejected_total",
                "counter",
                "Messages rejected, by reason.",
                label="reason",
                by_label=self.rejected,
            ),
            Metric("redelivered_total", "counter", "Duplicates dropped by seq.", self.redelivered),
            Metric(
                "foreign_total", "counter", "Other partitions' messages, not kept.", self.foreign
            ),
            Metric("spooled_total", "counter", "Points written to the disk spool.", self.spooled),
            Metric("replayed_total", "counter", "Spooled points later written.", self.replayed),
            Metric(
                "write_errors_total",
                "counter",
                "Failed InfluxDB write attempts.",
                self.write_errors,
            ),
            Metric(
                "write_refused_total",
                "counter",
                "Batches InfluxDB refused as bad data.",
                self.write_refused,
            ),
            Metric("batches_total", "counter", "Batches made durable.", self.batches),
            Metric("consumer_lag", "gauge", "Messages received but not yet durable.", self.pending),
            Metric("spool_segments", "gauge", "Batches waiting in the spool.", self.spool_segments),
            Metric("spool_bytes", "gauge", "Bytes waiting in the spool.", self.spool_bytes),
            Metric(
                "downstream_depth", "gauge", "Readings queued for the rules.", self.downstream_depth
            ),
            Metric(
                "mqtt_connected",
                "gauge",
                "1 while subscribed to the broker.",
                int(self.mqtt_connected),
            ),
            Metric(
                "mqtt_connects_total",
                "counter",
                "Successful broker connections.",
                self.mqtt_connects,
            ),
            Metric(
                "influx_ok",
                "gauge",
                "1 when the last InfluxDB write succeeded.",
                int(self.influx_ok),
            ),
            Metric(
                "devices_online", "gauge", "Devices whose status is online.", self.devices_online
            ),
            Metric("devices_seen", "gauge", "Devices heard from since start.", self.devices_seen),
        ]
