"""Device-status queries for 10,000 registered devices, against the running server.

Builds a registry of `--devices` devices (default 10,000) over `--grids` grids
(default 50: 10 communities of 5 grids, 200 devices each), four wristbands to
a bin, each with a `device_state` row (online, offline, silent, never seen, low
battery, not worn, in a fixed random mix). Starts the real server
(`carewatch api`, its own process, as an operator runs it) on that registry,
logs in as an admin, and sends `--requests` GET /api/v1/status/devices with a
grid, a state filter and limit=100 (the state and the page vary), through an
httpx keep-alive client: first one connection, one request at a time, then
`--concurrency` connections (default 8). Prints p50, p90, p99 and max latency,
requests per second and the server's RSS. The target: p99 under 50 ms.

    .venv/bin/python bench/api.py [--requests 2000] [--concurrency 8] [--postgres]
    .venv/bin/python bench/api.py --profile     # also: where a request's time goes, in-process

SQLite by default (a file in a temporary folder); `--postgres` runs the same
against a throwaway PostgreSQL cluster (Debian's postgresql package).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert

from carewatch.migrations import migrate
from core.db import Database
from core.secrets import hash_password
from devices.tables import Community, Device, DeviceState, Grid, User
from tests.support.figures import rss_mb
from tests.support.servers import HOST, PostgreSQL, free_port

PASSWORD = "bench-password-1"
STATES = (None, "offline", "silent", "low_battery", "not_worn", "online")
TARGET_P99_MS = 50.0


# -- the registry -------------------------------------------------------------------


def device_rows(
    devices: int, grids: int, now_ms: int, seed: int = 7
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Devices spread evenly over grids ids 1..grids, and one state row each."""
    rnd = random.Random(seed)
    registered: list[dict[str, Any]] = []
    states: list[dict[str, Any]] = []
    for n in range(devices):
        wristband = n % 5 != 4
        device_id = f"{'w' if wristband else 'b'}{n:06d}"
        interval = 60 if wristband else 300
        registered.append(
            {
                "id": device_id,
                "kind": "wristband" if wristband else "bin",
                "grid_id": n % grids + 1,
                "interval_s": interval,
                "revoked": n % 250 == 0,
            }
        )
        roll = rnd.random()
        if roll < 0.03:  # registered, never heard from
            states.append(
                {
                    "device_id": device_id,
                    "online": None,
                    "last_seen_ms": None,
                    "battery": None,
                    "worn": None,
                    "last_reading": {},
                }
            )
            continue
        if roll < 0.75:  # reporting
            age = rnd.uniform(0, interval)
        elif roll < 0.85:  # late: silent, not yet offline
            age = rnd.uniform(interval, 3 * interval)
        else:  # gone quiet
            age = rnd.uniform(3 * interval, 86_400)
        reading = (
            {"hr": rnd.randint(55, 110), "spo2": rnd.randint(90, 99)}
            if wristband
            else {"fill": round(rnd.random(), 2)}
        )
        states.append(
            {
                "device_id": device_id,
                "online": rnd.random() > 0.05,
                "status_since_ms": now_ms - 3_600_000,
                "last_seen_ms": int(now_ms - age * 1000),
                "battery": round(rnd.uniform(1, 100), 1),
                "worn": (rnd.random() > 0.1) if wristband else None,
                "last_reading": reading,
            }
        )
    return registered, states


