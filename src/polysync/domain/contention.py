"""Contention profiles: the records, their one validation, and the admission rule (D14).

A contention profile caps what is started on the platforms linked to it: how many runs are
active at once (type concurrency) or how many start per window (type rate). `judge` is the pure
rule the store applies, in the transaction that counts a run-now, to every enabled profile
linked to the run's platform.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from polysync.domain.limits import check_description, check_name
from polysync.errors import UsageError


class ProfileType(StrEnum):
    """What a profile counts; fixed once the profile exists (D14)."""

    CONCURRENCY = "concurrency"
    RATE = "rate"


class ProfileScope(StrEnum):
    """per_platform: one counter per linked platform; global: one counter for all of them."""

    PER_PLATFORM = "per_platform"
    GLOBAL = "global"


class ExceedAction(StrEnum):
    """What happens to a run over the limit: it waits (Queued), fails, or waits for the next
    window without taking a place in the queue."""

    QUEUE = "queue"
    REJECT = "reject"
    DEFER = "defer"


class RateAlgorithm(StrEnum):
    """token_bucket: bursts of up to Limit starts; leaky_bucket: one start per Window / Limit."""

    TOKEN_BUCKET = "token_bucket"  # noqa: S105 - an algorithm, no secret
    LEAKY_BUCKET = "leaky_bucket"


MAX_LIMIT = 100_000
MAX_SECONDS = 7 * 24 * 3600.0
DEFAULT_DEFER_WINDOW_S = 60.0
"""The window a concurrency profile defers to when it has no Window Seconds of its own."""
EDITABLE_FIELDS = (
    "name",
    "description",
    "enabled",
    "scope",
    "max_concurrent",
    "limit",
    "window_s",
    "algorithm",
    "queue_size_limit",
    "queue_timeout_s",
    "exceed_action",
)


@dataclass(frozen=True, slots=True)
class ProfileSettings:
    """What a user sets on a profile (D14). Concurrency needs `max_concurrent`; rate needs
    `limit` and `window_s` (seconds). None: no Queue Size Limit / no Queue Timeout."""

    name: str
    type: ProfileType
    enabled: bool = True
    scope: ProfileScope = ProfileScope.PER_PLATFORM
    description: str = ""
    max_concurrent: int | None = None
    limit: int | None = None
    window_s: float | None = None
    algorithm: RateAlgorithm = RateAlgorithm.TOKEN_BUCKET
    queue_size_limit: int | None = None
    queue_timeout_s: float | None = None
    exceed_action: ExceedAction = ExceedAction.QUEUE


@dataclass(frozen=True, slots=True)
class ContentionProfile:
    """A stored profile with its links: platforms by id, and Tasks by id (picked up by the
    dispatcher once Tasks start runs; D14)."""

    id: int
    settings: ProfileSettings
    platform_ids: tuple[int, ...] = ()
    task_ids: tuple[int, ...] = ()
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def name(self) -> str:
        return self.settings.name


def _choice(raw: Mapping[str, Any], key: str, kind: type[StrEnum], default: StrEnum) -> Any:
    value = raw.get(key)
    if value is None or value == "":
        return default
    text = str(value).strip().lower().replace("-", "_").replace(" ", "_")
    try:
        return kind(text)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise UsageError(
            f"{_label(key)} {_shown(value)} is not one of {allowed}; use one of those."
        ) from None


def _count(raw: Mapping[str, Any], key: str, *, required: bool = False) -> int | None:
    value = raw.get(key)
    if value is None or value == "":
        if required:
            raise UsageError(
                f"{_label(key)} is required: give a whole number from 1 to {MAX_LIMIT}."
            )
        return None
    if isinstance(value, bool):
        raise UsageError(f"{_label(key)} must be a whole number, not {_shown(value)}.")
    try:
        number = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise UsageError(
            f"{_label(key)} {_shown(value)} is not a whole number; give one from 1 to {MAX_LIMIT}."
        ) from None
    if not 1 <= number <= MAX_LIMIT:
        raise UsageError(f"{_label(key)} must be from 1 to {MAX_LIMIT}, not {number}.")
    return number


def _seconds(raw: Mapping[str, Any], key: str, *, required: bool = False) -> float | None:
    value = raw.get(key)
    if value is None or value == "":
        if required:
            raise UsageError(f"{_label(key)} is required: give seconds from 1 to {MAX_SECONDS:g}.")
        return None
    if isinstance(value, bool):
        raise UsageError(f"{_label(key)} must be a number of seconds, not {_shown(value)}.")
    try:
        number = float(str(value).strip()) if not isinstance(value, int | float) else float(value)
    except ValueError:
        raise UsageError(
            f"{_label(key)} {_shown(value)} is not a number of seconds; give one from 1 to "
            f"{MAX_SECONDS:g}."
        ) from None
    if not math.isfinite(number) or not 1 <= number <= MAX_SECONDS:
        raise UsageError(
            f"{_label(key)} must be from 1 to {MAX_SECONDS:g} seconds, not {number:g}."
        )
    return number


def _flag(raw: Mapping[str, Any], key: str, default: bool) -> bool:
    value = raw.get(key)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise UsageError(f"{_label(key)} must be true or false, not {_shown(value)}.")


_LABELS = {
    "name": "The name",
    "type": "The type",
    "enabled": "Enabled",
    "scope": "The scope",
    "max_concurrent": "Max Concurrent",
    "limit": "Limit",
    "window_s": "Window Seconds",
    "algorithm": "The algorithm",
    "queue_size_limit": "Queue Size Limit",
    "queue_timeout_s": "Queue Timeout Seconds",
    "exceed_action": "Exceed Action",
}


def _label(key: str) -> str:
    return _LABELS.get(key, key)


def _shown(value: object) -> str:
    text = repr(value if isinstance(value, str | int | float | bool) else str(value))
    return text if len(text) <= 60 else text[:57] + "..."


def check_profile(
    raw: Mapping[str, Any], *, current: ProfileSettings | None = None
) -> ProfileSettings:
    """The one validation of a profile's settings (create: `current` None; edit: the fields
    given replace `current`'s). UsageError naming the field, the value and the fix; the type
    of an existing profile cannot change (D14)."""
    unknown = sorted(set(raw) - set(EDITABLE_FIELDS) - {"type"})
    if unknown:
        raise UsageError(
            f"Unknown contention profile field {_shown(unknown[0])}; the fields are "
            f"{', '.join(('type', *EDITABLE_FIELDS))}."
        )
    if current is not None:
        given_type = raw.get("type")
        if given_type not in (None, "") and str(given_type).strip().lower() != current.type.value:
            raise UsageError(
                f"The type of contention profile {current.name!r} is {current.type.value} and "
                "cannot change after creation; create a new profile of the other type instead."
            )
        merged: dict[str, Any] = {
            name: getattr(current, name) for name in (*EDITABLE_FIELDS, "type")
        }
        merged.update({k: v for k, v in raw.items() if k != "type"})
        # Clearing an optional field: an explicit None/"" in an edit removes it.
        raw = merged
    name = raw.get("name")
    if not isinstance(name, str):
        raise UsageError("A contention profile needs a name (text).")
    check_name(name, field="The contention profile name")
    if raw.get("type") in (None, ""):
        raise UsageError("The type is required: concurrency or rate.")
    kind: ProfileType = _choice(raw, "type", ProfileType, ProfileType.CONCURRENCY)
    description = raw.get("description") or ""
    if not isinstance(description, str):
        raise UsageError("The description must be text.")
    check_description(description)
    concurrency = kind is ProfileType.CONCURRENCY
    settings = ProfileSettings(
        name=name,
        type=kind,
        enabled=_flag(raw, "enabled", True),
        scope=_choice(raw, "scope", ProfileScope, ProfileScope.PER_PLATFORM),
        description=description,
        max_concurrent=_count(raw, "max_concurrent", required=concurrency),
        limit=_count(raw, "limit", required=not concurrency),
        window_s=_seconds(raw, "window_s", required=not concurrency),
        algorithm=_choice(raw, "algorithm", RateAlgorithm, RateAlgorithm.TOKEN_BUCKET),
        queue_size_limit=_count(raw, "queue_size_limit"),
        queue_timeout_s=_seconds(raw, "queue_timeout_s"),
        exceed_action=_choice(raw, "exceed_action", ExceedAction, ExceedAction.QUEUE),
    )
    if concurrency and settings.limit is not None:
        raise UsageError(
            "Limit belongs to rate profiles; a concurrency profile caps runs with Max Concurrent."
        )
    if not concurrency and settings.max_concurrent is not None:
        raise UsageError(
            "Max Concurrent belongs to concurrency profiles; a rate profile caps starts with "
            "Limit per Window Seconds."
        )
    return settings


# ------------------------------------------------------------------ admission (D14)


@dataclass(frozen=True, slots=True)
class Usage:
    """One counter of a profile, read in the admitting transaction: `active` runs admitted and
    not ended, `starts` (epoch s, oldest first) admitted within the window, `queued` runs
    waiting in this profile's queue besides the one being judged."""

    active: int = 0
    starts: Sequence[float] = ()
    queued: int = 0


