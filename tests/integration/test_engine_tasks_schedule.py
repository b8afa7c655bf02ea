"""The engine's Task scheduler on a manual clock and a real database (issue 12): fire times
through the engine across DST changes, misfires after an outage, and two engines on PostgreSQL
recording every fire exactly once. No dispatch here (slots 0): TaskRuns stay Queued."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from polysync.clock import ManualClock
from polysync.config import Settings
from polysync.engine.engine import EngineSettings
from polysync.engine.ports import TaskRunFilter
from polysync.engine.scheduler import SchedulerSettings
from polysync.services import Services
from polysync.tasks.schedule import Schedule, next_fire_times
from polysync.tasks.states import TaskRunStatus, TriggerType
from tests.contract.test_store import (
    PG_URL_VARIABLE,
    fresh_postgres_database,
    imported,
    new_platform,
)

QUIET = SchedulerSettings(slots=0, refresh_s=86_400, sweep_s=86_400)


async def open_at(url: str, home: Path, start: datetime) -> Services:
    settings = Settings(home=home, database_url=url)
    return await Services.open(
        settings,
        clock=ManualClock(start.timestamp()),
        engine_settings=EngineSettings(scheduler=QUIET),
    )


@pytest.fixture
async def make(tmp_path: Path) -> AsyncIterator[object]:
    opened: list[Services] = []

    async def factory(start: datetime) -> Services:
        services = await open_at(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}", tmp_path, start)
        opened.append(services)
        platform = await services.store.add_platform(new_platform(), services.now())
        await services.store.upsert_job(platform.id, imported(), services.now())
        return services

    yield factory
    for services in opened:
        await services.aclose()


async def run_until(services: Services, end: datetime) -> None:
    """Step the engine as it would run: sleeping until its next work, on the manual clock."""
    clock = services.clock
    assert isinstance(clock, ManualClock)
    while True:
        await services.engine.step()
        wait_s = services.engine.tasks.next_work_in_s()
        if clock.now() + wait_s > end.timestamp():
            clock.advance(end.timestamp() - clock.now())
            await services.engine.step()
            return
        clock.advance(max(wait_s, 0.001))


async def fires_of(services: Services, name: str) -> list[datetime]:
    task = await services.tasks.get(name)
    runs = await services.store.list_task_runs(TaskRunFilter(task_id=task.id, limit=1000))
    assert all(r.trigger is TriggerType.SCHEDULE for r in runs)
    return sorted(r.scheduled_for for r in runs)


def z(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


async def test_every_minute_and_hourly_fire_once_each_with_no_lag(make: object) -> None:
    start = z(2026, 5, 1, 0, 0, 30)
    services = await make(start)  # type: ignore[operator]
    await services.tasks.create({"name": "minutely", "job": 1, "schedules": ["* * * * *"]})
    await services.tasks.create({"name": "hourly", "job": 1, "schedules": ["@hourly"]})
    lags: list[float] = []
    end = z(2026, 5, 1, 6, 0, 30)
    clock = services.clock
    while clock.now() < end.timestamp():
        await services.engine.step()
        lags += services.engine.last_tasks_report.lags_s
        clock.advance(min(services.engine.tasks.next_work_in_s(), end.timestamp() - clock.now()))
    await services.engine.step()
    lags += services.engine.last_tasks_report.lags_s
    assert await fires_of(services, "minutely") == [
        z(2026, 5, 1, 0, 1) + timedelta(minutes=m) for m in range(360)
    ]
    assert await fires_of(services, "hourly") == [z(2026, 5, 1, h) for h in range(1, 7)]
    assert lags == [0.0] * (360 + 6)  # woken exactly at each fire time


@pytest.mark.parametrize(
    ("zone", "start", "expected"),
    [
        # London: clocks go forward 29 Mar 2026 01:00 UTC, back 25 Oct 2026 01:00 UTC.
        (
            "Europe/London",
            z(2026, 3, 27, 12),
            [z(2026, 3, 28, 2), z(2026, 3, 29, 1), z(2026, 3, 30, 1), z(2026, 3, 31, 1)],
        ),
        (
            "Europe/London",
            z(2026, 10, 23, 12),
            [z(2026, 10, 24, 1), z(2026, 10, 25, 2), z(2026, 10, 26, 2), z(2026, 10, 27, 2)],
        ),
        # Sydney: back 5 Apr 2026 (03:00 AEDT -> 02:00 AEST: 02:00 fires once, at AEDT),
        # forward 4 Oct 2026 (02:00 AEST -> 03:00 AEDT: 02:00 never exists, fires at 03:00).
        (
            "Australia/Sydney",
            z(2026, 4, 2, 12),
            [z(2026, 4, 2, 15), z(2026, 4, 3, 15), z(2026, 4, 4, 15), z(2026, 4, 5, 16)],
        ),
        (
            "Australia/Sydney",
            z(2026, 10, 1, 12),
            [z(2026, 10, 1, 16), z(2026, 10, 2, 16), z(2026, 10, 3, 16), z(2026, 10, 4, 15)],
        ),
    ],
)
async def test_two_am_daily_across_both_dst_changes_no_double_fire_no_skipped_day(
    make: object, zone: str, start: datetime, expected: list[datetime]
) -> None:
    services = await make(start)  # type: ignore[operator]
    await services.tasks.create(
        {"name": "nightly", "job": 1, "schedules": [{"cron": "0 2 * * *", "timezone": zone}]}
    )
    await run_until(services, start + timedelta(days=4))
    assert await fires_of(services, "nightly") == expected


async def test_misfire_policies_after_the_engine_was_down_three_hours(make: object) -> None:
    start = z(2026, 5, 1, 0, 0, 10)
    services = await make(start)  # type: ignore[operator]
    for name, policy in (("skip", "skip"), ("latest", "run-latest"), ("all", "run-all")):
        await services.tasks.create(
            {
                "name": name,
                "job": 1,
                "schedules": [{"cron": "*/15 * * * *", "misfire_policy": policy, "misfire_cap": 5}],
            }
        )
    await services.engine.step()
    services.clock.advance(3 * 3600)  # down from 00:00:10 to 03:00:10: 00:15 ... 03:00
    await services.engine.step()
    assert await fires_of(services, "skip") == [z(2026, 5, 1, 3)]  # 03:00 is on time
    assert await fires_of(services, "latest") == [z(2026, 5, 1, 3)]
    # The 11 missed (00:15 ... 02:45): the latest 5 run, and 03:00 on time.
    assert await fires_of(services, "all") == [
        z(2026, 5, 1, 1, 45),
        z(2026, 5, 1, 2, 0),
        z(2026, 5, 1, 2, 15),
        z(2026, 5, 1, 2, 30),
        z(2026, 5, 1, 2, 45),
        z(2026, 5, 1, 3, 0),
    ]
    runs = await services.tasks.list_runs("all")
    oldest = min(runs, key=lambda r: r.scheduled_for)
    assert oldest.message.startswith("Missed 11 fire times")
    assert "run-all with a cap of 5" in oldest.message
    # Afterwards each fires on time again, once.
    await run_until(services, z(2026, 5, 1, 3, 30, 10))
    for name in ("skip", "latest", "all"):
        assert (await fires_of(services, name))[-2:] == [z(2026, 5, 1, 3, 15), z(2026, 5, 1, 3, 30)]


async def test_a_paused_task_does_not_fire_and_resuming_drops_the_times_passed(
    make: object,
) -> None:
    start = z(2026, 5, 1, 0, 0, 10)
    services = await make(start)  # type: ignore[operator]
    await services.tasks.create({"name": "t", "job": 1, "schedules": ["*/10 * * * *"]})
    await services.tasks.pause("t")
    await run_until(services, z(2026, 5, 1, 1, 0, 10))
    assert await fires_of(services, "t") == []
    await services.tasks.resume("t")
    await run_until(services, z(2026, 5, 1, 1, 20, 10))
    assert await fires_of(services, "t") == [z(2026, 5, 1, 1, 10), z(2026, 5, 1, 1, 20)]
    queued = await services.tasks.list_runs("t", statuses=["queued"])
    assert {r.status for r in queued} == {TaskRunStatus.QUEUED}


CRONS = ("* * * * *", "*/5 * * * *", "0 * * * *", "*/7 * * * *", "15,45 * * * *", "30 1 * * *")
ZONES = ("UTC", "Europe/London", "Australia/Sydney", "America/New_York", "Asia/Kolkata")


@pytest.mark.postgres
async def test_two_engines_on_postgresql_record_every_fire_exactly_once(tmp_path: Path) -> None:
    server = os.environ.get(PG_URL_VARIABLE)
    if not server:
        pytest.skip(f"{PG_URL_VARIABLE} is not set")
    # London's autumn change falls inside: 25 Oct 2026 00:00 - 03:00 UTC.
    start = z(2026, 10, 24, 23, 30, 5)
    end = z(2026, 10, 25, 2, 30, 5)
    async with fresh_postgres_database(server) as url:
        first = await open_at(url, tmp_path, start)
        second = await open_at(url, tmp_path, start)
        second.clock = first.clock  # one emulated time for both engines
        second.engine.clock = first.clock
        second.engine.tasks.clock = first.clock
        try:
            platform = await first.store.add_platform(new_platform(), first.now())
            await first.store.upsert_job(platform.id, imported(), first.now())
            schedules: dict[str, Schedule] = {}
            for i in range(50):
                cron, zone = CRONS[i % len(CRONS)], ZONES[i % len(ZONES)]
                await first.tasks.create(
                    {"name": f"t{i}", "job": 1, "schedules": [{"cron": cron, "timezone": zone}]}
                )
                schedules[f"t{i}"] = Schedule(cron, zone)
            clock = first.clock
            assert isinstance(clock, ManualClock)
            recorded = {"first": 0, "second": 0}
            while clock.now() <= end.timestamp():
                await asyncio.gather(first.engine.step(), second.engine.step())
                recorded["first"] += len(first.engine.last_tasks_report.fired)
                recorded["second"] += len(second.engine.last_tasks_report.fired)
                clock.advance(30)
            counts = await first.store.count_task_runs()
            assert set(counts.values()) == {1}  # no (task, trigger, scheduled-for) twice
            ids = {t.name: t.id for t in await first.store.list_tasks()}
            expected = {
                (ids[name], "Schedule", fire)
                for name, schedule in schedules.items()
                for fire in next_fire_times(schedule, start, 1000)
                if fire <= end
            }
            assert set(counts) == expected
            assert recorded["first"] + recorded["second"] == len(expected)
        finally:
            await second.aclose()
            await first.aclose()


async def test_a_task_paused_by_another_process_stops_firing_before_the_engine_reloads(
    make: object,
) -> None:
    start = z(2026, 5, 1, 0, 0, 10)
    services = await make(start)  # type: ignore[operator]
    task = await services.tasks.create({"name": "t", "job": 1, "schedules": ["* * * * *"]})
    await run_until(services, z(2026, 5, 1, 0, 2, 10))
    assert await fires_of(services, "t") == [z(2026, 5, 1, 0, 1), z(2026, 5, 1, 0, 2)]
    # Another process pauses it: this engine is not told (its reload is a day away here).
    await services.store.set_task_paused(task.id, True, services.now())
    await run_until(services, z(2026, 5, 1, 0, 5, 10))
    assert await fires_of(services, "t") == [z(2026, 5, 1, 0, 1), z(2026, 5, 1, 0, 2)]
