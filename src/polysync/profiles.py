"""Contention profile use cases (D14): the one path every adapter (CLI, REST API, web) takes to
create, read, edit, link and delete profiles, with the one validation of their fields."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Protocol

from polysync.clock import Clock
from polysync.domain.access import Actor
from polysync.domain.contention import (
    ContentionProfile,
    ProfileSettings,
    ProfileType,
    Usage,
    check_profile,
)
from polysync.domain.limits import check_text, record_id
from polysync.domain.records import Platform, utc
from polysync.errors import LIST_PROFILES, UsageError
from polysync.lookup import Tier, by_id, by_text, find_one, platform_among

MAX_LINKS = 1000
"""Platforms or Tasks named in one link or unlink request."""


class ProfileStore(Protocol):
    """What the profile use cases need of the store (SqlStore implements it)."""

    async def add_profile(
        self,
        settings: ProfileSettings,
        now: datetime,
        *,
        platform_ids: Sequence[int] = (),
        task_ids: Sequence[int] = (),
        actor: str | None = None,
    ) -> ContentionProfile: ...

    async def update_profile(
        self, profile_id: int, settings: ProfileSettings, now: datetime, *, actor: str | None = None
    ) -> ContentionProfile: ...

    async def list_profiles(self) -> Sequence[ContentionProfile]: ...

    async def remove_profile(
        self, profile_id: int, now: datetime, *, actor: str | None = None
    ) -> None: ...

    async def link_profile(
        self,
        profile_id: int,
        now: datetime,
        *,
        platform_ids: Sequence[int] = (),
        task_ids: Sequence[int] = (),
        unlink: bool = False,
        actor: str | None = None,
    ) -> ContentionProfile: ...

    async def list_platforms(self) -> Sequence[Platform]: ...

    async def profile_usage(
        self, profile_id: int, now: datetime
    ) -> list[tuple[int | None, Usage]]: ...


@dataclass(frozen=True, slots=True)
class CounterNow:
    """One counter of a profile now (D14): `platform_id` None for a global profile's one
    counter; `running` (concurrency) or `started_in_window` (rate); runs `waiting` in its queue;
    `text` says it all in a line ("east: 3 of 5 running, 2 waiting")."""

    platform_id: int | None
    platform: str | None
    running: int | None
    started_in_window: int | None
    waiting: int
    text: str


def _counter_text(
    s: ProfileSettings,
    platform_id: int | None,
    names: Mapping[int, str],
    running: int,
    recent: int | None,
    waiting: int,
) -> str:
    where = "all linked platforms" if platform_id is None else names.get(platform_id, "?")
    if recent is None:
        counted = f"{running} of {s.max_concurrent} running"
    else:
        counted = f"{recent} of {s.limit} started in the last {(s.window_s or 0):g} s"
    return f"{where}: {counted}, {waiting} waiting"


_TIERS: tuple[Tier[ContentionProfile], ...] = (
    by_id(lambda p: p.id),
    by_text("name", lambda p: p.name),
    by_text("name (ignoring case and spaces)", lambda p: p.name, fold=True),
)


class ContentionProfiles:
    """The use cases; every change records its `actor` in the audit trail."""

    def __init__(self, store: ProfileStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def _now(self) -> datetime:
        return utc(self.clock.now())

    async def all(self) -> Sequence[ContentionProfile]:
        """Every profile, by name."""
        return await self.store.list_profiles()

    async def get(self, ref: str | int) -> ContentionProfile:
        """The profile `ref` names: its id, its name, or its name ignoring case and spaces
        (NotFoundError with close names; UsageError when a name is ambiguous)."""
        check_text(str(ref), field="The contention profile", max_chars=1000, required=True)
        return find_one(
            str(ref),
            [*await self.store.list_profiles()],
            _TIERS,
            noun="contention profile",
            keys="id or name",
            describe=lambda p: f"{p.name!r} (id {p.id})",
            names=lambda p: (p.name,),
            hint=LIST_PROFILES,
        )

    async def usage(self, profile: ContentionProfile) -> list[CounterNow]:
        """What each counter of the profile holds now: one per linked platform, or one for all
        of them (a global profile)."""
        names = {p.id: p.name for p in await self.store.list_platforms()}
        s = profile.settings
        now_s = self.clock.now()
        counters: list[CounterNow] = []
        for platform_id, usage in await self.store.profile_usage(profile.id, self._now()):
            recent = None
            if s.type is ProfileType.RATE:
                window_s = s.window_s or 0.0
                recent = sum(1 for t in usage.starts if t + window_s > now_s)
            counters.append(
                CounterNow(
                    platform_id=platform_id,
                    platform=None if platform_id is None else names.get(platform_id),
                    running=usage.active if s.type is ProfileType.CONCURRENCY else None,
                    started_in_window=recent,
                    waiting=usage.queued,
                    text=_counter_text(s, platform_id, names, usage.active, recent, usage.queued),
                )
            )
        return counters

    async def create(
        self,
        fields: Mapping[str, Any],
        *,
        platforms: Sequence[str | int] = (),
        tasks: Sequence[int | str] = (),
        actor: Actor | None = None,
    ) -> ContentionProfile:
        """A new profile from its fields (`check_profile`), linked to `platforms` (ids or names)
        and `tasks` (Task ids). UsageError on a bad field, ConflictError if the name is taken."""
        settings = check_profile(fields)
        platform_ids = await self._platform_ids(platforms)
        task_ids = _task_ids(tasks)
        return await self.store.add_profile(
            settings,
            self._now(),
            platform_ids=platform_ids,
            task_ids=task_ids,
            actor=_who(actor),
        )

    async def edit(
        self, ref: str | int, fields: Mapping[str, Any], *, actor: Actor | None = None
    ) -> ContentionProfile:
        """Change the fields given (None clears an optional one); the type never changes.
        Runs waiting on the profile are looked at again at once: no restart needed."""
        profile = await self.get(ref)
        settings = check_profile(fields, current=profile.settings)
        return await self.store.update_profile(profile.id, settings, self._now(), actor=_who(actor))

    async def delete(self, ref: str | int, *, actor: Actor | None = None) -> ContentionProfile:
        profile = await self.get(ref)
        await self.store.remove_profile(profile.id, self._now(), actor=_who(actor))
        return profile

    async def link(
        self,
        ref: str | int,
        *,
        platforms: Sequence[str | int] = (),
        tasks: Sequence[int | str] = (),
        unlink: bool = False,
        actor: Actor | None = None,
    ) -> ContentionProfile:
        """Link (or unlink) platforms (ids or names) and Tasks (ids); UsageError when none is
        given."""
        if not platforms and not tasks:
            raise UsageError(
                "Name at least one platform (--platform) or Task (--task) to "
                + ("unlink." if unlink else "link.")
            )
        profile = await self.get(ref)
        return await self.store.link_profile(
            profile.id,
            self._now(),
            platform_ids=await self._platform_ids(platforms),
            task_ids=_task_ids(tasks),
            unlink=unlink,
            actor=_who(actor),
        )

    async def _platform_ids(self, refs: Sequence[str | int]) -> list[int]:
        if len(refs) > MAX_LINKS:
            raise UsageError(f"Link at most {MAX_LINKS} platforms at once; got {len(refs)}.")
        if not refs:
            return []
        known: list[Platform] = [*await self.store.list_platforms()]
        found: list[int] = []
        for ref in refs:
            check_text(str(ref), field="The platform", max_chars=1000, required=True)
            found.append(platform_among(known, ref).id)
        return sorted(set(found))


def _task_ids(refs: Sequence[int | str]) -> list[int]:
    if len(refs) > MAX_LINKS:
        raise UsageError(f"Link at most {MAX_LINKS} Tasks at once; got {len(refs)}.")
    ids: list[int] = []
    for ref in refs:
        text = str(ref).strip()
        task_id = record_id(text)
        if task_id is None:
            shown = repr(text if len(text) <= 40 else text[:37] + "...")
            raise UsageError(f"A Task is named by its id, a positive whole number, not {shown}.")
        ids.append(task_id)
    return sorted(set(ids))


def counter_fields(counter: CounterNow) -> dict[str, Any]:
    """The JSON shape of a counter (REST API and `profiles show --json`)."""
    return asdict(counter)


def _who(actor: Actor | None) -> str | None:
    return None if actor is None else str(actor)
