"""Alerts: the open list by grid, severity and age, one alert's timeline, ack / resolve /
comment, and the response-time figures. Who may do what: docs/alerts.md, "Acknowledging".
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from alerts import stats
from alerts.exceptions import AlertNotFound, AlertsError
from alerts.service import AlertService
from alerts.stats import alert_grid as _alert_grid
from alerts.tables import ACKNOWLEDGED, FIRING, Alert, AlertEvent, Notification
from api.deps import CurrentUser, ScopeDep, SessionDep
from api.errors import ApiError
from api.schemas.alerts import (
    AlertDetail,
    AlertEventPublic,
    AlertPublic,
    CommentRequest,
    NotificationPublic,
    ResolveRequest,
    ResponseTimes,
    ResponseTimesReport,
    SeverityName,
    StateFilter,
)
from api.schemas.common import ERRORS, Id, Moment, Offset, Page, QueryId
from core.phones import mask_phone
from devices.access import Role, Scope
from devices.tables import Resident

router = APIRouter(
    prefix="/alerts",
    tags=["alerts"],
    responses={k: ERRORS[k] for k in (400, 401, 403, 404, 422)},
)
MAX_AGE_MIN = 10 * 366 * 24 * 60  # ten years: past any alert, short of datetime's limits
MAX_RANGE = timedelta(days=366)
DEFAULT_RANGE = timedelta(weeks=12)


def get_alerts(request: Request) -> AlertService:
    """The app's alert service."""
    alerts: AlertService = request.app.state.alerts
    return alerts


AlertsDep = Annotated[AlertService, Depends(get_alerts)]


def _not_found() -> ApiError:
    return ApiError(404, "not_found", "未找到该告警", "alert not found")


def _api_error(exc: AlertsError) -> ApiError:
    """The HTTP answer to a refusal of the alerts: 404 for no such alert, else 409."""
    if isinstance(exc, AlertNotFound):
        return _not_found()
    return ApiError(409, "conflict", exc.message, exc.message_en)


def _query(scope: Scope) -> Select[Alert, str, int]:
    return (
        select(Alert, Resident.name, _alert_grid)
        .outerjoin(Resident, Resident.id == Alert.resident_id)
        .where(scope.grid_filter(_alert_grid))
    )


def _public(alert: Alert, resident_name: str | None, grid_id: int | None) -> AlertPublic:
    return AlertPublic.model_validate(alert).model_copy(
        update={"resident_name": resident_name, "grid_id": grid_id}
    )


async def _load(
    session: AsyncSession, scope: Scope, alert_id: int
) -> tuple[Alert, str | None, int | None]:
    row = (
        await session.execute(
            _query(scope).where(Alert.id == alert_id).execution_options(populate_existing=True)
        )
    ).first()
    if row is None:
        raise _not_found()
    alert, name, grid = row
    return alert, name, grid


def mask_target(target: str) -> str:
    """138****8000 for a phone; the scheme only for a URL (its path holds tokens)."""
    masked = mask_phone(target)
    if masked != target:
        return masked
    scheme, sep, _ = target.partition("://")
    if sep:
        return f"{scheme}://***"
    return f"{target[:2]}***" if len(target) > 4 else "***"


async def _detail(session: AsyncSession, scope: Scope, alert_id: int) -> AlertDetail:
    alert, name, grid = await _load(session, scope, alert_id)
    events = await session.scalars(
        select(AlertEvent)
        .where(AlertEvent.alert_id == alert.id)
        .order_by(AlertEvent.at, AlertEvent.id)
    )
    notifications = await session.scalars(
        select(Notification)
        .where(Notification.alert_id == alert.id)
        .order_by(Notification.step, Notification.id)
    )
    return AlertDetail(
        **_public(alert, name, grid).model_dump(),
        finding=alert.finding or {},
        events=[AlertEventPublic.model_validate(e) for e in events.all()],
        notifications=[
            NotificationPublic.model_validate(n).model_copy(
                update={
                    "target": mask_target(n.target),
                    "last_error": mask_phone(n.last_error) if n.last_error else None,
                }
            )
            for n in notifications.all()
        ],
    )


def _may_answer(scope: Scope, grid_id: int | None, *, resolving: bool = False) -> None:
    """Acknowledge and comment: the grid's workers, admins, the community's supervisors."""
    if scope.can_write_grid(grid_id):
        return
    if scope.role is Role.SUPERVISOR and not resolving:
        return  # the alert was loaded through the scope: it is in their community
    raise ApiError(
        403,
        "forbidden",
        "只有该网格的网格员或管理员可以处理此告警",
        "only a grid worker of the alert's grid or an admin may resolve it",
    )


