"""Registry operations: organisations, residents, devices and their bindings, visits.

Domain code: raises RegistryError (with a Chinese and an English message),
never HTTP errors; every read and write goes through the caller's Scope.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import BigInteger, Select, delete, func, literal, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from devices.access import Role, Scope
from devices.tables import (
    Building,
    Community,
    Device,
    DeviceBinding,
    DeviceState,
    EmergencyContact,
    Grid,
    Resident,
    User,
    Visit,
)
from protocol.topics import DEVICE_ID_RE

# How often each service need asks for a visit.
NEED_PERIODS: Final = {
    "daily_check": timedelta(days=1),
    "weekly_visit": timedelta(days=7),
    "monthly_visit": timedelta(days=30),
}
LOW_BATTERY: Final = 15.0
RESERVED_IDS: Final = frozenset({"carewatch", "carewatch-admin", "loadgen"})
OFFLINE_INTERVALS: Final = 3  # silent for this many reporting intervals counts as offline


class RegistryError(Exception):
    """A refused registry operation; `status` is the HTTP status the API answers with."""

    def __init__(self, status: int, code: str, message: str, message_en: str) -> None:
        super().__init__(message_en)
        self.status = status
        self.code = code
        self.message = message
        self.message_en = message_en


def not_found(what_zh: str, what_en: str) -> RegistryError:
    return RegistryError(404, "not_found", f"未找到{what_zh}", f"{what_en} not found")


def forbidden() -> RegistryError:
    return RegistryError(403, "forbidden", "没有权限进行此操作", "your role may not do this")


def conflict(message: str, message_en: str) -> RegistryError:
    return RegistryError(409, "conflict", message, message_en)


def _require_admin(scope: Scope) -> None:
    if not scope.is_admin:
        raise forbidden()


def utcnow() -> datetime:
    return datetime.now(UTC)


# -- organisation --------------------------------------------------------------


async def create_community(session: AsyncSession, scope: Scope, **fields: Any) -> Community:
    _require_admin(scope)
    if await session.scalar(select(Community.id).where(Community.name == fields["name"])):
        raise conflict(f"社区“{fields['name']}”已存在", f"community {fields['name']!r} exists")
    community = Community(**fields)
    session.add(community)
    try:
        await session.commit()
    except IntegrityError as exc:  # a concurrent request took the name first
        await session.rollback()
        raise conflict(
            f"社区“{fields['name']}”已存在", f"community {fields['name']!r} exists"
        ) from exc
    return community


async def create_grid(
    session: AsyncSession,
    scope: Scope,
    *,
    community_id: int,
    name: str,
    supervisor_id: int | None = None,
    worker_ids: Sequence[int] = (),
) -> Grid:
    _require_admin(scope)
    if await session.get(Community, community_id) is None:
        raise not_found("该社区", "community")
    if supervisor_id is not None:
        supervisor = await session.get(User, supervisor_id)
        if supervisor is None or supervisor.role != Role.SUPERVISOR:
            raise RegistryError(
                422,
                "not_a_supervisor",
                f"用户 {supervisor_id} 不是社区主管",
                f"user {supervisor_id} is no supervisor",
            )
    taken = await session.scalar(
        select(Grid.id).where(Grid.community_id == community_id, Grid.name == name)
    )
    if taken:
        raise conflict(f"网格“{name}”已存在", f"grid {name!r} exists in this community")
    grid = Grid(community_id=community_id, name=name, supervisor_id=supervisor_id, workers=[])
    for user_id in dict.fromkeys(worker_ids):  # a worker named twice is one worker
        user = await session.get(User, user_id)
        if user is None or user.role != Role.GRID_WORKER:
            raise RegistryError(
                422,
                "not_a_grid_worker",
                f"用户 {user_id} 不是网格员",
                f"user {user_id} is no grid worker",
            )
        grid.workers.append(user)
    session.add(grid)
    try:
        await session.commit()
    except IntegrityError as exc:  # a concurrent request took the name first
        await session.rollback()
        raise conflict(f"网格“{name}”已存在", f"grid {name!r} exists in this community") from exc
    return grid


async def list_grids(session: AsyncSession, scope: Scope) -> Sequence[Grid]:
    query = select(Grid).where(scope.grid_filter(Grid.id, Grid.community_id)).order_by(Grid.id)
    return (await session.scalars(query)).all()


async def get_grid(session: AsyncSession, scope: Scope, grid_id: int) -> Grid:
    grid = await session.get(Grid, grid_id)
    if grid is None or not scope.can_read_grid(grid):
        raise not_found("该网格", "grid")
    return grid


async def create_building(
    session: AsyncSession, scope: Scope, *, grid_id: int, name: str, sorting_target: float = 0.85
) -> Building:
    _require_admin(scope)
    grid = await get_grid(session, scope, grid_id)
    taken = await session.scalar(
        select(Building.id).where(Building.community_id == grid.community_id, Building.name == name)
    )
    if taken:
        raise conflict(f"楼栋“{name}”已存在", f"building {name!r} exists")
    building = Building(
        community_id=grid.community_id, grid_id=grid.id, name=name, sorting_target=sorting_target
    )
    session.add(building)
    try:
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        raise conflict(f"楼栋“{name}”已存在", f"building {name!r} exists") from exc
    return building


async def get_building(session: AsyncSession, scope: Scope, building_id: int) -> Building:
    building = await session.get(Building, building_id)
    if building is None:
        raise not_found("该楼栋", "building")
    await get_grid(session, scope, building.grid_id)
    return building


async def list_buildings(session: AsyncSession, scope: Scope) -> Sequence[Building]:
    query = (
        select(Building)
        .where(scope.grid_filter(Building.grid_id, Building.community_id))
        .order_by(Building.id)
    )
    return (await session.scalars(query)).all()


# -- residents -----------------------------------------------------------------


def _contacts(raw: Sequence[dict[str, Any]]) -> list[EmergencyContact]:
    return [EmergencyContact(position=i, **c) for i, c in enumerate(raw)]


def _check_needs(needs: Sequence[str] | None) -> None:
    unknown = sorted(set(needs or ()) - set(NEED_PERIODS))
    if unknown:
        raise RegistryError(
            422,
            "unknown_service_need",
            f"未知的服务需求：{'、'.join(unknown)}",
            f"unknown service needs {unknown}: expected {sorted(NEED_PERIODS)}",
        )


async def create_resident(session: AsyncSession, scope: Scope, fields: dict[str, Any]) -> Resident:
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


async def _check_building(
    session: AsyncSession, scope: Scope, building_id: int | None, grid_id: int
) -> None:
    if building_id is None:
        return
    building = await get_building(session, scope, building_id)
    if building.grid_id != grid_id:
        raise RegistryError(
            422, "building_not_in_grid", "楼栋不属于该网格", "the building is in another grid"
        )


def _resident_query(scope: Scope) -> Select[Resident]:
    return select(Resident).where(scope.grid_filter(Resident.grid_id))


async def get_resident(session: AsyncSession, scope: Scope, resident_id: int) -> Resident:
    resident = await session.scalar(
        _resident_query(scope)
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
    query = _resident_query(scope)
    if grid_id is not None:
        query = query.where(Resident.grid_id == grid_id)
    if q:
        query = query.where(Resident.name.contains(q, autoescape=True))
    if not tag:
        count = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
        page = await session.scalars(query.order_by(Resident.id).offset(offset).limit(limit))
        return page.all(), int(count)
    residents = (await session.scalars(query.order_by(Resident.id))).all()
    if tag:  # tags are a JSON list: filtered here, portable across SQLite and PostgreSQL
        residents = [r for r in residents if tag in (r.tags or [])]
    return residents[offset : offset + limit], len(residents)


async def update_resident(
    session: AsyncSession, scope: Scope, resident_id: int, changes: dict[str, Any]
) -> Resident:
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
    now = utcnow()
    for binding in await _open_bindings(session, resident_id=resident.id):
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


# -- devices -------------------------------------------------------------------


async def register_device(
    session: AsyncSession,
    scope: Scope,
    *,
    device_id: str,
    kind: str,
    grid_id: int | None,
    interval_s: int = 60,
) -> Device:
    _require_admin(scope)
    if not DEVICE_ID_RE.fullmatch(device_id) or device_id in RESERVED_IDS:
        raise RegistryError(
            422,
            "bad_device_id",
            f"设备编号 {device_id!r} 不合规：须为 1-64 位字母、数字、_ 或 -",
            f"device id {device_id!r} must be 1-64 of A-Za-z0-9_- and not a service account",
        )
    if kind not in ("wristband", "bin") or interval_s <= 0:
        raise RegistryError(
            422,
            "bad_device",
            "设备类型须为 wristband 或 bin，上报间隔须大于 0",
            "kind must be wristband or bin, interval_s above 0",
        )
    if grid_id is not None:
        await get_grid(session, scope, grid_id)
    if await session.get(Device, device_id) is not None:
        raise conflict(f"设备 {device_id} 已登记", f"device {device_id} is already registered")
    device = Device(id=device_id, kind=kind, grid_id=grid_id, interval_s=interval_s)
    session.add(device)
    try:
        await session.commit()
    except IntegrityError as exc:  # registered concurrently
        await session.rollback()
        raise conflict(
            f"设备 {device_id} 已登记", f"device {device_id} is already registered"
        ) from exc
    return device


def _device_query(scope: Scope) -> Select[Device]:
    # Devices not yet given to anyone are stock every grid may hand out.
    return select(Device).where(or_(Device.grid_id.is_(None), scope.grid_filter(Device.grid_id)))


async def get_device(session: AsyncSession, scope: Scope, device_id: str) -> Device:
    device = await session.scalar(_device_query(scope).where(Device.id == device_id))
    if device is None:
        raise not_found(f"设备 {device_id}", f"device {device_id}")
    return device


async def _open_bindings(
    session: AsyncSession, *, device_id: str | None = None, resident_id: int | None = None
) -> Sequence[DeviceBinding]:
    query = select(DeviceBinding).where(DeviceBinding.end.is_(None))
    if device_id is not None:
        query = query.where(DeviceBinding.device_id == device_id)
    if resident_id is not None:
        query = query.where(DeviceBinding.resident_id == resident_id)
    return (await session.scalars(query)).all()


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
        _device_query(scope).where(Device.id == device_id).with_for_update()
    )
    if device is None:
        raise not_found(f"设备 {device_id}", f"device {device_id}")
    if device.revoked:
        raise conflict(f"设备 {device_id} 已停用", f"device {device_id} is revoked")
    at = at or utcnow()
    if device.kind == "wristband":
        if resident_id is None or building_id is not None:
            raise RegistryError(
                422, "bad_binding", "手环只能绑定到居民", "a wristband binds to a resident"
            )
        resident = await get_resident(session, scope, resident_id)
        grid_id = resident.grid_id
    else:
        if category not in (None, "kitchen", "recyclable", "hazardous", "other"):
            raise RegistryError(
                422,
                "bad_category",
                f"未知的垃圾分类 {category}",
                "category must be kitchen, recyclable, hazardous or other",
            )
        if building_id is None or category is None or resident_id is not None:
            raise RegistryError(
                422,
                "bad_binding",
                "垃圾桶须绑定到楼栋并指定分类",
                "a bin binds to a building, with its category",
            )
        building = await get_building(session, scope, building_id)
        grid_id = building.grid_id
    if not scope.can_write_grid(grid_id):
        raise forbidden()
    for old in await _open_bindings(session, device_id=device.id):
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
    _require_admin(scope)
    device = await get_device(session, scope, device_id)
    device.revoked = revoked
    await session.commit()
    return device


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


# -- device status ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatusRow:
    device: Device
    state: DeviceState | None
    community_id: int | None
    offline: bool
    silent: bool


async def device_status(
    session: AsyncSession,
    scope: Scope,
    *,
    now_ms: int,
    grid_id: int | None = None,
    community_id: int | None = None,
    kind: str | None = None,
    state: str | None = None,
    offset: int = 0,
    limit: int = 100,
) -> tuple[list[StatusRow], int]:
    """Devices with their last state, filtered; the filters run in SQL, state by ms arithmetic."""
    query = (
        select(Device, DeviceState, Grid.community_id)
        .outerjoin(DeviceState, DeviceState.device_id == Device.id)
        .outerjoin(Grid, Grid.id == Device.grid_id)
        .where(scope.grid_filter(Device.grid_id), Device.revoked.is_(False))
    )
    if grid_id is not None:
        query = query.where(Device.grid_id == grid_id)
    if community_id is not None:
        query = query.where(Grid.community_id == community_id)
    if kind is not None:
        query = query.where(Device.kind == kind)
    now = literal(now_ms, BigInteger)  # PostgreSQL would take a bare int for int4
    silent_before = now - Device.interval_s * 1000
    offline_before = now - Device.interval_s * 1000 * OFFLINE_INTERVALS
    never_seen = DeviceState.last_seen_ms.is_(None)
    if state == "offline":
        query = query.where(
            or_(
                DeviceState.online.is_(False), never_seen, DeviceState.last_seen_ms < offline_before
            )
        )
    elif state == "silent":
        query = query.where(or_(never_seen, DeviceState.last_seen_ms < silent_before))
    elif state == "low_battery":
        query = query.where(DeviceState.battery < LOW_BATTERY)
    elif state == "not_worn":
        query = query.where(Device.kind == "wristband", DeviceState.worn.is_(False))
    elif state == "online":
        query = query.where(
            DeviceState.online.is_not(False), DeviceState.last_seen_ms >= offline_before
        )
    rows = (await session.execute(query.order_by(Device.id).offset(offset).limit(limit))).all()
    if len(rows) < limit and (rows or offset == 0):
        count = offset + len(rows)  # the last page: no second statement needed
    else:
        count = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
    out = []
    for device, dstate, community in rows:
        last = dstate.last_seen_ms if dstate is not None else None
        silent = last is None or last < now_ms - device.interval_s * 1000
        offline = (
            last is None
            or (dstate is not None and dstate.online is False)
            or last < now_ms - device.interval_s * 1000 * OFFLINE_INTERVALS
        )
        out.append(StatusRow(device, dstate, community, offline, silent))
    return out, int(count)


# -- visits --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DueVisit:
    resident: Resident
    need: str
    last_visit: datetime | None
    due_at: datetime
    overdue: bool


async def record_visit(
    session: AsyncSession,
    scope: Scope,
    resident_id: int,
    *,
    need: str,
    visited_at: datetime | None,
    notes: str,
    readings: dict[str, Any],
) -> Visit:
    resident = await get_resident(session, scope, resident_id)
    if not scope.can_write_grid(resident.grid_id):
        raise forbidden()
    visit = Visit(
        resident_id=resident.id,
        worker_id=scope.user_id,
        need=need,
        visited_at=visited_at or utcnow(),
        notes=notes,
        readings=readings,
    )
    session.add(visit)
    await session.commit()
    return visit


async def list_visits(session: AsyncSession, scope: Scope, resident_id: int) -> Sequence[Visit]:
    resident = await get_resident(session, scope, resident_id)
    query = select(Visit).where(Visit.resident_id == resident.id).order_by(Visit.visited_at.desc())
    return (await session.scalars(query)).all()


async def due_visits(
    session: AsyncSession,
    scope: Scope,
    *,
    now: datetime,
    grid_id: int | None = None,
    horizon: timedelta = timedelta(days=1),
) -> list[DueVisit]:
    """Visits due within `horizon` or overdue, most overdue first."""
    query = _resident_query(scope)
    if grid_id is not None:
        query = query.where(Resident.grid_id == grid_id)
    residents = (await session.scalars(query)).all()
    last_rows = (
        await session.execute(
            select(Visit.resident_id, Visit.need, func.max(Visit.visited_at))
            .where(Visit.resident_id.in_([r.id for r in residents]))
            .group_by(Visit.resident_id, Visit.need)
        )
    ).all()
    last = {(rid, need): at for rid, need, at in last_rows}  # UTC-aware (UTCDateTime)
    due = []
    for resident in residents:
        for need in resident.service_needs or []:
            period = NEED_PERIODS.get(need)
            if period is None:
                continue
            previous = last.get((resident.id, need))
            # A new resident is due at once; afterwards one period after the last visit.
            due_at = previous + period if previous else resident.created_at
            if due_at <= now + horizon:
                # A new resident is due at once, but overdue only a period later.
                grace = period if previous is None else timedelta(0)
                due.append(DueVisit(resident, need, previous, due_at, now > due_at + grace))
    due.sort(key=lambda d: d.due_at)
    return due
