"""The scoped SELECTs the resource modules share."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Select, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from devices.access import Scope
from devices.tables import Device, DeviceBinding, Resident

__all__ = ["device_query", "open_bindings", "resident_query"]


def resident_query(scope: Scope) -> Select[Resident]:
    """Residents of the grids the scope may read."""
    return select(Resident).where(scope.grid_filter(Resident.grid_id))


def device_query(scope: Scope) -> Select[Device]:
    """Devices of the grids the scope may read, and stock."""
    # Devices not yet given to anyone are stock every grid may hand out.
    return select(Device).where(or_(Device.grid_id.is_(None), scope.grid_filter(Device.grid_id)))


async def open_bindings(
    session: AsyncSession, *, device_id: str | None = None, resident_id: int | None = None
) -> Sequence[DeviceBinding]:
    """The bindings still in force, of one device or of one resident."""
    query = select(DeviceBinding).where(DeviceBinding.end.is_(None))
    if device_id is not None:
        query = query.where(DeviceBinding.device_id == device_id)
    if resident_id is not None:
        query = query.where(DeviceBinding.resident_id == resident_id)
    return (await session.scalars(query)).all()
