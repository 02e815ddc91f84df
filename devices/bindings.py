"""Devices and their bindings: a wristband to a resident, a bin to a building, with history.

Every read and write goes through the caller's Scope; refusals are RegistryErrors.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from devices.access import Scope, require_admin
from devices.broker.dynsec_bootstrap import RESERVED_USERNAMES
from devices.constants import CATEGORIES, KINDS
from devices.exceptions import InvalidInputError, conflict, forbidden, not_found
from devices.organisation import get_building, get_grid
from devices.queries import device_query, open_bindings
from devices.residents import get_resident
from devices.tables import Device, DeviceBinding
from protocol.topics import DEVICE_ID_RE

__all__ = [
    "bind_device",
    "bindings_of_device",
    "bindings_of_resident",
    "get_device",
    "register_device",
    "set_revoked",
]


def _check_new_device(device_id: str, kind: str, interval_s: int) -> None:
    if not DEVICE_ID_RE.fullmatch(device_id) or device_id in RESERVED_USERNAMES:
        raise InvalidInputError(
            "bad_device_id",
            f"设备编号 {device_id!r} 不合规：须为 1-64 位字母、数字、_ 或 -",
            f"device id {device_id!r} must be 1-64 of A-Za-z0-9_- and not a service account",
        )
    if kind not in KINDS or interval_s <= 0:
        raise InvalidInputError(
            "bad_device",
            "设备类型须为 wristband 或 bin，上报间隔须大于 0",
            "kind must be wristband or bin, interval_s above 0",
        )


async def register_device(
    session: AsyncSession,
    scope: Scope,
    *,
    device_id: str,
    kind: str,
    grid_id: int | None,
    interval_s: int = 60,
) -> Device:
    """Register a wristband or bin (admin); its id is also its MQTT username."""
    require_admin(scope)
    _check_new_device(device_id, kind, interval_s)
    if grid_id is not None:
        await get_grid(session, scope, grid_id)
    taken = conflict(f"设备 {device_id} 已登记", f"device {device_id} is already registered")
    if await session.get(Device, device_id) is not None:
        raise taken
    device = Device(id=device_id, kind=kind, grid_id=grid_id, interval_s=interval_s)
    session.add(device)
    try:
        await session.commit()
    except IntegrityError as exc:  # registered concurrently
        await session.rollback()
        raise taken from exc
    return device


async def get_device(session: AsyncSession, scope: Scope, device_id: str) -> Device:
    """One device of the scope's grids, or stock; NotFoundError otherwise."""
    device = await session.scalar(device_query(scope).where(Device.id == device_id))
    if device is None:
        raise not_found(f"设备 {device_id}", f"device {device_id}")
    return device


async def _binding_grid(
    session: AsyncSession,
    scope: Scope,
    device: Device,
    resident_id: int | None,
    building_id: int | None,
    category: str | None,
) -> int:
    """The grid the device moves to: its wearer's, or its building's; the target is checked."""
    if device.kind == "wristband":
        if resident_id is None or building_id is not None:
            raise InvalidInputError(
                "bad_binding", "手环只能绑定到居民", "a wristband binds to a resident"
            )
        return (await get_resident(session, scope, resident_id)).grid_id
    if category is not None and category not in CATEGORIES:
        raise InvalidInputError(
            "bad_category",
            f"未知的垃圾分类 {category}",
            "category must be kitchen, recyclable, hazardous or other",
        )
    if building_id is None or category is None or resident_id is not None:
        raise InvalidInputError(
            "bad_binding",
            "垃圾桶须绑定到楼栋并指定分类",
            "a bin binds to a building, with its category",
        )
    return (await get_building(session, scope, building_id)).grid_id


async def bind_device(
    session: AsyncSession,
    scope: Scope,
    device_id: str,
    *,
    resident_id: int | None = None,
    building_id: int | None = None,
    category: str | None = None,
    at: datetime | None = None,
) -> DeviceBinding:
    """Bind a wristband to a resident or a bin to a building; the old binding ends now."""
    device = await session.scalar(  # PostgreSQL: concurrent binds of one device queue here
        device_query(scope).where(Device.id == device_id).with_for_update()
    )
    if device is None:
        raise not_found(f"设备 {device_id}", f"device {device_id}")
    if device.revoked:
        raise conflict(f"设备 {device_id} 已停用", f"device {device_id} is revoked")
    at = at or datetime.now(UTC)
    grid_id = await _binding_grid(session, scope, device, resident_id, building_id, category)
    if not scope.can_write_grid(grid_id):
        raise forbidden()
    for old in await open_bindings(session, device_id=device.id):
        old.end = at
    binding = DeviceBinding(
        device_id=device.id,
        resident_id=resident_id,
        building_id=building_id,
        category=category,
        start=at,
    )
    device.grid_id = grid_id
    session.add(binding)
    try:
        await session.commit()
    except IntegrityError as exc:  # SQLite: a concurrent bind of this device won
        await session.rollback()
        raise conflict(
            f"设备 {device_id} 正在被绑定，请重试",
            f"device {device_id} was bound concurrently; try again",
        ) from exc
    return binding


async def set_revoked(session: AsyncSession, scope: Scope, device_id: str, revoked: bool) -> Device:
    """Mark a device revoked or restored in the registry (admin); the broker is the caller's."""
    require_admin(scope)
    device = await get_device(session, scope, device_id)
    device.revoked = revoked
    await session.commit()
    return device


async def bindings_of_device(
    session: AsyncSession, scope: Scope, device_id: str
) -> Sequence[DeviceBinding]:
    """Who or where a device of the scope served, oldest first."""
    device = await get_device(session, scope, device_id)
    query = select(DeviceBinding).where(DeviceBinding.device_id == device.id)
    return (await session.scalars(query.order_by(DeviceBinding.start))).all()


async def bindings_of_resident(
    session: AsyncSession, resident_id: int, start: datetime, end: datetime
) -> Sequence[DeviceBinding]:
    """The wristband bindings of a resident that overlap [start, end)."""
    query = select(DeviceBinding).where(
        DeviceBinding.resident_id == resident_id,
        DeviceBinding.start < end,
        or_(DeviceBinding.end.is_(None), DeviceBinding.end > start),
    )
    return (await session.scalars(query.order_by(DeviceBinding.start))).all()