@dataclass(frozen=True, slots=True)
class Verdict:
    """A run held back by a profile: `message` says why; `retry_at_s` when to look again, or
    None when the run fails (Reject, a full queue, a Queue Timeout). `queued`: it holds a place
    in the profile's queue (Exceed Action Queue)."""

    message: str
    retry_at_s: float | None
    queued: bool = False


def _at(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%H:%M:%S UTC")


def _over(
    settings: ProfileSettings, usage: Usage, now_s: float, recheck_s: float
) -> tuple[str, float] | None:
    """(what is full, when it may free) if the run would exceed the profile now, else None."""
    if settings.type is ProfileType.CONCURRENCY:
        cap = settings.max_concurrent or 0
        if usage.active < cap:
            return None
        return f"{usage.active} of {cap} running", now_s + recheck_s
    limit = settings.limit or 0
    window_s = settings.window_s or DEFAULT_DEFER_WINDOW_S
    # Written as the retry time below is computed (start + window), so that a run told to come
    # back at that time is admitted then, whatever the floating-point rounding.
    recent = [s for s in usage.starts if s + window_s > now_s]
    if settings.algorithm is RateAlgorithm.LEAKY_BUCKET:
        # One start per Window / Limit, and never more than Limit in any window: Limit spacings
        # added up in floating point can fall a hair short of the window.
        spacing_s = window_s / limit
        frees_at_s = [recent[-1] + spacing_s] if recent else []
        if len(recent) >= limit:
            frees_at_s.append(recent[-limit] + window_s)
        if all(at_s <= now_s for at_s in frees_at_s):
            return None
        return f"one start per {spacing_s:g} s", max(frees_at_s)
    if len(recent) < limit:
        return None
    # Each start's token comes back `window_s` after it was spent: the oldest one that keeps
    # the bucket empty frees first.
    return f"{len(recent)} of {limit} started in the last {window_s:g} s", recent[-limit] + window_s


def judge(
    settings: ProfileSettings,
    usage: Usage,
    now_s: float,
    *,
    waiting_since_s: float | None,
    waiting_here: bool,
    recheck_s: float,
) -> Verdict | None:
    """None when one more run may start under this profile now; else what happens to it (D14).
    `waiting_since_s`: when the run started waiting (Queue Timeout counts from there);
    `waiting_here`: it already holds a place in this profile's queue."""
    over = _over(settings, usage, now_s, recheck_s)
    if over is None:
        return None
    full, frees_at_s = over
    name = settings.name
    if settings.exceed_action is ExceedAction.REJECT:
        return Verdict(
            f"Rejected by contention profile {name!r} ({full}); its Exceed Action is Reject. "
            "Execute it again later.",
            None,
        )
    if settings.exceed_action is ExceedAction.DEFER:
        if settings.type is ProfileType.CONCURRENCY:
            frees_at_s = now_s + (settings.window_s or DEFAULT_DEFER_WINDOW_S)
        return Verdict(
            f"Deferred by profile {name!r} ({full}) to its next window, at {_at(frees_at_s)}",
            frees_at_s,
        )
    timeout_s = settings.queue_timeout_s
    if (
        timeout_s is not None
        and waiting_since_s is not None
        and now_s - waiting_since_s >= timeout_s
    ):
        return Verdict(
            f"Timed out waiting for contention profile {name!r} ({full}): waited "
            f"{now_s - waiting_since_s:.0f} s, its Queue Timeout Seconds is {timeout_s:g}.",
            None,
        )
    size = settings.queue_size_limit
    if size is not None and not waiting_here and usage.queued >= size:
        return Verdict(
            f"Rejected: the queue of contention profile {name!r} is full ({usage.queued} "
            f"waiting, Queue Size Limit {size}; {full}). Execute it again later.",
            None,
        )
    if timeout_s is not None:
        deadline_s = (waiting_since_s if waiting_since_s is not None else now_s) + timeout_s
        frees_at_s = min(frees_at_s, deadline_s)
    return Verdict(f"Waiting for profile {name!r} ({full})", frees_at_s, queued=True)


def admitted(usage: Usage, now_s: float) -> Usage:
    """The counter once one more run was admitted at `now_s`."""
    return Usage(usage.active + 1, (*usage.starts, now_s), usage.queued)
