"""Resident files (一人一档): profile and emergency contacts, export and erasure.

Every read and write goes through the caller's Scope; refusals are RegistryErrors.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from devices.access import Scope
from devices.constants import NEED_PERIODS
from devices.exceptions import InvalidInputError, forbidden, not_found
from devices.organisation import get_building, get_grid
from devices.queries import open_bindings, resident_query
from devices.tables import Device, DeviceBinding, EmergencyContact, Resident, Visit

__all__ = [
    "create_resident",
    "delete_resident",
    "export_resident",
    "get_resident",
    "list_residents",
    "update_resident",
]


def _contacts(raw: Sequence[dict[str, Any]]) -> list[EmergencyContact]:
    return [EmergencyContact(position=i, **c) for i, c in enumerate(raw)]


def _check_needs(needs: Sequence[str] | None) -> None:
    unknown = sorted(set(needs or ()) - set(NEED_PERIODS))
    if unknown:
        raise InvalidInputError(
            "unknown_service_need",
            f"未知的服务需求：{'、'.join(unknown)}",
            f"unknown service needs {unknown}: expected {sorted(NEED_PERIODS)}",
        )


async def _check_building(
    session: AsyncSession, scope: Scope, building_id: int | None, grid_id: int
) -> None:
    if building_id is None:
        return
    building = await get_building(session, scope, building_id)
    if building.grid_id != grid_id:
        raise InvalidInputError(
            "building_not_in_grid", "楼栋不属于该网格", "the building is in another grid"
        )


async def create_resident(session: AsyncSession, scope: Scope, fields: dict[str, Any]) -> Resident:
    """Open a resident's file in a grid the scope may write; `contacts` in calling order."""
    fields = dict(fields)  # the caller's dict stays as it was
    _check_needs(fields.get("service_needs"))
    grid = await get_grid(session, scope, fields["grid_id"])
    if not scope.can_write_grid(grid.id):
        raise forbidden()
    await _check_building(session, scope, fields.get("building_id"), grid.id)
    contacts = _contacts(fields.pop("contacts", []))
    resident = Resident(**fields, contacts=contacts)
    session.add(resident)
    await session.commit()
    return await get_resident(session, scope, resident.id)


async def get_resident(session: AsyncSession, scope: Scope, resident_id: int) -> Resident:
    """One resident's file, freshly read; NotFoundError also outside the scope."""
    resident = await session.scalar(
        resident_query(scope)
        .where(Resident.id == resident_id)
        .execution_options(populate_existing=True)
    )
    if resident is None:
        raise not_found("该居民档案", "resident")
    return resident


async def list_residents(
    session: AsyncSession,
    scope: Scope,
    *,
    grid_id: int | None = None,
    tag: str | None = None,
    q: str | None = None,
    offset: int = 0,
    limit: int = 50,
) -> tuple[Sequence[Resident], int]:
    """A page of the residents the scope may read, and how many match in all."""
    query = resident_query(scope)
    if grid_id is not None:
        query = query.where(Resident.grid_id == grid_id)
    if q:
        query = query.where(Resident.name.contains(q, autoescape=True))
    if not tag:
        count = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
        page = await session.scalars(query.order_by(Resident.id).offset(offset).limit(limit))
        return page.all(), int(count)
    residents = (await session.scalars(query.order_by(Resident.id))).all()
    # Tags are a JSON list: filtered here, portable across SQLite and PostgreSQL.
    residents = [r for r in residents if tag in (r.tags or [])]
    return residents[offset : offset + limit], len(residents)


async def update_resident(
    session: AsyncSession, scope: Scope, resident_id: int, changes: dict[str, Any]
) -> Resident:
    """Change the fields given; a resident moved to another grid takes their wristband along."""
    changes = dict(changes)
    _check_needs(changes.get("service_needs"))
    resident = await get_resident(session, scope, resident_id)
    if not scope.can_write_grid(resident.grid_id):
        raise forbidden()
    if "grid_id" in changes and changes["grid_id"] != resident.grid_id:
        target = await get_grid(session, scope, changes["grid_id"])
        if not scope.can_write_grid(target.id):
            raise forbidden()
    await _check_building(
        session,
        scope,
        changes.get("building_id", resident.building_id),
        changes.get("grid_id", resident.grid_id),
    )
    if "contacts" in changes:
        resident.contacts = _contacts(changes.pop("contacts") or [])
    for key, value in changes.items():
        setattr(resident, key, value)
    if "grid_id" in changes:
        # The wristband goes with its wearer: the device's grid decides who sees it.
        worn = select(DeviceBinding.device_id).where(
            DeviceBinding.resident_id == resident.id, DeviceBinding.end.is_(None)
        )
        await session.execute(
            update(Device).where(Device.id.in_(worn)).values(grid_id=changes["grid_id"])
        )
    await session.commit()
    return await get_resident(session, scope, resident.id)


async def delete_resident(session: AsyncSession, scope: Scope, resident_id: int) -> None:
    """Erase a resident's file: profile, contacts, visits; their wristband is unbound."""
    resident = await get_resident(session, scope, resident_id)
    if not scope.can_write_grid(resident.grid_id):
        raise forbidden()
    now = datetime.now(UTC)
    for binding in await open_bindings(session, resident_id=resident.id):
        binding.end = now
    await session.flush()
    await session.execute(
        update(DeviceBinding)
        .where(DeviceBinding.resident_id == resident.id)
        .values(resident_id=None)
    )
    await session.execute(delete(Visit).where(Visit.resident_id == resident.id))
    await session.delete(resident)
    await session.commit()


async def export_resident(session: AsyncSession, scope: Scope, resident_id: int) -> dict[str, Any]:
    """Everything held about one resident, for a data subject's request."""
    resident = await get_resident(session, scope, resident_id)
    visits = (
        await session.scalars(
            select(Visit).where(Visit.resident_id == resident.id).order_by(Visit.visited_at)
        )
    ).all()
    bindings = (
        await session.scalars(
            select(DeviceBinding)
            .where(DeviceBinding.resident_id == resident.id)
            .order_by(DeviceBinding.start)
        )
    ).all()
    return {"resident": resident, "visits": visits, "bindings": bindings}
