"""The registry's schema (Alembic): the one place that imports every package's tables."""

from __future__ import annotations

import asyncio
from pathlib import Path

from core.db import Database

LOCATION = Path(__file__).resolve().parent


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to `revision` (blocking)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(LOCATION))
    config.set_main_option("sqlalchemy.url", url)
    command.upgrade(config, revision)


async def migrate(database: Database) -> None:
    """Bring the schema to the newest migration, creating it on first start."""
    await asyncio.to_thread(upgrade, database.url)
