"""`carewatch demo` (`make demo`): the whole stack on this machine, and what it is doing.

Mosquitto and InfluxDB from Debian's binaries under `$CAREWATCH_STATE_DIR/demo` (127.0.0.1),
the service in this process, 50 wristbands and 10 bins each logging in as itself; rates every
2 s, and each SMS or WeChat message printed by a local inbox as its reader would see it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from carewatch.build import Parts, assembled
from carewatch.localstack import HOST, InfluxDB, Mosquitto, free_port
from carewatch.runtime import serve
from core.db import Database
from core.secrets import hash_password
from core.settings import MqttTarget, Settings
from devices.access import Role, Scope
from devices.bindings import bind_device, register_device
from devices.organisation import create_building, create_community, create_grid
from devices.residents import create_resident
from devices.tables import User
from simulators.credentials import derive_password
from simulators.fleet import run_fleet
from simulators.manifest import build_fleet, write_manifest
from simulators.models import DeviceSpec, FleetConfig
from simulators.scenarios import parse_spec

DEMO_USER = "demo-admin"
DEMO_PASSWORD = "carewatch-demo"  # a local demo on 127.0.0.1 only
DEMO_INTERVAL = 5.0
WRISTBANDS = 50
BINS = 10
# A few incidents so the first minutes show events, not only telemetry.
# Registers the demo fleet: an administrator's reach.
DEMO_SCOPE = Scope(user_id=0, role=Role.ADMIN, community_id=None, grid_ids=frozenset())
SCENARIOS = (
    "fall@w0003+1m",
    "tachycardia@w0007+30s-3m",
    "bin_overflow@b0002+2m",
    "silent@w0011+1m-2m",
)


def _resident_name(number: int) -> str:
    """A plausible name for a simulated resident: surname, then a given name of that generation."""
    surnames = "张王李赵刘陈杨黄周吴徐孙马朱胡郭何高林罗"
    given = ("建国", "秀英", "德明", "桂兰", "志强", "玉珍", "保华", "淑芬")
    return surnames[number % len(surnames)] + given[number % len(given)]


def _port(preferred: int) -> int:
    with socket.socket() as sock:
        if sock.connect_ex((HOST, preferred)) != 0:
            return preferred
    return free_port()


async def run_demo(settings: Settings, stop: asyncio.Event) -> None:
    """Start the local servers, the service and the fleet; stop them all when `stop` is set."""
    root = settings.state_dir.resolve() / "demo"
    fleet = FleetConfig(
        wristbands=WRISTBANDS,
        bins=BINS,
        interval=DEMO_INTERVAL,
        incidents=tuple(parse_spec(s) for s in SCENARIOS),
    )
    devices = build_fleet(fleet)
    manifest = root / "devices.csv"
    root.mkdir(parents=True, exist_ok=True)
    write_manifest(manifest, devices)
    broker = Mosquitto(
        root / "mosquitto",
        _port(1883),
        users=[(d.device_id, derive_password(fleet.secret, d.device_id)) for d in devices],
    )
    influx = InfluxDB(root / "influxdb", _port(8086))
    print(f"starting Mosquitto on {HOST}:{broker.port} and InfluxDB on {influx.url} under {root}")
    broker.start()
    try:
        influx.start()
        try:
            await _run(settings, stop, root, broker, influx, fleet, manifest, devices)
        finally:
            influx.stop()
    finally:
        broker.stop()
    print("demo stopped: broker, InfluxDB, service and fleet are down; data kept in", root)


async def _register_fleet(database: Database, devices: list[DeviceSpec]) -> None:
    """The simulated fleet in the registry (once): a community, its grids, residents, devices."""
    async with database.sessions() as session:
        if await session.scalar(select(User.id).where(User.username == DEMO_USER)):
            return
        session.add(
            User(
                username=DEMO_USER,
                full_name="演示管理员",
                role="admin",
                password_hash=hash_password(DEMO_PASSWORD),
            )
        )
        await session.commit()
        community = await create_community(
            session, DEMO_SCOPE, name="幸福社区", duty_phone="13900009999"
        )
        places = _Places(community.id)
        for spec in devices:
            await _register_device(session, places, spec)


@dataclass
class _Places:
    """The grids and buildings registered so far, by name."""

    community_id: int
    grids: dict[str, int] = field(default_factory=dict)
    buildings: dict[str, int] = field(default_factory=dict)


async def _grid(session: AsyncSession, places: _Places, name: str) -> int:
    """The grid of this name, with a worker of its own, made on first use."""
    if name not in places.grids:
        number = len(places.grids) + 1
        worker = User(
            username=f"worker{number}",
            full_name=f"{'王李赵钱孙周吴郑'[number % 8]}芳",
            role="grid_worker",
            phone=f"1390000{number:04d}",
            wechat=f"worker{number}",
            password_hash=hash_password(DEMO_PASSWORD),
        )
        session.add(worker)
        await session.commit()
        grid = await create_grid(
            session, DEMO_SCOPE, community_id=places.community_id, name=name, worker_ids=[worker.id]
        )
        places.grids[name] = grid.id
    return places.grids[name]


async def _register_device(session: AsyncSession, places: _Places, spec: DeviceSpec) -> None:
    """One device, bound to a new resident (a wristband) or to its building (a bin)."""
    entry = spec.entry
    grid_id = await _grid(session, places, entry.grid)
    if entry.building not in places.buildings:
        building = await create_building(session, DEMO_SCOPE, grid_id=grid_id, name=entry.building)
        places.buildings[entry.building] = building.id
    building_id = places.buildings[entry.building]
    await register_device(
        session,
        DEMO_SCOPE,
        device_id=entry.device_id,
        kind=entry.kind.value,
        grid_id=grid_id,
        interval_s=int(DEMO_INTERVAL),
    )
    if entry.kind.value != "wristband":
        await bind_device(
            session,
            DEMO_SCOPE,
            entry.device_id,
            building_id=building_id,
            category=entry.category.value if entry.category else "other",
        )
        return
    resident = await create_resident(
        session, DEMO_SCOPE, _resident_fields(spec.name[1:], grid_id, building_id)
    )
    await bind_device(session, DEMO_SCOPE, entry.device_id, resident_id=resident.id)


def _resident_fields(suffix: str, grid_id: int, building_id: int) -> dict[str, Any]:
    """The file of the resident who wears wristband `w<suffix>`, with one family contact."""
    number = int(suffix)
    return {
        "grid_id": grid_id,
        "building_id": building_id,
        "name": _resident_name(number),
        "birth_year": 1940,
        "gender": "女" if number % 2 else "男",
        "unit": "1单元",
        "room": f"{100 + number}",
        "service_needs": ["daily_check"],
        "tags": ["lives-alone"],
        "contacts": [
            {
                "name": f"家属{suffix}",
                "relation": "子女",
                "phone": f"1380000{number:04d}",
                "wechat": f"family{suffix}",
                "channels": ["wechat", "sms"],
            }
        ],
    }


async def _inbox() -> tuple[asyncio.Server, int]:
    """A stand-in for the SMS and WeChat providers: prints each message it is given."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            length = next(
                (
                    int(v)
                    for k, _, v in (h.partition(":") for h in lines[1:])
                    if k.lower() == "content-length"
                ),
                0,
            )
            body = json.loads(await reader.readexactly(length)) if length else {}
            channel, to = [*path.strip("/").split("/", 1), ""][:2]
            shown = to[:3] + "****" + to[-4:] if channel == "sms" and len(to) >= 11 else to
            print(f"  >> {channel} to {shown}: {body.get('message', '')}", flush=True)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
        except (asyncio.IncompleteReadError, ValueError, IndexError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    return server, port


def _service_settings(
    settings: Settings, root: Path, broker: Mosquitto, influx: InfluxDB, manifest: Path, inbox: int
) -> Settings:
    """The operator's settings pointed at the demo's broker, InfluxDB, fleet and inbox."""
    return settings.model_copy(
        update={
            "mqtt_url": broker.url(),
            "mqtt_admin_url": broker.url(Mosquitto.ADMIN_USER),
            "influx_url": influx.url,
            "state_dir": root / "state",
            "http_listen": f"{HOST}:{_port(settings.http_host_port[1])}",
            "ingest": settings.ingest.model_copy(update={"devices_file": manifest}),
            "alerts": settings.alerts.model_copy(
                update={
                    "sms_url": f"json://{HOST}:{inbox}/sms/{{phone}}",
                    "wechat_url": f"json://{HOST}:{inbox}/wechat/{{wechat}}",
                }
            ),
        }
    )


async def _run(
    settings: Settings,
    stop: asyncio.Event,
    root: Path,
    broker: Mosquitto,
    influx: InfluxDB,
    fleet: FleetConfig,
    manifest: Path,
    devices: list[DeviceSpec],
) -> None:
    inbox, inbox_port = await _inbox()
    service_settings = _service_settings(settings, root, broker, influx, manifest, inbox_port)
    async with assembled(service_settings, ingest=True, alerts=True) as parts:
        assert parts.database is not None
        await _register_fleet(parts.database, devices)
        server = asyncio.create_task(serve(parts, stop))
        await asyncio.sleep(1.0)
        print(
            f"service on http://{service_settings.http_listen} (/docs, /metrics, /healthz); "
            f"log in as {DEMO_USER} / {DEMO_PASSWORD}, e.g. GET /api/v1/status/devices"
        )
        print(
            f"fleet: {fleet.wristbands} wristbands, {fleet.bins} bins, "
            f"every {fleet.interval:.0f} s; incidents: {', '.join(SCENARIOS)}"
        )
        print("Ctrl-C stops everything.\n")
        sim_stop = asyncio.Event()
        sim = asyncio.create_task(run_fleet(fleet, broker_target(broker), stop=sim_stop))
        display = asyncio.create_task(_display(parts, stop))
        await stop.wait()
        sim_stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(sim, 30)
        display.cancel()
        await server
    inbox.close()


def broker_target(broker: Mosquitto) -> MqttTarget:
    """The demo broker as the fleet's target."""
    # Each simulated device logs in as itself; the target names only the broker.
    return MqttTarget(host=HOST, port=broker.port, tls=False, username=None, password=None)


async def _display(parts: Parts, stop: asyncio.Event) -> None:
    """Every 2 s a line of rates and counts, as an operator would watch them."""
    assert parts.ingest is not None
    m = parts.ingest.metrics
    last = (time.monotonic(), m.received, m.written)
    print(
        f"{'time':>8} {'in/s':>7} {'written/s':>9} {'received':>9} {'written':>9} "
        f"{'rejected':>8} {'spooled':>7} {'online':>6} {'seen':>5} {'findings':>8}"
    )
    rules = parts.rules
    while not stop.is_set():
        await asyncio.sleep(2.0)
        now = (time.monotonic(), m.received, m.written)
        dt = now[0] - last[0]
        print(
            f"{time.strftime('%H:%M:%S'):>8} {(now[1] - last[1]) / dt:>7.0f} "
            f"{(now[2] - last[2]) / dt:>9.0f} {m.received:>9} {m.written:>9} "
            f"{m.rejected_total:>8} {m.spool_segments:>7} {m.devices_online:>6} "
            f"{m.devices_seen:>5} {rules.engine.stats.findings if rules else '-':>8}",
            file=sys.stdout,
            flush=True,
        )
        last = now
