"""Contention profiles in SQL: the profile rows and links, and admission inside begin_submits (D14).

The counters are the runs themselves: a run's `admitted_at` is its start (rate profiles count
those within the window), and an admitted run that is not terminal holds a slot (concurrency
profiles count those). So the counters are in the database and hold across engines, and nothing
can leak: a run admitted by an engine that then died is taken over once its lease expires and
frees its slot when it ends, like any other.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, false, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from polysync.domain.contention import (
    ContentionProfile,
    ExceedAction,
    ProfileScope,
    ProfileSettings,
    ProfileType,
    RateAlgorithm,
    Usage,
    Verdict,
    admitted,
    judge,
)
from polysync.domain.models import RunStatus
from polysync.errors import LIST_PROFILES, LIST_TASKS, NotFoundError, not_found
from polysync.store.rows import status_values
from polysync.store.tables import (
    contention_profile_platforms,
    contention_profile_tasks,
    contention_profiles,
    runs,
    task_run_attempts,
    task_runs,
    tasks,
)


def profile_values(settings: ProfileSettings) -> dict[str, Any]:
    return {
        "name": settings.name,
        "type": settings.type.value,
        "enabled": settings.enabled,
        "scope": settings.scope.value,
        "description": settings.description,
        "max_concurrent": settings.max_concurrent,
        "rate_limit": settings.limit,
        "window_s": settings.window_s,
        "algorithm": settings.algorithm.value,
        "queue_size_limit": settings.queue_size_limit,
        "queue_timeout_s": settings.queue_timeout_s,
        "exceed_action": settings.exceed_action.value,
    }


def settings_from_row(row: Any) -> ProfileSettings:
    return ProfileSettings(
        name=row.name,
        type=ProfileType(row.type),
        enabled=bool(row.enabled),
        scope=ProfileScope(row.scope),
        description=row.description,
        max_concurrent=row.max_concurrent,
        limit=row.rate_limit,
        window_s=row.window_s,
        algorithm=RateAlgorithm(row.algorithm),
        queue_size_limit=row.queue_size_limit,
        queue_timeout_s=row.queue_timeout_s,
        exceed_action=ExceedAction(row.exceed_action),
    )


async def read_profiles(
    conn: AsyncConnection, where: Any = None, *, lock: bool = False
) -> list[ContentionProfile]:
    """Profiles (with their links), in id order; `lock`: FOR UPDATE, taken in id order."""
    query = select(contention_profiles).order_by(contention_profiles.c.id)
    if where is not None:
        query = query.where(where)
    if lock:
        query = query.with_for_update()
    rows = (await conn.execute(query)).all()
    if not rows:
        return []
    ids = [row.id for row in rows]
    platforms_of: dict[int, list[int]] = {i: [] for i in ids}
    tasks_of: dict[int, list[int]] = {i: [] for i in ids}
    links = await conn.execute(
        select(contention_profile_platforms).where(
            contention_profile_platforms.c.profile_id.in_(ids)
        )
    )
    for link in links:
        platforms_of[link.profile_id].append(link.platform_id)
    task_links = await conn.execute(
        select(contention_profile_tasks).where(contention_profile_tasks.c.profile_id.in_(ids))
    )
    for link in task_links:
        tasks_of[link.profile_id].append(link.task_id)
    return [
        ContentionProfile(
            id=row.id,
            settings=settings_from_row(row),
            platform_ids=tuple(sorted(platforms_of[row.id])),
            task_ids=tuple(sorted(tasks_of[row.id])),
            created_at=row.created_at,
            updated_at=row.updated_at,
        )
        for row in rows
    ]


def profile_not_found(ref: int | str) -> NotFoundError:
    return not_found("contention profile", ref, LIST_PROFILES)


async def add_links(
    conn: AsyncConnection, profile_id: int, platform_ids: Iterable[int], task_ids: Iterable[int]
) -> None:
    """Links not yet there (a link given twice is one link)."""
    have = await read_profiles(conn, contention_profiles.c.id == profile_id)
    if not have:
        raise profile_not_found(profile_id)
    new_platforms = sorted(set(platform_ids) - set(have[0].platform_ids))
    new_tasks = sorted(set(task_ids) - set(have[0].task_ids))
    if new_tasks:
        found = set(await conn.scalars(select(tasks.c.id).where(tasks.c.id.in_(new_tasks))))
        missing = [t for t in new_tasks if t not in found]
        if missing:
            raise NotFoundError(
                f"No Task with id {missing[0]}: a contention profile links only to Tasks that "
                "exist.",
                hint=LIST_TASKS,
            )
    if new_platforms:
        await conn.execute(
            insert(contention_profile_platforms),
            [{"profile_id": profile_id, "platform_id": p} for p in new_platforms],
        )
    if new_tasks:
        await conn.execute(
            insert(contention_profile_tasks),
            [{"profile_id": profile_id, "task_id": t} for t in new_tasks],
        )


async def remove_links(
    conn: AsyncConnection, profile_id: int, platform_ids: Sequence[int], task_ids: Sequence[int]
) -> None:
    if platform_ids:
        await conn.execute(
            delete(contention_profile_platforms).where(
                contention_profile_platforms.c.profile_id == profile_id,
                contention_profile_platforms.c.platform_id.in_(list(platform_ids)),
            )
        )
    if task_ids:
        await conn.execute(
            delete(contention_profile_tasks).where(
                contention_profile_tasks.c.profile_id == profile_id,
                contention_profile_tasks.c.task_id.in_(list(task_ids)),
            )
        )


async def wake_waiting(conn: AsyncConnection, profile_id: int, now: datetime) -> int:
    """Runs waiting on this profile are looked at again now (an edit applies at once)."""
    result = await conn.execute(
        update(runs)
        .where(runs.c.waiting_profile_id == profile_id, runs.c.terminal == false())
        .values(next_poll_at=now)
    )
    return int(result.rowcount)


# ------------------------------------------------------------------ admission


# A counter: (profile id, "platform" | "task" | "global", platform or Task id or None).
_Key = tuple[int, str, int | None]


@dataclass(slots=True)
class _Counters:
    """The usage of each counter read in this transaction, kept up to date as the runs of the
    batch are admitted or queued one after the other."""

    profiles_of: dict[int, list[ContentionProfile]]  # platform id -> enabled profiles
    task_profiles_of: dict[int, list[ContentionProfile]] = field(default_factory=dict)
    task_of_run: dict[int, int] = field(default_factory=dict)  # run id -> Task id
    usage: dict[_Key, Usage] = field(default_factory=dict)


def _runs_of_tasks(task_ids: Sequence[int]) -> Any:
    """The ids of the runs started or repaired by an attempt of a TaskRun of these Tasks."""
    return (
        select(task_run_attempts.c.run_id)
        .join(task_runs, task_runs.c.id == task_run_attempts.c.task_run_id)
        .where(task_runs.c.task_id.in_(list(task_ids)), task_run_attempts.c.run_id.is_not(None))
    )


def _in_scope(profile: ContentionProfile, key: _Key) -> Any:
    """Which runs a counter counts: those on its platform, of its Task, or (global) on any
    linked platform or of any linked Task."""
    _, kind, ref = key
    if kind == "platform":
        return runs.c.platform_id == ref
    if kind == "task":
        return runs.c.id.in_(_runs_of_tasks([ref] if ref is not None else []))
    conditions = []
    if profile.platform_ids:
        conditions.append(runs.c.platform_id.in_(list(profile.platform_ids)))
    if profile.task_ids:
        conditions.append(runs.c.id.in_(_runs_of_tasks(profile.task_ids)))
    return or_(*conditions) if conditions else false()


async def _usage(
    conn: AsyncConnection, profile: ContentionProfile, key: _Key, now: datetime
) -> Usage:
    settings = profile.settings
    in_scope = _in_scope(profile, key)
    active = 0
    starts: list[float] = []
    if settings.type is ProfileType.CONCURRENCY:
        active = int(
            await conn.scalar(
                select(func.count())
                .select_from(runs)
                .where(in_scope, runs.c.terminal == false(), runs.c.admitted_at.is_not(None))
            )
            or 0
        )
    else:
        window_s = settings.window_s or 0.0
        # A second more than the window: `judge` counts exactly which starts are within it.
        since = datetime.fromtimestamp(now.timestamp() - window_s - 1.0, now.tzinfo)
        times = await conn.scalars(
            select(runs.c.admitted_at)
            .where(in_scope, runs.c.admitted_at > since)
            .order_by(runs.c.admitted_at)
        )
        starts = [t.timestamp() for t in times]
    queued = int(
        await conn.scalar(
            select(func.count())
            .select_from(runs)
            .where(
                in_scope,
                runs.c.terminal == false(),
                runs.c.waiting_profile_id == profile.id,
                runs.c.status == RunStatus.QUEUED.value,
            )
        )
        or 0
    )
    return Usage(active=active, starts=starts, queued=queued)


async def usage_of(
    conn: AsyncConnection, profile: ContentionProfile, now: datetime
) -> list[tuple[int | None, Usage]]:
    """Each platform counter of the profile now: (platform id, usage) per linked platform, or
    one (None, usage) for a global profile (which also counts the runs of its linked Tasks)."""
    if profile.settings.scope is ProfileScope.GLOBAL:
        if not profile.platform_ids and not profile.task_ids:
            return [(None, Usage())]
        return [(None, await _usage(conn, profile, (profile.id, "global", None), now))]
    return [
        (p, await _usage(conn, profile, (profile.id, "platform", p), now))
        for p in profile.platform_ids
    ]


# The run key of a TaskRun attempt (engine/scheduler.py): a run created by an attempt carries
# its Task even before the attempt records the run's id.
_ATTEMPT_KEY = re.compile(r"taskrun-([0-9]{1,18})-attempt-[0-9]{1,9}")


async def tasks_of_runs(conn: AsyncConnection, rows: Sequence[Any]) -> dict[int, int]:
    """run id -> Task id, for the runs started or repaired by a TaskRun attempt (found through
    task_run_attempts.run_id, or the attempt's run key while the run is not attached yet)."""
    if not rows:
        return {}
    run_ids = [int(row.id) for row in rows]
    found = await conn.execute(
        select(task_run_attempts.c.run_id, task_runs.c.task_id)
        .join(task_runs, task_runs.c.id == task_run_attempts.c.task_run_id)
        .where(task_run_attempts.c.run_id.in_(run_ids))
    )
    task_of = {int(r.run_id): int(r.task_id) for r in found}
    by_key: dict[int, int] = {}
    for row in rows:
        match = _ATTEMPT_KEY.fullmatch(str(row.key))
        if int(row.id) not in task_of and match is not None:
            by_key[int(row.id)] = int(match.group(1))
    if by_key:
        keyed = dict(
            (
                await conn.execute(
                    select(task_runs.c.id, task_runs.c.task_id).where(
                        task_runs.c.id.in_(sorted(set(by_key.values())))
                    )
                )
            ).all()
        )
        for run_id, task_run_id in by_key.items():
            if task_run_id in keyed:
                task_of[run_id] = int(keyed[task_run_id])
    return task_of


async def counters_for(
    conn: AsyncConnection, platform_ids: Iterable[int], task_of_run: Mapping[int, int] | None = None
) -> _Counters:
    """The enabled profiles linked to these platforms or to the Tasks of these runs
    (`task_of_run`: run id -> Task id), their rows locked FOR UPDATE in id order: two engines
    admitting under one profile take turns, each counting what the other committed (the same
    discipline as the runs' row locks in begin_submits)."""
    wanted = sorted(set(platform_ids))
    task_of_run = task_of_run or {}
    wanted_tasks = sorted(set(task_of_run.values()))
    linked = select(contention_profile_platforms.c.profile_id).where(
        contention_profile_platforms.c.platform_id.in_(wanted)
    )
    linked_to_tasks = select(contention_profile_tasks.c.profile_id).where(
        contention_profile_tasks.c.task_id.in_(wanted_tasks)
    )
    found = await read_profiles(
        conn,
        (contention_profiles.c.id.in_(linked) | contention_profiles.c.id.in_(linked_to_tasks))
        & (contention_profiles.c.enabled.is_(True)),
        lock=True,
    )
    profiles_of: dict[int, list[ContentionProfile]] = {p: [] for p in wanted}
    task_profiles_of: dict[int, list[ContentionProfile]] = {t: [] for t in wanted_tasks}
    for profile in found:
        for platform_id in profile.platform_ids:
            if platform_id in profiles_of:
                profiles_of[platform_id].append(profile)
        for task_id in profile.task_ids:
            if task_id in task_profiles_of:
                task_profiles_of[task_id].append(profile)
    return _Counters(profiles_of, task_profiles_of, dict(task_of_run))


def _keys_of(counters: _Counters, row: Any) -> list[tuple[ContentionProfile, _Key]]:
    """The counters that judge this run, in profile id order: a profile of its platform (its
    platform's counter, or the global one) and a profile of its Task (that Task's counter, or
    the global one); a global profile linked to both judges the run once."""
    pairs: dict[_Key, ContentionProfile] = {}
    for profile in counters.profiles_of.get(row.platform_id, []):
        per_platform = profile.settings.scope is ProfileScope.PER_PLATFORM
        key = (
            (profile.id, "platform", row.platform_id)
            if per_platform
            else (profile.id, "global", None)
        )
        pairs[key] = profile
    task_id = counters.task_of_run.get(int(row.id))
    if task_id is not None:
        for profile in counters.task_profiles_of.get(task_id, []):
            per_task = profile.settings.scope is ProfileScope.PER_PLATFORM
            key = (profile.id, "task", task_id) if per_task else (profile.id, "global", None)
            pairs[key] = profile
    return sorted(((p, k) for k, p in pairs.items()), key=lambda pair: (pair[1][0], pair[1][1]))


@dataclass(frozen=True, slots=True)
class Decision:
    """What admission decided for one run: admitted (no verdicts), waiting, or rejected."""

    verdicts: tuple[tuple[ContentionProfile, Verdict], ...] = ()

    @property
    def admitted(self) -> bool:
        return not self.verdicts

    @property
    def rejection(self) -> Verdict | None:
        return next((v for _, v in self.verdicts if v.retry_at_s is None), None)


async def decide(
    conn: AsyncConnection, counters: _Counters, row: Any, now: datetime, recheck_s: float
) -> Decision:
    """Judge one run against every enabled profile of its platform and of its Task; an
    admitted run is counted at once, so the next run of the batch sees it."""
    now_s = now.timestamp()
    waiting_since_s = row.queued_at.timestamp() if row.queued_at is not None else None
    verdicts: dict[int, tuple[ContentionProfile, Verdict]] = {}
    held: list[tuple[ContentionProfile, _Key, Verdict]] = []
    keys = _keys_of(counters, row)
    for profile, key in keys:
        if key not in counters.usage:
            counters.usage[key] = await _usage(conn, profile, key, now)
        verdict = judge(
            profile.settings,
            counters.usage[key],
            now_s,
            waiting_since_s=waiting_since_s,
            waiting_here=row.waiting_profile_id == profile.id,
            recheck_s=recheck_s,
        )
        if verdict is not None:
            held.append((profile, key, verdict))
            seen = verdicts.get(profile.id)
            if seen is None or (verdict.retry_at_s is None and seen[1].retry_at_s is not None):
                verdicts[profile.id] = (profile, verdict)
    if not verdicts:
        for _, key in keys:
            counters.usage[key] = admitted(counters.usage[key], now_s)
        return Decision()
    decision = Decision(tuple(verdicts[i] for i in sorted(verdicts)))
    if decision.rejection is None:
        for profile, key, verdict in held:
            if verdict.queued and row.waiting_profile_id != profile.id:
                usage = counters.usage[key]
                counters.usage[key] = Usage(usage.active, usage.starts, usage.queued + 1)
    return decision


def held_back_values(row: Any, decision: Decision, now: datetime) -> dict[str, Any]:
    """The run's new columns when admission held it back: Failed (rejected, timed out) or
    Queued until its retry time; either way its lease is dropped, so that any engine may take
    it when it falls due (a waiting run is held by no engine, dead or alive)."""
    release = {"lease_owner": None, "lease_expires_at": None, "lease_token": None}
    rejection = decision.rejection
    if rejection is not None:
        return (
            status_values(RunStatus.FAILED)
            | release
            | {
                "message": rejection.message,
                "ended_at": now,
                "updated_at": now,
                "next_poll_at": None,
                "waiting_profile_id": None,
            }
        )
    retry_s = max(v.retry_at_s or 0.0 for _, v in decision.verdicts)
    first = next((p for p, v in decision.verdicts if v.queued), decision.verdicts[0][0])
    return (
        status_values(RunStatus.QUEUED)
        | release
        | {
            "message": "; ".join(v.message for _, v in decision.verdicts),
            "next_poll_at": datetime.fromtimestamp(max(retry_s, now.timestamp()), now.tzinfo),
            "queued_at": row.queued_at or now,
            "waiting_profile_id": first.id,
        }
    )
