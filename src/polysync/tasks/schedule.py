"""Schedules: a cron expression in an IANA time zone, its fire times across DST, and misfires.

croniter reads the expression and walks *local wall-clock* times (naive datetimes, so pure
calendar arithmetic); this module maps each wall-clock time to real instants with `zoneinfo`,
which is where daylight-saving time is decided (docs/tasks.md "Schedules"):

- A **fixed-time** expression (neither the minute nor the hour field starts with `*`, e.g.
  `0 2 * * *`, `30 1 * * 1-5`) fires once per matching wall-clock time. In the repeated hour
  after clocks go back it fires at the first occurrence only (no double fire); a time inside the
  gap when clocks go forward fires at the instant the gap ends (no skipped day).
- A **wildcard** expression (`* * * * *`, `0 * * * *`, `*/15 * * * *`, `* 3 * * *`) follows the
  clock as it is lived: every occurrence of a matching wall-clock time fires, so `0 * * * *`
  still fires every real hour in the repeated hour, and wall-clock times inside a gap never
  happened, so they do not fire.

This is the rule of Debian's cron (man 8 cron, "Daylight Saving Time") made exact. croniter's own
time-zone handling fires a fixed-time job twice in the repeated hour, which is why it is not used.

All instants in and out are timezone-aware `datetime`s; results are in UTC.
"""

from __future__ import annotations

import copy
import difflib
import functools
import heapq
import re
import zoneinfo
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from croniter import CroniterBadDateError, CroniterError, croniter

from polysync.domain.text import shown
from polysync.errors import ScheduleError

MAX_CRON_CHARS = 200
"""A cron expression, as typed (surrounding whitespace ignored)."""
MAX_TIMEZONE_CHARS = 100
"""An IANA time zone name; the longest real one is about 30 characters."""
MAX_PREVIEW = 1000
"""Fire times one preview may list (`next_fire_times`)."""
DEFAULT_MISFIRE_CAP = 10
"""How many missed fire times MisfirePolicy.RUN_ALL runs, by default."""
MAX_MISFIRE_CAP = 1000
"""The largest `misfire_cap` a schedule may have."""
DEFAULT_GRACE_S = 60.0
"""A fire time less than this many seconds old is on time, not a misfire (Quartz's default
misfire threshold): an engine that is merely slow never drops a fire."""
MAX_COUNTED_MISSES = 10_000
"""Missed fire times counted one by one; beyond this `DueFires.missed` is a lower bound."""

DEFAULT_TIMEZONE = "UTC"

_EXAMPLE = "e.g. '0 2 * * *' for 02:00 every day"
_FIELDS = "minute hour day-of-month month day-of-week"
_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# ASCII only: croniter reads fields with int(), which would also accept digits such as '٣'.
_CRON_CHARACTERS = re.compile(r"[0-9A-Za-z*/,?#\- ]+")
# croniter's Jenkins-style hashed ('H', 'H(0-29)', 'H/15') and random ('R') values: no fixed time.
_HASHED_OR_RANDOM = re.compile(r"(?:^|,)[HhRr](?:$|[(/,])")
# Not zones a user means: 'localtime' is this machine's zone, 'posixrules' a tzcode internal.
_NOT_ZONES = frozenset({"localtime", "posixrules"})


class MisfirePolicy(StrEnum):
    """What a schedule does with fire times missed while no engine ran (issue 12)."""

    SKIP = "skip"
    """Drop them; the next on-time fire runs as usual."""
    RUN_LATEST = "run-latest"
    """Run once, for the latest missed fire time (unless an on-time fire already covers it)."""
    RUN_ALL = "run-all"
    """Run every missed fire time, oldest first, at most `misfire_cap` (the latest ones)."""


