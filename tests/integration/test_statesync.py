"""The ingester's device state upserted into a real, migrated `device_state` table.

SQLite (a file, migrated with Alembic) always; PostgreSQL when Debian's
postgresql package is installed (a throwaway cluster for this module).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.engine import Connection

from carewatch.migrations import migrate
from core.db import SQLITE_BUSY_TIMEOUT, Database
from devices.tables import DeviceState as DeviceStateRow
from ingest.statesync import DeviceStateSync
from ingest.status import DeviceStatusBook
from protocol.decode import Decoder
from protocol.models import Reading, StatusChange
from tests.support.servers import PostgreSQL

NOW = 1_780_000_000_000  # epoch ms; the decoder checks ts against it


# -- fixtures --------------------------------------------------------------------


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"


# -- helpers ---------------------------------------------------------------------

_decoder = Decoder()


def feed(book: DeviceStatusBook, topic: str, payload: dict[str, Any] | str, now: int = NOW) -> None:
    """Decode a message as the ingester does and put it in the book."""
    raw = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
    item = _decoder.decode(topic, raw, now)
    if isinstance(item, Reading):
        book.seen(item, now)
    elif isinstance(item, StatusChange):
        book.status(item)
    else:
        raise AssertionError(f"rejected: {item!r}")


def wristband(book: DeviceStatusBook, device: str, now: int = NOW, **fields: Any) -> None:
    feed(book, f"cw/v1/wristband/{device}/telemetry", {"ts": now - 500, **fields}, now)


async def eventually(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def rows(db: Database) -> dict[str, DeviceStateRow]:
    async with db.sessions() as session:
        return {r.device_id: r for r in await session.scalars(select(DeviceStateRow))}


async def migrated(url: str) -> Database:
    db = Database(url)
    await migrate(db)
    return db


# -- the status book ---------------------------------------------------------------


def test_book_marks_touched_devices_and_keeps_the_newest_telemetry() -> None:
    book = DeviceStatusBook()
    wristband(book, "w1", seq=1, hr=70)
    feed(book, "cw/v1/bin/b1/status", "online")
    assert book.dirty == {"w1", "b1"}
    assert book.take_dirty() == {"w1", "b1"}
    assert book.dirty == set()
    # A late message (older ts) counts as seen but is not the last reading.
    feed(book, "cw/v1/wristband/w1/telemetry", {"ts": NOW - 60_000, "hr": 99})
    last = book.devices["w1"].last_telemetry
    assert last is not None and last.hr == 70  # type: ignore[union-attr]
    # An event is no telemetry reading; it changes `worn` only.
    feed(book, "cw/v1/wristband/w1/event", {"ts": NOW, "type": "off_wrist"})
    assert book.devices["w1"].last_telemetry is last
    assert book.devices["w1"].worn is False
    assert book.dirty == {"w1"}
    book.restore_dirty({"b1"})
    assert book.dirty == {"w1", "b1"}


# -- upsert, on SQLite and PostgreSQL ------------------------------------------------


async def _first_flush(db: Database, book: DeviceStatusBook, sync: DeviceStateSync) -> None:
    """Three new devices: a band with status and reading, a bin, a band only ever offline."""
    wristband(book, "w1", seq=1, hr=72, spo2=97, battery=88, worn=True)
    feed(book, "cw/v1/wristband/w1/status", "online", NOW - 1000)
    feed(book, "cw/v1/bin/b1/telemetry", {"ts": NOW - 200, "fill": 40, "battery": 90})
    feed(book, "cw/v1/wristband/w2/status", "offline", NOW - 3000)  # never a reading

    assert await sync.flush() == 3
    assert book.dirty == set()
    got = await rows(db)
    assert set(got) == {"w1", "b1", "w2"}
    w1, b1, w2 = got["w1"], got["b1"], got["w2"]
    assert (w1.online, w1.status_since_ms, w1.last_seen_ms) == (True, NOW - 1000, NOW)
    assert (w1.battery, w1.worn) == (88, True)
    assert w1.last_reading == {
        "ts": NOW - 500,
        "seq": 1,
        "hr": 72,
        "spo2": 97,
        "battery": 88,
        "worn": True,
    }
    assert (b1.online, b1.last_seen_ms, b1.battery) == (None, NOW, 90)
    assert b1.last_reading == {"ts": NOW - 200, "fill": 40, "battery": 90}
    assert (w2.online, w2.status_since_ms, w2.last_seen_ms) == (False, NOW - 3000, None)
    assert w2.last_reading == {}

    assert await sync.flush() == 0  # nothing changed, nothing written


async def _second_flush(db: Database, book: DeviceStatusBook, sync: DeviceStateSync) -> int:
    """Newer messages update what they carry and keep the rest; returns their time."""
    later = NOW + 2000
    wristband(book, "w1", later, seq=2, hr=80)  # no battery this time
    feed(book, "cw/v1/wristband/w1/status", "offline", later)
    feed(book, "cw/v1/wristband/w1/event", {"ts": later, "type": "off_wrist"}, later)
    feed(book, "cw/v1/bin/b1/telemetry", {"ts": later, "fill": 55}, later)
    assert await sync.flush() == 2
    got = await rows(db)
    w1, b1 = got["w1"], got["b1"]
    assert (w1.online, w1.status_since_ms, w1.last_seen_ms) == (False, later, later)
    assert (w1.battery, w1.worn) == (88, False)
    assert w1.last_reading == {"ts": later - 500, "seq": 2, "hr": 80}
    assert (b1.battery, b1.last_reading) == (90, {"ts": later, "fill": 55})
    assert got["w2"].status_since_ms == NOW - 3000  # untouched
    return later


async def _restart_keeps_the_table(db: Database, later: int) -> None:
    """A fresh book knows nothing yet of battery, status or readings; it must not erase them."""
    fresh = DeviceStatusBook()
    resync = DeviceStateSync(fresh, db)
    feed(fresh, "cw/v1/wristband/w1/event", {"ts": later, "type": "sos"}, later + 10)
    feed(fresh, "cw/v1/wristband/w2/telemetry", {"ts": later, "steps": 5}, later + 10)
    assert await resync.flush() == 2
    got = await rows(db)
    w1, w2 = got["w1"], got["w2"]
    assert (w1.online, w1.status_since_ms, w1.last_seen_ms) == (False, later, later + 10)
    assert (w1.battery, w1.worn) == (88, False)
    assert w1.last_reading == {"ts": later - 500, "seq": 2, "hr": 80}
    assert (w2.online, w2.last_seen_ms, w2.last_reading) == (
        False,
        later + 10,
        {"ts": later, "steps": 5},
    )


def test_flush_upserts_changed_devices(database_url: str) -> None:
    async def scenario() -> None:
        db = await migrated(database_url)
        try:
            book = DeviceStatusBook()
            sync = DeviceStateSync(book, db)
            await _first_flush(db, book, sync)
            later = await _second_flush(db, book, sync)
            # An ingester restart.
            await _restart_keeps_the_table(db, later)
            # A stale view (say, another worker's) moves nothing back.
            assert await sync.flush() == 0
            book.restore_dirty({"w1"})
            book.devices["w1"].last_seen_ms = NOW
            assert await sync.flush() == 1
            assert (await rows(db))["w1"].last_seen_ms == later + 10
        finally:
            await db.dispose()

    asyncio.run(scenario())


def test_flush_writes_in_batches_one_transaction_each(database_url: str) -> None:
    async def scenario() -> None:
        db = await migrated(database_url)
        statements: list[str] = []
        commits: list[int] = []

        def on_execute(conn: Connection, cursor: Any, sql: str, *args: Any) -> None:
            if sql.lstrip().upper().startswith("INSERT INTO DEVICE_STATE"):
                statements.append(sql)

        event.listen(db.engine.sync_engine, "before_cursor_execute", on_execute)
        event.listen(db.engine.sync_engine, "commit", lambda conn: commits.append(1))
        try:
            book = DeviceStatusBook()
            sync = DeviceStateSync(book, db, batch_rows=500)
            for i in range(1100):
                wristband(book, f"w{i:04d}", hr=60 + i % 40)
            for i in range(100):  # devices with a status but no reading yet
                feed(book, f"cw/v1/bin/b{i:03d}/status", "online")
            assert await sync.flush() == 1200
            # Sorted ids in three batches: 100 bins (no reading) and 400 wristbands, 500, 200:
            # 4 statements, one transaction per batch (SQLite's one writer is not held long).
            assert len(statements) == 4
            assert len(commits) == 3
            count = select(func.count()).select_from(DeviceStateRow)
            async with db.sessions() as session:
                assert await session.scalar(count) == 1200
            assert sync.rows_written == 1200 and sync.flushes == 1
        finally:
            await db.dispose()

    asyncio.run(scenario())


# -- failures -----------------------------------------------------------------------


def test_failed_flush_keeps_dirty_devices_for_the_next(sqlite_url: str) -> None:
    async def scenario() -> None:
        db = await migrated(sqlite_url)
        try:
            book = DeviceStatusBook()
            sync = DeviceStateSync(book, db, batch_rows=2)
            for device in ("w1", "w2", "w3"):
                wristband(book, device, hr=70, battery=50)
            async with db.engine.begin() as conn:
                await conn.execute(text("ALTER TABLE device_state RENAME TO device_state_away"))

            assert await sync.flush() == 0  # no such table: logged, not raised
            assert book.dirty == {"w1", "w2", "w3"}
            assert (sync.failures, sync.consecutive_failures) == (1, 1)
            assert sync.last_error is not None and "device_state" in sync.last_error
            wristband(book, "w4", hr=71)  # ingest goes on meanwhile
            wristband(book, "w1", NOW + 1000, hr=90)
            assert await sync.flush() == 0
            assert book.dirty == {"w1", "w2", "w3", "w4"}

            async with db.engine.begin() as conn:  # repair
                await conn.execute(text("ALTER TABLE device_state_away RENAME TO device_state"))
            assert await sync.flush() == 4
            assert book.dirty == set()
            assert sync.consecutive_failures == 0 and sync.last_error is None
            got = await rows(db)
            assert set(got) == {"w1", "w2", "w3", "w4"}
            assert got["w1"].last_reading == {"ts": NOW + 500, "hr": 90}
            assert (got["w1"].battery, got["w1"].last_seen_ms) == (50, NOW + 1000)
        finally:
            await db.dispose()

    asyncio.run(scenario())


def test_a_failure_midway_keeps_what_was_committed_and_gives_back_the_rest(
    sqlite_url: str,
) -> None:
    async def scenario() -> None:
        db = await migrated(sqlite_url)
        try:
            book = DeviceStatusBook()
            sync = DeviceStateSync(book, db, batch_rows=2)
            for device in ("a1", "a2", "a3", "z9"):
                wristband(book, device, hr=70)
            # The second batch (a3 and z9) fails after the first (a1, a2) was committed.
            async with db.engine.begin() as conn:
                await conn.execute(
                    text(
                        "CREATE TRIGGER boom BEFORE INSERT ON device_state "
                        "WHEN NEW.device_id = 'z9' BEGIN SELECT RAISE(ABORT, 'boom'); END"
                    )
                )
            assert await sync.flush() == 0
            assert set(await rows(db)) == {"a1", "a2"}
            assert book.dirty == {"a3", "z9"}  # a3 rolled back with z9: both are written again
            async with db.engine.begin() as conn:
                await conn.execute(text("DROP TRIGGER boom"))
            assert await sync.flush() == 2
            assert set(await rows(db)) == {"a1", "a2", "a3", "z9"}
        finally:
            await db.dispose()

    asyncio.run(scenario())


def test_run_survives_a_broken_database_and_flushes_on_stop(sqlite_url: str) -> None:
    async def scenario() -> None:
        db = await migrated(sqlite_url)
        try:
            book = DeviceStatusBook()
            sync = DeviceStateSync(book, db, interval=0.05)
            async with db.engine.begin() as conn:
                await conn.execute(text("DROP TABLE device_state"))
            stop = asyncio.Event()
            task = asyncio.create_task(sync.run(stop))
            wristband(book, "w1", hr=70)
            await asyncio.sleep(0.3)
            assert not task.done()  # the loop goes on
            assert sync.failures >= 2 and book.dirty == {"w1"}

            async with db.engine.begin() as conn:  # repair: recreate the table
                await conn.run_sync(DeviceStateRow.metadata.tables["device_state"].create)
            await asyncio.sleep(0.3)
            assert set(await rows(db)) == {"w1"} and book.dirty == set()

            wristband(book, "w2", hr=71)  # arrives just before shutdown
            stop.set()
            await asyncio.wait_for(task, 5)
            assert set(await rows(db)) == {"w1", "w2"}  # the final flush wrote it
        finally:
            await db.dispose()

    asyncio.run(scenario())


def test_a_hanging_database_times_out_and_keeps_dirty_devices(
    sqlite_url: str, tmp_path: Path
) -> None:
    async def scenario() -> None:
        db = await migrated(sqlite_url)
        assert await rows(db) == {}  # the first connection puts the file in WAL mode
        # Another writer (the API, a migration) holds the write lock for a while.
        blocker = sqlite3.connect(tmp_path / "registry.db", isolation_level=None)
        try:
            book = DeviceStatusBook()
            sync = DeviceStateSync(book, db, interval=0.05, timeout=0.3)
            blocker.execute("BEGIN IMMEDIATE")
            stop = asyncio.Event()
            task = asyncio.create_task(sync.run(stop))
            wristband(book, "w1", hr=70)
            # aiosqlite cannot interrupt a statement waiting on the lock: the timeout
            # takes effect when SQLite's busy timeout (SQLITE_BUSY_TIMEOUT) ends it.
            await eventually(lambda: sync.failures >= 1, SQLITE_BUSY_TIMEOUT + 10)
            assert sync.last_error == "flush took over 0.3 s"
            assert book.dirty == {"w1"} and not task.done()
            blocker.execute("ROLLBACK")
            # Not just `not book.dirty`: a flush empties it as it starts, before it commits.
            await eventually(lambda: sync.rows_written >= 1 and not book.dirty, 15)
            assert set(await rows(db)) == {"w1"}
            stop.set()
            await asyncio.wait_for(task, 5)
        finally:
            blocker.close()
            await db.dispose()

    asyncio.run(scenario())


def fast_shutdown(server: PostgreSQL) -> None:
    """Stop the cluster the way an outage looks: clients cut off, then connections refused.

    SIGINT to the postmaster (PostgreSQL's fast shutdown), not `server.stop()`: that
    signals `runuser`, and a smart shutdown waits on our pooled connection until
    runuser kills the postmaster, leaving a stale lock file behind.
    """
    assert server.proc is not None
    pid = int((server.data / "postmaster.pid").read_text().split()[0])
    os.kill(pid, signal.SIGINT)
    server.proc.wait(30)


def test_postgres_outage_keeps_dirty_devices(postgres: PostgreSQL) -> None:
    url = postgres.create_database("t_outage")

    async def scenario() -> None:
        db = await migrated(url)
        try:
            book = DeviceStatusBook()
            sync = DeviceStateSync(book, db)
            wristband(book, "w1", hr=70, battery=60)
            assert await sync.flush() == 1

            await asyncio.to_thread(fast_shutdown, postgres)
            try:
                wristband(book, "w1", NOW + 1000, hr=75)
                wristband(book, "w2", hr=80)
                assert await sync.flush() == 0
                assert book.dirty == {"w1", "w2"} and sync.failures == 1
            finally:
                await asyncio.to_thread(postgres.start)

            assert await sync.flush() == 2  # the pool notices the dead connection and reconnects
            got = await rows(db)
            assert got["w1"].last_reading == {"ts": NOW + 500, "hr": 75}
            assert got["w1"].battery == 60 and got["w2"].last_seen_ms == NOW
        finally:
            await db.dispose()

    asyncio.run(scenario())
