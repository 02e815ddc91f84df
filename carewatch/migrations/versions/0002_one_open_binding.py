"""at most one open binding per device

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 07:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Two racing binds could leave a device "worn" by two residents; close all but the newest.
    op.execute(
        sa.text(
            'UPDATE device_bindings SET "end" = start WHERE "end" IS NULL AND id NOT IN '
            '(SELECT MAX(id) FROM device_bindings WHERE "end" IS NULL GROUP BY device_id)'
        )
    )
    op.create_index(
        "uq_binding_open",
        "device_bindings",
        ["device_id"],
        unique=True,
        sqlite_where=sa.text('"end" IS NULL'),
        postgresql_where=sa.text('"end" IS NULL'),
    )


def downgrade() -> None:
    op.drop_index("uq_binding_open", table_name="device_bindings")