@dataclass(frozen=True, slots=True)
class Schedule:
    """One schedule of a Task. Constructing it validates it (ScheduleError naming the field).

    - `cron`: five fields `minute hour day-of-month month day-of-week` (croniter syntax:
      lists, ranges, steps, names, `L`, `W`, `#`), or an alias `@hourly`, `@daily`, `@midnight`,
      `@weekly`, `@monthly`, `@yearly`/`@annually`. Stored with its whitespace normalised.
    - `timezone`: an IANA name (`Europe/London`); the cron fields are wall-clock times there.
    - `starts_at`, `ends_at`: aware datetimes, both inclusive; None is unbounded. Stored in UTC.
    - `paused`: a paused schedule fires nothing; times passed while paused are not misfires.
    - `misfire_policy`, `misfire_cap`: see MisfirePolicy; the cap is 1..MAX_MISFIRE_CAP.
    """

    cron: str
    timezone: str = DEFAULT_TIMEZONE
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    paused: bool = False
    misfire_policy: MisfirePolicy = MisfirePolicy.RUN_LATEST
    misfire_cap: int = DEFAULT_MISFIRE_CAP

    def __post_init__(self) -> None:
        # Frozen: normalised values are written once, here, before anyone can see the record.
        object.__setattr__(self, "cron", check_cron(self.cron))
        object.__setattr__(self, "timezone", check_timezone(self.timezone))
        starts_at = _check_instant(self.starts_at, "starts_at")
        ends_at = _check_instant(self.ends_at, "ends_at")
        if starts_at is not None and ends_at is not None and ends_at < starts_at:
            raise ScheduleError(
                f"The schedule's end ({ends_at.isoformat()}) is before its start "
                f"({starts_at.isoformat()}). Move the end after the start, or clear it.",
                field="ends_at",
            )
        object.__setattr__(self, "starts_at", starts_at)
        object.__setattr__(self, "ends_at", ends_at)
        if not isinstance(self.paused, bool):
            raise ScheduleError(
                f"The schedule's paused flag must be true or false, not {shown(self.paused)}.",
                field="paused",
            )
        try:
            object.__setattr__(self, "misfire_policy", MisfirePolicy(self.misfire_policy))
        except ValueError:
            choices = ", ".join(p.value for p in MisfirePolicy)
            raise ScheduleError(
                f"The schedule's misfire policy {shown(self.misfire_policy)} is not one of "
                f"{choices}.",
                field="misfire_policy",
            ) from None
        cap = self.misfire_cap
        if not isinstance(cap, int) or isinstance(cap, bool) or not 1 <= cap <= MAX_MISFIRE_CAP:
            raise ScheduleError(
                f"The schedule's misfire cap {shown(cap)} must be a whole number from 1 to "
                f"{MAX_MISFIRE_CAP} (how many missed fire times run-all may run).",
                field="misfire_cap",
            )
        # The expression must match a real date (not 30 February) within croniter's horizon.
        _compile(self.cron, self.timezone)

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        """The schedule's time zone, to show fire times in local time."""
        return zoneinfo.ZoneInfo(self.timezone)

    @property
    def is_fixed_time(self) -> bool:
        """True when the DST rule for fixed times applies (module docstring)."""
        return _compile(self.cron, self.timezone).fixed


@dataclass(frozen=True, slots=True)
class DueFires:
    """What `due_fires` decided: the scheduled-for times to queue TaskRuns for, and the misses.

    `fires` (UTC, oldest first) are to be inserted under the unique (task, trigger,
    scheduled_for) constraint, so a fire two engines both decide is still one TaskRun. `missed` counts fire
    times older than the grace period (run or not); `dropped` of them the policy does not run.
    `missed_exact` is False when more than MAX_COUNTED_MISSES were missed (`missed` is then a
    lower bound). `first_missed`/`last_missed` bound the misses for the status history. Store
    `last_fired_for` and pass it to the next call. `next_fire`: the first fire time after `now`
    (None when paused or ended), found by the same walk: when to ask again.
    """

    fires: tuple[datetime, ...]
    last_fired_for: datetime
    next_fire: datetime | None = None
    missed: int = 0
    dropped: int = 0
    missed_exact: bool = True
    first_missed: datetime | None = None
    last_missed: datetime | None = None


