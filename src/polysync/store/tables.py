"""The schema as SQLAlchemy Core tables (migrations/ creates it; keep the two in step)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)

from polysync.domain.limits import replace_unencodable, replace_unencodable_in

# Constraint names are fixed so later migrations can refer to them on both backends.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite makes only an INTEGER PRIMARY KEY an auto-assigned rowid, so BIGINT ids are INTEGER there.
Id = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime: refuses naive values, and reads SQLite's naive text back as UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} given: times must be aware UTC")
        # SQLite stores the wall time without its offset: only UTC keeps rows comparable.
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class StoredText(TypeDecorator[str]):
    """Text whose NUL and lone surrogates become U+FFFD on the way in: PostgreSQL refuses NUL in
    text, no driver can encode a lone surrogate, and one such character from a workspace must
    never make a write fail (issue 8; docs/security.md)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else replace_unencodable(value)


class StoredJSON(TypeDecorator[Any]):
    """JSON whose strings (keys too) are cleaned as StoredText cleans text: PostgreSQL's JSON
    refuses an unpaired surrogate escape, and a NUL escape cannot become text there."""

    impl = JSON(none_as_null=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return replace_unencodable_in(value)


def _json() -> StoredJSON:
    return StoredJSON()


def _fk(target: str) -> ForeignKey:
    return ForeignKey(target, ondelete="CASCADE")


platforms = Table(
    "platforms",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", StoredText, nullable=False, unique=True),
    Column("provider", String(64), nullable=False),
    Column("workspace_url", StoredText, nullable=False),
    Column("auth", _json(), nullable=False),
    Column("cluster_id", StoredText),
    Column("description", StoredText, nullable=False),
    Column("options", _json(), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    sqlite_autoincrement=True,
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("platform_id", Id, _fk("platforms.id"), nullable=False),
    Column("job_type", String(64), nullable=False),
    Column("external_id", StoredText, nullable=False),
    Column("name", StoredText, nullable=False),
    Column("description", StoredText, nullable=False),
    Column("tags", _json(), nullable=False),
    Column("task_count", Integer, nullable=False),
    Column("task_keys", _json(), nullable=False),
    Column("parameters", _json(), nullable=False),
    Column("imported_at", UtcDateTime, nullable=False),
    Column("synced_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    UniqueConstraint("platform_id", "external_id"),
    Index(None, "name"),
    sqlite_autoincrement=True,
)

runs = Table(
    "runs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("job_id", Id, _fk("jobs.id"), nullable=False),
    Column("platform_id", Id, _fk("platforms.id"), nullable=False, index=True),
    Column("key", StoredText, nullable=False, unique=True),
    Column("idempotency_token", StoredText, nullable=False, unique=True),
    Column("overrides", _json(), nullable=False),
    Column("parameters_sent", _json(), nullable=False),
    Column("run_id", StoredText),
    Column("status", String(16), nullable=False),
    # Kept equal to status.is_terminal by the store: the claim index needs a plain column.
    Column("terminal", Boolean, nullable=False),
    Column("message", StoredText, nullable=False),
    Column("run_page_url", StoredText),
    Column("life_cycle_state", StoredText),
    Column("result_state", StoredText),
    Column("tasks", _json(), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("submitted_at", UtcDateTime),
    Column("ended_at", UtcDateTime),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("cancel_requested_at", UtcDateTime),
    Column("next_poll_at", UtcDateTime),
    Column("lease_owner", StoredText),
    Column("lease_expires_at", UtcDateTime),
    # Fencing token, new at each claim: a write that carries another one is dropped.
    Column("lease_token", StoredText),
    Column("submit_attempts", Integer, nullable=False),
    Column("poll_failures", Integer, nullable=False, server_default="0"),
    # Who asked (an API key, a web user, `cli:<os user>`): migration 0004.
    Column("executed_by", StoredText),
    Column("cancelled_by", StoredText),
    # Contention profiles (migration 0007, D14): when the run first waited on a profile, which
    # one holds it back now, and when it was admitted (its run-now counted: a start, and a slot
    # while it is not terminal).
    Column("queued_at", UtcDateTime),
    Column("waiting_profile_id", Id),
    Column("admitted_at", UtcDateTime),
    # The latest repair asked of the run (D13; codec.repair_to_json): migration 0005.
    Column("repair", _json()),
    Index(None, "terminal", "next_poll_at"),
    Index(None, "platform_id", "admitted_at"),
    Index(None, "job_id", "created_at"),
    Index(None, "created_at"),
    sqlite_autoincrement=True,
)

run_events = Table(
    "run_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("run_id", Id, _fk("runs.id"), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("status", String(16), nullable=False),
    Column("message", StoredText, nullable=False),
    Column("life_cycle_state", StoredText),
    Column("result_state", StoredText),
    Column("source", String(16), nullable=False),
    Index(None, "run_id", "id"),
    sqlite_autoincrement=True,
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", StoredText, nullable=False),
    Column("role", String(16), nullable=False),
    # The public part of the key, to find it; the whole key is kept only as its sha256.
    Column("prefix", String(32), nullable=False, unique=True),
    Column("secret_hash", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime),
    sqlite_autoincrement=True,
)

engines = Table(
    "engines",
    metadata,
    # One row per engine (its lease owner name), written at each heartbeat; read by /health and
    # `polysync status` in any process.
    Column("owner", StoredText, primary_key=True),
    Column("host", StoredText, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("heartbeat_at", UtcDateTime, nullable=False),
    Column("last_cycle_at", UtcDateTime),
    Column("cycles", Id, nullable=False),
    Column("failures", Integer, nullable=False),
    Column("last_error", StoredText),
)

# Who changed which platform or job, and how (migration 0004). No foreign keys: an entry
# outlives what it describes.
audit_events = Table(
    "audit_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False),
    Column("actor", StoredText, nullable=False),
    Column("action", String(64), nullable=False),
    Column("subject_type", String(32), nullable=False),
    Column("subject_id", Id),
    Column("subject", StoredText, nullable=False),
    Column("detail", StoredText, nullable=False),
    Index(None, "at"),
    sqlite_autoincrement=True,
)

# Secret Vaults (D15, migration 0006): where `vault://NAME/...` references are read. `auth` holds
# the method, its non-secret fields and a client secret's reference, never a secret.
secret_vaults = Table(
    "secret_vaults",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", StoredText, nullable=False, unique=True),
    Column("provider", String(64), nullable=False),
    Column("vault_url", StoredText, nullable=False),
    Column("auth", _json(), nullable=False),
    Column("description", StoredText, nullable=False),
    Column("options", _json(), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    sqlite_autoincrement=True,
)

# Contention profiles (migration 0007, D14): what a profile caps, and the platforms (and Tasks)
# it is linked to. The counters are the runs themselves (runs.admitted_at), so they live in the
# database and hold across engines.
contention_profiles = Table(
    "contention_profiles",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", StoredText, nullable=False, unique=True),
    Column("type", String(16), nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("scope", String(16), nullable=False),
    Column("description", StoredText, nullable=False),
    Column("max_concurrent", Integer),
    Column("rate_limit", Integer),
    Column("window_s", Float),
    Column("algorithm", String(16), nullable=False),
    Column("queue_size_limit", Integer),
    Column("queue_timeout_s", Float),
    Column("exceed_action", String(16), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    sqlite_autoincrement=True,
)

contention_profile_platforms = Table(
    "contention_profile_platforms",
    metadata,
    Column("profile_id", Id, _fk("contention_profiles.id"), nullable=False),
    Column("platform_id", Id, _fk("platforms.id"), nullable=False, index=True),
    PrimaryKeyConstraint("profile_id", "platform_id"),
)

# A Task's id once Tasks exist (issue 12): no foreign key here, the tasks table lands with them.
contention_profile_tasks = Table(
    "contention_profile_tasks",
    metadata,
    Column("profile_id", Id, _fk("contention_profiles.id"), nullable=False),
    Column("task_id", Id, nullable=False, index=True),
    PrimaryKeyConstraint("profile_id", "task_id"),
)

# --- Tasks (issue 12, migration 0008; docs/tasks.md "Wiring") -------------------------------

tasks = Table(
    "tasks",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", StoredText, nullable=False, unique=True),
    Column("job_id", Id, _fk("jobs.id"), nullable=False, index=True),
    Column("parameters", _json(), nullable=False),
    Column("paused", Boolean, nullable=False),
    Column("description", StoredText, nullable=False),
    Column("tags", _json(), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("concurrency_cap", Integer, nullable=False),
    Column("on_overlap", String(16), nullable=False),
    Column("timeout_s", Integer),
    Column("retry", _json(), nullable=False),
    # The first dependency cycle's start (later cycles start at the last Dependency TaskRun's
    # scheduled-for).
    Column("dependencies_saved_at", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    sqlite_autoincrement=True,
)

task_schedules = Table(
    "task_schedules",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("task_id", Id, _fk("tasks.id"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("cron", StoredText, nullable=False),
    Column("timezone", StoredText, nullable=False),
    Column("starts_at", UtcDateTime),
    Column("ends_at", UtcDateTime),
    Column("paused", Boolean, nullable=False),
    Column("misfire_policy", String(16), nullable=False),
    Column("misfire_cap", Integer, nullable=False),
    # The scheduled-for time of the last fire handled (or when the schedule was saved/resumed).
    Column("last_fired_for", UtcDateTime, nullable=False),
    UniqueConstraint("task_id", "position"),
    sqlite_autoincrement=True,
)

task_dependencies = Table(
    "task_dependencies",
    metadata,
    Column("task_id", Id, _fk("tasks.id"), primary_key=True),
    Column("upstream_task_id", Id, _fk("tasks.id"), primary_key=True, index=True),
    Column("position", Integer, nullable=False),
    Column("condition", String(16), nullable=False),
)

task_runs = Table(
    "task_runs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("task_id", Id, _fk("tasks.id"), nullable=False),
    Column("trigger", String(16), nullable=False),
    Column("scheduled_for", UtcDateTime, nullable=False),
    Column("status", String(16), nullable=False),
    # Kept equal to status.is_terminal by the store, for the dispatch and cycle indexes.
    Column("terminal", Boolean, nullable=False),
    Column("priority", Integer, nullable=False),
    Column("queued_at", UtcDateTime, nullable=False),
    Column("started_at", UtcDateTime),
    Column("ended_at", UtcDateTime),
    Column("next_attempt_at", UtcDateTime),
    Column("next_attempt_kind", String(16)),
    Column("retry_of", Id),
    Column("message", StoredText, nullable=False),
    # Optimistic concurrency: the number of history events; a write from a stale copy fails.
    Column("revision", Integer, nullable=False),
    UniqueConstraint("task_id", "trigger", "scheduled_for"),
    Index(None, "terminal", "status"),
    Index(None, "task_id", "ended_at"),
    Index(None, "queued_at"),
    sqlite_autoincrement=True,
)

task_run_attempts = Table(
    "task_run_attempts",
    metadata,
    Column("task_run_id", Id, _fk("task_runs.id"), primary_key=True),
    Column("number", Integer, primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("run_id", Id, ForeignKey("runs.id", ondelete="SET NULL"), index=True),
    Column("started_at", UtcDateTime, nullable=False),
    Column("ended_at", UtcDateTime),
    Column("status", String(16)),
    Column("message", StoredText, nullable=False),
)

task_run_events = Table(
    "task_run_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("task_run_id", Id, _fk("task_runs.id"), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("status", String(16), nullable=False),
    Column("message", StoredText, nullable=False),
    Column("attempt", Integer),
    Index(None, "task_run_id", "id"),
    sqlite_autoincrement=True,
)
