"""Fencing tokens and poll failures on runs; the engines table (heartbeats).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Frozen copies of the column types in polysync.store.tables (see 0001).
TIME = sa.DateTime(timezone=True)
COUNT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # A new token at every claim: a write carrying an older one comes from an engine that lost
    # the run (its lease expired and another engine claimed it) and is dropped.
    op.add_column("runs", sa.Column("lease_token", sa.Text(), nullable=True))
    # Consecutive failed polls of one run: its next poll backs off with them.
    op.add_column(
        "runs", sa.Column("poll_failures", sa.Integer(), nullable=False, server_default="0")
    )
    op.create_table(
        "engines",
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("host", sa.Text(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("started_at", TIME, nullable=False),
        sa.Column("heartbeat_at", TIME, nullable=False),
        sa.Column("last_cycle_at", TIME, nullable=True),
        sa.Column("cycles", COUNT, nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("owner", name="pk_engines"),
    )


def downgrade() -> None:
    op.drop_table("engines")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("poll_failures")
        batch.drop_column("lease_token")
