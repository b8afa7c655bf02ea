"""Finding a record from what a user typed: an id, an External Id, a name (issue 10).

Every interface names platforms, jobs and API keys the same way. The tiers are tried in order
and the first that matches anything decides: the Polysync id, then the External Id (jobs) or the
key prefix (API keys), then the exact name, then the name trimmed and case-folded (Databricks
job names with a trailing space exist, and people type `nightly etl` for `Nightly ETL`). Two
matches in one tier are ambiguous (UsageError listing them); none in any tier is a NotFoundError
suggesting the closest names (difflib).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from polysync.domain.access import ApiKey
from polysync.domain.records import Job, Platform
from polysync.errors import (
    LIST_API_KEYS,
    LIST_JOBS,
    LIST_PLATFORMS,
    Hint,
    NotFoundError,
    UsageError,
)

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Tier(Generic[R]):
    """One way of matching: `what` names it in messages ("External Id"), `matches` says
    whether a record matches the reference as typed."""

    what: str
    matches: Callable[[R, str], bool]


def folded(text: str) -> str:
    """A name as compared in the last tier: trimmed, case-folded, inner spaces collapsed."""
    return " ".join(text.split()).casefold()


def find_one(
    ref: str,
    records: Sequence[R],
    tiers: Sequence[Tier[R]],
    *,
    noun: str,
    keys: str,
    describe: Callable[[R], str],
    names: Callable[[R], Sequence[str]],
    scope: str = "",
    hint: Hint | None = None,
) -> R:
    """The one record `ref` names. `keys` lists what is matched ("id or name"); `describe` says a record in an error ("'Nightly ETL' (id 3,
    External Id 42)"); `names` are what close matches are looked for in; `scope` ends the
    not-found message (" on platform 'prod'")."""
    for tier in tiers:
        found = [record for record in records if tier.matches(record, ref)]
        if len(found) == 1:
            return found[0]
        if found:
            listed = "; ".join(describe(record) for record in found[:10])
            more = f" and {len(found) - 10} more" if len(found) > 10 else ""
            raise UsageError(
                f"{len(found)} {noun}s match {ref!r} by {tier.what}{scope}: {listed}{more}. "
                f"Name the {noun} by its id.",
                hint=hint,
            )
    raise NotFoundError(
        f"No {noun} with {keys} {ref!r}{scope}." + suggestions(ref, records, describe, names),
        hint=hint,
    )


def suggestions(
    ref: str,
    records: Sequence[R],
    describe: Callable[[R], str],
    names: Callable[[R], Sequence[str]],
) -> str:
    """ " Did you mean ...?" with up to 3 records whose name is close to `ref`, or ""."""
    by_name: dict[str, R] = {}
    for record in records:
        for name in names(record):
            by_name.setdefault(folded(name), record)
    close = difflib.get_close_matches(folded(ref), list(by_name), n=3, cutoff=0.6)
    if not close:
        return ""
    return f" Did you mean {' or '.join(describe(by_name[name]) for name in close)}?"


def by_id(get_id: Callable[[R], int]) -> Tier[R]:
    return Tier("id", lambda record, ref: ref.strip().isdigit() and get_id(record) == int(ref))


def by_text(what: str, get: Callable[[R], str], *, fold: bool = False) -> Tier[R]:
    if fold:
        return Tier(what, lambda record, ref: folded(get(record)) == folded(ref))
    return Tier(what, lambda record, ref: get(record) == ref)


class RecordSource(Protocol):
    """What finding needs of the store (`polysync.engine.ports.Store` has it)."""

    async def list_platforms(self) -> Sequence[Platform]: ...

    async def list_jobs(self, platform_id: int | None = None) -> Sequence[Job]: ...


PLATFORM_TIERS: tuple[Tier[Platform], ...] = (
    by_id(lambda p: p.id),
    by_text("name", lambda p: p.name),
    by_text("name (ignoring case and spaces)", lambda p: p.name, fold=True),
)
JOB_TIERS: tuple[Tier[Job], ...] = (
    by_id(lambda j: j.id),
    by_text("External Id", lambda j: j.external_id.strip(), fold=True),
    by_text("name", lambda j: j.name),
    by_text("name (ignoring case and spaces)", lambda j: j.name, fold=True),
)


async def find_platform(store: RecordSource, ref: int | str) -> Platform:
    """The platform `ref` names: its id, its name, or its name ignoring case and spaces."""
    return platform_among(await store.list_platforms(), ref)


def platform_among(platforms: Sequence[Platform], ref: int | str) -> Platform:
    """`find_platform` among `platforms` already read (one list for many references)."""
    return find_one(
        str(ref),
        platforms,
        PLATFORM_TIERS,
        noun="platform",
        keys="id or name",
        describe=lambda p: f"{p.name!r} (id {p.id})",
        names=lambda p: (p.name,),
        hint=LIST_PLATFORMS,
    )


async def find_job(store: RecordSource, ref: int | str, platform: int | str | None = None) -> Job:
    """The job `ref` names - its Polysync id, External Id, name, or name ignoring case and
    spaces - on `platform` (a platform reference, as for `find_platform`) when given."""
    platforms = {p.id: p for p in await store.list_platforms()}
    scope = ""
    platform_id = None
    if platform is not None:
        chosen = await find_platform(store, platform)
        platform_id, scope = chosen.id, f" on platform {chosen.name!r}"
    jobs = await store.list_jobs(platform_id)

    def describe(job: Job) -> str:
        where = platforms[job.platform_id].name if job.platform_id in platforms else "?"
        return f"{job.name!r} (id {job.id}, External Id {job.external_id}, platform {where!r})"

    return find_one(
        str(ref),
        sorted(jobs, key=lambda j: j.id),
        JOB_TIERS,
        noun="job",
        keys="id, External Id or name",
        describe=describe,
        names=lambda j: (j.name, j.external_id),
        scope=scope,
        hint=LIST_JOBS,
    )


def find_api_key(keys: Sequence[ApiKey], ref: str, *, prefix_chars: int) -> ApiKey:
    """The key `ref` names: its id, its prefix (`psk_` + 8; a whole key is cut to it), its
    name, or its name ignoring case and spaces. Names are looked for among the keys not
    revoked first (a name is often reused after a revocation)."""
    tiers: tuple[Tier[ApiKey], ...] = (
        by_id(lambda k: k.id),
        Tier("prefix", lambda k, r: k.prefix == r.strip()[:prefix_chars]),
        by_text("name", lambda k: k.name),
        by_text("name (ignoring case and spaces)", lambda k: k.name, fold=True),
    )

    def find(among: Sequence[ApiKey]) -> ApiKey:
        return find_one(
            ref,
            among,
            tiers,
            noun="API key",
            keys="id, prefix or name",
            describe=lambda k: f"{k.name!r} (id {k.id}, {k.prefix}...)",
            names=lambda k: (k.name,),
            hint=LIST_API_KEYS,
        )

    active = [key for key in keys if key.revoked_at is None]
    try:
        return find(active)
    except NotFoundError:
        return find(keys)