async def build_registry(url: str, devices: int, grids: int) -> None:
    database = Database(url)
    await migrate(database)
    now_ms = int(time.time() * 1000)
    registered, states = device_rows(devices, grids, now_ms)
    communities = max(1, grids // 5)
    async with database.sessions() as session:
        await session.execute(
            insert(Community),
            [{"id": c + 1, "name": f"社区{c + 1:02d}"} for c in range(communities)],
        )
        await session.execute(
            insert(Grid),
            [
                {"id": g + 1, "community_id": g % communities + 1, "name": f"网格{g + 1:02d}"}
                for g in range(grids)
            ],
        )
        session.add(
            User(
                username="admin",
                full_name="管理员",
                role="admin",
                password_hash=hash_password(PASSWORD),
            )
        )
        for chunk in range(0, len(registered), 2_000):
            await session.execute(insert(Device), registered[chunk : chunk + 2_000])
            await session.execute(insert(DeviceState), states[chunk : chunk + 2_000])
        await session.commit()
    await database.dispose()


# -- the server ---------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(pid: int, run: Callable[[], Result]) -> Result:
    """`run`, with the server's and this process's CPU time while it ran."""
    server0, client0 = cpu_seconds(pid), time.process_time()
    result = run()
    result.server_cpu_s = cpu_seconds(pid) - server0
    result.client_cpu_s = time.process_time() - client0
    return result


def memory_line(pid: int, when: str) -> str:
    return f"{rss_mb(pid):.0f} MB {when} (peak so far {rss_mb(pid, 'VmHWM'):.0f} MB)"


@contextmanager
def server(url: str, state_dir: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`carewatch api` on a free port, until the block ends."""
    listen = f"{HOST}:{free_port()}"
    env = dict(
        os.environ,
        CAREWATCH_DATABASE_URL=url,
        CAREWATCH_STATE_DIR=str(state_dir),
        CAREWATCH_HTTP_LISTEN=listen,
        CAREWATCH_LOG_LEVEL="WARNING",
    )
    env.pop("CAREWATCH_CONFIG", None)
    proc = subprocess.Popen([sys.executable, "-m", "carewatch", "api"], env=env)
    base = f"http://{listen}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"carewatch api did not come up (exit {proc.poll()})")
            time.sleep(0.1)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- the load -----------------------------------------------------------------------


def queries(n: int, grids: int, seed: int = 11) -> list[dict[str, Any]]:
    """Filtered pages of at most 100: a grid, a state (or none), first or second page."""
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        params: dict[str, Any] = {"grid_id": rnd.randint(1, grids), "limit": 100}
        state = rnd.choice(STATES)
        if state is not None:
            params["state"] = state
        if rnd.random() < 0.25:
            params["offset"] = 100
        if rnd.random() < 0.2:
            params["kind"] = "wristband"
        out.append(params)
    return out


@dataclass
class Result:
    label: str
    latencies_ms: list[float]
    seconds: float
    rows: int
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0

    def line(self) -> str:
        lat = sorted(self.latencies_ms)
        q = statistics.quantiles(lat, n=100, method="inclusive")
        return (
            f"{self.label:<26} p50 {q[49]:6.1f} ms  p90 {q[89]:6.1f} ms  "
            f"p99 {q[98]:6.1f} ms  max {lat[-1]:6.1f} ms  "
            f"{len(lat) / self.seconds:5.0f} req/s  ({len(lat)} requests, "
            f"{self.rows / len(lat):.0f} devices a page; CPU a request: server "
            f"{self.server_cpu_s * 1000 / len(lat):.1f} ms, client "
            f"{self.client_cpu_s * 1000 / len(lat):.1f} ms)"
        )

    @property
    def p99(self) -> float:
        return statistics.quantiles(sorted(self.latencies_ms), n=100, method="inclusive")[98]


def login(base: str) -> dict[str, str]:
    response = httpx.post(
        f"{base}/api/v1/auth/token", data={"username": "admin", "password": PASSWORD}, timeout=10
    )
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def sequential(
    base: str, headers: dict[str, str], params: list[dict[str, Any]], label: str
) -> Result:
    latencies, rows = [], 0
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        for p in params[:50]:  # warm-up: connection, caches, first queries
            client.get("/api/v1/status/devices", params=p).raise_for_status()
        start = time.perf_counter()
        for p in params:
            t0 = time.perf_counter()
            response = client.get("/api/v1/status/devices", params=p)
            latencies.append((time.perf_counter() - t0) * 1000)
            response.raise_for_status()
            rows += len(response.json()["data"])
        seconds = time.perf_counter() - start
    return Result(label, latencies, seconds, rows)


async def concurrent(
    base: str, headers: dict[str, str], params: list[dict[str, Any]], connections: int, label: str
) -> Result:
    latencies: list[float] = []
    rows = 0
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(
        base_url=base, headers=headers, timeout=30, limits=limits
    ) as client:
        await asyncio.gather(
            *(client.get("/api/v1/status/devices", params=p) for p in params[: connections * 5])
        )
        todo = iter(params)

        async def worker() -> None:
            nonlocal rows
            for p in todo:
                t0 = time.perf_counter()
                response = await client.get("/api/v1/status/devices", params=p)
                latencies.append((time.perf_counter() - t0) * 1000)
                response.raise_for_status()
                rows += len(response.json()["data"])

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        seconds = time.perf_counter() - start
    return Result(label, latencies, seconds, rows)


# -- where the time goes (in-process) ------------------------------------------------


async def _request_parts(
    database: Database, settings: Any, params: list[dict[str, Any]]
) -> tuple[dict[str, float], cProfile.Profile]:
    """Medians of a whole request, the ASGI floor and authentication; a profile of requests."""
    from api.main import create_app
    from devices.service import NoBroker

    app = create_app(settings, database=database, provisioner=NoBroker())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        token = await client.post(
            "/api/v1/auth/token", data={"username": "admin", "password": PASSWORD}
        )
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}

        async def timed_ms(path: str, p: dict[str, Any], auth: bool = True) -> float:
            t0 = time.perf_counter()
            response = await client.get(path, params=p, headers=headers if auth else None)
            response.raise_for_status()
            return (time.perf_counter() - t0) * 1000

        samples: dict[str, list[float]] = {"request": [], "floor": [], "me": []}
        for p in params[:30]:  # warm-up
            await timed_ms("/api/v1/status/devices", p)
        for p in params:  # interleaved, so that noise falls on all three alike
            samples["request"].append(await timed_ms("/api/v1/status/devices", p))
            samples["floor"].append(await timed_ms("/healthz", {}, auth=False))
            samples["me"].append(await timed_ms("/api/v1/auth/me", {}))
        parts = {name: statistics.median(values) for name, values in samples.items()}
        parts["auth"] = parts["me"] - parts["floor"]
        profiler = cProfile.Profile()
        profiler.enable()
        for p in params:
            await timed_ms("/api/v1/status/devices", p)
        profiler.disable()
    return parts, profiler


Timings = dict[str, list[float]]


async def _registry_parts(
    database: Database, url: str, params: list[dict[str, Any]]
) -> tuple[Timings, Timings]:
    """Times of the user lookup, the registry query and its statements; the SQL on its own."""
    from devices.access import Scope
    from devices.status import device_status

    timings: Timings = {"user": [], "count": [], "page": [], "registry": []}
    statements: dict[str, list[Any]] = {"count": [], "page": []}
    for _ in params:  # as get_current_user does: a session, the user and their grids
        t0 = time.perf_counter()
        async with database.sessions() as session:
            user = await session.get(User, 1)
            assert user is not None
            scope = Scope.of(user)
        timings["user"].append((time.perf_counter() - t0) * 1000)
    async with database.sessions() as session:
        original_scalar, original_execute = session.scalar, session.execute

        async def timed_scalar(statement: Any, *args: Any, **kwargs: Any) -> Any:
            statements["count"].append(statement)
            t0 = time.perf_counter()
            try:
                return await original_scalar(statement, *args, **kwargs)
            finally:
                timings["count"].append((time.perf_counter() - t0) * 1000)

        async def timed_execute(statement: Any, *args: Any, **kwargs: Any) -> Any:
            statements["page"].append(statement)
            t0 = time.perf_counter()
            try:
                return await original_execute(statement, *args, **kwargs)
            finally:
                timings["page"].append((time.perf_counter() - t0) * 1000)

        session.scalar = timed_scalar  # type: ignore[method-assign]
        session.execute = timed_execute  # type: ignore[method-assign]
        for p in params:
            t0 = time.perf_counter()
            await device_status(session, scope, now_ms=int(time.time() * 1000), **p)
            timings["registry"].append((time.perf_counter() - t0) * 1000)
            session.expunge_all()
        engine_ms = await _engine_times(database, url, statements, original_execute)
    return timings, engine_ms


async def _engine_times(
    database: Database, url: str, statements: dict[str, list[Any]], execute: Any
) -> Timings:
    """The same statements, timed by the database itself (no driver, no ORM)."""
    from sqlalchemy import text

    engine_ms: Timings = {"count": [], "page": []}
    dialect = database.engine.dialect
    direct = sqlite3.connect(url.split(":///", 1)[1]) if database.is_sqlite else None
    for which, sent in statements.items():
        for statement in sent[:100]:
            binds = {"literal_binds": True}
            sql = str(statement.compile(dialect=dialect, compile_kwargs=binds))
            if direct is not None:
                t0 = time.perf_counter()
                direct.execute(sql).fetchall()
                engine_ms[which].append((time.perf_counter() - t0) * 1000)
            else:
                plan = (await execute(text(f"EXPLAIN (ANALYZE) {sql}"))).scalars().all()
                line = next(x for x in plan if x.startswith("Execution Time"))
                engine_ms[which].append(float(line.split()[2]))
    if direct is not None:
        direct.close()
    return engine_ms


async def profile(url: str, state_dir: Path, grids: int, n: int = 300) -> None:
    """Where one request's time goes: medians of the parts, in-process (no network)."""
    from core.settings import Settings

    database = Database(url)
    params = queries(n, grids, seed=5)
    settings = Settings(state_dir=state_dir, database_url=url, influx_url="http://127.0.0.1:9")
    parts, profiler = await _request_parts(database, settings, params)
    timings, engine_ms = await _registry_parts(database, url, params)
    await database.dispose()
    how = "sqlite3 module, no ORM" if database.is_sqlite else "EXPLAIN ANALYZE"
    _print_profile(parts, timings, engine_ms, n, how)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(12)
    print("\ncProfile of the same requests, top 12 by own time:")
    print("\n".join(line for line in out.getvalue().splitlines()[4:] if line.strip()))


def _print_profile(
    parts: dict[str, float], timings: Timings, engine_ms: Timings, n: int, how: str
) -> None:
    med = {name: statistics.median(values or [0.0]) for name, values in timings.items()}
    engine = {name: statistics.median(values or [0.0]) for name, values in engine_ms.items()}
    counted = f"in {len(timings['count'])} of {n} requests; "
    rest = parts["request"] - parts["floor"] - parts["auth"] - med["registry"]
    print(f"\nwhere a request's time goes, in-process, medians over {n} filtered pages:")
    rows = [
        ("whole request through the ASGI app", parts["request"], ""),
        ("  ASGI + client floor (GET /healthz)", parts["floor"], ""),
        ("  authentication (GET /auth/me - floor)", parts["auth"], ""),
        ("    of which: session, user row, user's grids", med["user"], ""),
        ("  devices.status.device_status", med["registry"], ""),
        (
            "    count(*) statement, when sent",
            med["count"],
            f"{counted}SQL itself {engine['count']:.2f} ms ({how})",
        ),
        (
            "    page statement, 2 ORM objects a row",
            med["page"],
            f"SQL itself {engine['page']:.2f} ms",
        ),
        ("  the rest: DeviceStatusPublic x rows, JSON", rest, ""),
    ]
    for label, ms, note in rows:
        print(f"  {label:<48} {ms:6.2f} ms  {note}")


# -- main ---------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--grids", type=int, default=50)
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL instead of SQLite")
    parser.add_argument("--profile", action="store_true", help="also profile in-process")
    args = parser.parse_args()

    # As root, PostgreSQL runs as `postgres`, which must be able to reach its folder.
    root = Path(tempfile.mkdtemp(prefix="cw-bench-api-"))
    os.chmod(root, 0o755)
    postgres: PostgreSQL | None = None
    try:
        if args.postgres:
            postgres = PostgreSQL(root / "pg")
            postgres.start()
            url = postgres.create_database("bench")
        else:
            url = f"sqlite+aiosqlite:///{root / 'registry.db'}"
        t0 = time.monotonic()
        asyncio.run(build_registry(url, args.devices, args.grids))
        backend = "PostgreSQL" if postgres else "SQLite"
        print(
            f"{args.devices:,} devices over {args.grids} grids on {backend}, built in "
            f"{time.monotonic() - t0:.1f} s; {os.cpu_count()} cores, client and server on "
            f"this machine"
            + ("; server CPU below excludes PostgreSQL's own processes" if postgres else "")
        )
        params = queries(args.requests, args.grids)
        full = [{"grid_id": p["grid_id"], "limit": 100} for p in params]  # 100 rows each
        label = f"{args.concurrency} connections"
        results: list[Result] = []
        with server(url, root / "state") as (base, proc):
            memory = [f"{rss_mb(proc.pid):.0f} MB started"]
            headers = login(base)
            memory.append(memory_line(proc.pid, "after login"))
            for run in (
                lambda: sequential(base, headers, params, "1 connection"),
                lambda: asyncio.run(concurrent(base, headers, params, args.concurrency, label)),
                lambda: sequential(base, headers, full, "1 connection, full pages"),
            ):
                results.append(measured(proc.pid, run))
                print(results[-1].line())
            memory.append(memory_line(proc.pid, "after the runs"))
            print("server RSS: " + ", ".join(memory))
        verdicts = [
            f"{'met' if r.p99 < TARGET_P99_MS else 'MISSED'} with {r.label} ({r.p99:.1f} ms)"
            for r in results
        ]
        print(f"target p99 < {TARGET_P99_MS:.0f} ms: " + "; ".join(verdicts))
        worst = max(r.p99 for r in results)
        if args.profile:
            asyncio.run(profile(url, root / "state", args.grids))
        return 0 if worst < TARGET_P99_MS else 1
    finally:
        if postgres is not None:
            postgres.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