# --- Validation -----------------------------------------------------------------------------


def check_cron(expression: object) -> str:
    """The expression with its whitespace normalised, or ScheduleError (field "cron") saying
    what is wrong and how to write it. Never raises anything else, whatever the text."""
    if not isinstance(expression, str):
        raise _cron_error(f"must be text, not {type(expression).__name__}")
    if len(expression) > MAX_CRON_CHARS:
        raise _cron_error(
            f"is {len(expression):,} characters long; the limit is {MAX_CRON_CHARS}. Write the "
            f"five fields {_FIELDS}, {_EXAMPLE}"
        )
    return _checked_cron(expression)


@functools.lru_cache(maxsize=4096)
def _checked_cron(expression: str) -> str:
    # Cached: a store loading thousands of schedules parses each distinct expression once.
    fields = expression.split()
    if not fields:
        raise _cron_error(f"is empty. Write the five fields {_FIELDS}, {_EXAMPLE}")
    normalised = " ".join(fields)
    if len(fields) == 1 and normalised.startswith("@"):
        if normalised.lower() not in _ALIASES:
            raise _cron_error(
                f"{shown(normalised)} is not a known alias; use one of "
                f"{', '.join(_ALIASES)}, or five fields {_FIELDS}"
            )
        normalised = normalised.lower()
        _compile_expression(_ALIASES[normalised], normalised)
        return normalised
    if _CRON_CHARACTERS.fullmatch(normalised) is None:
        bad = next(c for c in normalised if _CRON_CHARACTERS.fullmatch(c) is None)
        raise _cron_error(
            f"{shown(normalised)} contains {shown(bad)}, which cron does not use. Use digits, "
            f"month or day names, and * , - / ? L W #, {_EXAMPLE}"
        )
    if len(fields) in (6, 7):
        raise _cron_error(_quartz_advice(normalised, fields))
    if len(fields) != 5:
        raise _cron_error(
            f"{shown(normalised)} has {len(fields)} field{'s' if len(fields) > 1 else ''}; a cron "
            f"expression has five: "
            f"{_FIELDS}, {_EXAMPLE}"
        )
    for name, value in zip(
        ("minute", "hour", "day-of-month", "month", "day-of-week"), fields, strict=True
    ):
        if _HASHED_OR_RANDOM.search(value):
            raise _cron_error(
                f"{shown(normalised)}: the {name} field {shown(value)} uses a hashed (H) or "
                f"random (R) value, which gives no fixed time. Write the {name} out, e.g. '17'"
            )
    _compile_expression(normalised, normalised)
    return normalised


def check_timezone(name: object) -> str:
    """The IANA time zone name (surrounding whitespace trimmed), or ScheduleError (field
    "timezone") with the closest real names. Only names of the installed tz database are
    accepted, never a file path."""
    if not isinstance(name, str):
        raise _zone_error(f"must be text, not {type(name).__name__}")
    key = name.strip()
    if not key:
        raise _zone_error(
            f"is empty. Give an IANA name such as 'Europe/London', or {DEFAULT_TIMEZONE!r}"
        )
    if len(key) > MAX_TIMEZONE_CHARS:
        raise _zone_error(
            f"is {len(key):,} characters long; IANA names are at most {MAX_TIMEZONE_CHARS}. "
            "Give a name such as 'Europe/London'"
        )
    zones = _zone_names()
    if key in zones:
        return key
    folded = {zone.casefold(): zone for zone in zones}
    if key.casefold() in folded:
        exact = folded[key.casefold()]
        raise _zone_error(f"{shown(key)} is not spelt as the tz database spells it: use {exact!r}")
    close = difflib.get_close_matches(key, sorted(zones), n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(z) for z in close)}?" if close else ""
    raise _zone_error(
        f"{shown(key)} is not an IANA time zone name.{hint} Names look like 'Europe/London' or "
        f"'America/New_York'; use {DEFAULT_TIMEZONE!r} for UTC"
    )


