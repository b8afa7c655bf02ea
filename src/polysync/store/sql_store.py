"""The `Store` on SQLAlchemy: SQLite or PostgreSQL, one transaction per method, migrated on open."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    Table,
    case,
    delete,
    false,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from polysync.domain.access import ApiKey, Role
from polysync.domain.contention import ContentionProfile, ProfileSettings, Usage
from polysync.domain.models import ImportedJob, RunSnapshot, RunStatus
from polysync.domain.records import (
    KEY_VAULT_PROVIDER,
    AuditEvent,
    EngineHeartbeat,
    Job,
    Lease,
    NewPlatform,
    NewRun,
    NewSecretVault,
    Platform,
    Run,
    RunEvent,
    RunFilter,
    RunRepair,
    SecretVault,
)
from polysync.engine.ports import Observation, PollFailure, Submission, SubmitAdmission
from polysync.errors import (
    LIST_API_KEYS,
    LIST_JOBS,
    LIST_PLATFORMS,
    LIST_PROFILES,
    LIST_RUNS,
    LIST_VAULTS,
    ConflictError,
    NotFoundError,
    UsageError,
    not_found,
)
from polysync.store.auth_fields import checked_auth
from polysync.store.codec import (
    parameters_to_json,
    repair_from_json,
    repair_to_json,
    string_map_to_json,
    tasks_to_json,
)
from polysync.store.contention import (
    add_links,
    counters_for,
    decide,
    held_back_values,
    profile_not_found,
    profile_values,
    read_profiles,
    remove_links,
    tasks_of_runs,
    usage_of,
    wake_waiting,
)
from polysync.store.database import (
    READ_ONLY_MESSAGE,
    WRITE_OPTION,
    create_engine,
    is_sqlite,
    sqlite_write_problem,
    store_call,
    translated,
)
from polysync.store.migrate import upgrade_engine
from polysync.store.rows import (
    api_key_from_row,
    audit_event_from_row,
    event_from_row,
    heartbeat_from_row,
    heartbeat_values,
    job_from_row,
    job_schema_values,
    platform_from_row,
    run_from_row,
    secret_vault_from_row,
    status_values,
)
from polysync.store.tables import (
    UtcDateTime,
    api_keys,
    audit_events,
    contention_profiles,
    engines,
    jobs,
    platforms,
    run_events,
    runs,
    secret_vaults,
    task_dependencies,
    task_runs,
    tasks,
)
from polysync.store.task_store import TaskStoreMixin

if TYPE_CHECKING:
    from polysync.engine.ports import Store
    from polysync.profiles import ProfileStore

log = logging.getLogger(__name__)
PROVIDER = "azure-databricks"
SUBMITTING_MESSAGE = "Submitting to Databricks"
CANCEL_REQUESTED_MESSAGE = "Cancellation requested"
CANCELLED_UNSENT_MESSAGE = "Cancelled before it was submitted to Databricks"
DEFAULT_RECHECK_S = 5.0
"""How soon a run waiting on a full concurrency profile is looked at again (D14)."""

# RunEvent.source values.
SOURCE_ENGINE = "engine"
SOURCE_SUBMIT = "submit"
SOURCE_POLL = "poll"
SOURCE_CANCEL = "cancel"
SOURCE_REPAIR = "repair"


async def open_store(url: str) -> SqlStore:
    """A store on the database at `url`, its schema migrated to the latest revision.
    StoreUnavailableError when the database cannot be reached (worth retrying), StoreError when
    it refuses (see `translated`)."""
    engine = create_engine(url)
    try:
        await upgrade_engine(engine)
    except BaseException as exc:
        await engine.dispose()
        error = translated(exc)
        if error is not None:
            raise error from exc
        raise
    return SqlStore(engine)


class SqlStore(TaskStoreMixin):
    """Platforms, jobs, runs and run events in SQL tables (see `polysync.engine.ports.Store`)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # Same pool; on SQLite its transactions take the write lock at BEGIN (BEGIN IMMEDIATE).
        self._writer = engine.execution_options(**{WRITE_OPTION: True})

    async def aclose(self) -> None:
        await self.engine.dispose()

    async def __aenter__(self) -> SqlStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.begin() as connection:
            yield connection

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        async with self._writer.begin() as connection:
            yield connection

    # ------------------------------------------------------------------ platforms

    @store_call
    async def add_platform(
        self, new: NewPlatform, now: datetime, *, actor: str | None = None
    ) -> Platform:
        """Insert a platform; an audit entry "platform.create" by `actor` in the same
        transaction. ConflictError when the name is taken."""
        values = {
            "name": new.name,
            "provider": PROVIDER,
            "workspace_url": new.workspace_url,
            "auth": checked_auth(new.auth),
            "cluster_id": new.cluster_id,
            "description": new.description,
            "options": dict(new.options),
            "created_at": now,
            "updated_at": now,
        }
        try:
            async with self._write() as conn:
                row = (await conn.execute(_returning(insert(platforms).values(values)))).one()
                await _audit(
                    conn,
                    now,
                    actor,
                    "platform.create",
                    _platform_subject(row),
                    f"workspace {row.workspace_url}, auth {row.auth.get('method')}",
                )
        except IntegrityError as exc:
            raise _name_taken(new.name) from exc
        return platform_from_row(row)

    @store_call
    async def update_platform(
        self,
        platform: Platform,
        now: datetime,
        *,
        actor: str | None = None,
        idle_only: str | None = None,
    ) -> Platform:
        """Save a platform's fields; an audit entry "platform.update" names the fields that
        changed (never the auth values: references, still not repeated), the workspace URL old
        -> new. With `idle_only` (what changes, e.g. "its workspace URL"), ConflictError when
        the platform has active runs, checked in the same transaction as the write."""
        values = {
            "name": platform.name,
            "workspace_url": platform.workspace_url,
            "auth": checked_auth(platform.auth),
            "cluster_id": platform.cluster_id,
            "description": platform.description,
            "options": dict(platform.options),
            "updated_at": now,
        }
        statement = update(platforms).where(platforms.c.id == platform.id).values(values)
        try:
            async with self._write() as conn:
                before = (
                    await conn.execute(
                        select(platforms).where(platforms.c.id == platform.id).with_for_update()
                    )
                ).one_or_none()
                if before is None:
                    raise _platform_not_found(platform.id)
                if idle_only is not None:
                    active = await _active_run_ids(conn, platform.id)
                    if active:
                        raise ConflictError(
                            f"Platform {before.name!r} has {_runs_named(active)}: "
                            f"{idle_only} cannot change while they run, or Polysync would "
                            "look for them in the wrong workspace. Let them finish or cancel "
                            "them (`polysync runs list --active` shows them), then save again."
                        )
                row = (await conn.execute(_returning(statement))).one()
                changed = [
                    name
                    for name in ("name", "workspace_url", "auth", "cluster_id", "description")
                    if getattr(before, name) != getattr(row, name)
                ] + (["options"] if dict(before.options) != dict(row.options) else [])
                if "workspace_url" in changed:
                    # The URL is no secret; where runs are looked for is worth keeping.
                    changed[changed.index("workspace_url")] = (
                        f"workspace_url ({before.workspace_url} -> {row.workspace_url})"
                    )
                await _audit(
                    conn,
                    now,
                    actor,
                    "platform.update",
                    _platform_subject(row),
                    _changed_fields(changed),
                )
        except IntegrityError as exc:
            raise _name_taken(platform.name) from exc
        return platform_from_row(row)

    @store_call
    async def get_platform(self, ref: int | str) -> Platform:
        async with self._read() as conn:
            row = await _one_by_ref(conn, platforms, ref)
        if row is None:
            raise _platform_not_found(ref)
        return platform_from_row(row)

    @store_call
    async def list_platforms(self) -> Sequence[Platform]:
        async with self._read() as conn:
            result = await conn.execute(select(platforms))
            return sorted((platform_from_row(row) for row in result), key=_by_name)

    @store_call
    async def remove_platform(
        self, platform_id: int, *, actor: str | None = None, now: datetime | None = None
    ) -> None:
        """Delete a platform with its jobs and runs, unless it has active runs (ConflictError); an
        audit entry "platform.delete" at `now` (default: the database's clock)."""
        async with self._write() as conn:
            # Locked so that no run can be created on this platform between the check below
            # and the delete (see _require_platform).
            name = await conn.scalar(
                select(platforms.c.name).where(platforms.c.id == platform_id).with_for_update()
            )
            if name is None:
                raise _platform_not_found(platform_id)
            active = await _active_run_ids(conn, platform_id)
            if active:
                raise ConflictError(
                    f"Platform {name!r} still has {_runs_named(active)}. "
                    "Cancel them or let them finish, then remove the platform.",
                    hint=LIST_RUNS,
                )
            await _refuse_busy_tasks(conn, platform_id, name)
            # Jobs, runs and run events go with it (ON DELETE CASCADE).
            await conn.execute(delete(platforms).where(platforms.c.id == platform_id))
            await _audit(
                conn,
                now or datetime.now(UTC),
                actor,
                "platform.delete",
                ("platform", platform_id, f"platform {name!r}"),
                "removed with its jobs and runs",
            )

    # ------------------------------------------------------------------ jobs

    @store_call
    async def upsert_job(
        self,
        platform_id: int,
        job: ImportedJob,
        now: datetime,
        *,
        actor: str | None = None,
        action: str = "job.import",
    ) -> tuple[Job, bool]:
        """Insert or replace an imported job's schema; an audit entry `action` ("job.import" or
        "job.sync") by `actor` in the same transaction. (job, created)."""
        try:
            return await self._upsert_job_once(platform_id, job, now, actor, action)
        except IntegrityError:
            # Two imports of a new job raced and this INSERT lost on the unique key: the second
            # try finds the winner's row and updates it.
            return await self._upsert_job_once(platform_id, job, now, actor, action)

    async def _upsert_job_once(
        self, platform_id: int, job: ImportedJob, now: datetime, actor: str | None, action: str
    ) -> tuple[Job, bool]:
        values = job_schema_values(job) | {"synced_at": now, "updated_at": now}
        async with self._write() as conn:
            await self._require_platform(conn, platform_id)
            existing = await conn.scalar(
                select(jobs.c.id)
                .where(jobs.c.platform_id == platform_id, jobs.c.external_id == job.external_id)
                .with_for_update()
            )
            if existing is None:
                values |= {
                    "platform_id": platform_id,
                    "external_id": job.external_id,
                    "imported_at": now,
                }
                statement: Any = insert(jobs).values(values)
            else:
                statement = update(jobs).where(jobs.c.id == existing).values(values)
            row = (await conn.execute(_returning(statement))).one()
            await _audit(
                conn,
                now,
                actor,
                action,
                _job_subject(row),
                ("created" if existing is None else "updated")
                + f" from Databricks job {row.external_id} on platform id {platform_id}",
            )
        return job_from_row(row), existing is None

    @store_call
    async def get_job(self, ref: int | str, *, platform_id: int | None = None) -> Job:
        async with self._read() as conn:
            scope = ""
            if platform_id is not None:
                platform_name = await conn.scalar(
                    select(platforms.c.name).where(platforms.c.id == platform_id)
                )
                if platform_name is None:
                    raise _platform_not_found(platform_id)
                scope = f" on platform {platform_name!r}"
            query = select(jobs, platforms.c.name.label("platform_name")).join(platforms)
            if platform_id is not None:
                query = query.where(jobs.c.platform_id == platform_id)
            if isinstance(ref, int):
                rows = (await conn.execute(query.where(jobs.c.id == ref))).all()
                if not rows:
                    raise NotFoundError(f"No job with id {ref}{scope}.", hint=LIST_JOBS)
                return job_from_row(rows[0])
            # An External Id names one Databricks job; only if none matches is `ref` a name.
            for column, what in ((jobs.c.external_id, "External Id"), (jobs.c.name, "name")):
                value = ref.strip() if column is jobs.c.external_id else ref
                rows = (await conn.execute(query.where(column == value).order_by(jobs.c.id))).all()
                if len(rows) == 1:
                    return job_from_row(rows[0])
                if rows:
                    listed = "; ".join(
                        f"id {r.id} (External Id {r.external_id}, platform {r.platform_name!r})"
                        for r in rows
                    )
                    raise UsageError(
                        f"{len(rows)} jobs have the {what} {ref!r}{scope}: {listed}. "
                        "Name the job by its id, or by its External Id and platform."
                    )
        raise NotFoundError(f"No job with External Id or name {ref!r}{scope}.", hint=LIST_JOBS)

    @store_call
    async def list_jobs(self, platform_id: int | None = None) -> Sequence[Job]:
        query = select(jobs)
        if platform_id is not None:
            query = query.where(jobs.c.platform_id == platform_id)
        async with self._read() as conn:
            found = [job_from_row(row) for row in await conn.execute(query)]
        return sorted(found, key=lambda job: (job.platform_id, *_by_name(job)))

    @store_call
    async def save_job(self, job: Job, now: datetime, *, actor: str | None = None) -> Job:
        """Save a job's name, description and parameters (Direction, stored values); an audit
        entry "job.update" names what changed (parameter names, never values)."""
        statement = (
            update(jobs)
            .where(jobs.c.id == job.id)
            .values(
                name=job.name,
                description=job.description,
                parameters=parameters_to_json(job.parameters),
                updated_at=now,
            )
        )
        async with self._write() as conn:
            before = (
                await conn.execute(select(jobs).where(jobs.c.id == job.id).with_for_update())
            ).one_or_none()
            if before is None:
                raise NotFoundError(f"No job with id {job.id}.", hint=LIST_JOBS)
            row = (await conn.execute(_returning(statement))).one()
            await _audit(
                conn, now, actor, "job.update", _job_subject(row), _job_changes(before, row)
            )
        return job_from_row(row)

    # ------------------------------------------------------------------ runs

    @store_call
    async def create_run(self, new: NewRun, now: datetime) -> Run:
        values = {
            "job_id": new.job_id,
            "platform_id": new.platform_id,
            "key": new.key,
            "idempotency_token": new.idempotency_token,
            "overrides": string_map_to_json(new.overrides),
            "parameters_sent": string_map_to_json(new.parameters_sent),
            **status_values(RunStatus.STARTING),
            "message": SUBMITTING_MESSAGE,
            "tasks": [],
            "created_at": now,
            "updated_at": now,
            "next_poll_at": now,
            "submit_attempts": 0,
            "executed_by": new.executed_by,
        }
        try:
            async with self._write() as conn:
                await self._require_platform(conn, new.platform_id)
                job_platform = await conn.scalar(
                    select(jobs.c.platform_id).where(jobs.c.id == new.job_id)
                )
                if job_platform is None:
                    raise NotFoundError(f"No job with id {new.job_id}.", hint=LIST_JOBS)
                if job_platform != new.platform_id:
                    raise UsageError(
                        f"Job {new.job_id} belongs to platform id {job_platform}, "
                        f"not {new.platform_id}."
                    )
                row = (await conn.execute(_returning(insert(runs).values(values)))).one()
                await _add_event(conn, row, now, SOURCE_ENGINE)
        except IntegrityError as exc:
            raise ConflictError(
                f"A run with key {new.key!r} or idempotency token {new.idempotency_token!r} "
                "already exists."
            ) from exc
        return run_from_row(row)

    async def record_submitted(
        self,
        run_id: int,
        databricks_run_id: str,
        run_page_url: str,
        now: datetime,
        next_poll_at: datetime,
        *,
        lease: Lease | None = None,
    ) -> Run:
        (run,) = await self.record_submissions(
            [Submission(run_id, databricks_run_id, run_page_url, next_poll_at, lease)], now
        )
        return run

    @store_call
    async def record_submissions(
        self, submissions: Sequence[Submission], now: datetime
    ) -> list[Run]:
        """Several `record_submitted` in one transaction, rows locked in id order."""
        if not submissions:
            return []
        async with self._write() as conn:
            current = await _lock_runs(conn, [s.run_id for s in submissions])
            recorded = {
                s.run_id: await _apply_submission(conn, current[s.run_id], s, now)
                for s in sorted(submissions, key=lambda s: s.run_id)
            }
        return [recorded[s.run_id] for s in submissions]

    async def begin_submit(self, run_id: int, now: datetime, *, lease: Lease | None) -> Run | None:
        """The run, its submit_attempts counted, if run-now may be sent now under `lease`; None
        when it may not: it ended, the lease was lost, or it was cancelled before any run-now
        (then it ends Cancelled here). Counting before sending is the fence a cancel needs: a
        run with no attempt counted has certainly never reached Databricks (H5)."""
        begun = await self.begin_submits([(run_id, lease)], now)
        return begun[0] if begun else None

    async def begin_submits(
        self, claims: Sequence[tuple[int, Lease | None]], now: datetime
    ) -> list[Run]:
        """`begin_submit` for several runs in one transaction (rows locked in id order): the
        runs whose run-now may be sent, in the order given (contention profiles apply: see
        `admit_submits`)."""
        return (await self.admit_submits(claims, now, recheck_s=DEFAULT_RECHECK_S)).begun

    @store_call
    async def admit_submits(
        self, claims: Sequence[tuple[int, Lease | None]], now: datetime, *, recheck_s: float
    ) -> SubmitAdmission:
        """See `polysync.engine.ports.Store.admit_submits` (D14)."""
        if not claims:
            return SubmitAdmission([], [])
        begun: dict[int, Run] = {}
        held: dict[int, Run] = {}
        async with self._write() as conn:
            current = await _lock_runs(conn, [run_id for run_id, _ in claims])
            eligible: list[Any] = []
            for run_id, lease in sorted(claims, key=lambda claim: claim[0]):
                row = current[run_id]
                if row.terminal or not _holds(row, lease):
                    continue
                if _never_sent(row) and row.cancel_requested_at is not None:
                    await _end_unsent(conn, row, now)
                    continue
                eligible.append(row)
            new = [row for row in eligible if row.admitted_at is None]
            counters = (
                await counters_for(
                    conn, (row.platform_id for row in new), await tasks_of_runs(conn, new)
                )
                if new
                else None
            )
            for row in eligible:
                values: dict[str, Any] = {"submit_attempts": runs.c.submit_attempts + 1}
                if counters is not None and row.admitted_at is None:
                    decision = await decide(conn, counters, row, now, recheck_s)
                    if not decision.admitted:
                        written = await _update_run(
                            conn, row.id, held_back_values(row, decision, now)
                        )
                        if written.status != row.status or written.message != row.message:
                            await _add_event(conn, written, now, SOURCE_ENGINE)
                        held[row.id] = run_from_row(written)
                        continue
                    values |= {"admitted_at": now, "waiting_profile_id": None}
                    if row.status == RunStatus.QUEUED.value:
                        values |= status_values(RunStatus.STARTING) | {
                            "message": SUBMITTING_MESSAGE,
                            "updated_at": now,
                        }
                written = await _update_run(conn, row.id, values)
                if written.status != row.status:
                    await _add_event(conn, written, now, SOURCE_ENGINE)
                begun[row.id] = run_from_row(written)
        order = [run_id for run_id, _ in claims]
        return SubmitAdmission(
            [begun[i] for i in order if i in begun], [held[i] for i in order if i in held]
        )

    # ------------------------------------------------------------------ contention profiles

    @store_call
    async def add_profile(
        self,
        settings: ProfileSettings,
        now: datetime,
        *,
        platform_ids: Sequence[int] = (),
        task_ids: Sequence[int] = (),
        actor: str | None = None,
    ) -> ContentionProfile:
        """Insert a profile with its links; ConflictError if the name is taken, NotFoundError
        for a platform that does not exist; an audit entry "profile.create"."""
        values = profile_values(settings) | {"created_at": now, "updated_at": now}
        try:
            async with self._write() as conn:
                for platform_id in sorted(set(platform_ids)):
                    await self._require_platform(conn, platform_id)
                row = (
                    await conn.execute(_returning(insert(contention_profiles).values(values)))
                ).one()
                await add_links(conn, row.id, platform_ids, task_ids)
                await _audit(
                    conn, now, actor, "profile.create", _profile_subject(row), f"type {row.type}"
                )
                (profile,) = await read_profiles(conn, contention_profiles.c.id == row.id)
        except IntegrityError as exc:
            raise _profile_name_taken(settings.name) from exc
        return profile

    @store_call
    async def update_profile(
        self, profile_id: int, settings: ProfileSettings, now: datetime, *, actor: str | None = None
    ) -> ContentionProfile:
        """Save a profile's settings (its type never changes: UsageError); the runs waiting on
        it are looked at again at once. ConflictError if the new name is taken."""
        try:
            async with self._write() as conn:
                before = (
                    await conn.execute(
                        select(contention_profiles)
                        .where(contention_profiles.c.id == profile_id)
                        .with_for_update()
                    )
                ).one_or_none()
                if before is None:
                    raise profile_not_found(profile_id)
                if before.type != settings.type.value:
                    raise UsageError(
                        f"The type of contention profile {before.name!r} is {before.type} and "
                        "cannot change after creation; create a new profile instead."
                    )
                values = profile_values(settings) | {"updated_at": now}
                statement = update(contention_profiles).where(
                    contention_profiles.c.id == profile_id
                )
                row = (await conn.execute(_returning(statement.values(values)))).one()
                changed = [
                    name
                    for name in values
                    if name != "updated_at" and before._mapping[name] != row._mapping[name]
                ]
                await _audit(
                    conn,
                    now,
                    actor,
                    "profile.update",
                    _profile_subject(row),
                    _changed_fields(changed),
                )
                (profile,) = await read_profiles(conn, contention_profiles.c.id == profile_id)
        except IntegrityError as exc:
            raise _profile_name_taken(settings.name) from exc
        await self._wake_waiting(profile_id, now)
        return profile

    async def _wake_waiting(self, profile_id: int, now: datetime) -> None:
        # Its own transaction, after the profile's: never a profile lock held while waiting
        # for run rows (admission takes run rows first, then profiles).
        async with self._write() as conn:
            await wake_waiting(conn, profile_id, now)

    @store_call
    async def get_profile(self, ref: int | str) -> ContentionProfile:
        async with self._read() as conn:
            found = await read_profiles(conn, _by_ref(contention_profiles, ref))
        if not found:
            raise profile_not_found(ref)
        return found[0]

    @store_call
    async def profile_usage(self, profile_id: int, now: datetime) -> list[tuple[int | None, Usage]]:
        """The profile's counters now (see `store.contention.usage_of`)."""
        async with self._read() as conn:
            found = await read_profiles(conn, contention_profiles.c.id == profile_id)
            if not found:
                raise profile_not_found(profile_id)
            return await usage_of(conn, found[0], now)

    @store_call
    async def list_profiles(self) -> Sequence[ContentionProfile]:
        async with self._read() as conn:
            found = await read_profiles(conn)
        return sorted(found, key=_by_name)

    @store_call
    async def remove_profile(
        self, profile_id: int, now: datetime, *, actor: str | None = None
    ) -> None:
        """Delete a profile and its links; the runs waiting on it are looked at again at once."""
        async with self._write() as conn:
            name = await conn.scalar(
                select(contention_profiles.c.name)
                .where(contention_profiles.c.id == profile_id)
                .with_for_update()
            )
            if name is None:
                raise profile_not_found(profile_id)
            await conn.execute(
                delete(contention_profiles).where(contention_profiles.c.id == profile_id)
            )
            await _audit(
                conn,
                now,
                actor,
                "profile.delete",
                ("contention_profile", profile_id, f"contention profile {name!r}"),
                "removed with its links",
            )
        await self._wake_waiting(profile_id, now)

    @store_call
    async def link_profile(
        self,
        profile_id: int,
        now: datetime,
        *,
        platform_ids: Sequence[int] = (),
        task_ids: Sequence[int] = (),
        unlink: bool = False,
        actor: str | None = None,
    ) -> ContentionProfile:
        """Add (or with `unlink`, remove) links to platforms and Tasks; NotFoundError for a
        platform that does not exist."""
        async with self._write() as conn:
            row = (
                await conn.execute(
                    select(contention_profiles)
                    .where(contention_profiles.c.id == profile_id)
                    .with_for_update()
                )
            ).one_or_none()
            if row is None:
                raise profile_not_found(profile_id)
            if unlink:
                await remove_links(conn, profile_id, platform_ids, task_ids)
            else:
                for platform_id in sorted(set(platform_ids)):
                    await self._require_platform(conn, platform_id)
                await add_links(conn, profile_id, platform_ids, task_ids)
            await conn.execute(
                update(contention_profiles)
                .where(contention_profiles.c.id == profile_id)
                .values(updated_at=now)
            )
            what = ", ".join(
                [f"platform id {p}" for p in sorted(set(platform_ids))]
                + [f"Task id {t}" for t in sorted(set(task_ids))]
            )
            await _audit(
                conn,
                now,
                actor,
                "profile.unlink" if unlink else "profile.link",
                _profile_subject(row),
                what or "nothing",
            )
            (profile,) = await read_profiles(conn, contention_profiles.c.id == profile_id)
        await self._wake_waiting(profile_id, now)
        return profile

    @store_call
    async def record_submit_attempt(
        self,
        run_id: int,
        message: str,
        retry_at: datetime,
        *,
        lease: Lease | None = None,
        event_at: datetime | None = None,
    ) -> Run:
        async with self._write() as conn:
            current = await _lock_run(conn, run_id)
            if current.terminal or not _holds(current, lease):
                return run_from_row(current)
            values: dict[str, Any] = {
                "message": message,
                "next_poll_at": retry_at,
            }
            # A transient failure adds no event (the status does not change); an unexpected
            # one is kept in the history, so it can be seen after the fact.
            if event_at is not None:
                values["updated_at"] = event_at
            row = await _update_run(conn, run_id, values)
            if event_at is not None:
                await _add_event(conn, row, event_at, SOURCE_ENGINE)
        return run_from_row(row)

    async def record_snapshot(
        self,
        run_id: int,
        snapshot: RunSnapshot,
        now: datetime,
        next_poll_at: datetime | None,
        *,
        lease: Lease | None = None,
    ) -> tuple[Run, bool]:
        (result,) = await self.record_snapshots(
            [Observation(run_id, snapshot, now, next_poll_at, lease)]
        )
        return result

    @store_call
    async def record_snapshots(self, observations: Sequence[Observation]) -> list[tuple[Run, bool]]:
        # One transaction for a whole cycle's polls: with thousands of watched runs, a commit
        # per run would cost more than the API calls themselves. Rows are locked in one statement
        # in id order, so two engines writing overlapping batches wait for each other instead
        # of deadlocking.
        if not observations:
            return []
        async with self._write() as conn:
            current = await _lock_runs(conn, [o.run_id for o in observations])
            results = {
                o.run_id: await _apply_snapshot(conn, current[o.run_id], o)
                for o in sorted(observations, key=lambda o: o.run_id)
            }
        return [results[o.run_id] for o in observations]

    @store_call
    async def record_poll_failures(self, failures: Sequence[PollFailure]) -> list[Run]:
        if not failures:
            return []
        recorded: dict[int, Run] = {}
        async with self._write() as conn:
            current = await _lock_runs(conn, [f.run_id for f in failures])
            for failure in sorted(failures, key=lambda f: f.run_id):
                row = current[failure.run_id]
                if row.terminal or not _holds(row, failure.lease):
                    recorded[failure.run_id] = run_from_row(row)
                    continue
                values: dict[str, Any] = {
                    "poll_failures": runs.c.poll_failures + 1,
                    "next_poll_at": failure.retry_at,
                }
                noted = failure.message is not None and failure.message != row.message
                if noted:
                    values |= {"message": failure.message, "updated_at": failure.observed_at}
                row = await _update_run(conn, failure.run_id, values)
                if noted:
                    await _add_event(conn, row, failure.observed_at, SOURCE_ENGINE)
                recorded[failure.run_id] = run_from_row(row)
        return [recorded[f.run_id] for f in failures]

    @store_call
    async def record_failure(
        self, run_id: int, message: str, now: datetime, *, lease: Lease | None = None
    ) -> Run:
        async with self._write() as conn:
            current = await _lock_run(conn, run_id)
            if current.terminal or not _holds(current, lease):
                return run_from_row(current)
            values = status_values(RunStatus.FAILED) | {
                "message": message,
                "ended_at": now,
                "updated_at": now,
                "next_poll_at": None,
            }
            row = await _update_run(conn, run_id, values)
            await _add_event(conn, row, now, SOURCE_SUBMIT)
        return run_from_row(row)

    @store_call
    async def request_cancel(
        self, run_id: int, now: datetime, *, cancelled_by: str | None = None
    ) -> Run:
        async with self._write() as conn:
            current = await _lock_run(conn, run_id)
            if current.terminal or current.cancel_requested_at is not None:
                return run_from_row(current)
            if _never_sent(current):
                # No run-now was ever sent (begin_submit counts one before sending, under this
                # same row lock): nothing to cancel in Databricks, and any engine that claimed
                # the run loses it here, so it can never send one now (H5).
                row = await _end_unsent(conn, current, now, cancelled_by=cancelled_by)
                return run_from_row(row)
            # Due at once, so the engine sends the cancel on its next round, not at the next poll.
            due = now if current.next_poll_at is None else min(current.next_poll_at, now)
            values = {
                "cancel_requested_at": now,
                "cancelled_by": cancelled_by,
                "message": CANCEL_REQUESTED_MESSAGE,
                "next_poll_at": due,
                "updated_at": now,
            }
            row = await _update_run(conn, run_id, values)
            await _add_event(conn, row, now, SOURCE_CANCEL)
        return run_from_row(row)

    @store_call
    async def request_repair(self, run_id: int, repair: RunRepair, now: datetime) -> Run:
        """Record a repair as intent (D13): the Failed or Cancelled run reopens as Running, due
        at once, with one event "Repair #N requested (tasks: ...)"; the engine sends it.
        ConflictError when the run is not Failed or Cancelled (e.g. another repair reopened it
        first: the check and the write are one transaction under the row's lock)."""
        async with self._write() as conn:
            current = await _lock_run(conn, run_id)
            status = RunStatus(current.status)
            if not RunStatus.RUNNING.may_follow(status, repair=True) or current.run_id is None:
                raise ConflictError(
                    f"Run {run_id} is {status.value}: only a Failed or Cancelled run that "
                    "reached Databricks can be repaired."
                    + (" Wait for it to end, then repair it." if not status.is_terminal else ""),
                    hint=LIST_RUNS,
                )
            values = status_values(RunStatus.RUNNING) | {
                "repair": repair_to_json(repair),
                "message": repair.describe(),
                "ended_at": None,
                "updated_at": now,
                "next_poll_at": now,
                "poll_failures": 0,
                # A cancel asked before belongs to the run's previous outcome.
                "cancel_requested_at": None,
            }
            row = await _update_run(conn, run_id, values)
            await _add_event(conn, row, now, SOURCE_REPAIR)
        return run_from_row(row)

    @store_call
    async def record_repair_sent(
        self,
        run_id: int,
        repair_id: str,
        now: datetime,
        *,
        sent: bool = True,
        lease: Lease | None = None,
    ) -> Run:
        """The engine sent the run's pending repair (or found it had landed, `sent` False):
        keep Databricks' repair id; one event. Fenced by `lease` like every engine write."""
        async with self._write() as conn:
            current = await _lock_run(conn, run_id)
            pending = repair_from_json(current.repair)
            if current.terminal or not _holds(current, lease) or pending is None:
                return run_from_row(current)
            if not pending.pending:
                return run_from_row(current)
            done = replace(pending, repair_id=repair_id, sent_at=now)
            how = "sent to Databricks" if sent else "found already made in Databricks"
            message = f"Repair #{done.number} {how} (repair id {repair_id})"
            values = {
                "repair": repair_to_json(done),
                "message": message,
                "updated_at": now,
            }
            row = await _update_run(conn, run_id, values)
            await _add_event(conn, row, now, SOURCE_REPAIR)
        return run_from_row(row)

    @store_call
    async def get_run(self, run_id: int) -> Run:
        async with self._read() as conn:
            row = (await conn.execute(select(runs).where(runs.c.id == run_id))).one_or_none()
        if row is None:
            raise _run_not_found(run_id)
        return run_from_row(row)

    @store_call
    async def find_run_by_key(self, key: str) -> Run | None:
        """The run created with this key (NewRun.key), if any."""
        async with self._read() as conn:
            row = (await conn.execute(select(runs).where(runs.c.key == key))).one_or_none()
        return None if row is None else run_from_row(row)

    @store_call
    async def list_runs(self, where: RunFilter) -> Sequence[Run]:
        if where.limit < 1:
            raise UsageError(f"A run listing's limit must be at least 1, not {where.limit}.")
        query = select(runs).order_by(runs.c.created_at.desc(), runs.c.id.desc())
        if where.job_id is not None:
            query = query.where(runs.c.job_id == where.job_id)
        if where.platform_id is not None:
            query = query.where(runs.c.platform_id == where.platform_id)
        if where.statuses:
            query = query.where(runs.c.status.in_([s.value for s in where.statuses]))
        # [created_after, created_before): consecutive windows neither overlap nor leave gaps.
        if where.created_after is not None:
            query = query.where(runs.c.created_at >= where.created_after)
        if where.created_before is not None:
            query = query.where(runs.c.created_at < where.created_before)
        if where.active_only:
            query = query.where(runs.c.terminal == false())
        async with self._read() as conn:
            result = await conn.execute(query.limit(where.limit))
            return [run_from_row(row) for row in result]

    @store_call
    async def run_events(self, run_id: int) -> Sequence[RunEvent]:
        async with self._read() as conn:
            if await conn.scalar(select(runs.c.id).where(runs.c.id == run_id)) is None:
                raise _run_not_found(run_id)
            result = await conn.execute(
                select(run_events).where(run_events.c.run_id == run_id).order_by(run_events.c.id)
            )
            return [event_from_row(row) for row in result]

    @store_call
    async def events_after(self, event_id: int, limit: int = 500) -> Sequence[RunEvent]:
        """Status-history entries of every run with an id above `event_id`, oldest first, at
        most `limit` (`polysync engine` prints them as they happen)."""
        query = select(run_events).where(run_events.c.id > event_id).order_by(run_events.c.id)
        async with self._read() as conn:
            return [event_from_row(row) for row in await conn.execute(query.limit(limit))]

    @store_call
    async def last_event_id(self) -> int:
        """The id of the latest status-history entry (0 when there is none)."""
        async with self._read() as conn:
            return int(await conn.scalar(select(func.max(run_events.c.id))) or 0)

    @store_call
    async def job_durations_s(self, job_id: int, limit: int = 10) -> Sequence[float]:
        query = (
            select(runs.c.submitted_at, runs.c.ended_at)
            .where(runs.c.job_id == job_id, runs.c.status == RunStatus.SUCCESS.value)
            .where(runs.c.submitted_at.is_not(None), runs.c.ended_at.is_not(None))
            .order_by(runs.c.ended_at.desc(), runs.c.id.desc())
            .limit(max(limit, 0))
        )
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [(ended - submitted).total_seconds() for submitted, ended in rows]

    # ------------------------------------------------------------------ engine leases

    @store_call
    async def claim_due_runs(
        self,
        owner: str,
        now: datetime,
        lease_s: float,
        limit: int,
        *,
        only: Sequence[int] | None = None,
        exclude: Sequence[int] = (),
    ) -> Sequence[Run]:
        if limit < 1 or (only is not None and not only):
            return []
        due = (
            select(runs.c.id)
            .where(runs.c.terminal == false(), runs.c.next_poll_at <= now)
            .where(
                or_(
                    runs.c.lease_owner.is_(None),
                    runs.c.lease_owner == owner,
                    runs.c.lease_expires_at <= now,
                )
            )
            .order_by(runs.c.next_poll_at, runs.c.id)
            .limit(limit)
            # PostgreSQL: rows another engine is claiming right now are skipped, not waited for,
            # and re-checked if it committed first. SQLite ignores this; its BEGIN IMMEDIATE
            # already makes this transaction the only writer.
            .with_for_update(skip_locked=True)
        )
        if only is not None:
            due = due.where(runs.c.id.in_(list(only)))
        if exclude:
            due = due.where(runs.c.id.not_in(list(exclude)))
        until = now + timedelta(seconds=lease_s)
        async with self._write() as conn:
            ids = (await conn.scalars(due)).all()
            if not ids:
                return []
            claimed = (
                await conn.execute(
                    _returning(
                        update(runs)
                        .where(runs.c.id.in_(ids))
                        .values(
                            lease_owner=owner,
                            lease_expires_at=until,
                            # One token per claim: whatever this engine writes under an older
                            # claim (of its own or another engine's) is dropped from now on.
                            lease_token=uuid.uuid4().hex,
                            # The claimant keeps the run in memory and looks at it on its own
                            # schedule; should it die, the run falls due when the lease ends.
                            next_poll_at=until,
                        )
                    )
                )
            ).all()
        order = {run_id: index for index, run_id in enumerate(ids)}  # oldest due first
        return sorted((run_from_row(row) for row in claimed), key=lambda run: order[run.id])

    @store_call
    async def reschedule_runs(
        self, run_ids: Sequence[int], next_poll_at: datetime, *, lease: Lease | None = None
    ) -> None:
        if not run_ids:
            return
        statement = update(runs).where(runs.c.id.in_(list(run_ids)), runs.c.terminal == false())
        if lease is not None:
            statement = statement.where(
                runs.c.lease_owner == lease.owner, runs.c.lease_token == lease.token
            )
        async with self._write() as conn:
            await conn.execute(statement.values(next_poll_at=next_poll_at, poll_failures=0))

    @store_call
    async def renew_leases(self, lease: Lease, run_ids: Sequence[int], until: datetime) -> int:
        if not run_ids:
            return 0
        async with self._write() as conn:
            result = await conn.execute(
                update(runs)
                .where(
                    runs.c.id.in_(list(run_ids)),
                    runs.c.lease_owner == lease.owner,
                    runs.c.lease_token == lease.token,
                )
                .values(lease_expires_at=until)
            )
        return int(result.rowcount)

    @store_call
    async def renew_held_leases(self, owner: str, now: datetime, until: datetime) -> int:
        now_value = literal(now, UtcDateTime())
        async with self._write() as conn:
            result = await conn.execute(
                update(runs)
                .where(runs.c.lease_owner == owner, runs.c.terminal == false())
                .values(
                    lease_expires_at=until,
                    # A run made due meanwhile (a cancel request) stays due.
                    next_poll_at=case(
                        (runs.c.next_poll_at > now_value, literal(until, UtcDateTime())),
                        else_=runs.c.next_poll_at,
                    ),
                )
            )
        return int(result.rowcount)

    @store_call
    async def release_runs(
        self,
        owner: str,
        run_ids: Sequence[int] | None,
        *,
        keep: Sequence[int] = (),
        now: datetime | None = None,
    ) -> None:
        if run_ids is not None and not run_ids:
            return
        values: dict[str, Any] = {
            "lease_owner": None,
            "lease_expires_at": None,
            "lease_token": None,
        }
        if now is not None:
            now_value = literal(now, UtcDateTime())
            values["next_poll_at"] = case(
                (runs.c.next_poll_at > now_value, now_value), else_=runs.c.next_poll_at
            )
        chosen = [runs.c.lease_owner == owner]
        if run_ids is not None:
            chosen.append(runs.c.id.in_(list(run_ids)))
        if keep:
            chosen.append(runs.c.id.not_in(list(keep)))
        async with self._write() as conn:
            await conn.execute(update(runs).where(*chosen).values(**values))

    @store_call
    async def make_all_due(self, now: datetime) -> int:
        # Runs already due keep their earlier time, so the oldest are still polled first.
        now_value = literal(now, UtcDateTime())
        statement = (
            update(runs)
            .where(runs.c.terminal == false())
            .values(
                next_poll_at=case(
                    (
                        or_(runs.c.next_poll_at.is_(None), runs.c.next_poll_at > now_value),
                        now_value,
                    ),
                    else_=runs.c.next_poll_at,
                )
            )
        )
        async with self._write() as conn:
            result = await conn.execute(statement)
        return int(result.rowcount)

    # ------------------------------------------------------------------ secret vaults (D15)

    @store_call
    async def add_vault(
        self, new: NewSecretVault, now: datetime, *, actor: str | None = None
    ) -> SecretVault:
        """Insert a Secret Vault (its auth's secret-named fields must be references); an audit
        entry "vault.create". ConflictError when the name is taken."""
        values = {
            "name": new.name,
            "provider": KEY_VAULT_PROVIDER,
            "vault_url": new.vault_url,
            "auth": checked_auth(new.auth),
            "description": new.description,
            "options": dict(new.options),
            "created_at": now,
            "updated_at": now,
        }
        try:
            async with self._write() as conn:
                row = (await conn.execute(_returning(insert(secret_vaults).values(values)))).one()
                await _audit(
                    conn,
                    now,
                    actor,
                    "vault.create",
                    ("vault", row.id, f"vault {row.name!r}"),
                    f"vault {row.vault_url}, auth {row.auth.get('method')}",
                )
        except IntegrityError as exc:
            raise ConflictError(
                f"A Secret Vault named {new.name!r} already exists; choose another name.",
                hint=LIST_VAULTS,
            ) from exc
        return secret_vault_from_row(row)

    @store_call
    async def get_vault(self, ref: int | str) -> SecretVault:
        """By id or exact name; NotFoundError otherwise."""
        async with self._read() as conn:
            row = await _one_by_ref(conn, secret_vaults, ref)
        if row is None:
            raise _vault_not_found(ref)
        return secret_vault_from_row(row)

    @store_call
    async def list_vaults(self) -> Sequence[SecretVault]:
        async with self._read() as conn:
            result = await conn.execute(select(secret_vaults))
            vaults = [secret_vault_from_row(row) for row in result]
        return sorted(vaults, key=_by_name)

    @store_call
    async def remove_vault(
        self, vault_id: int, *, actor: str | None = None, now: datetime | None = None
    ) -> None:
        """Delete a Secret Vault, unless a platform's credentials name it (ConflictError naming
        the platforms); an audit entry "vault.delete"."""
        async with self._write() as conn:
            name = await conn.scalar(
                select(secret_vaults.c.name).where(secret_vaults.c.id == vault_id).with_for_update()
            )
            if name is None:
                raise _vault_not_found(vault_id)
            prefix = f"vault://{name}/"
            users = sorted(
                row.name
                for row in await conn.execute(select(platforms.c.name, platforms.c.auth))
                if any(
                    isinstance(value, str) and value.startswith(prefix)
                    for value in (row.auth or {}).values()
                )
            )
            if users:
                raise ConflictError(
                    f"Secret Vault {name!r} is used by platform(s) "
                    f"{', '.join(repr(u) for u in users[:20])}: give them other secret "
                    "references first, then remove the vault.",
                    hint=LIST_PLATFORMS,
                )
            await conn.execute(delete(secret_vaults).where(secret_vaults.c.id == vault_id))
            await _audit(
                conn,
                now or datetime.now(UTC),
                actor,
                "vault.delete",
                ("vault", vault_id, f"vault {name!r}"),
                "removed",
            )

    # ------------------------------------------------------------------ API keys, health, metrics

    @store_call
    async def add_api_key(
        self, name: str, role: Role, prefix: str, secret_hash: str, now: datetime
    ) -> ApiKey:
        """UsageError if the prefix is taken (the caller draws another key)."""
        values = {
            "name": name,
            "role": role.value,
            "prefix": prefix,
            "secret_hash": secret_hash,
            "created_at": now,
        }
        try:
            async with self._write() as conn:
                row = (await conn.execute(_returning(insert(api_keys).values(values)))).one()
        except IntegrityError as exc:
            raise UsageError(f"An API key with prefix {prefix!r} already exists.") from exc
        return api_key_from_row(row)

    @store_call
    async def find_api_key(self, prefix: str) -> ApiKey | None:
        async with self._read() as conn:
            query = select(api_keys).where(api_keys.c.prefix == prefix)
            row = (await conn.execute(query)).one_or_none()
        return None if row is None else api_key_from_row(row)

    @store_call
    async def list_api_keys(self) -> Sequence[ApiKey]:
        async with self._read() as conn:
            result = await conn.execute(select(api_keys).order_by(api_keys.c.id))
            return [api_key_from_row(row) for row in result]

    @store_call
    async def revoke_api_key(self, ref: int | str, now: datetime) -> ApiKey:
        """By id or prefix; revoking a revoked key keeps its first revocation time."""
        column = api_keys.c.id if isinstance(ref, int) else api_keys.c.prefix
        async with self._write() as conn:
            await conn.execute(
                update(api_keys)
                .where(column == ref, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            row = (await conn.execute(select(api_keys).where(column == ref))).one_or_none()
        if row is None:
            raise NotFoundError(f"No API key {ref!r}.", hint=LIST_API_KEYS)
        return api_key_from_row(row)

    @store_call
    async def list_audit_events(
        self,
        *,
        subject_type: str | None = None,
        subject_id: int | None = None,
        limit: int = 100,
    ) -> Sequence[AuditEvent]:
        """The audit trail, newest first; optionally of one subject ("platform"/"job", id)."""
        query = select(audit_events).order_by(audit_events.c.at.desc(), audit_events.c.id.desc())
        if subject_type is not None:
            query = query.where(audit_events.c.subject_type == subject_type)
        if subject_id is not None:
            query = query.where(audit_events.c.subject_id == subject_id)
        async with self._read() as conn:
            result = await conn.execute(query.limit(max(limit, 1)))
            return [audit_event_from_row(row) for row in result]

    @store_call
    async def ping(self) -> None:
        """One round trip to the database (health checks); raises if it cannot be reached."""
        async with self._read() as conn:
            await conn.execute(select(literal(1)))

    async def write_problem(self) -> str | None:
        """Why the database cannot be written now (read-only, disk full), or None: what /health
        checks beyond `ping`, since reads go on working when writes no longer do (M4). SQLite:
        the file's and directory's permissions and the free space; PostgreSQL: a read-only
        session or a standby server."""
        url = self.engine.url
        if is_sqlite(url):
            if not url.database or url.database == ":memory:":
                return None
            return await asyncio.to_thread(sqlite_write_problem, Path(url.database))
        try:
            async with self._read() as conn:
                read_only = await conn.scalar(
                    text("SELECT current_setting('transaction_read_only') = 'on'")
                )
        except Exception as exc:
            error = translated(exc)
            return str(error) if error is not None else f"{type(exc).__name__}"
        return READ_ONLY_MESSAGE if read_only else None

    @store_call
    async def count_runs_by_status(self) -> Mapping[RunStatus, int]:
        query = select(runs.c.status, func.count()).group_by(runs.c.status)
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return {RunStatus(status): int(count) for status, count in rows}

    @store_call
    async def poll_lags_s(self, now: datetime) -> Sequence[float]:
        """How late each active run's due poll is at `now` (seconds; due runs only)."""
        query = select(runs.c.next_poll_at).where(
            runs.c.terminal == false(), runs.c.next_poll_at <= now
        )
        async with self._read() as conn:
            due = (await conn.scalars(query)).all()
        return [(now - at).total_seconds() for at in due]

    # ------------------------------------------------------------------ engine heartbeats

    @store_call
    async def record_heartbeat(self, beat: EngineHeartbeat) -> None:
        values = heartbeat_values(beat)
        async with self._write() as conn:
            updated = await conn.execute(
                update(engines).where(engines.c.owner == beat.owner).values(values)
            )
            if not updated.rowcount:
                await conn.execute(insert(engines).values(values))

    @store_call
    async def list_engines(self) -> Sequence[EngineHeartbeat]:
        query = select(engines).order_by(engines.c.heartbeat_at.desc(), engines.c.owner)
        async with self._read() as conn:
            return [heartbeat_from_row(row) for row in await conn.execute(query)]

    @store_call
    async def forget_engines(self, before: datetime) -> int:
        async with self._write() as conn:
            result = await conn.execute(delete(engines).where(engines.c.heartbeat_at < before))
        return int(result.rowcount)

    async def _require_platform(self, conn: AsyncConnection, platform_id: int) -> None:
        # FOR SHARE: a concurrent remove_platform (FOR UPDATE) either waits for this transaction
        # and then sees the job or run it adds, or goes first and this finds no platform.
        found = await conn.scalar(
            select(platforms.c.id).where(platforms.c.id == platform_id).with_for_update(read=True)
        )
        if found is None:
            raise _platform_not_found(platform_id)


async def _refuse_busy_tasks(conn: AsyncConnection, platform_id: int, name: str) -> None:
    """ConflictError when the platform's Tasks (Tasks of its jobs, which go with it) have a
    Queued or Running TaskRun, or when a Task of another platform depends on one of them: the
    rules of `delete_task`, which removing the platform would otherwise skip."""
    own = {
        int(row.id): row.name
        for row in await conn.execute(
            select(tasks.c.id, tasks.c.name)
            .join(jobs, jobs.c.id == tasks.c.job_id)
            .where(jobs.c.platform_id == platform_id)
        )
    }
    if not own:
        return
    busy = sorted(
        {
            own[int(row.task_id)]
            for row in await conn.execute(
                select(task_runs.c.task_id).where(
                    task_runs.c.task_id.in_(own), task_runs.c.terminal.is_(False)
                )
            )
        }
    )
    if busy:
        raise ConflictError(
            f"Platform {name!r} has Tasks with Queued or Running TaskRuns: "
            f"{', '.join(map(repr, busy[:10]))}. Cancel those TaskRuns or let them end, then "
            "remove the platform (`polysync taskruns list --status Running` shows them).",
        )
    downstream = sorted(
        {
            row.name
            for row in await conn.execute(
                select(tasks.c.name)
                .join(task_dependencies, task_dependencies.c.task_id == tasks.c.id)
                .where(task_dependencies.c.upstream_task_id.in_(own), tasks.c.id.not_in(own))
            )
        }
    )
    if downstream:
        raise ConflictError(
            f"Platform {name!r} has Tasks that other Tasks depend on: "
            f"{', '.join(map(repr, downstream[:10]))} would lose an upstream. Remove those "
            "dependencies first (`polysync tasks edit TASK --depends-on ...`), then remove "
            "the platform."
        )


async def _active_run_ids(conn: AsyncConnection, platform_id: int) -> Sequence[int]:
    query = select(runs.c.id).where(runs.c.platform_id == platform_id, runs.c.terminal == false())
    return (await conn.scalars(query.order_by(runs.c.id))).all()


def _runs_named(run_ids: Sequence[int]) -> str:
    """ "3 active run(s) (id 4, 5, 9)": at most ten ids shown."""
    shown = ", ".join(str(i) for i in run_ids[:10]) + (", ..." if len(run_ids) > 10 else "")
    return f"{len(run_ids)} active run(s) (id {shown})"


def _returning(statement: Any) -> Any:
    """`statement` answering with the whole row it wrote (SQLite >= 3.35 and PostgreSQL)."""
    return statement.returning(*statement.table.c)


async def _lock_run(conn: AsyncConnection, run_id: int) -> Any:
    # FOR UPDATE: a poll and a cancel of the same run on two engines apply one after the other,
    # so neither overwrites the other's status (PostgreSQL; SQLite has one writer at a time).
    query = select(runs).where(runs.c.id == run_id).with_for_update()
    row = (await conn.execute(query)).one_or_none()
    if row is None:
        raise _run_not_found(run_id)
    return row


async def _update_run(conn: AsyncConnection, run_id: int, values: dict[str, Any]) -> Any:
    # Messages and states may quote a workspace's text: the column types clean what no database
    # can hold (tables.StoredText), so no answer can poison a run.
    statement = update(runs).where(runs.c.id == run_id).values(values)
    return (await conn.execute(_returning(statement))).one()


async def _add_event(
    conn: AsyncConnection, run: Any, at: datetime, source: str, *, message: str | None = None
) -> None:
    """One status-history entry from the run row as just written."""
    await conn.execute(
        insert(run_events).values(
            run_id=run.id,
            at=at,
            status=run.status,
            message=run.message if message is None else message,
            life_cycle_state=run.life_cycle_state,
            result_state=run.result_state,
            source=source,
        )
    )


Subject = tuple[str, int | None, str]  # (subject_type, subject_id, how it is named)
UNKNOWN_ACTOR = "unknown"


async def _audit(
    conn: AsyncConnection,
    at: datetime,
    actor: str | None,
    action: str,
    subject: Subject,
    detail: str,
) -> None:
    """One audit-trail entry, in the caller's transaction."""
    subject_type, subject_id, named = subject
    await conn.execute(
        insert(audit_events).values(
            at=at,
            actor=actor or UNKNOWN_ACTOR,
            action=action,
            subject_type=subject_type,
            subject_id=subject_id,
            subject=named,
            detail=detail,
        )
    )


def _profile_subject(row: Any) -> Subject:
    return ("contention_profile", row.id, f"contention profile {row.name!r}")


def _profile_name_taken(name: str) -> ConflictError:
    return ConflictError(
        f"A contention profile named {name!r} already exists; choose another name.",
        hint=LIST_PROFILES,
    )


def _platform_subject(row: Any) -> Subject:
    return ("platform", row.id, f"platform {row.name!r}")


def _job_subject(row: Any) -> Subject:
    return ("job", row.id, f"job {row.name!r} (External Id {row.external_id})")


def _changed_fields(names: Sequence[str]) -> str:
    return f"changed {', '.join(names)}" if names else "saved without changes"


def _job_changes(before: Any, after: Any) -> str:
    changed = [
        name for name in ("name", "description") if getattr(before, name) != getattr(after, name)
    ]
    old = {(p.get("name"), p.get("task_key")): p for p in before.parameters or []}
    edited = sorted(
        str(p.get("name"))
        for p in after.parameters or []
        if old.get((p.get("name"), p.get("task_key"))) != p
    )
    if edited:
        changed.append(f"parameters {', '.join(repr(name) for name in edited)}")
    return _changed_fields(changed)


def _by_name(record: Platform | Job | SecretVault | ContentionProfile) -> tuple[str, str, int]:
    # Sorted here, not in SQL: PostgreSQL orders text by the server's locale, SQLite by code point.
    return (record.name.casefold(), record.name, record.id)


def _name_taken(name: str) -> ConflictError:
    return ConflictError(
        f"A platform named {name!r} already exists; choose another name.", hint=LIST_PLATFORMS
    )


def _platform_not_found(ref: int | str) -> NotFoundError:
    return not_found("platform", ref, LIST_PLATFORMS)


def _vault_not_found(ref: int | str) -> NotFoundError:
    return not_found("Secret Vault", ref, LIST_VAULTS)


def _by_ref(table: Table, ref: int | str) -> ColumnElement[bool]:
    """`table.id == ref` for an id, `table.name == ref` for a name."""
    return (table.c.id if isinstance(ref, int) else table.c.name) == ref


async def _one_by_ref(conn: AsyncConnection, table: Table, ref: int | str) -> Any | None:
    """The row of `table` with id or exact name `ref`, or None."""
    return (await conn.execute(select(table).where(_by_ref(table, ref)))).one_or_none()


def _run_not_found(run_id: int) -> NotFoundError:
    return NotFoundError(f"No run with id {run_id}.", hint=LIST_RUNS)


if TYPE_CHECKING:
    # mypy proves here that SqlStore implements the engine's Store protocol, and the profiles'.
    _conforms: type[Store] = SqlStore
    _profiles_conform: type[ProfileStore] = SqlStore


def _never_sent(row: Any) -> bool:
    """No run-now was ever sent for this run (begin_submit counts each before it is sent)."""
    return row.run_id is None and row.submit_attempts == 0


async def _end_unsent(
    conn: AsyncConnection, current: Any, now: datetime, *, cancelled_by: str | None = None
) -> Any:
    """End a run that never reached Databricks Cancelled, its lease dropped (fenced out)."""
    values = status_values(RunStatus.CANCELLED) | {
        "message": CANCELLED_UNSENT_MESSAGE,
        "cancel_requested_at": current.cancel_requested_at or now,
        "cancelled_by": current.cancelled_by or cancelled_by,
        "ended_at": now,
        "updated_at": now,
        "next_poll_at": None,
        "lease_owner": None,
        "lease_expires_at": None,
        "lease_token": None,
    }
    row = await _update_run(conn, current.id, values)
    await _add_event(conn, row, now, SOURCE_CANCEL)
    return row


def _holds(row: Any, lease: Lease | None) -> bool:
    """Whether a write under `lease` may change this run row (no lease: an unfenced write)."""
    return lease is None or (row.lease_owner == lease.owner and row.lease_token == lease.token)


async def _lock_runs(conn: AsyncConnection, run_ids: Sequence[int]) -> dict[int, Any]:
    """The rows of `run_ids`, locked FOR UPDATE in one statement in id order (PostgreSQL takes
    the locks in that order, so two writers of overlapping sets cannot deadlock)."""
    wanted = sorted(set(run_ids))
    query = select(runs).where(runs.c.id.in_(wanted)).order_by(runs.c.id).with_for_update()
    rows = {row.id: row for row in await conn.execute(query)}
    missing = [run_id for run_id in wanted if run_id not in rows]
    if missing:
        raise _run_not_found(missing[0])
    return rows


async def _apply_snapshot(
    conn: AsyncConnection, current: Any, observation: Observation
) -> tuple[Run, bool]:
    snapshot, now = observation.snapshot, observation.observed_at
    if not _holds(current, observation.lease):
        log.info("run %s: dropped a poll from a lease that has ended (%s)", current.id, now)
        return run_from_row(current), False
    stale = not current.terminal and not snapshot.status.may_follow(RunStatus(current.status))
    if stale:
        # An answer older than what is recorded (e.g. Starting after Running): never written
        # back, so the history only moves forward (D6). Only the next poll moves.
        log.info(
            "run %s: ignored a %s snapshot after %s", current.id, snapshot.status, current.status
        )
        row = await _update_run(conn, current.id, {"next_poll_at": observation.next_poll_at})
        return run_from_row(row), False
    values: dict[str, Any] = {
        "tasks": tasks_to_json(snapshot.tasks),
        "next_poll_at": observation.next_poll_at,
        "updated_at": now,
        "poll_failures": 0,
    }
    if snapshot.run_page_url:
        values["run_page_url"] = snapshot.run_page_url
    changed = False
    # A terminal status never changes again (D6): the poll only adds tasks and the URL.
    if not current.terminal:
        values |= {
            "life_cycle_state": snapshot.life_cycle_state,
            "result_state": snapshot.result_state,
        }
        changed = snapshot.status.value != current.status or snapshot.message != current.message
        if changed:
            values |= status_values(snapshot.status) | {"message": snapshot.message}
        if snapshot.status.is_terminal:
            values["ended_at"] = now
    row = await _update_run(conn, current.id, values)
    if changed:
        await _add_event(conn, row, now, SOURCE_POLL)
    return run_from_row(row), changed


async def _apply_submission(
    conn: AsyncConnection, current: Any, submission: Submission, now: datetime
) -> Run:
    if not _holds(current, submission.lease):
        log.info("run %s: dropped a submission from a lease that has ended", current.id)
        return run_from_row(current)
    databricks_run_id = submission.databricks_run_id
    values: dict[str, Any] = {
        "run_page_url": submission.run_page_url,
        "next_poll_at": submission.next_poll_at,
        "updated_at": now,
    }
    # A retried run-now reuses its token and Databricks answers with the same run (D8):
    # nothing new happened, so the first submission time stays and no event is added.
    repeated = current.run_id == databricks_run_id
    message = f"Submitted to Databricks as run {databricks_run_id}"
    if not repeated:
        values |= {"run_id": databricks_run_id, "submitted_at": now}
        if not current.terminal:
            values["message"] = message
        if current.admitted_at is not None and current.admitted_at < now:
            # A rate profile counts a start from when Databricks has it, no sooner (D14): the
            # run-now left some time after the admission (a slow first call, an engine killed
            # before it sent and its lease taken over), and a token given back a window after
            # the admission would let the next starts reach the workspace within the same
            # window. Counted at the admission until now, at the answer from now on.
            values["admitted_at"] = now
    row = await _update_run(conn, current.id, values)
    if not repeated:
        await _add_event(conn, row, now, SOURCE_SUBMIT, message=message)
    return run_from_row(row)
