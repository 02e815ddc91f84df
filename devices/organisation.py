"""The organisation residents live in: communities, grids (网格), buildings, and users.

Every read and write goes through the caller's Scope; refusals are RegistryErrors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.secrets import hash_password
from devices.access import Role, Scope, require_admin
from devices.exceptions import InvalidInputError, conflict, not_found
from devices.tables import Building, Community, Grid, User

__all__ = [
    "create_building",
    "create_community",
    "create_grid",
    "create_user",
    "get_building",
    "get_grid",
    "list_buildings",
    "list_grids",
    "list_users",
]


async def create_community(session: AsyncSession, scope: Scope, **fields: Any) -> Community:
    """Register a community (admin); its name is unique."""
    require_admin(scope)
    taken = conflict(f"社区“{fields['name']}”已存在", f"community {fields['name']!r} exists")
    if await session.scalar(select(Community.id).where(Community.name == fields["name"])):
        raise taken
    community = Community(**fields)
    session.add(community)
    try:
        await session.commit()
    except IntegrityError as exc:  # a concurrent request took the name first
        await session.rollback()
        raise taken from exc
    return community


async def _supervisor(session: AsyncSession, supervisor_id: int) -> None:
    supervisor = await session.get(User, supervisor_id)
    if supervisor is None or supervisor.role != Role.SUPERVISOR:
        raise InvalidInputError(
            "not_a_supervisor",
            f"用户 {supervisor_id} 不是社区主管",
            f"user {supervisor_id} is no supervisor",
        )


async def _workers(session: AsyncSession, worker_ids: Sequence[int]) -> list[User]:
    workers = []
    for user_id in dict.fromkeys(worker_ids):  # a worker named twice is one worker
        user = await session.get(User, user_id)
        if user is None or user.role != Role.GRID_WORKER:
            raise InvalidInputError(
                "not_a_grid_worker",
                f"用户 {user_id} 不是网格员",
                f"user {user_id} is no grid worker",
            )
        workers.append(user)
    return workers


async def create_grid(
    session: AsyncSession,
    scope: Scope,
    *,
    community_id: int,
    name: str,
    supervisor_id: int | None = None,
    worker_ids: Sequence[int] = (),
) -> Grid:
    """Create a grid of a community with its supervisor and workers (admin)."""
    require_admin(scope)
    if await session.get(Community, community_id) is None:
        raise not_found("该社区", "community")
    if supervisor_id is not None:
        await _supervisor(session, supervisor_id)
    taken = conflict(f"网格“{name}”已存在", f"grid {name!r} exists in this community")
    if await session.scalar(
        select(Grid.id).where(Grid.community_id == community_id, Grid.name == name)
    ):
        raise taken
    grid = Grid(community_id=community_id, name=name, supervisor_id=supervisor_id, workers=[])
    grid.workers.extend(await _workers(session, worker_ids))
    session.add(grid)
    try:
        await session.commit()
    except IntegrityError as exc:  # a concurrent request took the name first
        await session.rollback()
        raise taken from exc
    return grid


async def list_grids(session: AsyncSession, scope: Scope) -> Sequence[Grid]:
    """The grids the scope may read, by id."""
    query = select(Grid).where(scope.grid_filter(Grid.id, Grid.community_id)).order_by(Grid.id)
    return (await session.scalars(query)).all()


async def get_grid(session: AsyncSession, scope: Scope, grid_id: int) -> Grid:
    """One grid; NotFoundError also when it lies outside the scope."""
    grid = await session.get(Grid, grid_id)
    if grid is None or not scope.can_read_grid(grid):
        raise not_found("该网格", "grid")
    return grid


async def create_building(
    session: AsyncSession, scope: Scope, *, grid_id: int, name: str, sorting_target: float = 0.85
) -> Building:
    """Register a building in a grid (admin); its name is unique in the community."""
    require_admin(scope)
    grid = await get_grid(session, scope, grid_id)
    taken = conflict(f"楼栋“{name}”已存在", f"building {name!r} exists")
    if await session.scalar(
        select(Building.id).where(Building.community_id == grid.community_id, Building.name == name)
    ):
        raise taken
    building = Building(
        community_id=grid.community_id, grid_id=grid.id, name=name, sorting_target=sorting_target
    )
    session.add(building)
    try:
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        raise taken from exc
    return building


async def get_building(session: AsyncSession, scope: Scope, building_id: int) -> Building:
    """One building; NotFoundError also when its grid lies outside the scope."""
    building = await session.get(Building, building_id)
    if building is None:
        raise not_found("该楼栋", "building")
    await get_grid(session, scope, building.grid_id)
    return building


async def list_buildings(session: AsyncSession, scope: Scope) -> Sequence[Building]:
    """The buildings the scope may read, by id."""
    query = (
        select(Building)
        .where(scope.grid_filter(Building.grid_id, Building.community_id))
        .order_by(Building.id)
    )
    return (await session.scalars(query)).all()


async def create_user(session: AsyncSession, scope: Scope, *, password: str, **fields: Any) -> User:
    """Create a user who logs in (admin); a supervisor belongs to a community."""
    require_admin(scope)
    username = fields["username"]
    taken = conflict(f"用户名 {username} 已被使用", "username taken")
    if await session.scalar(select(User.id).where(User.username == username)):
        raise taken
    community_id = fields.get("community_id")
    if fields["role"] == Role.SUPERVISOR and community_id is None:
        raise InvalidInputError(
            "community_required", "社区主管须指定社区", "a supervisor needs a community"
        )
    if community_id is not None and await session.get(Community, community_id) is None:
        raise not_found("该社区", "community")
    user = User(**fields, password_hash=hash_password(password))
    session.add(user)
    try:
        await session.commit()
    except IntegrityError as exc:  # the same username, created concurrently
        await session.rollback()
        raise taken from exc
    return user


async def list_users(session: AsyncSession, scope: Scope) -> Sequence[User]:
    """Every user, by id (admin)."""
    require_admin(scope)
    return (await session.scalars(select(User).order_by(User.id))).all()
