"""Communities, grids, buildings and users: the organisation the residents live in."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from api.deps import AdminScope, ScopeDep, SessionDep
from api.errors import ApiError
from api.schemas.common import ERRORS
from api.schemas.org import (
    BuildingCreate,
    BuildingPublic,
    CommunityCreate,
    CommunityPublic,
    GridCreate,
    GridPublic,
    UserCreate,
    UserPublic,
)
from core.secrets import hash_password
from devices import registry
from devices.tables import Community, User

router = APIRouter(
    tags=["organisation"], responses={k: ERRORS[k] for k in (400, 401, 403, 404, 409, 422)}
)


@router.post("/communities", status_code=201, summary="Register a community (admin)")
async def create_community(
    body: CommunityCreate, scope: AdminScope, session: SessionDep
) -> CommunityPublic:
    community = await registry.create_community(session, scope, **body.model_dump())
    return CommunityPublic.model_validate(community)


@router.get("/communities", summary="Communities I may see")
async def list_communities(scope: ScopeDep, session: SessionDep) -> list[CommunityPublic]:
    query = select(Community).order_by(Community.id)
    if not scope.is_admin:
        grids = await registry.list_grids(session, scope)
        query = query.where(
            Community.id.in_({g.community_id for g in grids} | {scope.community_id or -1})
        )
    return [CommunityPublic.model_validate(c) for c in (await session.scalars(query)).all()]


@router.post("/grids", status_code=201, summary="Create a grid (网格) with its workers (admin)")
async def create_grid(body: GridCreate, scope: AdminScope, session: SessionDep) -> GridPublic:
    grid = await registry.create_grid(session, scope, **body.model_dump())
    return GridPublic.model_validate(await registry.get_grid(session, scope, grid.id))


@router.get("/grids", summary="Grids I may see")
async def list_grids(scope: ScopeDep, session: SessionDep) -> list[GridPublic]:
    return [GridPublic.model_validate(g) for g in await registry.list_grids(session, scope)]


@router.post("/buildings", status_code=201, summary="Register a building of a grid (admin)")
async def create_building(
    body: BuildingCreate, scope: AdminScope, session: SessionDep
) -> BuildingPublic:
    building = await registry.create_building(session, scope, **body.model_dump())
    return BuildingPublic.model_validate(building)


@router.get("/buildings", summary="Buildings I may see")
async def list_buildings(scope: ScopeDep, session: SessionDep) -> list[BuildingPublic]:
    return [BuildingPublic.model_validate(b) for b in await registry.list_buildings(session, scope)]


@router.post("/users", status_code=201, summary="Create a user (admin)")
async def create_user(body: UserCreate, scope: AdminScope, session: SessionDep) -> UserPublic:
    if await session.scalar(select(User.id).where(User.username == body.username)):
        raise ApiError(409, "conflict", f"用户名 {body.username} 已被使用", "username taken")
    if body.role == "supervisor" and body.community_id is None:
        raise ApiError(
            422, "community_required", "社区主管须指定社区", "a supervisor needs a community"
        )
    if body.community_id is not None and await session.get(Community, body.community_id) is None:
        raise ApiError(404, "not_found", "未找到该社区", "community not found")
    fields = body.model_dump(exclude={"password"})
    user = User(**fields, password_hash=hash_password(body.password))
    session.add(user)
    try:
        await session.commit()
    except IntegrityError as exc:  # the same username, created concurrently
        await session.rollback()
        raise ApiError(
            409, "conflict", f"用户名 {body.username} 已被使用", "username taken"
        ) from exc
    return UserPublic.model_validate(user)


@router.get("/users", summary="All users (admin)")
async def list_users(scope: AdminScope, session: SessionDep) -> list[UserPublic]:
    users = (await session.scalars(select(User).order_by(User.id))).all()
    return [UserPublic.model_validate(u) for u in users]
