"""Schedules: fire times across DST, previews, misfire policies and validation."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from itertools import pairwise
from typing import TypeVar
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polysync.errors import ScheduleError
from polysync.tasks.schedule import (
    MAX_COUNTED_MISSES,
    MAX_PREVIEW,
    MisfirePolicy,
    Schedule,
    check_cron,
    check_timezone,
    due_fires,
    misfire_message,
    next_fire_time,
    next_fire_times,
)

T = TypeVar("T")
LONDON = ZoneInfo("Europe/London")
SYDNEY = ZoneInfo("Australia/Sydney")


def at(*args: int, tz: ZoneInfo | timezone = UTC) -> datetime:
    return datetime(*args, tzinfo=tz)  # type: ignore[misc]


def fires_between(schedule: Schedule, start: datetime, end: datetime) -> list[datetime]:
    times = [t for t in next_fire_times(schedule, start, MAX_PREVIEW) if t <= end]
    assert len(times) < MAX_PREVIEW, "widen the preview: the window holds more fire times"
    return times


def local_dates(schedule: Schedule, times: list[datetime]) -> list[date]:
    return [t.astimezone(schedule.zone).date() for t in times]


# --- Simple rhythms --------------------------------------------------------------------------


def test_every_minute_fires_each_minute_strictly_after_the_given_time() -> None:
    schedule = Schedule("* * * * *")
    times = next_fire_times(schedule, at(2026, 1, 1, 0, 0, 30), 3)
    assert times == (at(2026, 1, 1, 0, 1), at(2026, 1, 1, 0, 2), at(2026, 1, 1, 0, 3))
    # Exactly on a fire time: that time is not "after" it.
    assert next_fire_times(schedule, at(2026, 1, 1, 0, 1), 1) == (at(2026, 1, 1, 0, 2),)


def test_hourly_and_aliases() -> None:
    assert next_fire_times(Schedule("0 * * * *"), at(2026, 1, 1, 10, 5), 2) == (
        at(2026, 1, 1, 11),
        at(2026, 1, 1, 12),
    )
    assert Schedule(" @HOURLY ").cron == "@hourly"
    assert not Schedule("@hourly").is_fixed_time  # follows real time through DST
    assert Schedule("@daily").is_fixed_time
    assert next_fire_times(Schedule("@daily"), at(2026, 1, 1, 10), 1) == (at(2026, 1, 2),)


def test_results_are_utc_whatever_zone_after_is_given_in() -> None:
    schedule = Schedule("0 9 * * *", "America/New_York")
    (fire,) = next_fire_times(schedule, at(2026, 1, 1, 12, tz=LONDON), 1)
    assert fire.tzinfo is UTC
    assert fire == at(2026, 1, 1, 14)  # 09:00 EST


def test_whitespace_is_normalised() -> None:
    assert Schedule("  0\t2  * *   *\n").cron == "0 2 * * *"


# --- DST: the proof ------------------------------------------------------------------

# (zone, expression, the day of the change, the wall-clock times of that day's fires, local)
DST_CASES = [
    # London: clocks go forward 01:00 GMT -> 02:00 BST on 29 March 2026 (01:xx does not exist).
    ("Europe/London", "30 1 * * *", date(2026, 3, 29), ["02:00+01:00"]),
    ("Europe/London", "0 2 * * *", date(2026, 3, 29), ["02:00+01:00"]),
    # London: back 02:00 BST -> 01:00 GMT on 25 October 2026 (01:xx happens twice).
    ("Europe/London", "30 1 * * *", date(2026, 10, 25), ["01:30+01:00"]),
    ("Europe/London", "0 2 * * *", date(2026, 10, 25), ["02:00+00:00"]),
    # Sydney: back 03:00 AEDT -> 02:00 AEST on 5 April 2026 (02:xx happens twice).
    ("Australia/Sydney", "0 2 * * *", date(2026, 4, 5), ["02:00+11:00"]),
    ("Australia/Sydney", "30 1 * * *", date(2026, 4, 5), ["01:30+11:00"]),
    # Sydney: forward 02:00 AEST -> 03:00 AEDT on 4 October 2026 (02:xx does not exist).
    ("Australia/Sydney", "0 2 * * *", date(2026, 10, 4), ["03:00+11:00"]),
    ("Australia/Sydney", "30 1 * * *", date(2026, 10, 4), ["01:30+10:00"]),
]


@pytest.mark.parametrize(("zone", "cron", "day", "expected"), DST_CASES)
def test_fixed_time_fires_once_a_day_across_dst(
    zone: str, cron: str, day: date, expected: list[str]
) -> None:
    schedule = Schedule(cron, zone)
    tz = ZoneInfo(zone)
    start = datetime.combine(day - timedelta(days=3), datetime.min.time(), tz)
    end = datetime.combine(day + timedelta(days=3), datetime.min.time(), tz)
    times = fires_between(schedule, start, end)
    days = local_dates(schedule, times)
    # One fire on each of the six days: no double fire, no skipped day.
    assert days == [day + timedelta(days=offset) for offset in range(-3, 3)]
    on_the_day = [t.astimezone(tz) for t in times if t.astimezone(tz).date() == day]
    assert [t.isoformat()[11:16] + t.isoformat()[19:] for t in on_the_day] == expected
    assert times == sorted(set(times))


def test_every_minute_follows_real_time_through_both_london_changes() -> None:
    schedule = Schedule("* * * * *", "Europe/London")
    for change in (at(2026, 3, 29, 1), at(2026, 10, 25, 1)):  # both changes happen at 01:00 UTC
        times = next_fire_times(schedule, change - timedelta(minutes=90), 180)
        assert all(b - a == timedelta(minutes=1) for a, b in pairwise(times))
        assert times[0] == change - timedelta(minutes=89)


def test_hourly_fires_every_real_hour_in_the_repeated_hour_and_none_in_the_gap() -> None:
    schedule = Schedule("0 * * * *", "Europe/London")
    autumn = next_fire_times(schedule, at(2026, 10, 24, 22, 30), 5)
    assert autumn == tuple(at(2026, 10, 24, 23) + timedelta(hours=h) for h in range(5))
    local = [t.astimezone(LONDON).strftime("%H:%M%z") for t in autumn]
    assert local == ["00:00+0100", "01:00+0100", "01:00+0000", "02:00+0000", "03:00+0000"]
    spring = next_fire_times(schedule, at(2026, 3, 28, 22, 30), 4)
    assert spring == tuple(at(2026, 3, 28, 23) + timedelta(hours=h) for h in range(4))
    local = [t.astimezone(LONDON).strftime("%H:%M%z") for t in spring]
    assert local == ["23:00+0000", "00:00+0000", "02:00+0100", "03:00+0100"]


def test_wildcard_hour_with_a_step_also_follows_real_time() -> None:
    schedule = Schedule("*/20 * * * *", "Europe/London")
    times = next_fire_times(schedule, at(2026, 10, 24, 23, 50), 8)
    assert all(b - a == timedelta(minutes=20) for a, b in pairwise(times))


def test_two_fixed_times_in_the_gap_fire_once_at_the_change() -> None:
    schedule = Schedule("15,45 1 * * *", "Europe/London")
    times = fires_between(schedule, at(2026, 3, 28, 12), at(2026, 3, 30, 12))
    assert times == [at(2026, 3, 29, 1), at(2026, 3, 30, 0, 15), at(2026, 3, 30, 0, 45)]


def test_half_hour_dst_zone() -> None:
    # Lord Howe Island moves its clocks by 30 minutes: 02:00 -> 02:30 on 4 October 2026.
    schedule = Schedule("15 2 * * *", "Australia/Lord_Howe")
    times = next_fire_times(schedule, at(2026, 10, 2, 12), 3)
    local = [t.astimezone(schedule.zone).isoformat() for t in times]
    assert local == [
        "2026-10-03T02:15:00+10:30",
        "2026-10-04T02:30:00+11:00",
        "2026-10-05T02:15:00+11:00",
    ]


def test_midnight_changes_in_santiago() -> None:
    # Chile moves its clocks at midnight: 6 Sep 2026 00:00 -04 -> 01:00 -03 (midnight never
    # happens), 5 Apr 2026 00:00 -03 -> 4 Apr 23:00 -04 (23:xx on 4 April happens twice).
    midnight = Schedule("0 0 * * *", "America/Santiago")
    spring = next_fire_times(midnight, at(2026, 9, 4, 12), 3)
    assert [t.astimezone(midnight.zone).isoformat() for t in spring] == [
        "2026-09-05T00:00:00-04:00",
        "2026-09-06T01:00:00-03:00",
        "2026-09-07T00:00:00-03:00",
    ]
    late = Schedule("30 23 * * *", "America/Santiago")
    autumn = next_fire_times(late, at(2026, 4, 3, 12), 3)
    assert [t.astimezone(late.zone).isoformat() for t in autumn] == [
        "2026-04-03T23:30:00-03:00",
        "2026-04-04T23:30:00-03:00",
        "2026-04-05T23:30:00-04:00",
    ]


def test_preview_is_strictly_increasing_in_any_zone_and_expression() -> None:
    for zone in ("Europe/London", "Australia/Sydney", "America/Santiago", "Asia/Kolkata"):
        for cron in ("*/7 * * * *", "30 0-3 * * *", "0 */5 * * *", "59 23 L * *"):
            times = next_fire_times(Schedule(cron, zone), at(2026, 3, 20), 300)
            assert list(times) == sorted(set(times))


# --- Start, end, pause -----------------------------------------------------------------------


def test_start_and_end_are_inclusive() -> None:
    schedule = Schedule("0 * * * *", starts_at=at(2026, 1, 1, 3), ends_at=at(2026, 1, 1, 5))
    assert next_fire_times(schedule, at(2026, 1, 1), 10) == (
        at(2026, 1, 1, 3),
        at(2026, 1, 1, 4),
        at(2026, 1, 1, 5),
    )
    assert next_fire_time(schedule, at(2026, 1, 1, 5)) is None


def test_paused_schedule_previews_but_has_no_next_fire() -> None:
    schedule = Schedule("0 * * * *", paused=True)
    assert next_fire_time(schedule, at(2026, 1, 1)) is None
    assert next_fire_times(schedule, at(2026, 1, 1), 1) == (at(2026, 1, 1, 1),)


def test_start_and_end_are_stored_in_utc() -> None:
    schedule = Schedule("* * * * *", starts_at=at(2026, 6, 1, 9, tz=LONDON))
    assert schedule.starts_at == at(2026, 6, 1, 8)
    assert schedule.starts_at is not None
    assert schedule.starts_at.tzinfo is UTC


# --- Misfires: an engine down for 3 h ---------------------------------------------------------

DOWN_FROM = at(2026, 5, 1, 1, 0)  # last fire handled before the outage
BACK_AT = at(2026, 5, 1, 4, 0, 20)  # the engine comes back 3 h later


MISFIRE_OUTCOMES = {
    MisfirePolicy.SKIP: "the misfire policy is skip: none of them runs.",
    MisfirePolicy.RUN_LATEST: "the misfire policy is run-latest, and an on-time fire is the latest.",
    MisfirePolicy.RUN_ALL: "the misfire policy is run-all with a cap of 3: the latest 3 run.",
}


@pytest.mark.parametrize(
    ("policy", "expected_runs"),
    [
        (MisfirePolicy.SKIP, []),
        # The on-time 04:00 fire is the latest: it covers the misses.
        (MisfirePolicy.RUN_LATEST, []),
        (
            MisfirePolicy.RUN_ALL,
            [at(2026, 5, 1, 2, 30), at(2026, 5, 1, 3, 0), at(2026, 5, 1, 3, 30)],
        ),
    ],
)
def test_misfire_policies_after_three_hours_down(
    policy: MisfirePolicy, expected_runs: list[datetime]
) -> None:
    schedule = Schedule("*/30 * * * *", misfire_policy=policy, misfire_cap=3)
    due = due_fires(schedule, DOWN_FROM, BACK_AT)
    # 01:30, 02:00, 02:30, 03:00, 03:30 were missed; 04:00 (20 s ago) is on time.
    assert due.fires == (*expected_runs, at(2026, 5, 1, 4, 0))
    assert (due.missed, due.missed_exact) == (5, True)
    assert due.dropped == 5 - len(expected_runs)
    assert (due.first_missed, due.last_missed) == (at(2026, 5, 1, 1, 30), at(2026, 5, 1, 3, 30))
    assert due.last_fired_for == at(2026, 5, 1, 4, 0)
    assert due.next_fire == at(2026, 5, 1, 4, 30)
    assert misfire_message(schedule, due) == (
        "Missed 5 fire times (2026-05-01 01:30 UTC to 2026-05-01 03:30 UTC) while no engine ran; "
        + MISFIRE_OUTCOMES[policy]
    )
    # Asking again with the stored watermark fires nothing more.
    again = due_fires(schedule, due.last_fired_for, BACK_AT)
    assert (again.fires, again.missed) == ((), 0)


def test_run_latest_runs_the_latest_missed_when_nothing_is_on_time() -> None:
    schedule = Schedule("0 2 * * *", misfire_policy=MisfirePolicy.RUN_LATEST)
    due = due_fires(schedule, at(2026, 5, 1, 0), at(2026, 5, 1, 4))
    assert due.fires == (at(2026, 5, 1, 2),)
    assert (due.missed, due.dropped, due.last_fired_for) == (1, 0, at(2026, 5, 1, 2))
    assert misfire_message(schedule, due) == (
        "Missed 1 fire time (2026-05-01 02:00 UTC) while no engine ran; the misfire policy is "
        "run-latest: the latest one runs."
    )
    assert (
        misfire_message(schedule, due_fires(schedule, at(2026, 5, 1, 2), at(2026, 5, 1, 3))) is None
    )


def test_run_latest_with_an_on_time_fire_drops_the_misses() -> None:
    schedule = Schedule("* * * * *", misfire_policy=MisfirePolicy.RUN_LATEST)
    due = due_fires(schedule, DOWN_FROM, BACK_AT)
    assert due.fires == (at(2026, 5, 1, 4, 0),)
    assert (due.missed, due.dropped) == (179, 179)


def test_run_all_keeps_the_latest_cap_fires_oldest_first() -> None:
    schedule = Schedule("* * * * *", misfire_policy=MisfirePolicy.RUN_ALL, misfire_cap=4)
    due = due_fires(schedule, DOWN_FROM, BACK_AT)
    assert due.fires == tuple(at(2026, 5, 1, 3, 56) + timedelta(minutes=m) for m in range(5))
    assert (due.missed, due.dropped) == (179, 175)


def test_a_slow_engine_within_grace_never_misfires() -> None:
    schedule = Schedule("* * * * *", misfire_policy=MisfirePolicy.SKIP)
    due = due_fires(schedule, at(2026, 5, 1, 0, 0), at(2026, 5, 1, 0, 1, 59), grace_s=120)
    assert due.fires == (at(2026, 5, 1, 0, 1),)
    assert due.missed == 0


def test_no_fire_before_its_time_and_none_twice() -> None:
    schedule = Schedule("0 2 * * *")
    before = due_fires(schedule, at(2026, 5, 1, 1), at(2026, 5, 1, 1, 59, 59))
    assert (before.fires, before.last_fired_for) == ((), at(2026, 5, 1, 1))
    on_time = due_fires(schedule, before.last_fired_for, at(2026, 5, 1, 2, 0, 1))
    assert on_time.fires == (at(2026, 5, 1, 2),)
    assert on_time.next_fire == at(2026, 5, 2, 2)
    later = due_fires(schedule, on_time.last_fired_for, at(2026, 5, 1, 2, 0, 5))
    assert (later.fires, later.next_fire) == ((), at(2026, 5, 2, 2))


def test_a_watermark_ahead_of_this_engines_clock_fires_nothing() -> None:
    # Another engine, its clock 2 minutes ahead, already fired 02:00.
    schedule = Schedule("0 * * * *")
    due = due_fires(schedule, at(2026, 5, 1, 2), at(2026, 5, 1, 1, 58))
    assert (due.fires, due.last_fired_for, due.next_fire) == (
        (),
        at(2026, 5, 1, 2),
        at(2026, 5, 1, 3),
    )


def test_a_year_long_outage_of_an_every_minute_schedule_is_bounded() -> None:
    schedule = Schedule("* * * * *", misfire_policy=MisfirePolicy.RUN_ALL, misfire_cap=2)
    due = due_fires(schedule, at(2025, 5, 1), at(2026, 5, 1, 0, 0, 30))
    assert due.fires == (at(2026, 4, 30, 23, 58), at(2026, 4, 30, 23, 59), at(2026, 5, 1))
    assert (due.missed, due.missed_exact) == (MAX_COUNTED_MISSES, False)
    assert due.first_missed == at(2025, 5, 1, 0, 1)
    assert due.next_fire == at(2026, 5, 1, 0, 1)
    message = misfire_message(Schedule("* * * * *", "Europe/London"), due)
    assert message is not None
    assert message.startswith("Missed at least 10,000 fire times (2025-05-01 01:01 BST to ")


def test_paused_schedule_fires_nothing_and_moves_its_watermark() -> None:
    schedule = Schedule("* * * * *", paused=True)
    due = due_fires(schedule, at(2026, 5, 1), at(2026, 5, 1, 3))
    assert (due.fires, due.missed, due.last_fired_for) == ((), 0, at(2026, 5, 1, 3))
    assert due.next_fire is None


def test_misfires_respect_start_and_end() -> None:
    schedule = Schedule(
        "0 * * * *",
        starts_at=at(2026, 5, 1, 2),
        ends_at=at(2026, 5, 1, 3),
        misfire_policy=MisfirePolicy.RUN_ALL,
    )
    due = due_fires(schedule, at(2026, 5, 1), at(2026, 5, 1, 9))
    assert (due.fires, due.next_fire) == ((at(2026, 5, 1, 2), at(2026, 5, 1, 3)), None)
    before = due_fires(schedule, at(2026, 5, 1), at(2026, 5, 1, 1, 30))
    assert (before.fires, before.next_fire) == ((), at(2026, 5, 1, 2))
    edge = due_fires(schedule, at(2026, 5, 1), at(2026, 5, 1, 2, 30))
    assert (edge.fires, edge.next_fire) == ((at(2026, 5, 1, 2),), at(2026, 5, 1, 3))


def test_dst_change_during_an_outage_counts_each_real_fire_once() -> None:
    schedule = Schedule("30 1 * * *", "Europe/London", misfire_policy=MisfirePolicy.RUN_ALL)
    due = due_fires(schedule, at(2026, 10, 24, 12), at(2026, 10, 26, 12))
    assert due.fires == (at(2026, 10, 25, 0, 30), at(2026, 10, 26, 1, 30))


def test_naive_datetimes_are_refused() -> None:
    schedule = Schedule("* * * * *")
    with pytest.raises(ValueError, match="now must be a timezone-aware datetime"):
        due_fires(schedule, at(2026, 1, 1), datetime(2026, 1, 1, 1))
    with pytest.raises(ValueError, match="n must be a whole number from 1 to 1000"):
        next_fire_times(schedule, at(2026, 1, 1), 0)


# --- Validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cron", "says"),
    [
        ("", "is empty. Write the five fields minute hour day-of-month month day-of-week"),
        ("0 2 * *", "has 4 fields; a cron expression has five"),
        ("61 * * * *", "is not a valid cron expression (croniter:"),
        ("0 0 30 2 *", "never matches a real date (such as 30 February)"),
        ("0 0 2 * * ?", "looks like a Quartz cron expression"),
        ("0 0 2 ? * 2", "Quartz numbers days of the week 1-7 from Sunday"),
        ("H 2 * * *", "the minute field 'H' uses a hashed (H) or random (R) value"),
        ("0 R * * *", "the hour field 'R' uses a hashed (H) or random (R) value"),
        ("@reboot", "is not a known alias; use one of @yearly"),
        ("٣ 2 * * *", "contains '٣', which cron does not use"),
        ("0 2 * * *; rm -rf /", "contains ';', which cron does not use"),
        ("x" * 201, "is 201 characters long; the limit is 200"),
    ],
)
def test_bad_cron_is_refused_naming_the_field_and_the_fix(cron: str, says: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        Schedule(cron)
    assert caught.value.field == "cron"
    assert says in str(caught.value)
    assert str(caught.value).startswith("The schedule's cron expression")


def test_quartz_expression_gets_its_five_field_form() -> None:
    with pytest.raises(ScheduleError, match=r": '30 6 \* \* MON-FRI'\.$"):
        check_cron("0 30 6 ? * MON-FRI")


def test_names_l_w_and_hash_are_read() -> None:
    assert next_fire_times(Schedule("0 0 L * *"), at(2026, 2, 1), 1) == (at(2026, 2, 28),)
    assert next_fire_times(Schedule("0 9 * * MON#1"), at(2026, 2, 1), 1) == (at(2026, 2, 2, 9),)
    assert next_fire_times(Schedule("0 0 29 2 *"), at(2026, 1, 1), 1) == (at(2028, 2, 29),)


@pytest.mark.parametrize(
    ("zone", "says"),
    [
        ("europe/london", "use 'Europe/London'"),
        ("Europe/Londn", "Did you mean 'Europe/London'"),
        ("Mars/Olympus_Mons", "is not an IANA time zone name"),
        ("../../etc/passwd", "is not an IANA time zone name"),
        ("/usr/share/zoneinfo/UTC", "is not an IANA time zone name"),
        ("localtime", "is not an IANA time zone name"),
        ("   ", "is empty"),
        ("A" * 101, "is 101 characters long"),
    ],
)
def test_bad_time_zone_is_refused_with_a_fix(zone: str, says: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        Schedule("* * * * *", zone)
    assert caught.value.field == "timezone"
    assert says in str(caught.value)


def test_time_zone_is_trimmed() -> None:
    assert check_timezone(" Australia/Sydney ") == "Australia/Sydney"


def test_end_before_start_is_refused() -> None:
    with pytest.raises(ScheduleError, match=r"end .* is before its start") as caught:
        Schedule("* * * * *", starts_at=at(2026, 2, 1), ends_at=at(2026, 1, 1))
    assert caught.value.field == "ends_at"


def test_naive_start_and_bad_cap_and_policy_are_refused() -> None:
    with pytest.raises(ScheduleError, match="has no time zone") as caught:
        Schedule("* * * * *", starts_at=datetime(2026, 1, 1))
    assert caught.value.field == "starts_at"
    for cap in (0, 1001, True, 2.5):
        with pytest.raises(ScheduleError, match="misfire cap") as caught:
            Schedule("* * * * *", misfire_cap=cap)  # type: ignore[arg-type]
        assert caught.value.field == "misfire_cap"
    with pytest.raises(ScheduleError, match="is not one of skip, run-latest, run-all"):
        Schedule("* * * * *", misfire_policy="sometimes")  # type: ignore[arg-type]
    as_text = Schedule("* * * * *", misfire_policy="run-all")  # type: ignore[arg-type]
    assert as_text.misfire_policy is MisfirePolicy.RUN_ALL


def _outcome(function: Callable[[str], T], text: str) -> T | ScheduleError:
    try:
        return function(text)
    except ScheduleError as exc:
        return exc


_CRON_ALPHABET = st.sampled_from([*"0123456789*/,-?#LW @HR", "MON", "JAN", "SUN", "L"])


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=60), st.lists(_CRON_ALPHABET, max_size=20).map("".join)))
def test_hostile_cron_text_is_accepted_or_refused_never_crashes(text: str) -> None:
    result = _outcome(Schedule, text)
    if isinstance(result, ScheduleError):
        assert result.field == "cron"
        assert str(result).startswith("The schedule's cron expression")
        assert len(str(result)) < 700
    else:
        assert len(next_fire_times(result, at(2026, 1, 1), 2)) >= 1


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_hostile_zone_text_is_accepted_or_refused_never_crashes(text: str) -> None:
    result = _outcome(check_timezone, text)
    if isinstance(result, ScheduleError):
        assert result.field == "timezone"
    else:
        assert ZoneInfo(result).key == result


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(["Europe/London", "Australia/Sydney", "America/New_York", "UTC"]),
    st.sampled_from(["0 2 * * *", "30 1 * * *", "45 2 * * 0", "0 1,2 * * *"]),
    st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2030, 1, 1)),
)
def test_fixed_time_fires_at_most_once_per_local_day_and_time(
    zone: str, cron: str, start: datetime
) -> None:
    schedule = Schedule(cron, zone)
    times = next_fire_times(schedule, start.replace(tzinfo=UTC), 60)
    assert list(times) == sorted(set(times))
    days = [t.astimezone(schedule.zone).date() for t in times]
    per_day = 2 if "1,2" in cron else 1
    assert all(days.count(day) <= per_day for day in days)
    if cron.endswith("* * *"):  # daily: no day is skipped either
        first = days[0]
        assert sorted(set(days)) == [first + timedelta(days=i) for i in range(len(set(days)))]


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(["Europe/London", "Australia/Sydney", "America/Santiago", "UTC"]),
    st.sampled_from(["*/10 * * * *", "30 1 * * *", "0 * * * *", "15 2,3 * * *", "0 0 * * 0"]),
    st.datetimes(min_value=datetime(2026, 3, 25), max_value=datetime(2026, 4, 6)),
    st.lists(st.integers(1, 3 * 3600), min_size=1, max_size=40),
)
def test_ticking_due_fires_yields_exactly_the_preview(
    zone: str, cron: str, start: datetime, steps: list[int]
) -> None:
    schedule = Schedule(cron, zone, misfire_policy=MisfirePolicy.RUN_ALL, misfire_cap=1000)
    begin = start.replace(tzinfo=UTC)
    watermark, now, fired = begin, begin, []
    for step in steps:
        now += timedelta(seconds=step)
        due = due_fires(schedule, watermark, now)
        fired.extend(due.fires)
        watermark = due.last_fired_for
        assert due.next_fire is None or due.next_fire > now
    expected = [t for t in next_fire_times(schedule, begin, MAX_PREVIEW) if t <= now]
    assert fired == expected


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(["Europe/London", "America/New_York", "Pacific/Kiritimati", "UTC"]),
    st.sampled_from(["0 2 * * *", "* * * * *", "0 0 29 2 *"]),
    st.datetimes(timezones=st.just(UTC)),
    st.datetimes(timezones=st.just(UTC)),
    st.one_of(st.none(), st.datetimes(timezones=st.just(UTC))),
)
def test_any_instant_from_year_1_to_9999_is_handled(
    zone: str, cron: str, after: datetime, now: datetime, starts_at: datetime | None
) -> None:
    schedule = Schedule(cron, zone, starts_at=starts_at)
    times = next_fire_times(schedule, after, 3)
    assert all(t > after for t in times)
    assert list(times) == sorted(set(times))
    due = due_fires(schedule, after, now)
    assert all(after < t <= now for t in due.fires)
    assert due.next_fire is None or due.next_fire > now
