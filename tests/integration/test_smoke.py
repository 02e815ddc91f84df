"""A first end-to-end check: valid and invalid messages through real Mosquitto into real influxd."""

from __future__ import annotations

import json
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from carewatch.localstack import InfluxDB, Mosquitto
from carewatch.settings import Settings
from tests.helpers import ThreadedIngest, count_by_device, wait_until

pytestmark = pytest.mark.integration


def _publisher(broker: Mosquitto) -> mqtt.Client:
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id="smoke-pub", protocol=mqtt.MQTTv5
    )
    client.username_pw_set("loadgen", broker.loadgen_password)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    return client


def test_valid_points_land_and_garbage_is_rejected(
    mosquitto: Mosquitto, influxdb: InfluxDB, database: str, tmp_path: Path
) -> None:
    settings = Settings(
        mqtt_url=mosquitto.url(),
        influx_url=influxdb.url,
        influx_database=database,
        state_dir=tmp_path / "state",
    )
    ingest = ThreadedIngest(settings).start()
    assert ingest.service is not None
    wait_until(lambda: ingest.service.subscriber.connected.is_set(), 10, "the MQTT subscription")
    pub = _publisher(mosquitto)
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
        lambda: count_by_device(influxdb.url, database, "vitals", "hr").get("w1") == 100,
        20,
        "100 points of w1",
    )
    metrics = ingest.service.metrics
    wait_until(lambda: metrics.rejected_total == 3, 10, "3 rejections")
    assert metrics.rejected == {"bad_json": 1, "out_of_range": 1, "unknown_kind": 1}
    deadletters = (tmp_path / "state" / "deadletter.jsonl").read_text().splitlines()
    assert [json.loads(line)["reason"] for line in deadletters] == [
        "bad_json",
        "out_of_range",
        "unknown_kind",
    ]
    pub.loop_stop()
    ingest.stop()
