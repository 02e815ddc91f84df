"""Communities, grids, buildings and users: the organisation the residents live in."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import select

from api.deps import AdminScope, ScopeDep, SessionDep
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
from devices import organisation
from devices.tables import Community

_RESPONSES: dict[int | str, dict[str, Any]] = {k: ERRORS[k] for k in (400, 401, 403, 404, 409, 422)}
communities = APIRouter(prefix="/communities", tags=["organisation"], responses=_RESPONSES)
grids = APIRouter(prefix="/grids", tags=["organisation"], responses=_RESPONSES)
buildings = APIRouter(prefix="/buildings", tags=["organisation"], responses=_RESPONSES)
users = APIRouter(prefix="/users", tags=["organisation"], responses=_RESPONSES)


@communities.post("", status_code=201, summary="Register a community (admin)")
async def create_community(
    body: CommunityCreate, scope: AdminScope, session: SessionDep
) -> CommunityPublic:
    community = await organisation.create_community(session, scope, **body.model_dump())
    return CommunityPublic.model_validate(community)


@communities.get("", summary="Communities I may see")
async def list_communities(scope: ScopeDep, session: SessionDep) -> list[CommunityPublic]:
    query = select(Community).order_by(Community.id)
    if not scope.is_admin:
        seen = await organisation.list_grids(session, scope)
        query = query.where(
            Community.id.in_({g.community_id for g in seen} | {scope.community_id or -1})
        )
    return [CommunityPublic.model_validate(c) for c in (await session.scalars(query)).all()]


@grids.post("", status_code=201, summary="Create a grid (网格) with its workers (admin)")
async def create_grid(body: GridCreate, scope: AdminScope, session: SessionDep) -> GridPublic:
    grid = await organisation.create_grid(session, scope, **body.model_dump())
    return GridPublic.model_validate(await organisation.get_grid(session, scope, grid.id))


@grids.get("", summary="Grids I may see")
async def list_grids(scope: ScopeDep, session: SessionDep) -> list[GridPublic]:
    return [GridPublic.model_validate(g) for g in await organisation.list_grids(session, scope)]


@buildings.post("", status_code=201, summary="Register a building of a grid (admin)")
async def create_building(
    body: BuildingCreate, scope: AdminScope, session: SessionDep
) -> BuildingPublic:
    building = await organisation.create_building(session, scope, **body.model_dump())
    return BuildingPublic.model_validate(building)


@buildings.get("", summary="Buildings I may see")
async def list_buildings(scope: ScopeDep, session: SessionDep) -> list[BuildingPublic]:
    found = await organisation.list_buildings(session, scope)
    return [BuildingPublic.model_validate(b) for b in found]


@users.post("", status_code=201, summary="Create a user (admin)")
async def create_user(body: UserCreate, scope: AdminScope, session: SessionDep) -> UserPublic:
    fields = body.model_dump(exclude={"password"})
    user = await organisation.create_user(session, scope, password=body.password, **fields)
    return UserPublic.model_validate(user)


@users.get("", summary="All users (admin)")
async def list_users(scope: AdminScope, session: SessionDep) -> list[UserPublic]:
    return [UserPublic.model_validate(u) for u in await organisation.list_users(session, scope)]


# main.py includes `router`: the prefixed routers, the URLs as before.
router = APIRouter()
for resource in (communities, grids, buildings, users):
    router.include_router(resource)
