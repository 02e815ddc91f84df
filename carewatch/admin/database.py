"""The registry an admin action works on: migrated first, or a throw-away copy for a dry run."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from carewatch.admin.common import EXIT_OK, EXIT_UNUSABLE, Refused, SessionFactory, safe_url, say
from carewatch.migrations import migrate
from core.db import Database

__all__ = ["migrate_registry", "open_registry"]


async def migrate_registry(url: str) -> int:
    """`carewatch admin migrate`: bring the schema up to date."""
    database = Database(url)
    try:
        await migrate(database)
    finally:
        await database.dispose()
    say(f"数据库已是最新结构 / registry schema is up to date: {safe_url(url)}")
    return EXIT_OK


@asynccontextmanager
async def open_registry(url: str, *, dry_run: bool) -> AsyncIterator[SessionFactory]:
    """Registry sessions; a dry run gets a copy (SQLite) or a transaction rolled back at the end."""
    if not dry_run:
        database = Database(url)
        try:
            await migrate(database)
            yield database.sessions
        finally:
            await database.dispose()
    elif url.startswith("sqlite"):
        async with _sqlite_dry_run(url) as sessions:
            yield sessions
    else:
        async with _rolled_back(url) as sessions:
            yield sessions


@asynccontextmanager
async def _sqlite_dry_run(url: str) -> AsyncIterator[SessionFactory]:
    # A copy, not a long transaction: that would lock the live service's writes out.
    with tempfile.TemporaryDirectory(prefix="carewatch-dry-run-") as tmp:
        copy = Path(tmp) / "registry.db"
        source = make_url(url).database
        if source and source != ":memory:" and Path(source).is_file():
            await asyncio.to_thread(_sqlite_copy, Path(source), copy)
        async with open_registry(f"sqlite+aiosqlite:///{copy}", dry_run=False) as sessions:
            yield sessions


@asynccontextmanager
async def _rolled_back(url: str) -> AsyncIterator[SessionFactory]:
    database = Database(url)
    try:
        async with database.engine.connect() as connection:
            outer = await connection.begin()
            try:
                if not await connection.run_sync(lambda c: inspect(c).has_table("devices")):
                    raise Refused(
                        "数据库还没有建表：请先运行 carewatch admin migrate",
                        "the registry has no schema yet: run `carewatch admin migrate` first",
                        EXIT_UNUSABLE,
                    )
                # The registry's commits become savepoint releases; all is rolled back at the end.
                yield lambda: AsyncSession(
                    bind=connection,
                    join_transaction_mode="create_savepoint",
                    expire_on_commit=False,
                )
            finally:
                await outer.rollback()
    finally:
        await database.dispose()


def _sqlite_copy(source: Path, target: Path) -> None:
    with (
        contextlib.closing(sqlite3.connect(source)) as src,
        contextlib.closing(sqlite3.connect(target)) as dst,
    ):
        src.backup(dst)
