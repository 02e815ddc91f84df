"""The alert side under a burst: 1,000 residents cross a limit in the same second.

The rule journal receives N findings within one second (default 1,000: SpO2 low on
every band of a heat wave, warnings), with a few falls (critical) in the middle of
it. The alert side runs as in `carewatch run`: the journal feed applies them to the
alert book in batches, the dispatcher sends through apprise to a real HTTP server
(json:// URLs) in a process of its own, as a provider is, the registry is SQLite in
a temporary folder. Residents live in 10
grids of 100, each with a worker; every resident has one family contact (WeChat).

Prints how long after its finding each alert's first message arrived (p50, p99,
max), for the falls apart, and where the falls came among the first messages.
Goal (issue 10): every alert opened, first messages p99 under 5 s, falls first.

    .venv/bin/python bench/burst.py [--findings 1000] [--falls 10] [--database URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import func, select

from alerts.channels import Channels
from alerts.feed import FindingFeed
from alerts.service import AlertService
from alerts.tables import Alert
from carewatch.migrations import migrate
from core.db import Database
from core.journal import Journal
from core.settings import Settings
from devices.tables import Community, EmergencyContact, Grid, Resident, User
from rules.findings import Finding, Severity, SubjectKind
from rules.journal import Entry, encode_entry
from tests.support.figures import percentile
from tests.support.receiver import NotificationReceiver

GRIDS = 10
SURNAMES = "张王李赵刘陈杨黄周吴徐孙马朱胡郭何林罗高"


async def seed(database: Database, residents: int) -> list[tuple[int, int]]:
    """(resident id, grid id) of `residents` residents, each with one WeChat contact."""
    out: list[tuple[int, int]] = []
    async with database.sessions() as session, session.begin():
        community = Community(name="幸福社区", duty_phone="13900009999")
        session.add(community)
        await session.flush()
        grids = []
        for g in range(GRIDS):
            worker = User(
                username=f"worker{g}",
                full_name=f"网格员{g}",
                wechat=f"worker{g}",
                role="grid_worker",
                password_hash="x",
            )
            grid = Grid(community_id=community.id, name=f"{g + 1}网格")
            grid.workers.append(worker)
            session.add(grid)
            grids.append(grid)
        await session.flush()
        people = []
        for i in range(residents):
            grid = grids[i % GRIDS]
            resident = Resident(
                grid_id=grid.id,
                name=f"{SURNAMES[i % len(SURNAMES)]}老人{i}",
                gender="女",
                birth_year=1940,
            )
            resident.contacts.append(
                EmergencyContact(
                    position=0,
                    name=f"家属{i}",
                    relation="女儿",
                    wechat=f"family{i}",
                    channels=["wechat"],
                )
            )
            people.append(resident)
        session.add_all(people)
        await session.flush()
        out = [(r.id, r.grid_id) for r in people]
    return out


def findings(people: list[tuple[int, int]], falls: int, now_ms: int) -> list[Finding]:
    """One finding per resident, spread over one second; the falls in the middle."""
    n = len(people)
    fall_at = {n // 2 + k * max(1, n // (4 * max(falls, 1))) for k in range(falls)}
    out = []
    for i, (resident_id, grid_id) in enumerate(people):
        fall = i in fall_at
        ts = now_ms + i * 1000 // n
        out.append(
            Finding(
                rule="fall" if fall else "spo2_low",
                subject_kind=SubjectKind.WRISTBAND,
                subject=f"w{i:05d}",
                active=True,
                severity=Severity.CRITICAL if fall else Severity.WARNING,
                ts=ts,
                since=ts,
                device_id=f"w{i:05d}",
                resident_id=resident_id,
                grid_id=grid_id,
                value=None if fall else 88.0,
                limit=None if fall else 90.0,
                latched=fall,
            )
        )
    return out


def _first_arrivals(arrivals: Path, wanted: dict[str, Finding]) -> dict[str, float]:
    """When each wanted path first received a POST (the receiver's clock)."""
    first: dict[str, float] = {}
    if arrivals.exists():
        for line in arrivals.read_text().splitlines():
            path, at = json.loads(line)
            if path in wanted and path not in first:
                first[path] = at
    return first


def receive(arrivals: Path) -> int:
    """The provider stand-in: print its base URL, append (path, time) per POST."""
    with NotificationReceiver() as receiver, arrivals.open("a") as out:
        print(receiver.url(""), flush=True)
        seen = 0
        while True:
            time.sleep(0.05)
            with receiver.lock:
                fresh = receiver.posts[seen:]
                seen = len(receiver.posts)
            for post in fresh:
                out.write(json.dumps([post.path, post.at]) + "\n")
            out.flush()


async def run(args: argparse.Namespace, root: Path) -> int:
    arrivals = root / "arrivals.jsonl"
    receiver = subprocess.Popen(
        [sys.executable, __file__, "--receive", str(arrivals)], stdout=subprocess.PIPE, text=True
    )
    assert receiver.stdout is not None
    wechat_url = receiver.stdout.readline().strip() + "/wechat/{wechat}"
    settings = Settings(
        state_dir=root / "state",
        secret_key="bench-burst-signing-key-0123456789abcdef",
        alerts={"wechat_url": wechat_url, "quiet_hours": "00:00-00:00"},
    )
    database = Database(args.database or f"sqlite+aiosqlite:///{root / 'registry.db'}")
    await migrate(database)
    people = await seed(database, args.findings)
    service = AlertService(settings, database, channels=Channels())
    journal = Journal(root / "journal")
    feed = FindingFeed(journal, service)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(feed.run(stop)), asyncio.create_task(service.run(stop))]
    await asyncio.sleep(0.5)

    start_ms = time.time_ns() // 1_000_000
    burst = findings(people, args.falls, start_ms)
    by_ms: dict[int, list[Finding]] = {}
    for f in burst:
        by_ms.setdefault(f.ts, []).append(f)
    # As the rule engine journals them: one entry per step, at the second's pace.
    for ms, group in sorted(by_ms.items()):
        delay = ms / 1000 - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await journal.append([encode_entry(Entry(ms, findings=group))])
    published = time.time()

    family = {f"/wechat/family{i}": f for i, f in enumerate(burst)}
    deadline = time.monotonic() + args.timeout
    first: dict[str, float] = {}
    while time.monotonic() < deadline and len(first) < len(family):
        await asyncio.sleep(0.2)
        first = _first_arrivals(arrivals, family)
    stop.set()
    await asyncio.gather(*tasks)
    receiver.terminate()
    receiver.wait()
    first = _first_arrivals(arrivals, family)
    order = sorted(first, key=first.__getitem__)
    async with database.sessions() as session:
        opened = await session.scalar(select(func.count()).select_from(Alert))
    await database.dispose()
    lat = [first[path] - f.ts / 1000 for path, f in family.items() if path in first]
    falls = [
        first[path] - f.ts / 1000
        for path, f in family.items()
        if f.rule == "fall" and path in first
    ]
    fall_ranks = [i + 1 for i, path in enumerate(order) if family[path].rule == "fall"]
    posts = arrivals.read_text().splitlines() if arrivals.exists() else []
    to_workers = sum(1 for line in posts if "/wechat/worker" in line)
    print(f"journaled {len(burst)} findings in {published - start_ms / 1000:.2f} s")
    print(f"alerts opened {opened}/{len(burst)}; families told {len(first)}/{len(family)}")
    print(f"messages: {len(posts)}, of them {to_workers} to the {GRIDS} grid workers")
    if lat:
        print(
            f"finding -> first message: p50 {statistics.median(lat):.2f} s, "
            f"p99 {percentile(lat, 0.99):.2f} s, max {max(lat):.2f} s"
        )
    if falls:
        print(
            f"falls: {len(falls)}/{args.falls} told, p99 {percentile(falls, 0.99) * 1000:.0f} ms; "
            f"their places among the first messages: {fall_ranks}"
        )
    return 0 if len(first) == len(family) and opened == len(burst) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--findings", type=int, default=1000)
    parser.add_argument("--falls", type=int, default=10)
    parser.add_argument("--database", help="an empty database URL (default: SQLite in a temp dir)")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--receive", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receive:
        return receive(args.receive)
    with tempfile.TemporaryDirectory(prefix="carewatch-burst-") as tmp:
        return asyncio.run(run(args, Path(tmp)))


if __name__ == "__main__":
    sys.exit(main())
