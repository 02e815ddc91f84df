"""A first end-to-end check: valid and invalid messages through real Mosquitto into real influxd."""

from __future__ import annotations

import json
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from tests.support.influx import count_by_device
from tests.support.servers import Mosquitto
from tests.support.stack import Stack
from tests.support.waiting import wait_until


def _publisher(broker: Mosquitto) -> mqtt.Client:
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id="smoke-pub", protocol=mqtt.MQTTv5
    )
    client.username_pw_set("loadgen", broker.loadgen_password)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    return client


def test_valid_points_land_and_garbage_is_rejected(stack: Stack) -> None:
    ingest = stack.start()
    assert ingest.service is not None
    pub = _publisher(stack.broker)
    now = int(time.time() * 1000)
    infos = []
    for i in range(100):
        payload = {"ts": now - 1000 + i, "seq": i, "hr": 70 + i % 5, "spo2": 97, "worn": True}
        infos.append(pub.publish("cw/v1/wristband/w1/telemetry", json.dumps(payload), qos=1))
    infos.append(pub.publish("cw/v1/wristband/w1/telemetry", b"{not json", qos=1))
    infos.append(
        pub.publish("cw/v1/wristband/w1/telemetry", json.dumps({"ts": now, "hr": 900}), qos=1)
    )
    infos.append(pub.publish("cw/v1/toaster/t1/telemetry", b"{}", qos=1))
    for info in infos:
        info.wait_for_publish(10)
    wait_until(
        lambda: count_by_device(stack.influx_url, stack.database, "vitals", "hr").get("w1") == 100,
        20,
        "100 points of w1",
    )
    metrics = ingest.service.metrics
    wait_until(lambda: metrics.rejected_total == 3, 10, "3 rejections")
    assert metrics.rejected == {"bad_json": 1, "out_of_range": 1, "unknown_kind": 1}
    deadletters = (stack.state_dir / "deadletter.jsonl").read_text().splitlines()
    assert [json.loads(line)["reason"] for line in deadletters] == [
        "bad_json",
        "out_of_range",
        "unknown_kind",
    ]
    pub.loop_stop()
    ingest.stop()


def test_status_channel_and_http_endpoints(stack: Stack, tmp_path: Path) -> None:
    """Retained online/offline (the last will) is tracked; /metrics and /healthz report it."""
    from fastapi.testclient import TestClient

    from api.main import create_app
    from core.db import Database
    from devices.service import NoBroker

    pub = _publisher(stack.broker)
    # Retained before the ingester exists: it must learn it on subscribing.
    pub.publish("cw/v1/wristband/s1/status", b"online", qos=1, retain=True).wait_for_publish(5)
    pub.publish("cw/v1/bin/s2/status", b"online", qos=1, retain=True).wait_for_publish(5)
    settings = stack.settings()
    ingest = stack.start(settings)
    service, parts = ingest.service, ingest.parts
    assert service is not None and parts is not None
    wait_until(lambda: service.status.online == 2, 10, "two devices online")
    pub.publish("cw/v1/bin/s2/status", b"offline", qos=1, retain=True).wait_for_publish(5)
    wait_until(lambda: service.status.online == 1, 10, "the bin's offline")
    state = service.status.devices["s2"]
    assert state.online is False and state.status_since_ms is not None
    wait_until(lambda: service.metrics.mqtt_connected, 5, "the health flag")

    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}")
    app = create_app(
        settings,
        database=database,
        provisioner=NoBroker(),
        health=parts.health,
        metrics=parts.metrics,
    )
    client = TestClient(app)
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.json()["ingest"]["devices_online"] == 1
    text = client.get("/metrics").text
    assert "carewatch_ingest_devices_online 1" in text
    assert "# TYPE carewatch_ingest_received_total counter" in text
    pub.loop_stop()
    ingest.stop()
