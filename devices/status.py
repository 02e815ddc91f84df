"""Device status for supervisors: offline, silent, low on battery, not worn.

Served from the state the ingester keeps in the registry (`device_state`), never from InfluxDB.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import BigInteger, Select, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from devices.access import Scope
from devices.constants import LOW_BATTERY, OFFLINE_INTERVALS
from devices.tables import Device, DeviceState, Grid

__all__ = ["StatusRow", "device_status"]

_Query = Select[Device, DeviceState, int]


@dataclass(frozen=True, slots=True)
class StatusRow:
    """A device, its last known state and what that means now."""

    device: Device
    state: DeviceState | None
    community_id: int | None
    offline: bool
    silent: bool


def _where_state(query: _Query, state: str | None, now_ms: int) -> _Query:
    """Keep the devices in `state`; the arithmetic on milliseconds runs in SQL."""
    now = literal(now_ms, BigInteger)  # PostgreSQL would take a bare int for int4
    silent_before = now - Device.interval_s * 1000
    offline_before = now - Device.interval_s * 1000 * OFFLINE_INTERVALS
    never_seen = DeviceState.last_seen_ms.is_(None)
    if state == "offline":
        return query.where(
            or_(
                DeviceState.online.is_(False), never_seen, DeviceState.last_seen_ms < offline_before
            )
        )
    if state == "silent":
        return query.where(or_(never_seen, DeviceState.last_seen_ms < silent_before))
    if state == "low_battery":
        return query.where(DeviceState.battery < LOW_BATTERY)
    if state == "not_worn":
        return query.where(Device.kind == "wristband", DeviceState.worn.is_(False))
    if state == "online":
        return query.where(
            DeviceState.online.is_not(False), DeviceState.last_seen_ms >= offline_before
        )
    return query


def _row(
    device: Device, state: DeviceState | None, community: int | None, now_ms: int
) -> StatusRow:
    last = state.last_seen_ms if state is not None else None
    silent = last is None or last < now_ms - device.interval_s * 1000
    offline = (
        last is None
        or (state is not None and state.online is False)
        or last < now_ms - device.interval_s * 1000 * OFFLINE_INTERVALS
    )
    return StatusRow(device, state, community, offline, silent)


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
    """Devices with their last state, filtered in SQL; and how many match in all."""
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
    query = _where_state(query, state, now_ms)
    rows = (await session.execute(query.order_by(Device.id).offset(offset).limit(limit))).all()
    if len(rows) < limit and (rows or offset == 0):
        count = offset + len(rows)  # the last page: no second statement needed
    else:
        count = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
    return [_row(device, st, community, now_ms) for device, st, community in rows], int(count)
