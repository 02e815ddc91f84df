"""The broker ACL: a device publishes only as itself; the service reads all, writes dead letters."""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt

from tests.support.servers import HOST, Mosquitto


def _client(broker: Mosquitto, user: str, password: str, client_id: str) -> mqtt.Client:
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
    )
    client.username_pw_set(user, password)
    client.connect(HOST, broker.port)
    client.loop_start()
    return client


def _subscriber(broker: Mosquitto) -> tuple[mqtt.Client, list[str]]:
    received: list[str] = []
    subscribed = threading.Event()
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id="acl-sub", protocol=mqtt.MQTTv5
    )
    client.username_pw_set("loadgen", broker.loadgen_password)
    client.on_message = lambda c, u, msg: received.append(msg.topic)
    client.on_subscribe = lambda *args: subscribed.set()
    client.connect(HOST, broker.port)
    client.subscribe("cw/v1/#", qos=1)
    client.loop_start()
    assert subscribed.wait(5)
    return client, received


def test_device_cannot_publish_as_another(mosquitto: Mosquitto) -> None:
    mosquitto.add_users([("acl-w1", "pw-one"), ("acl-w2", "pw-two")])
    sub, received = _subscriber(mosquitto)
    device = _client(mosquitto, "acl-w1", "pw-one", "acl-w1")
    own = device.publish("cw/v1/wristband/acl-w1/telemetry", b'{"ts":1,"hr":70}', qos=1)
    forged = device.publish("cw/v1/wristband/acl-w2/telemetry", b'{"ts":1,"hr":70}', qos=1)
    sideways = device.publish("cw/v1/deadletter", b"{}", qos=1)
    for info in (own, forged, sideways):
        info.wait_for_publish(5)
    time.sleep(0.5)
    # Only its own topic reached the broker's subscribers; the forged one and the
    # dead-letter topic were refused (MQTT 5 PUBACK reason 0x87, not authorized).
    assert received == ["cw/v1/wristband/acl-w1/telemetry"]
    device.loop_stop()
    sub.loop_stop()


def test_wrong_password_is_refused(mosquitto: Mosquitto) -> None:
    mosquitto.add_users([("acl-w3", "right")])
    refused = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="acl-w3", protocol=mqtt.MQTTv5)
    client.username_pw_set("acl-w3", "wrong")
    client.on_connect = lambda c, u, flags, reason, props: reason.is_failure and refused.set()
    client.connect(HOST, mosquitto.port)
    client.loop_start()
    assert refused.wait(5)
    client.loop_stop()


def test_service_account_reads_everything_and_writes_only_dead_letters(
    mosquitto: Mosquitto,
) -> None:
    sub, received = _subscriber(mosquitto)
    service = _client(mosquitto, "carewatch", mosquitto.service_password, "acl-service")
    service.publish("cw/v1/deadletter", b"{}", qos=1).wait_for_publish(5)
    service.publish("cw/v1/wristband/x1/telemetry", b"{}", qos=1).wait_for_publish(5)
    time.sleep(0.5)
    assert received == ["cw/v1/deadletter"]
    service.loop_stop()
    sub.loop_stop()