# --- Fire times -----------------------------------------------------------------------------


def next_fire_times(schedule: Schedule, after: datetime, n: int) -> tuple[datetime, ...]:
    """The schedule's next `n` fire times strictly after `after`, within its start and end.

    `after`: an aware datetime. `n`: 1..MAX_PREVIEW. Returns at most `n` UTC datetimes, oldest
    first (fewer when the end comes first). A paused schedule is previewed as if resumed: the
    caller says it is paused. ValueError for a naive `after` or an `n` out of range.
    """
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_PREVIEW:
        raise ValueError(f"n must be a whole number from 1 to {MAX_PREVIEW}, not {shown(n)}")
    times: list[datetime] = []
    for fire in _fires_within(schedule, _aware(after, "after")):
        times.append(fire)
        if len(times) == n:
            break
    return tuple(times)


def next_fire_time(schedule: Schedule, after: datetime) -> datetime | None:
    """The next time the schedule fires after `after` (UTC), or None when it is paused or has
    ended: what a Tasks list shows as "next run"."""
    if schedule.paused:
        return None
    return next(_fires_within(schedule, _aware(after, "after")), None)


def due_fires(
    schedule: Schedule,
    last_fired_for: datetime,
    now: datetime,
    *,
    grace_s: float = DEFAULT_GRACE_S,
) -> DueFires:
    """What to fire now, for an engine that last handled fire times up to `last_fired_for`.

    `last_fired_for`: the scheduled-for time of the last fire handled, or, for a schedule that
    has not fired since it was saved or resumed, the time it was saved or resumed (aware).
    `now`: the engine clock (aware). Fire times in (last_fired_for, now] within the schedule's
    start and end are due. Those at most `grace_s` seconds old are on time and always fire; older
    ones are misfires, handled by `schedule.misfire_policy`:

    - SKIP: none run. RUN_LATEST: the latest one runs, unless an on-time fire exists.
    - RUN_ALL: the latest `schedule.misfire_cap` of them run (the oldest beyond the cap drop).

    A paused schedule fires nothing and moves `last_fired_for` to `now` (pausing drops those
    times; they are not misfires). Pure: the same arguments give the same answer. ValueError for
    a naive datetime or a negative `grace_s`.
    """
    last = _aware(last_fired_for, "last_fired_for")
    current = _aware(now, "now")
    if grace_s < 0:
        raise ValueError(f"grace_s must be >= 0, not {grace_s}")
    if schedule.paused:
        return DueFires(fires=(), last_fired_for=max(last, current))
    compiled = _compile(schedule.cron, schedule.timezone)
    low = last
    if schedule.starts_at is not None:
        low = max(low, _just_before(schedule.starts_at))
    high = current if schedule.ends_at is None else min(current, schedule.ends_at)
    if high <= low:
        return DueFires(
            fires=(),
            last_fired_for=last,
            # `last` may be ahead of this engine's clock (another engine fired it): never
            # announce a fire time that is already handled.
            next_fire=next(_fires_within(schedule, max(current, last)), None),
        )

    on_time_from = current - timedelta(seconds=grace_s)
    policy = schedule.misfire_policy
    keep = schedule.misfire_cap if policy is MisfirePolicy.RUN_ALL else 1
    # One walk from `low` serves the common case (a tick finds zero or one fire): misses are
    # counted as they pass, and only a very long outage falls back to searching back from now.
    on_time: list[datetime] = []
    recent: deque[datetime] = deque(maxlen=keep)
    missed, exact, first_missed = 0, True, None
    next_fire: datetime | None = None
    for fire in _instants_after(compiled, low):
        if fire > high:
            if schedule.ends_at is None or fire <= schedule.ends_at:
                next_fire = fire
            break
        if fire > on_time_from:
            on_time.append(fire)
            continue
        missed += 1
        first_missed = first_missed or fire
        recent.append(fire)
        if missed >= MAX_COUNTED_MISSES:
            missed_high = min(high, on_time_from)
            exact = next(_between(compiled, fire, missed_high), None) is None
            if not exact:
                recent = deque(_last(compiled, low, missed_high, keep), maxlen=keep)
            on_time = list(_between(compiled, max(low, on_time_from), high))
            next_fire = next(_fires_within(schedule, current), None)
            break
    if missed == 0:
        return DueFires(
            fires=tuple(on_time),
            last_fired_for=on_time[-1] if on_time else last,
            next_fire=next_fire,
        )
    latest_missed = tuple(recent)
    if policy is MisfirePolicy.RUN_ALL:
        run_missed = latest_missed
    elif policy is MisfirePolicy.RUN_LATEST and not on_time:
        run_missed = latest_missed[-1:]
    else:
        run_missed = ()
    return DueFires(
        fires=(*run_missed, *on_time),
        last_fired_for=on_time[-1] if on_time else latest_missed[-1],
        next_fire=next_fire,
        missed=missed,
        dropped=missed - len(run_missed),
        missed_exact=exact,
        first_missed=first_missed,
        last_missed=latest_missed[-1],
    )


