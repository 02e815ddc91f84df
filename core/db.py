"""The registry database: engine and sessions, the declarative base and its UTC column type.

The schema is brought up to date by `carewatch.migrations`, which knows every table.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import JSON, DateTime, TypeDecorator, event, func
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase

SQLITE_BUSY_TIMEOUT = 15.0  # seconds a writer waits for SQLite's lock


class Database:
    """One engine and its session factory; built in an entry point and passed in."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            path = url.split(":///", 1)[1] if ":///" in url else ""
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Parameters are residents' names, phones, health notes and password hashes:
        # keep them out of exception messages, and so out of the logs.
        # SQLite has one writer at a time: the alert feed, the dispatcher and the state
        # sync take turns, so a writer waits (up to 15 s) rather than failing at once.
        connect_args = {"timeout": SQLITE_BUSY_TIMEOUT} if self.is_sqlite else {}
        self.engine: AsyncEngine = create_async_engine(
            url, pool_pre_ping=not self.is_sqlite, hide_parameters=True, connect_args=connect_args
        )
        if self.is_sqlite:
            # SQLite enforces foreign keys only when asked, per connection.
            @event.listens_for(self.engine.sync_engine, "connect")
            def _pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
                cursor = dbapi_connection.cursor()
                cursor.execute("PRAGMA foreign_keys=ON")
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.close()

        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC in and out: SQLite keeps no offset, so naive values are read as UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[str]: JSON}


def server_now() -> Any:
    """The database's own clock, for `server_default`."""
    return func.now()
