"""Registering and revoking a device through the API changes what a real Mosquitto admits."""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
import pytest

from carewatch.localstack import HOST, Mosquitto
from devices.provisioning import DynsecProvisioner
from tests.api.conftest import Api

pytestmark = pytest.mark.integration


def connect(broker: Mosquitto, device_id: str, password: str) -> tuple[mqtt.Client, bool]:
    result: dict[str, bool] = {}
    done = threading.Event()

    def on_connect(client: mqtt.Client, userdata: object, flags: object, reason: mqtt.ReasonCode,
                   props: object) -> None:
        result["ok"] = not reason.is_failure
        done.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device_id,
                         protocol=mqtt.MQTTv5)
    client.username_pw_set(device_id, password)
    client.on_connect = on_connect
    client.connect(HOST, broker.port)
    client.loop_start()
    assert done.wait(5), "no CONNACK"
    return client, result["ok"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_registered_device_publishes_and_revoked_one_is_refused(
    api: Api, mosquitto: Mosquitto
) -> None:
    api.client.app.state.provisioner = DynsecProvisioner(mosquitto.admin_target())  # type: ignore[attr-defined]
    created = api.request("admin", "POST", "/devices", json={"id": "w-new", "kind": "wristband"})
    assert created.status_code == 201, created.text
    creds = created.json()
    assert creds["broker_updated"] is True
    client, ok = connect(mosquitto, "w-new", creds["mqtt_password"])
    assert ok, "a freshly registered device must be admitted"
    info = client.publish("cw/v1/wristband/w-new/telemetry", b'{"ts":1,"hr":70}', qos=1)
    info.wait_for_publish(5)
    assert info.is_published()
    client.loop_stop()
    client.disconnect()
    _, wrong = connect(mosquitto, "w-new", "not-the-password")
    assert not wrong
    assert api.request("admin", "POST", "/devices/w-new/revoke").status_code == 200
    _, after_revoke = connect(mosquitto, "w-new", creds["mqtt_password"])
    assert not after_revoke, "a revoked device must be refused"
    restored = api.request("admin", "POST", "/devices/w-new/restore").json()
    _, old_password = connect(mosquitto, "w-new", creds["mqtt_password"])
    _, new_password = connect(mosquitto, "w-new", restored["mqtt_password"])
    assert (old_password, new_password) == (False, True)
