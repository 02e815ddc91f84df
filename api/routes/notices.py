"""Area notices: raise one for grids, buildings or tagged residents; track each resident.

Admins and supervisors (within their community) raise notices; everyone sees the
notices that concern residents of grids they may read, with the progress of those
grids; a grid worker of a resident's grid (or an admin) confirms them safe.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, TypeVar

from fastapi import APIRouter, Query
from sqlalchemy.ext.asyncio import AsyncSession

from alerts import notices
from alerts.exceptions import NoticeAreaError, NoticeError, NoticeForbidden, NoticeNotFound
from alerts.tables import AreaNotice, NoticeCheck
from api.deps import CurrentUser, ScopeDep, SessionDep
from api.errors import ApiError
from api.routes.alerts import AlertsDep
from api.schemas.common import ERRORS, Id, Offset, Page
from api.schemas.notices import (
    NoticeCheckPublic,
    NoticeCreate,
    NoticeDetail,
    NoticeGridProgress,
    NoticePublic,
    SafeRequest,
)
from devices.access import Scope
from devices.tables import Resident

router = APIRouter(
    prefix="/notices",
    tags=["notices"],
    responses={k: ERRORS[k] for k in (400, 401, 403, 404, 422)},
)
T = TypeVar("T")
_STATUS = {NoticeForbidden: 403, NoticeNotFound: 404, NoticeAreaError: 422}


async def _answer(work: Awaitable[T]) -> T:
    """`work`'s result; a refused notice as the HTTP error it means."""
    try:
        return await work
    except NoticeError as exc:
        status = next((s for kind, s in _STATUS.items() if isinstance(exc, kind)), 409)
        raise ApiError(status, exc.code, exc.message, exc.message_en) from exc


def _check(check: NoticeCheck, resident: Resident) -> NoticeCheckPublic:
    return NoticeCheckPublic(
        resident_id=resident.id,
        resident_name=resident.name,
        home=notices.home(resident),
        grid_id=check.grid_id,
        safe=check.safe_at is not None,
        safe_at=check.safe_at,
        confirmed_by=check.confirmed_by,
        note=check.note,
    )


async def _detail(session: AsyncSession, scope: Scope, notice: AreaNotice) -> NoticeDetail:
    grids = []
    for entry in await notices.progress(session, scope, notice):
        checks = [_check(c, r) for c, r in entry.checks]
        safe = sum(c.safe for c in checks)
        grids.append(
            NoticeGridProgress(
                grid_id=entry.grid_id,
                grid_name=entry.grid.name if entry.grid is not None else None,
                residents=len(checks),
                safe=safe,
                pending=len(checks) - safe,
                checks=checks,
            )
        )
    return NoticeDetail(
        **NoticePublic.model_validate(notice).model_dump(exclude={"residents", "safe"}),
        residents=sum(g.residents for g in grids),
        safe=sum(g.safe for g in grids),
        grids=grids,
        messages=await notices.message_states(session, notice),
    )


@router.post("", status_code=201, summary="Raise an area notice (admin, supervisor)")
async def raise_notice(
    body: NoticeCreate,
    user: CurrentUser,
    scope: ScopeDep,
    session: SessionDep,
    alerts: AlertsDep,
) -> NoticeDetail:
    """One check per resident of the area you may see; one message to each grid worker of
    their grids (the residents to check, names and homes) and to each resident's first
    emergency contact. An area with nobody in it is refused (422)."""
    notice = await _answer(
        notices.raise_notice(
            session,
            scope,
            title=body.title,
            text=body.text,
            area=notices.Area(tuple(body.grid_ids), tuple(body.building_ids), tuple(body.tags)),
            by=user.full_name,
            now=alerts.clock(),
            lang=alerts.book.lang,
            tz=alerts.settings.alerts.timezone,
        )
    )
    alerts.dispatcher.wake.set()
    return await _detail(session, scope, notice)


@router.get("", summary="Area notices concerning residents I may see, newest first")
async def list_notices(
    scope: ScopeDep,
    session: SessionDep,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Page[NoticePublic]:
    """With how many residents each concerns (in your grids) and how many are safe."""
    rows, count = await notices.list_notices(session, scope, offset=offset, limit=limit)
    return Page(
        data=[
            NoticePublic.model_validate(n).model_copy(update={"residents": total, "safe": safe})
            for n, total, safe in rows
        ],
        count=count,
    )


@router.get("/{notice_id}", summary="A notice's progress per grid: who is safe")
async def get_notice(notice_id: Id, scope: ScopeDep, session: SessionDep) -> NoticeDetail:
    """Per grid you may see: its residents, who is confirmed safe, who is still pending."""
    notice = await _answer(notices.get_notice(session, scope, notice_id))
    return await _detail(session, scope, notice)


@router.post(
    "/{notice_id}/checks/{resident_id}",
    summary="Confirm a resident safe (a grid worker of their grid)",
)
async def confirm_safe(
    notice_id: Id,
    resident_id: Id,
    body: SafeRequest,
    user: CurrentUser,
    scope: ScopeDep,
    session: SessionDep,
    alerts: AlertsDep,
) -> NoticeCheckPublic:
    """Confirming again changes nothing (the first confirmation stands)."""
    check, resident = await _answer(
        notices.confirm_safe(
            session,
            scope,
            notice_id,
            resident_id,
            by=user.full_name,
            note=body.note.strip(),
            now=alerts.clock(),
        )
    )
    return _check(check, resident)
