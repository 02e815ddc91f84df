"""Communities, grids and buildings by name for an import; missing ones are created."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from carewatch.admin.common import ADMIN_SCOPE
from devices import organisation
from devices.exceptions import RegistryError
from devices.tables import Building, Community, Grid

__all__ = ["Places", "Skip"]


class Skip(Exception):
    """This row cannot be imported; `key` is the column to blame."""

    def __init__(self, key: str, value: str, message: str, message_en: str) -> None:
        super().__init__(message_en)
        self.key, self.value, self.message, self.message_en = key, value, message, message_en

    @classmethod
    def of(cls, key: str, value: str, exc: RegistryError) -> Skip:
        """Skip the row with the registry's own words."""
        return cls(key, value, exc.message, exc.message_en)


class Places:
    """Communities, grids and buildings by name; missing ones are created (as the admin)."""

    def __init__(self) -> None:
        self._communities: dict[str, int] = {}
        self._grids: dict[tuple[int, str], int] = {}
        self._buildings: dict[tuple[int, str], tuple[int, int]] = {}
        self.created: dict[str, list[str]] = {"community": [], "grid": [], "building": []}

    async def community(self, session: AsyncSession, name: str, *, create: bool) -> int | None:
        """The community's id; None when it is missing and `create` is false."""
        if name in self._communities:
            return self._communities[name]
        found = await session.scalar(select(Community.id).where(Community.name == name))
        if found is None and create:
            try:
                found = (await organisation.create_community(session, ADMIN_SCOPE, name=name)).id
            except RegistryError as exc:
                raise Skip.of("community", name, exc) from exc
            self.created["community"].append(name)
        if found is not None:
            self._communities[name] = found
        return found

    async def grid(
        self, session: AsyncSession, community: str, name: str, *, create: bool
    ) -> int | None:
        """The grid's id in its community; None when it is missing and `create` is false."""
        community_id = await self.community(session, community, create=create)
        if community_id is None:
            return None
        key = (community_id, name)
        if key in self._grids:
            return self._grids[key]
        found = await session.scalar(
            select(Grid.id).where(Grid.community_id == community_id, Grid.name == name)
        )
        if found is None and create:
            try:
                grid = await organisation.create_grid(
                    session, ADMIN_SCOPE, community_id=community_id, name=name
                )
            except RegistryError as exc:
                raise Skip.of("grid", name, exc) from exc
            found = grid.id
            self.created["grid"].append(f"{community} / {name}")
        if found is not None:
            self._grids[key] = found
        return found

    async def building(
        self, session: AsyncSession, community: str, grid: str, name: str, *, create: bool
    ) -> int | None:
        """The building's id, which must lie in `grid`; None when missing and not to be made."""
        grid_id = await self.grid(session, community, grid, create=create)
        if grid_id is None:
            return None
        key = (self._communities[community], name)
        if key not in self._buildings:
            found = await self._building(session, community, key, grid_id, create=create)
            if found is None:
                return None
            self._buildings[key] = found
        building_id, in_grid = self._buildings[key]
        if in_grid != grid_id:
            other = await session.scalar(select(Grid.name).where(Grid.id == in_grid))
            raise Skip(
                "building",
                name,
                f"楼栋“{name}”属于网格“{other}”，不是“{grid}”",
                f"building {name!r} is in grid {other!r}, not {grid!r}",
            )
        return building_id

    async def _building(
        self,
        session: AsyncSession,
        community: str,
        key: tuple[int, str],
        grid_id: int,
        *,
        create: bool,
    ) -> tuple[int, int] | None:
        """(building id, its grid id) of the named building, made in `grid_id` if asked."""
        community_id, name = key
        row = (
            await session.execute(
                select(Building.id, Building.grid_id).where(
                    Building.community_id == community_id, Building.name == name
                )
            )
        ).first()
        if row is not None:
            return row[0], row[1]
        if not create:
            return None
        try:
            building = await organisation.create_building(
                session, ADMIN_SCOPE, grid_id=grid_id, name=name
            )
        except RegistryError as exc:
            raise Skip.of("building", name, exc) from exc
        self.created["building"].append(f"{community} / {name}")
        return building.id, grid_id
