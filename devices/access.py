"""Who may see and change what: a user's scope, applied to every registry query.

Admins see everything; a supervisor reads the grids of their community; a
grid worker sees and changes only their own grids. A record outside the scope
is reported as not found, so ids cannot be probed.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, false, true

from devices.exceptions import forbidden
from devices.tables import Grid, User


class Role(StrEnum):
    """What a user is: an admin, a community's supervisor or a grid worker."""

    ADMIN = "admin"
    SUPERVISOR = "supervisor"
    GRID_WORKER = "grid_worker"


@dataclass(frozen=True, slots=True)
class Scope:
    """The grids a user may read, and whether they may write there."""

    user_id: int
    role: Role
    community_id: int | None
    grid_ids: frozenset[int]

    @classmethod
    def of(cls, user: User) -> Scope:
        """The scope of a logged-in user."""
        return cls(
            user_id=user.id,
            role=Role(user.role),
            community_id=user.community_id,
            grid_ids=frozenset(g.id for g in user.grids),
        )

    @property
    def is_admin(self) -> bool:
        """Whether the user is an admin, who sees and changes everything."""
        return self.role is Role.ADMIN

    def grid_filter(
        self, grid_column: Any, community_column: Any | None = None
    ) -> ColumnElement[bool]:
        """A WHERE clause keeping rows of grids this user may read."""
        if self.role is Role.ADMIN:
            return true()
        if self.role is Role.SUPERVISOR:
            if self.community_id is None:
                return false()
            if community_column is not None:
                return community_column == self.community_id  # type: ignore[no-any-return]
            return grid_column.in_(  # type: ignore[no-any-return]
                Grid.__table__.select()
                .with_only_columns(Grid.id)
                .where(Grid.community_id == self.community_id)
                .scalar_subquery()
            )
        if not self.grid_ids:
            return false()
        return grid_column.in_(sorted(self.grid_ids))  # type: ignore[no-any-return]

    def can_read_grid(self, grid: Grid) -> bool:
        """Whether this user may see the grid and what is in it."""
        if self.role is Role.ADMIN:
            return True
        if self.role is Role.SUPERVISOR:
            return grid.community_id == self.community_id
        return grid.id in self.grid_ids

    def can_write_grid(self, grid_id: int | None) -> bool:
        """Admins write anywhere; grid workers in their grids; supervisors only read."""
        if self.role is Role.ADMIN:
            return True
        return self.role is Role.GRID_WORKER and grid_id is not None and grid_id in self.grid_ids


def require_admin(scope: Scope) -> None:
    """Raise ForbiddenError unless the scope is an admin's."""
    if not scope.is_admin:
        raise forbidden()
