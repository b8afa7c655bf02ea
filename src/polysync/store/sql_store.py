"""The `Store` on SQLAlchemy: SQLite or PostgreSQL, one transaction per method, migrated on open."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    case,
    delete,
    false,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from polysync.domain.access import ApiKey, Role
from polysync.domain.models import ImportedJob, RunSnapshot, RunStatus
from polysync.domain.records import (
    AuditEvent,
    Job,
    NewPlatform,
    NewRun,
    Platform,
    Run,
    RunEvent,
    RunFilter,
)
from polysync.errors import NotFoundError, UsageError
from polysync.store.auth_fields import checked_auth
from polysync.store.codec import parameters_to_json, string_map_to_json, tasks_to_json
from polysync.store.database import WRITE_OPTION, create_engine
from polysync.store.migrate import upgrade_engine
from polysync.store.rows import (
    api_key_from_row,
    audit_event_from_row,
    event_from_row,
    job_from_row,
    job_schema_values,
    platform_from_row,
    run_from_row,
    status_values,
)
from polysync.store.tables import (
    UtcDateTime,
    api_keys,
    audit_events,
    jobs,
    platforms,
    run_events,
    runs,
)

if TYPE_CHECKING:
    from polysync.engine.ports import Store

PROVIDER = "azure-databricks"
SUBMITTING_MESSAGE = "Submitting to Databricks"
CANCEL_REQUESTED_MESSAGE = "Cancellation requested"

# RunEvent.source values.
SOURCE_ENGINE = "engine"
SOURCE_SUBMIT = "submit"
SOURCE_POLL = "poll"
SOURCE_CANCEL = "cancel"

_LIST_PLATFORMS = "`polysync platform list` shows the registered platforms."
_LIST_JOBS = "`polysync jobs list` shows the imported jobs."
_LIST_RUNS = "`polysync runs list` shows the runs."


async def open_store(url: str) -> SqlStore:
    """A store on the database at `url`, its schema migrated to the latest revision."""
    engine = create_engine(url)
    try:
        await upgrade_engine(engine)
    except BaseException:
        await engine.dispose()
        raise
    return SqlStore(engine)


class SqlStore:
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

    async def add_platform(
        self, new: NewPlatform, now: datetime, *, actor: str | None = None
    ) -> Platform:
        """Insert a platform; an audit entry "platform.create" by `actor` in the same
        transaction. UsageError when the name is taken."""
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

    async def update_platform(
        self, platform: Platform, now: datetime, *, actor: str | None = None
    ) -> Platform:
        """Save a platform's fields; an audit entry "platform.update" names the fields that
        changed (never their values: auth holds references, still not repeated)."""
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
                row = (await conn.execute(_returning(statement))).one()
                changed = [
                    name
                    for name in ("name", "workspace_url", "auth", "cluster_id", "description")
                    if getattr(before, name) != getattr(row, name)
                ] + (["options"] if dict(before.options) != dict(row.options) else [])
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

    async def get_platform(self, ref: int | str) -> Platform:
        column = platforms.c.id if isinstance(ref, int) else platforms.c.name
        async with self._read() as conn:
            row = (await conn.execute(select(platforms).where(column == ref))).one_or_none()
        if row is None:
            raise _platform_not_found(ref)
        return platform_from_row(row)

    async def list_platforms(self) -> Sequence[Platform]:
        async with self._read() as conn:
            result = await conn.execute(select(platforms))
            return sorted((platform_from_row(row) for row in result), key=_by_name)

    async def remove_platform(
        self, platform_id: int, *, actor: str | None = None, now: datetime | None = None
    ) -> None:
        """Delete a platform with its jobs and runs, unless it has active runs (UsageError); an
        audit entry "platform.delete" at `now` (default: the database's clock)."""
        async with self._write() as conn:
            # Locked so that no run can be created on this platform between the check below
            # and the delete (see _require_platform).
            name = await conn.scalar(
                select(platforms.c.name).where(platforms.c.id == platform_id).with_for_update()
            )
            if name is None:
                raise _platform_not_found(platform_id)
            active = (
                await conn.scalars(
                    select(runs.c.id)
                    .where(runs.c.platform_id == platform_id, runs.c.terminal == false())
                    .order_by(runs.c.id)
                )
            ).all()
            if active:
                shown = ", ".join(str(i) for i in active[:10]) + (
                    ", ..." if len(active) > 10 else ""
                )
                raise UsageError(
                    f"Platform {name!r} still has {len(active)} active run(s) (id {shown}). "
                    "Cancel them or let them finish, then remove the platform. "
                    "`polysync runs list` shows them with their status."
                )
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
                    raise NotFoundError(f"No job with id {ref}{scope}. {_LIST_JOBS}")
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
        raise NotFoundError(f"No job with External Id or name {ref!r}{scope}. {_LIST_JOBS}")

    async def list_jobs(self, platform_id: int | None = None) -> Sequence[Job]:
        query = select(jobs)
        if platform_id is not None:
            query = query.where(jobs.c.platform_id == platform_id)
        async with self._read() as conn:
            found = [job_from_row(row) for row in await conn.execute(query)]
        return sorted(found, key=lambda job: (job.platform_id, *_by_name(job)))

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
                raise NotFoundError(f"No job with id {job.id}. {_LIST_JOBS}")
            row = (await conn.execute(_returning(statement))).one()
            await _audit(
                conn, now, actor, "job.update", _job_subject(row), _job_changes(before, row)
            )
        return job_from_row(row)

    # ------------------------------------------------------------------ runs

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
                    raise NotFoundError(f"No job with id {new.job_id}. {_LIST_JOBS}")
                if job_platform != new.platform_id:
                    raise UsageError(
                        f"Job {new.job_id} belongs to platform id {job_platform}, "
                        f"not {new.platform_id}."
                    )
                row = (await conn.execute(_returning(insert(runs).values(values)))).one()
                await _add_event(conn, row, now, SOURCE_ENGINE)
        except IntegrityError as exc:
            raise UsageError(
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
    ) -> Run:
        (run,) = await self.record_submissions(
            [(run_id, databricks_run_id, run_page_url, next_poll_at)], now
        )
        return run

    async def record_submissions(
        self, submissions: Sequence[tuple[int, str, str, datetime]], now: datetime
    ) -> list[Run]:
        """Several `record_submitted` in one transaction (run id, RunId, URL, next poll)."""
        if not submissions:
            return []
        recorded: list[Run] = []
        async with self._write() as conn:
            for run_id, databricks_run_id, run_page_url, next_poll_at in submissions:
                recorded.append(
                    await _apply_submission(
                        conn, run_id, databricks_run_id, run_page_url, now, next_poll_at
                    )
                )
        return recorded

    async def record_submit_attempt(self, run_id: int, message: str, retry_at: datetime) -> Run:
        async with self._write() as conn:
            current = await _lock_run(conn, run_id)
            if current.terminal:
                return run_from_row(current)
            # No event: the status does not change. No updated_at either: no `now` is given.
            row = await _update_run(
                conn,
                run_id,
                {
                    "submit_attempts": runs.c.submit_attempts + 1,
                    "message": message,
                    "next_poll_at": retry_at,
                },
            )
        return run_from_row(row)

    async def record_snapshot(
        self, run_id: int, snapshot: RunSnapshot, now: datetime, next_poll_at: datetime | None
    ) -> tuple[Run, bool]:
        (result,) = await self.record_snapshots([(run_id, snapshot, now, next_poll_at)])
        return result

    async def record_snapshots(
        self, polls: Sequence[tuple[int, RunSnapshot, datetime, datetime | None]]
    ) -> list[tuple[Run, bool]]:
        # One transaction for a whole cycle's polls: with thousands of watched runs, a commit
        # per run would cost more than the API calls themselves.
        if not polls:
            return []
        results: list[tuple[Run, bool]] = []
        async with self._write() as conn:
            for run_id, snapshot, observed_at, next_poll_at in polls:
                results.append(
                    await _apply_snapshot(conn, run_id, snapshot, observed_at, next_poll_at)
                )
        return results

    async def record_failure(self, run_id: int, message: str, now: datetime) -> Run:
        async with self._write() as conn:
            current = await _lock_run(conn, run_id)
            if current.terminal:
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

    async def request_cancel(
        self, run_id: int, now: datetime, *, cancelled_by: str | None = None
    ) -> Run:
        async with self._write() as conn:
            current = await _lock_run(conn, run_id)
            if current.terminal or current.cancel_requested_at is not None:
                return run_from_row(current)
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

    async def get_run(self, run_id: int) -> Run:
        async with self._read() as conn:
            row = (await conn.execute(select(runs).where(runs.c.id == run_id))).one_or_none()
        if row is None:
            raise _run_not_found(run_id)
        return run_from_row(row)

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

    async def run_events(self, run_id: int) -> Sequence[RunEvent]:
        async with self._read() as conn:
            if await conn.scalar(select(runs.c.id).where(runs.c.id == run_id)) is None:
                raise _run_not_found(run_id)
            result = await conn.execute(
                select(run_events).where(run_events.c.run_id == run_id).order_by(run_events.c.id)
            )
            return [event_from_row(row) for row in result]

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

    async def claim_due_runs(
        self, owner: str, now: datetime, lease_s: float, limit: int
    ) -> Sequence[Run]:
        if limit < 1:
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
                            lease_owner=owner, lease_expires_at=now + timedelta(seconds=lease_s)
                        )
                    )
                )
            ).all()
        leased = [run_from_row(row) for row in claimed]
        return sorted(leased, key=lambda run: (run.next_poll_at or now, run.id))

    async def reschedule_runs(self, run_ids: Sequence[int], next_poll_at: datetime) -> None:
        if not run_ids:
            return
        async with self._write() as conn:
            await conn.execute(
                update(runs)
                .where(runs.c.id.in_(list(run_ids)), runs.c.terminal == false())
                .values(next_poll_at=next_poll_at)
            )

    async def release_runs(self, owner: str, run_ids: Sequence[int]) -> None:
        if not run_ids:
            return
        async with self._write() as conn:
            await conn.execute(
                update(runs)
                .where(runs.c.id.in_(list(run_ids)), runs.c.lease_owner == owner)
                .values(lease_owner=None, lease_expires_at=None)
            )

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

    # ------------------------------------------------------------------ API keys, health, metrics

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

    async def find_api_key(self, prefix: str) -> ApiKey | None:
        async with self._read() as conn:
            query = select(api_keys).where(api_keys.c.prefix == prefix)
            row = (await conn.execute(query)).one_or_none()
        return None if row is None else api_key_from_row(row)

    async def list_api_keys(self) -> Sequence[ApiKey]:
        async with self._read() as conn:
            result = await conn.execute(select(api_keys).order_by(api_keys.c.id))
            return [api_key_from_row(row) for row in result]

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
            raise NotFoundError(
                f"No API key {ref!r}. `polysync apikey list` shows the keys and their prefixes."
            )
        return api_key_from_row(row)

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

    async def ping(self) -> None:
        """One round trip to the database (health checks); raises if it cannot be reached."""
        async with self._read() as conn:
            await conn.execute(select(literal(1)))

    async def count_runs_by_status(self) -> Mapping[RunStatus, int]:
        query = select(runs.c.status, func.count()).group_by(runs.c.status)
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return {RunStatus(status): int(count) for status, count in rows}

    async def poll_lags_s(self, now: datetime) -> Sequence[float]:
        """How late each active run's due poll is at `now` (seconds; due runs only)."""
        query = select(runs.c.next_poll_at).where(
            runs.c.terminal == false(), runs.c.next_poll_at <= now
        )
        async with self._read() as conn:
            due = (await conn.scalars(query)).all()
        return [(now - at).total_seconds() for at in due]

    async def _require_platform(self, conn: AsyncConnection, platform_id: int) -> None:
        # FOR SHARE: a concurrent remove_platform (FOR UPDATE) either waits for this transaction
        # and then sees the job or run it adds, or goes first and this finds no platform.
        found = await conn.scalar(
            select(platforms.c.id).where(platforms.c.id == platform_id).with_for_update(read=True)
        )
        if found is None:
            raise _platform_not_found(platform_id)


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


