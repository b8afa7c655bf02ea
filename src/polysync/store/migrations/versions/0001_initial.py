"""Initial schema: platforms, jobs, runs and run events.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Frozen copies of the column types in polysync.store.tables: a migration must not change when
# the current code does. Times are aware UTC (SQLite stores them as text, naive, in UTC).
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)
JSON = sa.JSON(none_as_null=True)


def _fk(column: str, table: str, name: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{table}.id"], name=name, ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "platforms",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("workspace_url", sa.Text(), nullable=False),
        sa.Column("auth", JSON, nullable=False),
        sa.Column("cluster_id", sa.Text(), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("options", JSON, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_platforms"),
        sa.UniqueConstraint("name", name="uq_platforms_name"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "jobs",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("platform_id", ID, nullable=False),
        sa.Column("job_type", sa.String(length=64), nullable=False),
        sa.Column("external_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("tags", JSON, nullable=False),
        sa.Column("task_count", sa.Integer(), nullable=False),
        sa.Column("task_keys", JSON, nullable=False),
        sa.Column("parameters", JSON, nullable=False),
        sa.Column("imported_at", TIME, nullable=False),
        sa.Column("synced_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        _fk("platform_id", "platforms", "fk_jobs_platform_id_platforms"),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
        sa.UniqueConstraint("platform_id", "external_id", name="uq_jobs_platform_id_external_id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_jobs_name", "jobs", ["name"])
    op.create_table(
        "runs",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("job_id", ID, nullable=False),
        sa.Column("platform_id", ID, nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("idempotency_token", sa.Text(), nullable=False),
        sa.Column("overrides", JSON, nullable=False),
        sa.Column("parameters_sent", JSON, nullable=False),
        sa.Column("run_id", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("terminal", sa.Boolean(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("run_page_url", sa.Text(), nullable=True),
        sa.Column("life_cycle_state", sa.Text(), nullable=True),
        sa.Column("result_state", sa.Text(), nullable=True),
        sa.Column("tasks", JSON, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("submitted_at", TIME, nullable=True),
        sa.Column("ended_at", TIME, nullable=True),
        sa.Column("updated_at", TIME, nullable=False),
        sa.Column("cancel_requested_at", TIME, nullable=True),
        sa.Column("next_poll_at", TIME, nullable=True),
        sa.Column("lease_owner", sa.Text(), nullable=True),
        sa.Column("lease_expires_at", TIME, nullable=True),
        sa.Column("submit_attempts", sa.Integer(), nullable=False),
        _fk("job_id", "jobs", "fk_runs_job_id_jobs"),
        _fk("platform_id", "platforms", "fk_runs_platform_id_platforms"),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
        sa.UniqueConstraint("idempotency_token", name="uq_runs_idempotency_token"),
        sa.UniqueConstraint("key", name="uq_runs_key"),
        sqlite_autoincrement=True,
    )
    # Claiming due runs scans (terminal, next_poll_at); listings go newest first.
    op.create_index("ix_runs_terminal_next_poll_at", "runs", ["terminal", "next_poll_at"])
    op.create_index("ix_runs_job_id_created_at", "runs", ["job_id", "created_at"])
    op.create_index("ix_runs_created_at", "runs", ["created_at"])
    op.create_index("ix_runs_platform_id", "runs", ["platform_id"])
    op.create_table(
        "run_events",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("life_cycle_state", sa.Text(), nullable=True),
        sa.Column("result_state", sa.Text(), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        _fk("run_id", "runs", "fk_run_events_run_id_runs"),
        sa.PrimaryKeyConstraint("id", name="pk_run_events"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_run_events_run_id_id", "run_events", ["run_id", "id"])


def downgrade() -> None:
    op.drop_table("run_events")
    op.drop_table("runs")
    op.drop_table("jobs")
    op.drop_table("platforms")
