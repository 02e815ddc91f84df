"""Streams of protocol-v1 readings through a real broker, counting what it acknowledged."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from typing import Any

from tests.support.servers import HOST, Mosquitto


class StreamPublisher:
    """Publishes wristband telemetry for `devices` devices at about `rate` msg/s (paho, QoS 1).

    Keeps, per device, the ts of every message sent and of every one the broker
    acknowledged: a fault test then checks acked <= in InfluxDB <= sent.
    """

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        password: str,
        *,
        devices: int = 20,
        rate: float = 400.0,
        prefix: str = "f",
    ) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self.devices = [f"{prefix}{i:03d}" for i in range(devices)]
        self.rate = rate
        self.sent: dict[str, set[int]] = {d: set() for d in self.devices}
        # paho's own record of each publish; read, never locked against its thread.
        self._infos: list[tuple[str, int, Any]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{prefix}", protocol=mqtt.MQTTv5
        )
        client.username_pw_set(username, password)
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(0.2, 2)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        client.connect(host, port, clean_start=False, properties=props)
        client.loop_start()
        self.client = client

    def start(self) -> StreamPublisher:
        """Start publishing in a background thread."""
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        seq = 0
        base = int(time.time() * 1000) - 600_000
        interval = len(self.devices) / self.rate
        while not self._stop.is_set():
            tick = time.monotonic()
            for device in self.devices:
                if not self.client.is_connected():
                    continue  # a real device buffers; here the message is simply not sent
                ts = base + seq
                payload = json.dumps({"ts": ts, "seq": seq, "hr": 60 + seq % 50, "spo2": 97})
                info = self.client.publish(f"cw/v1/wristband/{device}/telemetry", payload, qos=1)
                self.sent[device].add(ts)
                self._infos.append((device, ts, info))
            seq += 1
            self._stop.wait(max(0.0, interval - (time.monotonic() - tick)))

    def stop(self, settle: float = 30.0) -> None:
        """Stop publishing and wait (up to `settle` s) until the broker acked all that was sent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline:
            if all(_acked(info) for _, _, info in self._infos):
                break
            time.sleep(0.1)
        self.client.loop_stop()
        self.client.disconnect()

    @property
    def acked(self) -> dict[str, set[int]]:
        """Per device, the ts of every message the broker acknowledged."""
        acked: dict[str, set[int]] = {d: set() for d in self.devices}
        for device, ts, info in self._infos:
            if _acked(info):
                acked[device].add(ts)
        return acked

    @property
    def total_acked(self) -> int:
        """How many messages the broker acknowledged."""
        return sum(len(v) for v in self.acked.values())


def _acked(info: Any) -> bool:
    """Whether the broker acknowledged a paho publish; one sent while disconnected counts as not."""
    try:
        return bool(info.is_published())
    except (RuntimeError, ValueError):
        return False


def publish_hr(broker: Mosquitto, readings: Sequence[tuple[str, int, float]], step_ms: int) -> None:
    """(device, ts, hr) as wristband telemetry at QoS 1, as the load account (`seq` is
    ts // step_ms); returns once the broker acknowledged every one."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"hr-{time.monotonic_ns()}")
    client.username_pw_set(Mosquitto.LOADGEN_USER, broker.loadgen_password)
    client.connect(HOST, broker.port)
    client.loop_start()
    try:
        infos = [
            client.publish(
                f"cw/v1/wristband/{device}/telemetry",
                json.dumps({"ts": ts, "seq": ts // step_ms, "hr": hr, "worn": True}),
                qos=1,
            )
            for device, ts, hr in readings
        ]
        for info in infos:
            info.wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()