def _by_name(record: Platform | Job) -> tuple[str, str, int]:
    # Sorted here, not in SQL: PostgreSQL orders text by the server's locale, SQLite by code point.
    return (record.name.casefold(), record.name, record.id)


def _name_taken(name: str) -> UsageError:
    return UsageError(
        f"A platform named {name!r} already exists; choose another name. {_LIST_PLATFORMS}"
    )


def _platform_not_found(ref: int | str) -> NotFoundError:
    what = f"with id {ref}" if isinstance(ref, int) else f"named {ref!r}"
    return NotFoundError(f"No platform {what}. {_LIST_PLATFORMS}")


def _run_not_found(run_id: int) -> NotFoundError:
    return NotFoundError(f"No run with id {run_id}. {_LIST_RUNS}")


if TYPE_CHECKING:
    # mypy proves here that SqlStore implements the engine's Store protocol.
    _conforms: type[Store] = SqlStore


async def _apply_snapshot(
    conn: AsyncConnection,
    run_id: int,
    snapshot: RunSnapshot,
    now: datetime,
    next_poll_at: datetime | None,
) -> tuple[Run, bool]:
    current = await _lock_run(conn, run_id)
    values: dict[str, Any] = {
        "tasks": tasks_to_json(snapshot.tasks),
        "next_poll_at": next_poll_at,
        "updated_at": now,
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
    row = await _update_run(conn, run_id, values)
    if changed:
        await _add_event(conn, row, now, SOURCE_POLL)
    return run_from_row(row), changed


async def _apply_submission(
    conn: AsyncConnection,
    run_id: int,
    databricks_run_id: str,
    run_page_url: str,
    now: datetime,
    next_poll_at: datetime,
) -> Run:
    current = await _lock_run(conn, run_id)
    values: dict[str, Any] = {
        "run_page_url": run_page_url,
        "next_poll_at": next_poll_at,
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
    row = await _update_run(conn, run_id, values)
    if not repeated:
        await _add_event(conn, row, now, SOURCE_SUBMIT, message=message)
    return run_from_row(row)
