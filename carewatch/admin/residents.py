"""`carewatch admin import-residents`: resident files (一人一档) from a spreadsheet."""

from __future__ import annotations

import argparse
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from carewatch.admin.common import ADMIN_SCOPE
from carewatch.admin.database import open_registry
from carewatch.admin.places import Places, Skip
from carewatch.admin.rows import each_row, parse_file, report
from devices import residents
from devices.exceptions import RegistryError
from devices.importer import ResidentRow, parse_residents
from devices.tables import Resident

__all__ = ["import_residents"]


def _matches(column: Any, value: object) -> ColumnElement[bool]:
    return column.is_(None) if value is None else column == value  # type: ignore[no-any-return]


async def _already_there(
    session: AsyncSession, row: ResidentRow, grid_id: int, building_id: int | None
) -> bool:
    """Whether the grid holds this person already (same name, birth year and address)."""
    existing = await session.scalar(
        select(Resident.id)
        .where(
            Resident.grid_id == grid_id,
            Resident.name == row.name,
            _matches(Resident.birth_year, row.birth_year),
            _matches(Resident.building_id, building_id),
            _matches(Resident.unit, row.unit),
            _matches(Resident.room, row.room),
        )
        .limit(1)
    )
    return existing is not None


async def _import_one(session: AsyncSession, places: Places, row: ResidentRow) -> bool:
    grid_id = await places.grid(session, row.community, row.grid, create=True)
    assert grid_id is not None
    building_id = None
    if row.building:
        building_id = await places.building(
            session, row.community, row.grid, row.building, create=True
        )
    if await _already_there(session, row, grid_id, building_id):
        return False
    profile = row.profile(grid_id=grid_id, building_id=building_id)
    try:
        await residents.create_resident(session, ADMIN_SCOPE, profile)
    except RegistryError as exc:
        raise Skip.of("name", row.name, exc) from exc
    return True


async def import_residents(args: argparse.Namespace, url: str) -> int:
    """Each good row becomes a resident file, committed on its own; the exit code."""
    parsed = parse_file(lambda: parse_residents(args.file, encoding=args.encoding))
    places = Places()
    async with open_registry(url, dry_run=args.dry_run) as sessions:

        async def handle(row: ResidentRow) -> bool:
            async with sessions() as session:
                return await _import_one(session, places, row)

        run = await each_row(parsed.rows, parsed, "居民 residents", handle)
    return report(args, parsed, run, places, "居民 residents", [])