def misfire_message(schedule: Schedule, due: DueFires) -> str | None:
    """The warning a TaskRun history (or the Task) records for the misses `due` reports, with
    times in the schedule's zone; None when nothing was missed."""
    if due.missed == 0 or due.first_missed is None or due.last_missed is None:
        return None
    count = f"{due.missed:,}" if due.missed_exact else f"at least {due.missed:,}"
    plural = "" if due.missed == 1 else "s"
    span = (
        _local(schedule, due.first_missed)
        if due.first_missed == due.last_missed
        else f"{_local(schedule, due.first_missed)} to {_local(schedule, due.last_missed)}"
    )
    ran = due.missed - due.dropped
    policy = schedule.misfire_policy
    if policy is MisfirePolicy.SKIP:
        outcome = "the misfire policy is skip: none of them runs"
    elif policy is MisfirePolicy.RUN_LATEST and ran == 0:
        outcome = "the misfire policy is run-latest, and an on-time fire is the latest"
    elif policy is MisfirePolicy.RUN_LATEST:
        outcome = "the misfire policy is run-latest: the latest one runs"
    elif due.dropped == 0:
        outcome = "the misfire policy is run-all: all of them run"
    else:
        outcome = (
            f"the misfire policy is run-all with a cap of {schedule.misfire_cap}: the latest "
            f"{ran:,} run"
        )
    return f"Missed {count} fire time{plural} ({span}) while no engine ran; {outcome}."


def _local(schedule: Schedule, moment: datetime) -> str:
    return moment.astimezone(schedule.zone).strftime("%Y-%m-%d %H:%M %Z")


# --- Internals ------------------------------------------------------------------------------

_TICK = timedelta(microseconds=1)
_MAX_REASON_CHARS = 160
_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True, eq=False)
class _Compiled:
    expression: str  # five fields, aliases expanded
    zone: zoneinfo.ZoneInfo
    fixed: bool
    walker: croniter
    """A parsed croniter to copy: parsing costs several times one step, so it is done once."""

    def walk_from(self, start: datetime) -> croniter:
        walker = copy.copy(self.walker)
        walker.set_current(start, force=True)
        return walker


@functools.cache
def _zone_names() -> frozenset[str]:
    # Some systems also carry "posix/..." copies and "right/..." leap-second variants: the
    # canonical names are the ones users mean and the ones every machine has.
    return frozenset(
        zone
        for zone in zoneinfo.available_timezones()
        if zone not in _NOT_ZONES and not zone.startswith(("posix/", "right/"))
    )


