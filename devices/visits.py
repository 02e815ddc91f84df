"""Home visits: recording them, a resident's history, and which visits are due.

Every read and write goes through the caller's Scope; refusals are RegistryErrors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from devices.access import Scope
from devices.constants import NEED_PERIODS
from devices.exceptions import forbidden
from devices.queries import resident_query
from devices.residents import get_resident
from devices.tables import Resident, Visit

__all__ = ["DueVisit", "due_visits", "list_visits", "record_visit"]


@dataclass(frozen=True, slots=True)
class DueVisit:
    """A visit a resident's service need asks for, due at `due_at`."""

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
    """Record a visit the scope's user made to a resident of a grid they may write."""
    resident = await get_resident(session, scope, resident_id)
    if not scope.can_write_grid(resident.grid_id):
        raise forbidden()
    visit = Visit(
        resident_id=resident.id,
        worker_id=scope.user_id,
        need=need,
        visited_at=visited_at or datetime.now(UTC),
        notes=notes,
        readings=readings,
    )
    session.add(visit)
    await session.commit()
    return visit


async def list_visits(session: AsyncSession, scope: Scope, resident_id: int) -> Sequence[Visit]:
    """A resident's visits, newest first."""
    resident = await get_resident(session, scope, resident_id)
    query = select(Visit).where(Visit.resident_id == resident.id).order_by(Visit.visited_at.desc())
    return (await session.scalars(query)).all()


def _due(
    resident: Resident, need: str, previous: datetime | None, now: datetime, horizon: timedelta
) -> DueVisit | None:
    period = NEED_PERIODS.get(need)
    if period is None:
        return None
    # A new resident is due at once; afterwards one period after the last visit.
    due_at = previous + period if previous else resident.created_at
    if due_at > now + horizon:
        return None
    # A new resident is due at once, but overdue only a period later.
    grace = period if previous is None else timedelta(0)
    return DueVisit(resident, need, previous, due_at, now > due_at + grace)


async def due_visits(
    session: AsyncSession,
    scope: Scope,
    *,
    now: datetime,
    grid_id: int | None = None,
    horizon: timedelta = timedelta(days=1),
) -> list[DueVisit]:
    """Visits due within `horizon` or overdue, most overdue first."""
    query = resident_query(scope)
    if grid_id is not None:
        query = query.where(Resident.grid_id == grid_id)
    residents = (await session.scalars(query)).all()
    last_rows = (
        await session.execute(
            select(Visit.resident_id, Visit.need, func.max(Visit.visited_at))
            .where(
                Visit.resident_id.in_([r.id for r in residents]),
                # A visit stored with a mistyped future date (before the API refused them)
                # must neither hide the resident from the list nor overflow `due_at`.
                Visit.visited_at <= now + timedelta(days=1),
            )
            .group_by(Visit.resident_id, Visit.need)
        )
    ).all()
    last = {(rid, need): at for rid, need, at in last_rows}  # UTC-aware (UTCDateTime)
    due = [
        visit
        for resident in residents
        for need in resident.service_needs or []
        if (visit := _due(resident, need, last.get((resident.id, need)), now, horizon))
    ]
    due.sort(key=lambda d: d.due_at)
    return due
