"""Contention profiles (D14): the profiles, their platform and Task links, and on runs when each
was queued, by which profile it waits, and when it was admitted.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# Frozen copies of the column types in polysync.store.tables (see 0001).
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    # Plain ADD COLUMNs (nullable, no constraint): SQLite needs no table rebuild for them.
    op.add_column("runs", sa.Column("queued_at", TIME, nullable=True))
    op.add_column("runs", sa.Column("waiting_profile_id", ID, nullable=True))
    op.add_column("runs", sa.Column("admitted_at", TIME, nullable=True))
    # A run whose run-now was already counted was admitted then: it holds a slot until it ends.
    op.execute(
        "UPDATE runs SET admitted_at = COALESCE(submitted_at, created_at) WHERE submit_attempts > 0"
    )
    op.create_index("ix_runs_platform_id_admitted_at", "runs", ["platform_id", "admitted_at"])
    op.create_table(
        "contention_profiles",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("max_concurrent", sa.Integer(), nullable=True),
        sa.Column("rate_limit", sa.Integer(), nullable=True),
        sa.Column("window_s", sa.Float(), nullable=True),
        sa.Column("algorithm", sa.String(length=16), nullable=False),
        sa.Column("queue_size_limit", sa.Integer(), nullable=True),
        sa.Column("queue_timeout_s", sa.Float(), nullable=True),
        sa.Column("exceed_action", sa.String(length=16), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_contention_profiles"),
        sa.UniqueConstraint("name", name="uq_contention_profiles_name"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "contention_profile_platforms",
        sa.Column("profile_id", ID, nullable=False),
        sa.Column("platform_id", ID, nullable=False),
        sa.ForeignKeyConstraint(
            ["profile_id"],
            ["contention_profiles.id"],
            name="fk_contention_profile_platforms_profile_id_contention_profiles",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["platform_id"],
            ["platforms.id"],
            name="fk_contention_profile_platforms_platform_id_platforms",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "profile_id", "platform_id", name="pk_contention_profile_platforms"
        ),
    )
    op.create_index(
        "ix_contention_profile_platforms_platform_id",
        "contention_profile_platforms",
        ["platform_id"],
    )
    # Tasks (issue 12) land on another branch: task_id gets its foreign key with them.
    op.create_table(
        "contention_profile_tasks",
        sa.Column("profile_id", ID, nullable=False),
        sa.Column("task_id", ID, nullable=False),
        sa.ForeignKeyConstraint(
            ["profile_id"],
            ["contention_profiles.id"],
            name="fk_contention_profile_tasks_profile_id_contention_profiles",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("profile_id", "task_id", name="pk_contention_profile_tasks"),
    )
    op.create_index("ix_contention_profile_tasks_task_id", "contention_profile_tasks", ["task_id"])


def downgrade() -> None:
    op.drop_index("ix_contention_profile_tasks_task_id", table_name="contention_profile_tasks")
    op.drop_table("contention_profile_tasks")
    op.drop_index(
        "ix_contention_profile_platforms_platform_id", table_name="contention_profile_platforms"
    )
    op.drop_table("contention_profile_platforms")
    op.drop_table("contention_profiles")
    op.drop_index("ix_runs_platform_id_admitted_at", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("admitted_at")
        batch.drop_column("waiting_profile_id")
        batch.drop_column("queued_at")