@functools.lru_cache(maxsize=4096)
def _compile(cron: str, timezone: str) -> _Compiled:
    expression = _ALIASES.get(cron, cron)
    minute, hour = expression.split()[:2]
    _compile_expression(expression, cron)
    return _Compiled(
        expression=expression,
        zone=zoneinfo.ZoneInfo(timezone),
        fixed=not (minute.startswith("*") or hour.startswith("*")),
        walker=croniter(expression, datetime(2000, 1, 1)),
    )


def _compile_expression(expression: str, shown_as: str) -> None:
    """ScheduleError unless croniter reads `expression` and it matches some real date."""
    try:
        croniter(expression, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterBadDateError:
        raise _cron_error(
            f"{shown(shown_as)} never matches a real date (such as 30 February). Check the "
            "day-of-month and month fields"
        ) from None
    # croniter's parser raises its own errors, and ValueError/KeyError/IndexError on some
    # malformed fields: any of them means the expression cannot be used as typed.
    except (CroniterError, ValueError, KeyError, IndexError, OverflowError, TypeError) as exc:
        reason = " ".join(str(exc).split())[:_MAX_REASON_CHARS] or type(exc).__name__
        raise _cron_error(
            f"{shown(shown_as)} is not a valid cron expression (croniter: {reason}). Write the "
            f"five fields {_FIELDS}, {_EXAMPLE}"
        ) from None


def _quartz_advice(normalised: str, fields: list[str]) -> str:
    """The message for a 6- or 7-field expression: most are Quartz's (Databricks' format)."""
    text = (
        f"{shown(normalised)} has {len(fields)} fields; it looks like a Quartz cron expression "
        "(Databricks' format: seconds first, '?' for no day, an optional year). Polysync takes "
        f"five fields, {_FIELDS}"
    )
    seconds, minute, hour, day, month, weekday = fields[:6]
    year = fields[6] if len(fields) == 7 else "*"
    convertible = (
        seconds == "0"
        and year == "*"
        and not any(c.isdigit() for c in weekday)
        and "#" not in weekday
        and "L" not in weekday.upper()
    )
    if convertible:
        five = " ".join((minute, hour, day.replace("?", "*"), month, weekday.replace("?", "*")))
        return f"{text}: {five!r}"
    return (
        f"{text}. Drop the seconds and year fields; note that Quartz numbers days of the week "
        "1-7 from Sunday, cron 0-6 from Sunday"
    )


def _cron_error(reason: str) -> ScheduleError:
    return ScheduleError(f"The schedule's cron expression {reason}.", field="cron")


def _zone_error(reason: str) -> ScheduleError:
    return ScheduleError(f"The schedule's time zone {reason}.", field="timezone")


def _check_instant(value: object, field: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise ScheduleError(
            f"The schedule's {field} must be a date and time, not {type(value).__name__}.",
            field=field,
        )
    if value.utcoffset() is None:
        raise ScheduleError(
            f"The schedule's {field} ({value.isoformat()}) has no time zone. Give it with a UTC "
            "offset, e.g. 2026-01-01T00:00:00+00:00.",
            field=field,
        )
    return value.astimezone(UTC)


def _aware(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, not {shown(value)}")
    return value.astimezone(UTC)


def _fires_within(schedule: Schedule, after: datetime) -> Iterator[datetime]:
    compiled = _compile(schedule.cron, schedule.timezone)
    if schedule.starts_at is not None:
        after = max(after, _just_before(schedule.starts_at))
    for fire in _instants_after(compiled, after):
        if schedule.ends_at is not None and fire > schedule.ends_at:
            return
        yield fire


def _just_before(moment: datetime) -> datetime:
    """The instant before `moment`, so that "strictly after" includes `moment` itself."""
    return moment if moment == datetime.min.replace(tzinfo=UTC) else moment - _TICK


def _between(compiled: _Compiled, low: datetime, high: datetime) -> Iterator[datetime]:
    """Fire times in (low, high]."""
    for fire in _instants_after(compiled, low):
        if fire > high:
            return
        yield fire


def _last(compiled: _Compiled, low: datetime, high: datetime, keep: int) -> tuple[datetime, ...]:
    """The latest `keep` fire times in (low, high], oldest first, found in widening windows
    back from `high` so a long outage of an every-minute schedule is not walked minute by
    minute from its start."""
    window = timedelta(hours=1)
    while True:
        start = max(low, high - window)
        fires = tuple(_between(compiled, start, high))
        if len(fires) >= keep or start == low:
            return fires[-keep:]
        window *= 4


def _instants_after(compiled: _Compiled, after: datetime) -> Iterator[datetime]:
    """Every fire instant strictly after `after`, ascending, each once (UTC).

    croniter walks wall-clock times in order; one wall-clock time maps to no, one or two
    instants (`_instants`), and the second occurrence of a repeated hour comes after later
    wall-clock times' first occurrences, so instants wait in a heap until no later wall-clock
    time can map before them (`_instants` returns that lower bound).
    """
    zone = compiled.zone
    offsets = set()
    for days in (-1, 0, 1):
        try:
            offsets.add((after + days * _DAY).astimezone(zone).utcoffset() or timedelta(0))
        except OverflowError:
            continue  # within a day of datetime's limits
    if not offsets:
        return
    lowest = min(offsets)
    # croniter answers wall-clock times strictly after `start`. Near an offset change an
    # earlier wall-clock time may still map after `after` (the repeated hour): start lower.
    margin = timedelta(minutes=1) if len(offsets) > 1 else timedelta(0)
    try:
        start = (after + lowest).replace(tzinfo=None) - margin
    except OverflowError:
        if lowest > timedelta(0):
            return  # past the last representable wall-clock time
        start = datetime.min
    walker = compiled.walk_from(start)
    pending: list[datetime] = []
    last = after
    while True:
        try:
            local = walker.get_next(datetime)
        except (CroniterBadDateError, OverflowError, ValueError):
            break  # no more matches before croniter's horizon, or the end of datetime
        try:
            lower_bound, instants = _instants(local, compiled)
        except OverflowError:
            break
        for instant in instants:
            heapq.heappush(pending, instant)
        # No later wall-clock time maps before `lower_bound`: whatever waits up to it is next.
        # In the common case that is this time's one instant, yielded after one croniter step.
        while pending and pending[0] <= lower_bound:
            instant = heapq.heappop(pending)
            if instant > last:
                last = instant
                yield instant
    while pending:
        instant = heapq.heappop(pending)
        if instant > last:
            last = instant
            yield instant


def _instants(local: datetime, compiled: _Compiled) -> tuple[datetime, tuple[datetime, ...]]:
    """(a lower bound of every later wall-clock time's instants, this time's fire instants)."""
    first = local.replace(tzinfo=compiled.zone, fold=0).astimezone(UTC)
    second = local.replace(tzinfo=compiled.zone, fold=1).astimezone(UTC)
    if first == second:
        return first, (first,)
    if first < second:  # the repeated hour: zoneinfo's fold=0 is the earlier occurrence
        return first, (first,) if compiled.fixed else (first, second)
    # In the gap, fold=0 reads the time with the offset before the change (an instant after the
    # gap) and fold=1 with the offset after it (an instant before): the change lies between.
    change = _transition(second, first, compiled.zone)
    return change, (change,) if compiled.fixed else ()


def _transition(before: datetime, after: datetime, zone: zoneinfo.ZoneInfo) -> datetime:
    """The first instant in (before, after] whose UTC offset is `after`'s: when clocks jumped."""
    target = after.astimezone(zone).utcoffset()
    low_s, high_s = int(before.timestamp()), int(after.timestamp())
    while high_s - low_s > 1:
        middle_s = (low_s + high_s) // 2
        if datetime.fromtimestamp(middle_s, zone).utcoffset() == target:
            high_s = middle_s
        else:
            low_s = middle_s
    return datetime.fromtimestamp(high_s, UTC)
