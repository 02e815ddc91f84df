"""Counters of the ingest path, as plain ints (the hot path only adds) rendered for Prometheus."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(slots=True)
class IngestMetrics:
    """What an operator watches: in, written, rejected (by reason), spooled, redelivered, lag."""

    received: int = 0
    written: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    redelivered: int = 0
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
        return sum(self.rejected.values())

    def snapshot(self) -> dict[str, object]:
        """A JSON-ready copy, for the health check and the demo display."""
        return {
            "received": self.received,
            "written": self.written,
            "rejected": dict(self.rejected),
            "rejected_total": self.rejected_total,
            "redelivered": self.redelivered,
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
        out: list[str] = []

        def metric(name: str, kind: str, help_: str, value: float, labels: str = "") -> None:
            full = f"carewatch_ingest_{name}"
            out.append(f"# HELP {full} {help_}")
            out.append(f"# TYPE {full} {kind}")
            out.append(f"{full}{labels} {value}")

        metric("received_total", "counter", "MQTT messages received.", self.received)
        metric("written_total", "counter", "Points InfluxDB accepted.", self.written)
        out.append("# HELP carewatch_ingest_rejected_total Messages rejected, by reason.")
        out.append("# TYPE carewatch_ingest_rejected_total counter")
        for reason, count in sorted(self.rejected.items()):
            out.append(f'carewatch_ingest_rejected_total{{reason="{reason}"}} {count}')
        metric("redelivered_total", "counter", "Duplicates dropped by seq.", self.redelivered)
        metric("spooled_total", "counter", "Points written to the disk spool.", self.spooled)
        metric("replayed_total", "counter", "Spooled points later written.", self.replayed)
        metric(
            "write_errors_total", "counter", "Failed InfluxDB write attempts.", self.write_errors
        )
        metric(
            "write_refused_total",
            "counter",
            "Batches InfluxDB refused as bad data.",
            self.write_refused,
        )
        metric("batches_total", "counter", "Batches made durable.", self.batches)
        metric("consumer_lag", "gauge", "Messages received but not yet durable.", self.pending)
        metric("spool_segments", "gauge", "Batches waiting in the spool.", self.spool_segments)
        metric("spool_bytes", "gauge", "Bytes waiting in the spool.", self.spool_bytes)
        metric("downstream_depth", "gauge", "Readings queued for the rules.", self.downstream_depth)
        metric(
            "mqtt_connected", "gauge", "1 while subscribed to the broker.", int(self.mqtt_connected)
        )
        metric(
            "mqtt_connects_total", "counter", "Successful broker connections.", self.mqtt_connects
        )
        metric(
            "influx_ok", "gauge", "1 when the last InfluxDB write succeeded.", int(self.influx_ok)
        )
        metric("devices_online", "gauge", "Devices whose status is online.", self.devices_online)
        metric("devices_seen", "gauge", "Devices heard from since start.", self.devices_seen)
        return "\n".join(out) + "\n"
