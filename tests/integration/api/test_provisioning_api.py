"""Registering and revoking a device through the API changes what a real Mosquitto admits."""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
import pytest

from devices.broker.provisioning import DynsecProvisioner
from tests.integration.api.conftest import Api
from tests.support.servers import HOST, Mosquitto


def connect(broker: Mosquitto, device_id: str, password: str) -> tuple[mqtt.Client, bool]:
    result: dict[str, bool] = {}
    done = threading.Event()

    def on_connect(
        client: mqtt.Client, userdata: object, flags: object, reason: mqtt.ReasonCode, props: object
    ) -> None:
        result["ok"] = not reason.is_failure
        done.set()

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=device_id, protocol=mqtt.MQTTv5
    )
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


def publish_low_battery(mosquitto: Mosquitto, device_id: str, password: str) -> mqtt.Client:
    """Log in as the device, say online, and send one reading: battery low, not worn."""
    import json
    import time

    device, ok = connect(mosquitto, device_id, password)
    assert ok
    device.publish(f"cw/v1/wristband/{device_id}/status", b"online", qos=1, retain=True)
    payload = {"ts": int(time.time() * 1000), "hr": 71, "spo2": 96, "battery": 12, "worn": False}
    device.publish(f"cw/v1/wristband/{device_id}/telemetry", json.dumps(payload), qos=1)
    return device


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_status_the_ingester_saw_is_what_the_api_serves(
    api: Api,
    mosquitto: Mosquitto,
    influxdb: object,
    database: str,
    database_url: str,
    tmp_path: object,
) -> None:
    """Device -> Mosquitto -> ingest -> registry state -> GET /status/devices."""
    from pathlib import Path

    from core.settings import Settings
    from tests.support.stack import ThreadedIngest
    from tests.support.waiting import wait_until

    api.client.app.state.provisioner = DynsecProvisioner(mosquitto.admin_target())  # type: ignore[attr-defined]
    creds = api.request(
        "admin",
        "POST",
        "/devices",
        json={
            "id": "w-live",
            "kind": "wristband",
            "grid_id": api.ids["grid_a"],
            "interval_s": 10,
        },
    ).json()
    settings = Settings(
        mqtt_url=mosquitto.url(),
        influx_url=influxdb.url,
        influx_database=database,  # type: ignore[attr-defined]
        state_dir=Path(str(tmp_path)) / "ingest-state",
        database_url=database_url,
    )
    ingest = ThreadedIngest(settings, with_registry=True).start()
    try:
        assert ingest.service is not None
        wait_until(ingest.service.subscriber.connected.is_set, 10, "the subscription")
        device = publish_low_battery(mosquitto, "w-live", creds["mqtt_password"])

        def served() -> list[dict[str, object]]:
            response = api.request(
                "wang", "GET", "/status/devices", params={"state": "low_battery"}
            )
            return response.json()["data"]  # type: ignore[no-any-return]

        wait_until(lambda: bool(served()), 15, "the state in the registry")
        row = served()[0]
        assert row["device_id"] == "w-live" and row["online"] is True and row["worn"] is False
        assert row["last_reading"]["hr"] == 71  # type: ignore[index]
        device.loop_stop()
    finally:
        ingest.stop()
