"""Repairs of runs (D13): the latest repair asked of each run, as intent and as sent.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Frozen copy of the column type in polysync.store.tables (see 0001).
JSON = sa.JSON(none_as_null=True)


def upgrade() -> None:
    # A plain nullable ADD COLUMN: SQLite needs no table rebuild for it.
    op.add_column("runs", sa.Column("repair", JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("repair")
