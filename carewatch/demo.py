"""`carewatch demo` (`make demo`): the whole stack on this machine, and what it is doing.

Starts Mosquitto and InfluxDB from Debian's binaries under `$CAREWATCH_STATE_DIR/demo`
(bound to 127.0.0.1), the service (ingest and API) in this process, and a simulated
fleet of 50 wristbands and 10 bins, each its own MQTT client with its own password.
Every two seconds it prints the message rates, rejects, devices online and
findings. Notifications go to a small local inbox standing in for the SMS and
WeChat providers, which prints each message as a family member or grid worker
would receive it. Ctrl-C stops everything it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
import time
from pathlib import Path

from sqlalchemy import select

from alerts.service import AlertService
from carewatch.localstack import HOST, InfluxDB, Mosquitto, free_port
from carewatch.migrations import migrate
from carewatch.runtime import serve
from core.db import Database
from core.secrets import hash_password
from core.settings import MqttTarget, Settings
from devices import registry
from devices.access import Role, Scope
from devices.tables import User
from ingest.service import IngestService
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
    scope = Scope(user_id=0, role=Role.ADMIN, community_id=None, grid_ids=frozenset())
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
        community = await registry.create_community(
            session, scope, name="幸福社区", duty_phone="13900009999"
        )
        grids: dict[str, int] = {}
        buildings: dict[str, int] = {}
        for spec in devices:
            entry = spec.entry
            if entry.grid not in grids:
                number = len(grids) + 1
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
                grid = await registry.create_grid(
                    session,
                    scope,
                    community_id=community.id,
                    name=entry.grid,
                    worker_ids=[worker.id],
                )
                grids[entry.grid] = grid.id
            if entry.building not in buildings:
                building = await registry.create_building(
                    session, scope, grid_id=grids[entry.grid], name=entry.building
                )
                buildings[entry.building] = building.id
            await registry.register_device(
                session,
                scope,
                device_id=entry.device_id,
                kind=entry.kind.value,
                grid_id=grids[entry.grid],
                interval_s=int(DEMO_INTERVAL),
            )
            if entry.kind.value == "wristband":
                resident = await registry.create_resident(
                    session,
                    scope,
                    {
                        "grid_id": grids[entry.grid],
                        "building_id": buildings[entry.building],
                        "name": _resident_name(int(spec.name[1:])),
                        "birth_year": 1940,
                        "gender": "女" if int(spec.name[1:]) % 2 else "男",
                        "unit": "1单元",
                        "room": f"{100 + int(spec.name[1:])}",
                        "service_needs": ["daily_check"],
                        "tags": ["lives-alone"],
                        "contacts": [
                            {
                                "name": f"家属{spec.name[1:]}",
                                "relation": "子女",
                                "phone": f"1380000{int(spec.name[1:]):04d}",
                                "wechat": f"family{spec.name[1:]}",
                                "channels": ["wechat", "sms"],
                            }
                        ],
                    },
                )
                await registry.bind_device(session, scope, entry.device_id, resident_id=resident.id)
            else:
                await registry.bind_device(
                    session,
                    scope,
                    entry.device_id,
                    building_id=buildings[entry.building],
                    category=entry.category.value if entry.category else "other",
                )


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
    service_settings = settings.model_copy(
        update={
            "mqtt_url": broker.url(),
            "mqtt_admin_url": broker.url(Mosquitto.ADMIN_USER),
            "influx_url": influx.url,
            "state_dir": root / "state",
            "http_listen": f"{HOST}:{_port(settings.http_host_port[1])}",
            "ingest": settings.ingest.model_copy(update={"devices_file": manifest}),
            "alerts": settings.alerts.model_copy(
                update={
                    "sms_url": f"json://{HOST}:{inbox_port}/sms/{{phone}}",
                    "wechat_url": f"json://{HOST}:{inbox_port}/wechat/{{wechat}}",
                }
            ),
        }
    )
    database = Database(service_settings.database_url_resolved)
    await migrate(database)
    await _register_fleet(database, devices)
    alerts = AlertService(service_settings, database)
    service = IngestService(service_settings, database=database, finding_sinks=[alerts])
    if service.rules is not None:
        alerts.unlatch = service.rules.resolve
    server = asyncio.create_task(
        serve(service_settings, stop, database=database, service=service, alerts=alerts)
    )
    await asyncio.sleep(1.0)
    print(
        f"service on http://{service_settings.http_listen} (/docs, /metrics, /healthz); "
        f"log in as {DEMO_USER} / {DEMO_PASSWORD}, e.g. GET /api/v1/status/devices"
    )
    print(
        f"fleet: {fleet.wristbands} wristbands, {fleet.bins} bins, every {fleet.interval:.0f} s; "
        f"incidents: {', '.join(SCENARIOS)}"
    )
    print("Ctrl-C stops everything.\n")
    sim_stop = asyncio.Event()
    sim = asyncio.create_task(run_fleet(fleet, broker_target(broker), stop=sim_stop))
    display = asyncio.create_task(_display(service, stop))
    await stop.wait()
    sim_stop.set()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(sim, 30)
    display.cancel()
    await server
    inbox.close()
    await database.dispose()


def broker_target(broker: Mosquitto) -> MqttTarget:
    # Each simulated device logs in as itself; the target names only the broker.
    return MqttTarget(host=HOST, port=broker.port, tls=False, username=None, password=None)


async def _display(service: IngestService, stop: asyncio.Event) -> None:
    m = service.metrics
    last = (time.monotonic(), m.received, m.written)
    print(
        f"{'time':>8} {'in/s':>7} {'written/s':>9} {'received':>9} {'written':>9} "
        f"{'rejected':>8} {'spooled':>7} {'online':>6} {'seen':>5} {'findings':>8}"
    )
    rules = service.rules
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