@router.get("", summary="Alerts I may see: open ones by default, newest first")
async def list_alerts(
    scope: ScopeDep,
    session: SessionDep,
    alerts: AlertsDep,
    state: StateFilter = "open",
    grid_id: QueryId = None,
    severity: SeverityName | None = None,
    min_age: Annotated[
        int | None, Query(ge=0, le=MAX_AGE_MIN, description="opened at least this many minutes ago")
    ] = None,
    rule: Annotated[str | None, Query(max_length=40, examples=["fall"])] = None,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Page[AlertPublic]:
    """`open` is firing and acknowledged alerts; `all` every state."""
    query = _query(scope)
    if state == "open":
        query = query.where(Alert.state.in_((FIRING, ACKNOWLEDGED)))
    elif state != "all":
        query = query.where(Alert.state == state)
    if grid_id is not None:
        query = query.where(_alert_grid == grid_id)
    if severity is not None:
        query = query.where(Alert.severity == severity)
    if min_age is not None:
        query = query.where(Alert.opened_at <= alerts.clock() - timedelta(minutes=min_age))
    if rule:
        query = query.where(Alert.rule == rule)
    count = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = await session.execute(
        query.order_by(Alert.opened_at.desc(), Alert.id.desc()).offset(offset).limit(limit)
    )
    return Page(data=[_public(*row) for row in rows.all()], count=int(count))


@router.get(
    "/stats/response-times",
    summary="Time to acknowledge and to resolve, per grid and ISO week",
)
async def response_times(
    scope: ScopeDep,
    session: SessionDep,
    alerts: AlertsDep,
    start: Annotated[
        Moment | None, Query(alias="from", description="default: 12 weeks before `to`")
    ] = None,
    end: Annotated[Moment | None, Query(alias="to", description="default: now")] = None,
    grid_id: QueryId = None,
) -> ResponseTimesReport:
    """Warning and critical alerts opened in [from, to), a grouped incident counted once.

    Answered: acknowledged by a person, or resolved by one without an acknowledgement.
    Times to resolve count alerts a person resolved; those closed when the condition
    cleared are `auto_resolved`. `within_target` is the share answered within 30
    minutes of the alerts that needed an answer (not those the system closed within
    30 minutes unanswered, nor unanswered ones younger than 30 minutes). Medians and
    p90 in minutes; weeks in the service's time zone. Times without an offset are UTC.
    """
    now = alerts.clock()
    try:
        end = _utc(end) if end is not None else now
        start = _utc(start) if start is not None else end - DEFAULT_RANGE
    except OverflowError as exc:
        raise _bad_range() from exc
    if end <= start or end - start > MAX_RANGE:
        raise _bad_range()
    timezone = alerts.settings.alerts.timezone
    report = await stats.response_times(
        session, scope, start=start, end=end, now=now, zone=ZoneInfo(timezone), grid_id=grid_id
    )
    return ResponseTimesReport(
        start=start,
        end=end,
        target_min=int(stats.TARGET.total_seconds() // 60),
        timezone=timezone,
        weeks=[_figures(f) for f in report.weeks],
        totals=[_figures(f) for f in report.totals],
    )


def _figures(grid: stats.GridFigures) -> ResponseTimes:
    return ResponseTimes(
        grid_id=grid.grid_id, grid_name=grid.grid_name, week=grid.week, **asdict(grid.figures)
    )


def _utc(at: datetime) -> datetime:
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC)


def _bad_range() -> ApiError:
    return ApiError(
        422,
        "bad_range",
        "时间范围须为正且不超过一年",
        "the range must be positive and at most a year",
    )


@router.get("/{alert_id}", summary="One alert with its timeline and messages")
async def get_alert(alert_id: Id, scope: ScopeDep, session: SessionDep) -> AlertDetail:
    """Events oldest first; messages with whom, by which channel, in what state (targets
    masked)."""
    return await _detail(session, scope, alert_id)


@router.post(
    "/{alert_id}/ack",
    summary="Acknowledge: stops the escalation",
    responses={409: ERRORS[409]},
)
async def acknowledge(
    alert_id: Id, user: CurrentUser, scope: ScopeDep, session: SessionDep, alerts: AlertsDep
) -> AlertDetail:
    """Grid workers of its grid, admins, supervisors of its community. Pending messages are
    cancelled and the ladder stops; acknowledging twice changes nothing; a resolved alert
    answers 409."""
    alert, _, grid = await _load(session, scope, alert_id)
    _may_answer(scope, grid)
    await session.commit()  # the service writes in its own transaction
    try:
        await alerts.acknowledge(alert.id, user.full_name, via="api", by_key=f"user:{user.id}")
    except AlertsError as exc:
        raise _api_error(exc) from exc
    return await _detail(session, scope, alert_id)


@router.post(
    "/{alert_id}/resolve",
    summary="Resolve, saying what was done",
    responses={409: ERRORS[409]},
)
async def resolve(
    alert_id: Id,
    body: ResolveRequest,
    user: CurrentUser,
    scope: ScopeDep,
    session: SessionDep,
    alerts: AlertsDep,
) -> AlertDetail:
    """Grid workers of its grid and admins; the note is required. A resolved alert answers
    409. Resolving a fall or SOS also unlatches it in the rule engine."""
    alert, _, grid = await _load(session, scope, alert_id)
    _may_answer(scope, grid, resolving=True)
    await session.commit()
    try:
        await alerts.resolve(alert.id, user.full_name, body.note)
    except AlertsError as exc:
        raise _api_error(exc) from exc
    return await _detail(session, scope, alert_id)


@router.post(
    "/{alert_id}/comments",
    status_code=201,
    summary="Add a comment to the timeline",
)
async def comment(
    alert_id: Id,
    body: CommentRequest,
    user: CurrentUser,
    scope: ScopeDep,
    session: SessionDep,
    alerts: AlertsDep,
) -> AlertDetail:
    """Who may acknowledge may comment, on open and resolved alerts alike."""
    alert, _, grid = await _load(session, scope, alert_id)
    _may_answer(scope, grid)
    alerts.book.comment(session, alert, user.full_name, body.text, alerts.clock())
    await session.commit()
    return await _detail(session, scope, alert_id)
