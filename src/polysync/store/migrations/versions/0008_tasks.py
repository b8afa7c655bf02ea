"""Tasks: schedules, dependencies, TaskRuns with their attempts and history (issue 12, D12).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# Frozen copies of the column types in polysync.store.tables (see 0001).
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)
JSON = sa.JSON(none_as_null=True)


def _fk(column: str, table: str, name: str, ondelete: str = "CASCADE") -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{table}.id"], name=name, ondelete=ondelete)


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("job_id", ID, nullable=False),
        sa.Column("parameters", JSON, nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("tags", JSON, nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("concurrency_cap", sa.Integer(), nullable=False),
        sa.Column("on_overlap", sa.String(length=16), nullable=False),
        sa.Column("timeout_s", sa.Integer(), nullable=True),
        sa.Column("retry", JSON, nullable=False),
        sa.Column("dependencies_saved_at", TIME, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        _fk("job_id", "jobs", "fk_tasks_job_id_jobs"),
        sa.PrimaryKeyConstraint("id", name="pk_tasks"),
        sa.UniqueConstraint("name", name="uq_tasks_name"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_tasks_job_id", "tasks", ["job_id"])
    op.create_table(
        "task_schedules",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("task_id", ID, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("cron", sa.Text(), nullable=False),
        sa.Column("timezone", sa.Text(), nullable=False),
        sa.Column("starts_at", TIME, nullable=True),
        sa.Column("ends_at", TIME, nullable=True),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("misfire_policy", sa.String(length=16), nullable=False),
        sa.Column("misfire_cap", sa.Integer(), nullable=False),
        sa.Column("last_fired_for", TIME, nullable=False),
        _fk("task_id", "tasks", "fk_task_schedules_task_id_tasks"),
        sa.PrimaryKeyConstraint("id", name="pk_task_schedules"),
        sa.UniqueConstraint("task_id", "position", name="uq_task_schedules_task_id_position"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "task_dependencies",
        sa.Column("task_id", ID, nullable=False),
        sa.Column("upstream_task_id", ID, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("condition", sa.String(length=16), nullable=False),
        _fk("task_id", "tasks", "fk_task_dependencies_task_id_tasks"),
        _fk("upstream_task_id", "tasks", "fk_task_dependencies_upstream_task_id_tasks"),
        sa.PrimaryKeyConstraint("task_id", "upstream_task_id", name="pk_task_dependencies"),
    )
    op.create_index(
        "ix_task_dependencies_upstream_task_id", "task_dependencies", ["upstream_task_id"]
    )
    op.create_table(
        "task_runs",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("task_id", ID, nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("scheduled_for", TIME, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("terminal", sa.Boolean(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("queued_at", TIME, nullable=False),
        sa.Column("started_at", TIME, nullable=True),
        sa.Column("ended_at", TIME, nullable=True),
        sa.Column("next_attempt_at", TIME, nullable=True),
        sa.Column("next_attempt_kind", sa.String(length=16), nullable=True),
        sa.Column("retry_of", ID, nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        _fk("task_id", "tasks", "fk_task_runs_task_id_tasks"),
        sa.PrimaryKeyConstraint("id", name="pk_task_runs"),
        sa.UniqueConstraint(
            "task_id", "trigger", "scheduled_for", name="uq_task_runs_task_id_trigger_scheduled_for"
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_task_runs_terminal_status", "task_runs", ["terminal", "status"])
    op.create_index("ix_task_runs_task_id_ended_at", "task_runs", ["task_id", "ended_at"])
    op.create_index("ix_task_runs_queued_at", "task_runs", ["queued_at"])
    op.create_table(
        "task_run_attempts",
        sa.Column("task_run_id", ID, nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("run_id", ID, nullable=True),
        sa.Column("started_at", TIME, nullable=False),
        sa.Column("ended_at", TIME, nullable=True),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        _fk("task_run_id", "task_runs", "fk_task_run_attempts_task_run_id_task_runs"),
        _fk("run_id", "runs", "fk_task_run_attempts_run_id_runs", ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("task_run_id", "number", name="pk_task_run_attempts"),
    )
    op.create_index("ix_task_run_attempts_run_id", "task_run_attempts", ["run_id"])
    op.create_table(
        "task_run_events",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("task_run_id", ID, nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=True),
        _fk("task_run_id", "task_runs", "fk_task_run_events_task_run_id_task_runs"),
        sa.PrimaryKeyConstraint("id", name="pk_task_run_events"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_task_run_events_task_run_id_id", "task_run_events", ["task_run_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_task_run_events_task_run_id_id", table_name="task_run_events")
    op.drop_table("task_run_events")
    op.drop_index("ix_task_run_attempts_run_id", table_name="task_run_attempts")
    op.drop_table("task_run_attempts")
    op.drop_index("ix_task_runs_queued_at", table_name="task_runs")
    op.drop_index("ix_task_runs_task_id_ended_at", table_name="task_runs")
    op.drop_index("ix_task_runs_terminal_status", table_name="task_runs")
    op.drop_table("task_runs")
    op.drop_index("ix_task_dependencies_upstream_task_id", table_name="task_dependencies")
    op.drop_table("task_dependencies")
    op.drop_table("task_schedules")
    op.drop_index("ix_tasks_job_id", table_name="tasks")
    op.drop_table("tasks")
