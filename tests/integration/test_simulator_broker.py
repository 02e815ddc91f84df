"""The simulator against a real Mosquitto (started here) with per-device passwords and the ACL."""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass

import aiomqtt
import pytest

from core.settings import MqttTarget
from protocol.decode import Decoder
from protocol.models import Reading, StatusChange
from simulators.credentials import derive_password
from simulators.fleet import run_fleet
from simulators.load import run_load
from simulators.manifest import build_fleet
from simulators.models import FleetConfig
from simulators.scenarios import parse_spec
from tests.support.servers import Mosquitto

SECRET = "integration-secret"


@dataclass
class Broker:
    port: int
    loadgen: tuple[str, str]

    def target(self, user: tuple[str, str] | None = None) -> MqttTarget:
        username, password = user or (None, None)
        return MqttTarget(
            host="127.0.0.1", port=self.port, tls=False, username=username, password=password
        )


@pytest.fixture
def broker(mosquitto: Mosquitto) -> Broker:
    """The shared Mosquitto fixture, with the simulated devices' accounts added."""
    config = FleetConfig(wristbands=3, bins=2, prefix="sb-")
    mosquitto.add_users(
        (d.device_id, derive_password(SECRET, d.device_id)) for d in build_fleet(config)
    )
    return Broker(mosquitto.port, (Mosquitto.LOADGEN_USER, mosquitto.loadgen_password))


async def _collect(broker: Broker, into: list[tuple[str, bytes]], ready: asyncio.Event) -> None:
    user, password = broker.loadgen
    async with aiomqtt.Client(
        "127.0.0.1", broker.port, username=user, password=password, identifier="sb-watcher"
    ) as client:
        await client.subscribe("cw/v1/#", qos=1)
        ready.set()
        async for message in client.messages:
            assert isinstance(message.payload, bytes)
            into.append((message.topic.value, message.payload))


async def _wait_for(predicate: object, timeout: float) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


def test_per_device_fleet_delivers_everything_it_counted_acked(broker: Broker) -> None:
    config = FleetConfig(
        wristbands=3,
        bins=2,
        prefix="sb-",
        secret=SECRET,
        interval=0.3,
        duration=4.0,
        incidents=(parse_spec("fall@w0000+1s"), parse_spec("silent@w0001+1s-2500ms")),
    )

    async def scenario() -> None:
        received: list[tuple[str, bytes]] = []
        ready = asyncio.Event()
        watcher = asyncio.create_task(_collect(broker, received, ready))
        await asyncio.wait_for(ready.wait(), 5)
        report = await asyncio.wait_for(run_fleet(config, broker.target()), 20)
        decoder = Decoder()

        def readings() -> list[Reading]:
            now = time.time_ns() // 1_000_000
            out = [decoder.decode(t, p, now) for t, p in received]
            return [r for r in out if isinstance(r, Reading)]

        def status_count() -> int:
            return sum(1 for t, _ in received if t.endswith("/status"))

        # Each device: online and a final offline; sb-w0001 also the will and online again.
        await _wait_for(lambda: len(readings()) >= report.acked and status_count() >= 12, 5)
        watcher.cancel()
        now = time.time_ns() // 1_000_000
        decoded = [decoder.decode(t, p, now) for t, p in received]
        assert all(isinstance(d, Reading | StatusChange) for d in decoded), decoded
        per_device = collections.Counter(d.device_id for d in decoded if isinstance(d, Reading))
        assert report.acked > 40
        for device_id, counts in report.devices.items():
            assert counts.acked == counts.published == counts.generated > 0
            assert per_device[device_id] == counts.acked, device_id
        falls = [
            d for d in decoded if isinstance(d, Reading) and getattr(d.body, "type", "") == "fall"
        ]
        assert [f.device_id for f in falls] == ["sb-w0000"]
        statuses = [
            d.online for d in decoded if isinstance(d, StatusChange) and d.device_id == "sb-w0001"
        ]
        # online, the will's offline when it went silent, online again, offline on stop
        assert statuses == [True, False, True, False]
        assert report.devices["sb-w0001"].connects == 2
        assert report.all_connected_after is not None

    asyncio.run(scenario())


def test_wrong_password_never_connects_and_stop_does_not_hang(broker: Broker) -> None:
    config = FleetConfig(
        wristbands=2, bins=0, prefix="sb-", secret="wrong", duration=1.5, interval=0.2
    )
    started = time.monotonic()
    report = asyncio.run(asyncio.wait_for(run_fleet(config, broker.target()), 15))
    assert time.monotonic() - started < 6
    assert report.acked == 0 and report.all_connected_after is None
    assert report.generated > 0  # generated, buffered, never published


def test_load_mode_over_the_shared_account(broker: Broker) -> None:
    config = FleetConfig(wristbands=50, bins=10, prefix="sbl-", connections=2)

    async def scenario() -> None:
        received: list[tuple[str, bytes]] = []
        ready = asyncio.Event()
        watcher = asyncio.create_task(_collect(broker, received, ready))
        await asyncio.wait_for(ready.wait(), 5)
        report = await asyncio.wait_for(
            run_load(config, broker.target(broker.loadgen), messages=5000), 30
        )
        assert report.published == report.acked == 5000
        assert sum(report.per_device_acked.values()) == 5000
        await _wait_for(lambda: len(received) >= 5000, 10)
        watcher.cancel()
        decoder = Decoder()
        now = time.time_ns() // 1_000_000
        stamps: dict[str, set[int]] = collections.defaultdict(set)
        for topic, payload in received:
            reading = decoder.decode(topic, payload, now)
            assert isinstance(reading, Reading), reading
            stamps[reading.device_id].add(reading.body.ts)
        assert sum(len(s) for s in stamps.values()) == 5000  # ts unique per device
        assert len(stamps) == 60

    asyncio.run(scenario())
