"""Device provisioning through Mosquitto's dynamic security plugin, against a real broker.

The broker here runs with the plugin only (no password file, no ACL file),
started by the fixture below on a free port in the test's own folder.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from core.settings import MqttTarget
from devices.broker.dynsec_bootstrap import ADMIN_USER, find_plugin, write_config
from devices.broker.provisioning import DynsecProvisioner
from devices.exceptions import ProvisioningError
from tests.support.servers import HOST, free_port

ADMIN_PASSWORD = "admin-test-password-0001"
SERVICE_PASSWORD = "service-test-password-01"
LOADGEN_PASSWORD = "loadgen-test-password-01"
NOT_AUTHORIZED = 0x87
ADMINISTRATIVE_ACTION = 0x98


@dataclass
class DynsecBroker:
    """A mosquitto child process with the dynsec plugin; stop() ends only this PID."""

    folder: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def config_file(self) -> Path:
        return self.folder / "dynamic-security.json"

    @property
    def log(self) -> Path:
        return self.folder / "mosquitto.log"

    def write_conf(self, *, plugin: bool = True) -> Path:
        conf = self.folder / "mosquitto.conf"
        lines = [
            "per_listener_settings false",
            # As root, mosquitto would switch to the `mosquitto` user, which cannot
            # write the plugin's config in a private temporary folder.
            *(["user root"] if os.geteuid() == 0 else []),
            f"listener {self.port} {HOST}",
            *(
                [
                    "allow_anonymous false",
                    f"plugin {find_plugin()}",
                    f"plugin_opt_config_file {self.config_file}",
                ]
                if plugin
                # Without the plugin: anyone may log in, nobody answers $CONTROL.
                else ["allow_anonymous true"]
            ),
            "log_dest stderr",
            "log_type all",
            "",
        ]
        conf.write_text("\n".join(lines))
        return conf

    def start(self, *, plugin: bool = True) -> None:
        conf = self.write_conf(plugin=plugin)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                ["mosquitto", "-c", str(conf)],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.folder,
                start_new_session=True,
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"mosquitto exited: {self.log.read_text(errors='replace')[-2000:]}")
            with socket.socket() as sock:
                if sock.connect_ex((HOST, self.port)) == 0:
                    return
            time.sleep(0.05)
        pytest.fail(f"mosquitto did not open port {self.port}; see {self.log}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        # SIGTERM: the plugin's state is already on disk (it saves after every change).
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def admin(self, password: str = ADMIN_PASSWORD) -> MqttTarget:
        return MqttTarget(
            host=HOST, port=self.port, tls=False, username=ADMIN_USER, password=password
        )


@pytest.fixture
def dynsec_broker(tmp_path: Path) -> Iterator[DynsecBroker]:
    broker = DynsecBroker(tmp_path / "dynsec")
    broker.folder.mkdir()
    write_config(
        broker.config_file,
        admin_password=ADMIN_PASSWORD,
        service_password=SERVICE_PASSWORD,
        loadgen_password=LOADGEN_PASSWORD,
    )
    broker.start()
    yield broker
    broker.stop()


class Device:
    """A paho MQTT 5 client that records its CONNACK, DISCONNECT and PUBACK reason codes."""

    def __init__(self, port: int, user: str, password: str, client_id: str | None = None) -> None:
        self.connack: int | None = None
        self.disconnects: list[int] = []
        self.pubacks: dict[int, int] = {}
        self.received: list[str] = []
        self._answered = threading.Event()
        self._disconnected = threading.Event()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or user,
            protocol=mqtt.MQTTv5,
            # A kicked client must stay kicked for the test to see it.
            reconnect_on_failure=False,
        )
        self.client.username_pw_set(user, password)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.on_message = lambda c, u, msg: self.received.append(msg.topic)
        self.client.connect(HOST, port)
        self.client.loop_start()
        assert self._answered.wait(5), "no CONNACK within 5 s"

    def _on_connect(self, c: object, u: object, flags: object, rc: ReasonCode, p: object) -> None:
        self.connack = rc.value
        self._answered.set()

    def _on_disconnect(
        self, c: object, u: object, flags: object, rc: ReasonCode, p: object
    ) -> None:
        self.disconnects.append(rc.value)
        self._disconnected.set()

    def _on_publish(self, c: object, u: object, mid: int, rc: ReasonCode, p: object) -> None:
        self.pubacks[mid] = rc.value

    @property
    def accepted(self) -> bool:
        return self.connack == 0

    def publish(self, topic: str) -> int:
        """Publish QoS 1: 0 if the broker took it, else the PUBACK reason code (0x87 = denied)."""
        info = self.client.publish(topic, b'{"ts":1,"hr":70}', qos=1)
        info.wait_for_publish(5)
        deadline = time.monotonic() + 5
        while info.mid not in self.pubacks and time.monotonic() < deadline:
            time.sleep(0.01)
        code = self.pubacks[info.mid]
        # Below 0x80 is success; 0x10 only says nobody is subscribed.
        return 0 if code < 0x80 else code

    def subscribe(self, topic: str) -> None:
        self._subscribed.clear()
        self.client.subscribe(topic, qos=1)
        assert self._subscribed.wait(5)

    def wait_disconnected(self, timeout: float) -> bool:
        return self._disconnected.wait(timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _password(n: int) -> str:
    return f"device-password-{n:08d}"


def test_provisioned_device_publishes_as_itself_only(dynsec_broker: DynsecBroker) -> None:
    async def provision() -> None:
        provisioner = DynsecProvisioner(dynsec_broker.admin(), timeout=5)
        await provisioner.add_device("prov-w1", _password(1))
        await provisioner.add_device("prov-w2", _password(2))

    asyncio.run(provision())
    service = Device(dynsec_broker.port, "carewatch", SERVICE_PASSWORD, "prov-service")
    shared = Device(dynsec_broker.port, "carewatch", SERVICE_PASSWORD, "prov-service-shared")
    assert service.accepted and shared.accepted
    service.subscribe("cw/v1/#")
    # What the ingester subscribes to when CAREWATCH_MQTT_SHARE_GROUP is set.
    shared.subscribe("$share/prov/cw/v1/#")
    device = Device(dynsec_broker.port, "prov-w1", _password(1))
    assert device.accepted
    assert device.publish("cw/v1/wristband/prov-w1/telemetry") == 0
    assert device.publish("cw/v1/wristband/prov-w2/telemetry") == NOT_AUTHORIZED
    assert device.publish("cw/v1/deadletter") == NOT_AUTHORIZED
    assert service.publish("cw/v1/deadletter") == 0
    assert service.publish("cw/v1/wristband/prov-w1/telemetry") == NOT_AUTHORIZED
    time.sleep(0.3)
    expected = ["cw/v1/wristband/prov-w1/telemetry", "cw/v1/deadletter"]
    assert service.received == expected
    assert shared.received == expected
    for client in (device, service, shared):
        client.close()


def test_revoke_drops_the_live_connection_and_refuses_new_ones(
    dynsec_broker: DynsecBroker,
) -> None:
    provisioner = DynsecProvisioner(dynsec_broker.admin(), timeout=5)
    asyncio.run(provisioner.add_device("prov-w3", _password(3)))
    live = Device(dynsec_broker.port, "prov-w3", _password(3))
    assert live.accepted

    asyncio.run(provisioner.revoke_device("prov-w3"))
    # The broker kicks it at once: MQTT 5 DISCONNECT 0x98, administrative action.
    assert live.wait_disconnected(5)
    assert live.disconnects[0] == ADMINISTRATIVE_ACTION
    refused = Device(dynsec_broker.port, "prov-w3", _password(3))
    assert refused.connack == NOT_AUTHORIZED
    # Revoking again, or revoking a device the broker never knew, is fine.
    asyncio.run(provisioner.revoke_device("prov-w3"))
    asyncio.run(provisioner.revoke_device("prov-never-added"))

    asyncio.run(provisioner.restore_device("prov-w3", _password(33)))
    assert Device(dynsec_broker.port, "prov-w3", _password(3), "old").connack == NOT_AUTHORIZED
    back = Device(dynsec_broker.port, "prov-w3", _password(33))
    assert back.accepted
    assert back.publish("cw/v1/wristband/prov-w3/event") == 0
    back.close()


def test_adding_an_existing_device_replaces_its_password(dynsec_broker: DynsecBroker) -> None:
    provisioner = DynsecProvisioner(dynsec_broker.admin(), timeout=5)
    asyncio.run(provisioner.add_device("prov-b1", _password(4)))
    live = Device(dynsec_broker.port, "prov-b1", _password(4))
    assert live.accepted
    asyncio.run(provisioner.add_device("prov-b1", _password(44)))
    # A new password ends the session that logged in with the old one.
    assert live.wait_disconnected(5)
    assert Device(dynsec_broker.port, "prov-b1", _password(4), "old").connack == NOT_AUTHORIZED
    fresh = Device(dynsec_broker.port, "prov-b1", _password(44))
    assert fresh.accepted
    assert fresh.publish("cw/v1/bin/prov-b1/telemetry") == 0
    fresh.close()
    # Restoring a device the broker never had creates it.
    asyncio.run(provisioner.restore_device("prov-b2", _password(5)))
    assert Device(dynsec_broker.port, "prov-b2", _password(5)).accepted


def test_concurrent_provisioners_get_their_own_answers(dynsec_broker: DynsecBroker) -> None:
    async def run() -> None:
        # Every admin connection receives every response: correlation data
        # must keep each caller's answers apart.
        shared = DynsecProvisioner(dynsec_broker.admin(), timeout=5)
        async with shared:
            await asyncio.gather(
                *(shared.add_device(f"prov-c{i}", _password(i)) for i in range(10)),
                *(
                    DynsecProvisioner(dynsec_broker.admin(), timeout=5).add_device(
                        f"prov-d{i}", _password(i)
                    )
                    for i in range(10)
                ),
            )

    asyncio.run(run())
    for device_id in ("prov-c9", "prov-d9"):
        device = Device(dynsec_broker.port, device_id, _password(9))
        assert device.accepted
        device.close()


def test_provisioning_200_devices(dynsec_broker: DynsecBroker) -> None:
    async def run() -> tuple[float, float]:
        provisioner = DynsecProvisioner(dynsec_broker.admin(), timeout=10)
        started = time.perf_counter()
        async with provisioner:  # one connection for the whole batch
            for i in range(200):
                await provisioner.add_device(f"prov-bulk-{i:03d}", _password(i))
        one_connection = time.perf_counter() - started
        started = time.perf_counter()
        for i in range(200):  # as the API calls it: a connection per device
            await provisioner.add_device(f"prov-each-{i:03d}", _password(i))
        return one_connection, time.perf_counter() - started

    one_connection, per_call = asyncio.run(run())
    print(
        f"\nprovisioned 200 devices in {one_connection:.2f} s over one connection, "
        f"200 more in {per_call:.2f} s with a connection each"
    )
    for device_id in ("prov-bulk-199", "prov-each-199"):
        device = Device(dynsec_broker.port, device_id, _password(199))
        assert device.accepted
        device.close()
    assert one_connection < 30 and per_call < 30


def test_bootstrap_rewrite_keeps_provisioned_devices(dynsec_broker: DynsecBroker) -> None:
    asyncio.run(
        DynsecProvisioner(dynsec_broker.admin(), timeout=5).add_device("prov-k1", _password(6))
    )
    dynsec_broker.stop()
    # What compose's init service does on every `up`: rotate the fixed accounts,
    # seed a dev device, drop loadgen (production), keep what was provisioned.
    write_config(
        dynsec_broker.config_file,
        admin_password=ADMIN_PASSWORD,
        service_password="service-rotated-password",
        devices=[("prov-seed", _password(7))],
    )
    dynsec_broker.start()
    assert Device(dynsec_broker.port, "prov-k1", _password(6)).accepted
    assert Device(dynsec_broker.port, "prov-seed", _password(7)).accepted
    assert Device(dynsec_broker.port, "carewatch", "service-rotated-password", "s1").accepted
    assert Device(dynsec_broker.port, "carewatch", SERVICE_PASSWORD, "s2").connack == NOT_AUTHORIZED
    assert Device(dynsec_broker.port, "loadgen", LOADGEN_PASSWORD).connack == NOT_AUTHORIZED
    seeded = Device(dynsec_broker.port, "prov-seed", _password(7), "seed-2")
    assert seeded.publish("cw/v1/bin/prov-seed/event") == 0
    assert seeded.publish("cw/v1/bin/prov-k1/event") == NOT_AUTHORIZED
    seeded.close()


def test_errors_say_what_to_do(dynsec_broker: DynsecBroker, tmp_path: Path) -> None:
    with pytest.raises(ProvisioningError, match="refused account 'carewatch-admin'"):
        asyncio.run(
            DynsecProvisioner(dynsec_broker.admin("wrong"), timeout=5).add_device(
                "prov-e1", _password(1)
            )
        )
    provisioner = DynsecProvisioner(dynsec_broker.admin(), timeout=5)
    with pytest.raises(ProvisioningError, match="reserved account name"):
        asyncio.run(provisioner.add_device("carewatch", _password(1)))
    with pytest.raises(ProvisioningError, match="not 1 to 64"):
        asyncio.run(provisioner.add_device("wb/1", _password(1)))
    with pytest.raises(ProvisioningError, match="at least 16"):
        asyncio.run(provisioner.add_device("prov-e1", "short"))

    plain = DynsecBroker(tmp_path / "plain")
    plain.folder.mkdir()
    plain.start(plugin=False)
    try:
        with pytest.raises(ProvisioningError, match="no dynamic security plugin loaded"):
            asyncio.run(DynsecProvisioner(plain.admin(), timeout=1).revoke_device("prov-e1"))
    finally:
        plain.stop()
    with pytest.raises(ProvisioningError, match="cannot reach the MQTT broker"):
        asyncio.run(DynsecProvisioner(plain.admin(), timeout=2).revoke_device("prov-e1"))
