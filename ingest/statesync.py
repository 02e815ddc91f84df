"""The ingester's device status, upserted into the registry's `device_state` table.

Off the hot path, never raising into ingest; what the upsert keeps: docs/ingest.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Final

import msgspec
from sqlalchemy import ColumnElement, Table, case, func, or_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.expression import Executable

from core.db import Database
from devices.tables import DeviceState as DeviceStateRow
from ingest.status import DeviceStatus, DeviceStatusBook, Telemetry

log = logging.getLogger(__name__)

BATCH_ROWS: Final = 500
_TABLE: Final[Table] = DeviceStateRow.metadata.tables[DeviceStateRow.__tablename__]
_DIALECTS: Final = ("sqlite", "postgresql")
_ERROR_LOG_EVERY_S: Final = 60.0

Row = dict[str, Any]


def reading_dict(body: Telemetry) -> dict[str, Any]:
    """A telemetry body as the plain dict stored in `last_reading`: its fields that are set."""
    return {k: v for k, v in msgspec.structs.asdict(body).items() if v is not None}


def state_row(device_id: str, state: DeviceStatus) -> Row:
    """The `device_state` row for one device of the book."""
    body = state.last_telemetry
    return {
        "device_id": device_id,
        "online": state.online,
        "status_since_ms": state.status_since_ms,
        "last_seen_ms": state.last_seen_ms or None,  # 0 in the book: no reading yet
        "battery": state.battery,
        "worn": state.worn,
        "last_reading": reading_dict(body) if body is not None else {},
    }


def _set_clause(excluded: Any, with_reading: bool) -> dict[str, ColumnElement[Any]]:
    """ON CONFLICT DO UPDATE SET: what a row from the book may change in the stored row."""
    c = _TABLE.c
    status_newer = or_(c.status_since_ms.is_(None), excluded.status_since_ms >= c.status_since_ms)
    set_: dict[str, ColumnElement[Any]] = {
        "online": case((status_newer, excluded.online), else_=c.online),
        "status_since_ms": case((status_newer, excluded.status_since_ms), else_=c.status_since_ms),
        "last_seen_ms": case(
            (
                or_(c.last_seen_ms.is_(None), excluded.last_seen_ms > c.last_seen_ms),
                excluded.last_seen_ms,
            ),
            else_=c.last_seen_ms,
        ),
        "battery": func.coalesce(excluded.battery, c.battery),
        "worn": func.coalesce(excluded.worn, c.worn),
    }
    if with_reading:
        set_["last_reading"] = excluded.last_reading
    return set_


def upsert_statement(dialect: str, *, with_reading: bool) -> Executable:
    """INSERT ... ON CONFLICT (device_id) DO UPDATE for SQLite or PostgreSQL, run with many rows."""
    # Built once, executed with a list of rows (executemany): docs/ingest.md says why.
    if dialect == "sqlite":
        lite = sqlite.insert(_TABLE)
        return lite.on_conflict_do_update(
            index_elements=[_TABLE.c.device_id], set_=_set_clause(lite.excluded, with_reading)
        )
    if dialect == "postgresql":
        pg = postgresql.insert(_TABLE)
        return pg.on_conflict_do_update(
            index_elements=[_TABLE.c.device_id], set_=_set_clause(pg.excluded, with_reading)
        )
    msg = f"device state sync supports {' and '.join(_DIALECTS)}, not {dialect}"
    raise ValueError(msg)


class DeviceStateSync:
    """Writes the book's changed devices to `device_state` every `interval` seconds.

    `timeout` bounds each flush that `run` makes, so a hanging database holds up
    neither the loop nor shutdown. asyncpg stops a query when cancelled; aiosqlite
    cannot, so on SQLite a flush waiting on another writer's lock ends when
    SQLite's busy timeout (5 s) does. The `Database` stays the caller's to dispose.
    """

    def __init__(
        self,
        book: DeviceStatusBook,
        database: Database,
        *,
        interval: float = 2.0,
        batch_rows: int = BATCH_ROWS,
        timeout: float = 10.0,
    ) -> None:
        dialect = database.engine.dialect.name
        if interval <= 0 or batch_rows < 1 or timeout <= 0:
            msg = "interval and timeout must be positive and batch_rows at least 1"
            raise ValueError(msg)
        self.book = book
        self.database = database
        self.dialect = dialect
        self._upsert_with_reading = upsert_statement(dialect, with_reading=True)
        self._upsert_without_reading = upsert_statement(dialect, with_reading=False)
        self.interval = interval
        self.batch_rows = batch_rows
        self.timeout = timeout
        self._lock = asyncio.Lock()
        # For /metrics and tests.
        self.flushes = 0
        self.rows_written = 0
        self.failures = 0
        self.consecutive_failures = 0
        self.last_error: str | None = None
        self._last_error_logged = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        """Flush every `interval` seconds until `stop` is set, then flush once more."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)
            if not stop.is_set():
                await self._bounded_flush()
        await self._bounded_flush()
        if self.book.dirty:
            log.warning(
                "stopping with %d device states not written to the database",
                len(self.book.dirty),
            )

    async def _bounded_flush(self) -> None:
        # A database that hangs must not hold up the loop or shutdown; the ids go back.
        try:
            await asyncio.wait_for(self.flush(), self.timeout)
        except TimeoutError:
            self._failed(f"flush took over {self.timeout} s", exc_info=False)

    async def flush(self) -> int:
        """Upsert the devices changed since the last flush; returns rows written, never raises.

        One transaction per `batch_rows` devices: SQLite has one writer, and the alert
        side must not wait behind 20,000 rows (100,000 bands reporting every 10 s).
        On a database error the ids not yet committed go back to the book's dirty set
        for the next flush. So do they if the flush is cancelled.
        """
        async with self._lock:
            ids = sorted(self.book.take_dirty())
            if not ids:
                return 0
            started = time.perf_counter()
            written = committed = 0
            try:
                for start in range(0, len(ids), self.batch_rows):
                    chunk = ids[start : start + self.batch_rows]
                    async with self.database.engine.begin() as conn:
                        written += await self._write(conn, chunk)
                    committed = start + len(chunk)
            except Exception as exc:
                self.book.restore_dirty(set(ids[committed:]))
                self._failed(f"{type(exc).__name__}: {exc}", exc_info=True)
                return 0
            except BaseException:  # cancelled (a timeout, shutdown): keep them too
                self.book.restore_dirty(set(ids[committed:]))
                raise
        self.flushes += 1
        self.rows_written += written
        if self.consecutive_failures:
            log.info(
                "device state sync works again after %d failed flushes",
                self.consecutive_failures,
            )
            self.consecutive_failures = 0
            self.last_error = None
        log.debug(
            "device state: %d rows in %.1f ms", written, (time.perf_counter() - started) * 1000
        )
        return written

    async def _write(self, conn: AsyncConnection, device_ids: list[str]) -> int:
        # Sorted ids: concurrent writers (more workers) lock rows in the same order.
        devices = self.book.devices
        written = 0
        for start in range(0, len(device_ids), self.batch_rows):
            with_reading: list[Row] = []
            without_reading: list[Row] = []
            for device_id in device_ids[start : start + self.batch_rows]:
                state = devices.get(device_id)
                if state is None:
                    continue
                row = state_row(device_id, state)
                (with_reading if row["last_reading"] else without_reading).append(row)
            for rows, statement in (
                (with_reading, self._upsert_with_reading),
                (without_reading, self._upsert_without_reading),
            ):
                if rows:
                    await conn.execute(statement, rows)
                    written += len(rows)
        return written

    def _failed(self, error: str, *, exc_info: bool) -> None:
        self.failures += 1
        self.consecutive_failures += 1
        self.last_error = error
        now = time.monotonic()
        # The first failure in a row with its traceback, then a line a minute at most.
        if self.consecutive_failures == 1 or now - self._last_error_logged >= _ERROR_LOG_EVERY_S:
            self._last_error_logged = now
            log.error(
                "device state sync failed (%d in a row), %d devices kept for the next flush: %s",
                self.consecutive_failures,
                len(self.book.dirty),
                error,
                exc_info=exc_info and self.consecutive_failures == 1,
            )
