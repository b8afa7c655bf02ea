"""Contention profiles in SQL: the profile rows and links, and admission inside begin_submits (D14).

The counters are the runs themselves: a run's `admitted_at` is its start (rate profiles count
those within the window), and an admitted run that is not terminal holds a slot (concurrency
profiles count those). So the counters are in the database and hold across engines, and nothing
can leak: a run admitted by an engine that then died is taken over once its lease expires and
frees its slot when it ends, like any other.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, false, func, insert, select, update
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
from polysync.errors import LIST_PROFILES, NotFoundError, not_found
from polysync.store.rows import status_values
from polysync.store.tables import (
    contention_profile_platforms,
    contention_profile_tasks,
    contention_profiles,
    runs,
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


@dataclass(slots=True)
class _Counters:
    """The usage of each (profile, counter key) read in this transaction, kept up to date as
    the runs of the batch are admitted or queued one after the other."""

    profiles_of: dict[int, list[ContentionProfile]]  # platform id -> enabled profiles
    usage: dict[tuple[int, int | None], Usage] = field(default_factory=dict)


def _key(profile: ContentionProfile, platform_id: int) -> tuple[int, int | None]:
    scoped = profile.settings.scope is ProfileScope.PER_PLATFORM
    return (profile.id, platform_id if scoped else None)


async def _usage(
    conn: AsyncConnection, profile: ContentionProfile, platform_id: int, now: datetime
) -> Usage:
    settings = profile.settings
    scope = (
        [platform_id] if settings.scope is ProfileScope.PER_PLATFORM else list(profile.platform_ids)
    )
    in_scope = runs.c.platform_id.in_(scope)
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
    """Each counter of the profile now: (platform id, usage) per linked platform, or one
    (None, usage) for a global profile."""
    if profile.settings.scope is ProfileScope.GLOBAL:
        if not profile.platform_ids:
            return [(None, Usage())]
        return [(None, await _usage(conn, profile, profile.platform_ids[0], now))]
    return [(p, await _usage(conn, profile, p, now)) for p in profile.platform_ids]


async def counters_for(conn: AsyncConnection, platform_ids: Iterable[int]) -> _Counters:
    """The enabled profiles linked to these platforms, their rows locked FOR UPDATE in id
    order: two engines admitting under one profile take turns, each counting what the other
    committed (the same discipline as the runs' row locks in begin_submits)."""
    wanted = sorted(set(platform_ids))
    linked = select(contention_profile_platforms.c.profile_id).where(
        contention_profile_platforms.c.platform_id.in_(wanted)
    )
    found = await read_profiles(
        conn,
        contention_profiles.c.id.in_(linked) & (contention_profiles.c.enabled.is_(True)),
        lock=True,
    )
    profiles_of: dict[int, list[ContentionProfile]] = {p: [] for p in wanted}
    for profile in found:
        for platform_id in profile.platform_ids:
            if platform_id in profiles_of:
                profiles_of[platform_id].append(profile)
    return _Counters(profiles_of)


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
    """Judge one run against every enabled profile of its platform; an admitted run is counted
    at once, so the next run of the batch sees it."""
    now_s = now.timestamp()
    waiting_since_s = row.queued_at.timestamp() if row.queued_at is not None else None
    verdicts: list[tuple[ContentionProfile, Verdict]] = []
    profiles = counters.profiles_of.get(row.platform_id, [])
    for profile in profiles:
        key = _key(profile, row.platform_id)
        if key not in counters.usage:
            counters.usage[key] = await _usage(conn, profile, row.platform_id, now)
        verdict = judge(
            profile.settings,
            counters.usage[key],
            now_s,
            waiting_since_s=waiting_since_s,
            waiting_here=row.waiting_profile_id == profile.id,
            recheck_s=recheck_s,
        )
        if verdict is not None:
            verdicts.append((profile, verdict))
    if not verdicts:
        for profile in profiles:
            key = _key(profile, row.platform_id)
            counters.usage[key] = admitted(counters.usage[key], now_s)
        return Decision()
    decision = Decision(tuple(verdicts))
    if decision.rejection is None:
        for profile, verdict in verdicts:
            if verdict.queued and row.waiting_profile_id != profile.id:
                key = _key(profile, row.platform_id)
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
