"""Resident files (一人一档): profiles, contacts, visits, export and erasure, telemetry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Query

from api.deps import InfluxDep, ScopeDep, SessionDep
from api.errors import ApiError
from api.schemas.common import ERRORS, Id, Moment, Offset, Page, QueryId
from api.schemas.residents import (
    BindingPublic,
    DueVisitPublic,
    ResidentCreate,
    ResidentExport,
    ResidentPublic,
    ResidentUpdate,
    TelemetryHistory,
    TelemetryPoint,
    VisitCreate,
    VisitPublic,
)
from core.influx import InfluxClient
from devices import bindings, residents, visits
from devices.tables import DeviceBinding

_RESPONSES: dict[int | str, dict[str, Any]] = {k: ERRORS[k] for k in (400, 401, 403, 404, 422)}
resident_router = APIRouter(prefix="/residents", tags=["residents"], responses=_RESPONSES)
visit_router = APIRouter(prefix="/visits", tags=["residents"], responses=_RESPONSES)
VITALS = ("hr", "spo2", "sbp", "dbp", "temp")
MAX_POINTS = 500
NICE_INTERVALS = (60, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600, 86_400)


@resident_router.post("", status_code=201, summary="Open a resident's file")
async def create_resident(
    body: ResidentCreate, scope: ScopeDep, session: SessionDep
) -> ResidentPublic:
    fields = body.model_dump()
    fields["vital_limits"] = body.vital_limits.model_dump(exclude_none=True)
    resident = await residents.create_resident(session, scope, fields)
    return ResidentPublic.model_validate(resident)


@resident_router.get("", summary="Residents I may see, filtered")
async def list_residents(
    scope: ScopeDep,
    session: SessionDep,
    grid_id: QueryId = None,
    tag: Annotated[str | None, Query(max_length=64, examples=["lives-alone"])] = None,
    q: Annotated[str | None, Query(max_length=100, description="part of the name")] = None,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Page[ResidentPublic]:
    found, count = await residents.list_residents(
        session, scope, grid_id=grid_id, tag=tag, q=q, offset=offset, limit=limit
    )
    return Page(data=[ResidentPublic.model_validate(r) for r in found], count=count)


@resident_router.get("/{resident_id}", summary="One resident's file")
async def get_resident(resident_id: Id, scope: ScopeDep, session: SessionDep) -> ResidentPublic:
    return ResidentPublic.model_validate(await residents.get_resident(session, scope, resident_id))


@resident_router.patch("/{resident_id}", summary="Change a resident's file (only the fields sent)")
async def update_resident(
    resident_id: Id, body: ResidentUpdate, scope: ScopeDep, session: SessionDep
) -> ResidentPublic:
    changes = body.model_dump(exclude_unset=True)
    if "vital_limits" in changes:
        changes["vital_limits"] = (
            body.vital_limits.model_dump(exclude_none=True) if body.vital_limits else {}
        )
    for required in ("grid_id", "name", "health_notes", "service_needs", "tags"):
        if required in changes and changes[required] is None:
            raise ApiError(
                422, "invalid_input", f"{required} 不能为空", f"{required} cannot be null"
            )
    resident = await residents.update_resident(session, scope, resident_id, changes)
    return ResidentPublic.model_validate(resident)


@resident_router.delete(
    "/{resident_id}",
    status_code=204,
    summary="Erase a resident's file (data subject's request)",
)
async def delete_resident(resident_id: Id, scope: ScopeDep, session: SessionDep) -> None:
    await residents.delete_resident(session, scope, resident_id)


@resident_router.get("/{resident_id}/export", summary="Everything held about a resident")
async def export_resident(resident_id: Id, scope: ScopeDep, session: SessionDep) -> ResidentExport:
    data = await residents.export_resident(session, scope, resident_id)
    return ResidentExport(
        resident=ResidentPublic.model_validate(data["resident"]),
        visits=[VisitPublic.model_validate(v) for v in data["visits"]],
        bindings=[BindingPublic.model_validate(b) for b in data["bindings"]],
    )


@resident_router.post("/{resident_id}/visits", status_code=201, summary="Record a home visit")
async def record_visit(
    resident_id: Id, body: VisitCreate, scope: ScopeDep, session: SessionDep
) -> VisitPublic:
    visit = await visits.record_visit(session, scope, resident_id, **body.model_dump())
    return VisitPublic.model_validate(visit)


@resident_router.get("/{resident_id}/visits", summary="A resident's visits, newest first")
async def list_visits(resident_id: Id, scope: ScopeDep, session: SessionDep) -> list[VisitPublic]:
    return [
        VisitPublic.model_validate(v) for v in await visits.list_visits(session, scope, resident_id)
    ]


@visit_router.get("/due", summary="Visits due within a day, and overdue ones")
async def due_visits(
    scope: ScopeDep, session: SessionDep, grid_id: QueryId = None
) -> list[DueVisitPublic]:
    due = await visits.due_visits(session, scope, now=datetime.now(UTC), grid_id=grid_id)
    return [
        DueVisitPublic(
            resident_id=d.resident.id,
            resident_name=d.resident.name,
            grid_id=d.resident.grid_id,
            need=d.need,
            last_visit=d.last_visit,
            due_at=d.due_at,
            overdue=d.overdue,
        )
        for d in due
    ]


def _interval(span: timedelta) -> int:
    wanted = span.total_seconds() / MAX_POINTS
    return next((n for n in NICE_INTERVALS if n >= wanted), NICE_INTERVALS[-1])


async def _vitals(
    influx: InfluxClient, binding: DeviceBinding, start: datetime, end: datetime, interval: int
) -> list[TelemetryPoint]:
    """Means per bucket of one wristband, over the part of [start, end) it was worn."""
    b_start = max(start, binding.start)
    b_end = min(end, binding.end) if binding.end else end
    fields = ", ".join(f'mean("{f}") AS "{f}"' for f in VITALS)
    device = binding.device_id.replace("'", "")
    try:
        series = await influx.query(
            f'SELECT {fields} FROM "vitals" WHERE "device_id" = \'{device}\' '
            f"AND time >= {int(b_start.timestamp() * 1000)}ms "
            f"AND time < {int(b_end.timestamp() * 1000)}ms "
            f"GROUP BY time({interval}s) fill(none)"
        )
    except (httpx.HTTPError, ValueError) as exc:
        raise ApiError(
            503,
            "telemetry_unavailable",
            "历史数据服务暂时不可用，请稍后再试",
            "the telemetry store is unavailable; try again later",
        ) from exc
    points = []
    for s in series:
        columns = s["columns"]
        for row in s["values"]:
            values = dict(zip(columns[1:], row[1:], strict=True))
            points.append(
                TelemetryPoint(time=datetime.fromtimestamp(row[0] / 1000, UTC), values=values)
            )
    return points


@resident_router.get(
    "/{resident_id}/telemetry",
    summary="Vital signs over time, aggregated",
    responses={503: ERRORS[503]},
)
async def telemetry(
    resident_id: Id,
    scope: ScopeDep,
    session: SessionDep,
    influx: InfluxDep,
    start: Moment,
    end: Moment | None = None,
) -> TelemetryHistory:
    """Means per bucket from InfluxDB, across every wristband the resident wore in the range."""
    resident = await residents.get_resident(session, scope, resident_id)
    end = end or datetime.now(UTC)
    start, end = (t if t.tzinfo else t.replace(tzinfo=UTC) for t in (start, end))
    if end <= start or end - start > timedelta(days=366):
        raise ApiError(
            422,
            "bad_range",
            "时间范围须为正且不超过一年",
            "the range must be positive and at most a year",
        )
    interval = _interval(end - start)
    worn = await bindings.bindings_of_resident(session, resident.id, start, end)
    await session.commit()  # no pooled connection held while InfluxDB answers
    points: list[TelemetryPoint] = []
    for binding in worn:
        points.extend(await _vitals(influx, binding, start, end, interval))
    points.sort(key=lambda p: p.time)
    return TelemetryHistory(
        resident_id=resident.id, start=start, end=end, interval_s=interval, points=points
    )


# main.py includes `router`: both prefixed routers, the URLs as before.
router = APIRouter()
router.include_router(resident_router)
router.include_router(visit_router)
