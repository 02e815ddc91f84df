"""Area notices: a supervisor's warning for an area, tracked per resident until each is safe.

The notice, its checks and its messages are written in one transaction (docs/alerts.md,
"Area notices").
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Final

from sqlalchemy import ColumnElement, exists, func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.exceptions import NoticeAreaError, NoticeForbidden, NoticeNotFound
from alerts.outbox import new_row
from alerts.routing import Recipient, Subject, rung
from alerts.tables import AreaNotice, NoticeCheck, Notification
from alerts.templates import DEFAULT_TZ, Audience, Lang, MessageContext, MessageKind, render
from devices import organisation
from devices.access import Role, Scope
from devices.tables import Community, Grid, Resident

NOTICE_SEVERITY: Final = "warning"  # 【提醒】: a heads-up, not an emergency


@dataclass(frozen=True, slots=True)
class Area:
    """Where a notice applies: grids and/or buildings, narrowed by resident tags."""

    grid_ids: tuple[int, ...] = ()
    building_ids: tuple[int, ...] = ()
    tags: tuple[str, ...] = ()

    def as_json(self) -> dict[str, list[int] | list[str]]:
        """As stored on the notice."""
        return {
            "grid_ids": list(self.grid_ids),
            "building_ids": list(self.building_ids),
            "tags": list(self.tags),
        }


@dataclass(slots=True)
class GridProgress:
    """One grid's checks of a notice, with their residents."""

    grid: Grid | None
    grid_id: int
    checks: list[tuple[NoticeCheck, Resident]] = field(default_factory=list)


def home(resident: Resident) -> str:
    """3栋2单元201: where to knock."""
    building = resident.building.name if resident.building is not None else ""
    return "".join(p for p in (building, resident.unit or "", resident.room or "") if p)


def _label(resident: Resident) -> str:
    where = home(resident)
    return f"{resident.name}（{where}）" if where else resident.name


def _visible(scope: Scope) -> ColumnElement[bool]:
    if scope.is_admin:
        return true()
    return exists().where(
        NoticeCheck.notice_id == AreaNotice.id, scope.grid_filter(NoticeCheck.grid_id)
    )


async def residents_in(session: AsyncSession, scope: Scope, area: Area) -> list[Resident]:
    """The residents of an area that the caller may see, by id."""
    for grid_id in area.grid_ids:
        await organisation.get_grid(session, scope, grid_id)  # 404 outside the scope
    for building_id in area.building_ids:
        await organisation.get_building(session, scope, building_id)
    query = select(Resident).where(scope.grid_filter(Resident.grid_id)).order_by(Resident.id)
    places = []
    if area.grid_ids:
        places.append(Resident.grid_id.in_(area.grid_ids))
    if area.building_ids:
        places.append(Resident.building_id.in_(area.building_ids))
    if places:
        query = query.where(or_(*places))
    residents = list((await session.scalars(query)).all())
    if area.tags:  # a JSON list: filtered here, portable across SQLite and PostgreSQL
        wanted = set(area.tags)
        residents = [r for r in residents if wanted & set(r.tags or [])]
    return residents


async def raise_notice(
    session: AsyncSession,
    scope: Scope,
    *,
    title: str,
    text: str,
    area: Area,
    by: str,
    now: datetime,
    lang: Lang = Lang.ZH,
    tz: str = DEFAULT_TZ,
) -> AreaNotice:
    """The notice, its checks and its messages, committed together."""
    if scope.role not in (Role.ADMIN, Role.SUPERVISOR):
        raise NoticeForbidden(
            "只有管理员或社区主管可以发布区域通知",
            "only admins and supervisors may raise area notices",
        )
    if not (area.grid_ids or area.building_ids or area.tags):
        raise NoticeAreaError(
            "empty_area", "请指定网格、楼栋或居民标签", "name grids, buildings or tags"
        )
    residents = await residents_in(session, scope, area)
    if not residents:
        raise NoticeAreaError(
            "no_residents", "该区域内没有居民", "no resident you may see lives in the area"
        )
    notice = AreaNotice(title=title, text=text, area=area.as_json(), created_by=by, created_at=now)
    session.add(notice)
    await session.flush()
    for resident in residents:
        session.add(
            NoticeCheck(notice_id=notice.id, resident_id=resident.id, grid_id=resident.grid_id)
        )
    await _queue(session, notice, residents, now, lang, tz)
    await session.commit()
    return notice


async def _queue(
    session: AsyncSession,
    notice: AreaNotice,
    residents: Sequence[Resident],
    now: datetime,
    lang: Lang,
    tz: str,
) -> None:
    grid_ids = sorted({r.grid_id for r in residents})
    grids = {g.id: g for g in (await session.scalars(select(Grid).where(Grid.id.in_(grid_ids))))}
    community_ids = {g.community_id for g in grids.values()}
    community = None
    if len(community_ids) == 1:  # several communities: none named in the message
        community = await session.scalar(
            select(Community.name).where(Community.id == community_ids.pop())
        )
    workers = {gid: [u for u in grid.workers if u.is_active] for gid, grid in grids.items()}
    # One message per worker, listing their residents across every grid of the area.
    to_check: dict[str, list[Resident]] = defaultdict(list)
    people: dict[str, Recipient] = {}
    for resident in residents:
        for recipient in rung(Subject(workers=workers.get(resident.grid_id, [])), 0):
            people[recipient.key] = recipient
            to_check[recipient.key].append(resident)
    base = MessageContext(
        rule="notice",
        severity=NOTICE_SEVERITY,
        kind=MessageKind.NOTICE,
        at_ms=int(now.timestamp() * 1000),
        community=community,
        notice_title=notice.title,
        notice_text=notice.text,
    )
    for key, recipient in people.items():
        ctx = replace(base, residents_to_check=tuple(_label(r) for r in to_check[key]))
        _add(session, notice, recipient, ctx, now, lang, tz)
    for resident in residents:
        contacts = rung(Subject(resident=resident), 0)  # no workers: contacts only, in order
        if not contacts:
            continue
        ctx = replace(
            base,
            resident_name=resident.name,
            gender=resident.gender,
            birth_year=resident.birth_year,
            worker_names=tuple(u.full_name for u in workers.get(resident.grid_id, [])),
        )
        _add(session, notice, contacts[0], ctx, now, lang, tz)


def _add(
    session: AsyncSession,
    notice: AreaNotice,
    recipient: Recipient,
    ctx: MessageContext,
    now: datetime,
    lang: Lang,
    tz: str,
) -> None:
    message = render(ctx, Audience(recipient.audience), lang, tz=tz)
    (channel, target), rest = recipient.channels[0], recipient.channels[1:]
    session.add(
        new_row(
            recipient,
            (channel, target),
            [f"{c}:{t}" for c, t in rest],
            message,
            now,
            alert_id=None,
            dedupe_key=f"notice:{notice.id}:{recipient.key}:{channel}",
            step=0,
            kind="notice",
            created_at=now,
        )
    )


# -- reading and confirming --------------------------------------------------------------


async def get_notice(session: AsyncSession, scope: Scope, notice_id: int) -> AreaNotice:
    """A notice concerning residents the caller may see; NoticeNotFound otherwise."""
    notice = await session.scalar(
        select(AreaNotice)
        .where(AreaNotice.id == notice_id, _visible(scope))
        .execution_options(populate_existing=True)
    )
    if notice is None:
        raise NoticeNotFound("该区域通知", "notice")
    return notice


async def progress(session: AsyncSession, scope: Scope, notice: AreaNotice) -> list[GridProgress]:
    """The checks the caller may see, per grid, residents in file order."""
    rows = await session.execute(
        select(NoticeCheck, Resident)
        .join(Resident, Resident.id == NoticeCheck.resident_id)
        .where(NoticeCheck.notice_id == notice.id, scope.grid_filter(NoticeCheck.grid_id))
        .order_by(NoticeCheck.grid_id, Resident.id)
    )
    by_grid: dict[int, GridProgress] = {}
    for check, resident in rows:
        entry = by_grid.setdefault(check.grid_id, GridProgress(None, check.grid_id))
        entry.checks.append((check, resident))
    grids = await session.scalars(select(Grid).where(Grid.id.in_(by_grid)))
    for grid in grids:
        by_grid[grid.id].grid = grid
    return list(by_grid.values())


async def message_states(session: AsyncSession, notice: AreaNotice) -> dict[str, int]:
    """How many of the notice's messages are pending, sent, failed..."""
    rows = await session.execute(
        select(Notification.state, func.count())
        .where(
            Notification.alert_id.is_(None),
            Notification.dedupe_key.like(f"notice:{notice.id}:%"),
        )
        .group_by(Notification.state)
    )
    return {state: int(n) for state, n in rows}


async def list_notices(
    session: AsyncSession, scope: Scope, *, offset: int = 0, limit: int = 50
) -> tuple[list[tuple[AreaNotice, int, int]], int]:
    """(notice, checks, checks confirmed safe) newest first, counting the caller's grids."""
    query = select(AreaNotice).where(_visible(scope))
    count = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
    notices = (
        await session.scalars(
            query.order_by(AreaNotice.created_at.desc(), AreaNotice.id.desc())
            .offset(offset)
            .limit(limit)
        )
    ).all()
    counts = {
        nid: (int(total), int(safe))
        for nid, total, safe in (
            await session.execute(
                select(NoticeCheck.notice_id, func.count(), func.count(NoticeCheck.safe_at))
                .where(
                    NoticeCheck.notice_id.in_([n.id for n in notices]),
                    scope.grid_filter(NoticeCheck.grid_id),
                )
                .group_by(NoticeCheck.notice_id)
            )
        )
    }
    return [(n, *counts.get(n.id, (0, 0))) for n in notices], int(count)


async def confirm_safe(
    session: AsyncSession,
    scope: Scope,
    notice_id: int,
    resident_id: int,
    *,
    by: str,
    note: str,
    now: datetime,
) -> tuple[NoticeCheck, Resident]:
    """A grid worker of the resident's grid (or an admin) confirms them safe; once is enough."""
    notice = await get_notice(session, scope, notice_id)
    row = (
        await session.execute(
            select(NoticeCheck, Resident)
            .join(Resident, Resident.id == NoticeCheck.resident_id)
            .where(
                NoticeCheck.notice_id == notice.id,
                NoticeCheck.resident_id == resident_id,
                scope.grid_filter(NoticeCheck.grid_id),
            )
        )
    ).first()
    if row is None:
        raise NoticeNotFound("该通知下的居民", "resident of this notice")
    check, resident = row
    if not scope.can_write_grid(check.grid_id):
        raise NoticeForbidden(
            "只有该居民所在网格的网格员可以确认",
            "only a grid worker of the resident's grid may confirm",
        )
    if check.safe_at is None:  # a second confirmation (a retried request) changes nothing
        check.safe_at, check.confirmed_by, check.note = now, by, note or None
        await session.flush()
        pending = await session.scalar(
            select(func.count())
            .select_from(NoticeCheck)
            .where(NoticeCheck.notice_id == notice.id, NoticeCheck.safe_at.is_(None))
        )
        if not pending:
            notice.closed_at = now
        await session.commit()
    return check, resident
