"""Contention profiles under kill -9 (issue 13, D14): real engine processes on PostgreSQL.

Two `polysync engine` processes share one PostgreSQL database; the emulator is a subprocess (its
clock `--speed` times real time). Two platforms point at that one emulated workspace; both are
linked to a **global** concurrency profile "cap" (Max Concurrent 5, one counter shared by both
platforms, so the workspace itself must never hold more than 5 active runs) and a **global** rate
profile "pace" (token bucket, Limit 10 per `window_s` real seconds). Every run is queued at once
through `Services.execute` (Execute Now), alternating the platforms; meanwhile the engines are
killed with SIGKILL at random and restarted, and the harness samples the emulator's active runs
(`/emulator/health`) and its request log (`/emulator/requests`: the run-now requests' times).

The verdict (`ContentionReport.zero_counts`, every count must be zero): no sample with more than
Max Concurrent active runs, no window of `window_s` with more than Limit starts in Polysync's
record of them (`admitted_at`, what the rate profile counts), no run left unended, no run ending
other than Success or with one of the profile's own messages (queue timeout / queue full), no run
started twice in Databricks, no engine exiting on its own, no traceback in the engines' logs.

The run-now request log's figure (the starts as the workspace sees them) is reported, not
asserted: a run's start is counted from its admission until run-now is answered, then from the
answer (D14), so it holds as long as no run-now is left unsent for longer than a window - an
engine killed between the admission and the send leaves it so for its lease (`lease_s`, 3 s)
plus the takeover, which at a scaled window of a few seconds can be longer than the window.

Used by tests/acceptance/test_contention_chaos.py (bounded, in CI) and
benchmarks/contention_chaos.py (300 runs, figures).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from polysync.config import Settings
from polysync.domain.models import RunStatus
from polysync.domain.records import NewPlatform, RunFilter
from polysync.services import Services
from tests.acceptance.chaos import Worker, restart_exited, settle, tracebacks_in
from tests.acceptance.conftest import TOKEN, Emulator

TOKEN_VARIABLE = "POLYSYNC_CHAOS_TOKEN"
PLATFORMS = ("east", "west")
CAP, PACE = "cap", "pace"
# The profile's own messages (D14, polysync.domain.contention.judge), for either profile.
TIMED_OUT = re.compile(
    r"^Timed out waiting for contention profile '(cap|pace)' \(.+\): waited \d+ s, its Queue "
    r"Timeout Seconds is [\d.]+\.$"
)
REJECTED = re.compile(
    r"^Rejected: the queue of contention profile '(cap|pace)' is full \(\d+ waiting, Queue Size "
    r"Limit \d+; .+\)\. Execute it again later\.$"
)


@dataclass(frozen=True)
class ContentionChaosConfig:
    """The scenario's sizes; seconds are real seconds."""

    runs: int = 30
    max_concurrent: int = 5
    limit: int = 10
    window_s: float = 3.0
    run_duration_s: float = 20.0  # emulated seconds of each run (the emulator runs --speed x)
    kills: int = 2
    queue_timeout_s: float | None = None  # on "cap": the longest wait before a run fails
    queue_size_limit: int | None = None  # on "cap": a run finding this many waiting fails
    lease_s: float = 3.0
    profile_recheck_s: float = 0.5  # POLYSYNC_PROFILE_RECHECK_S of the engines (default 5)
    sample_every_s: float = 0.1
    settle_timeout_s: float = 600.0
    seed: int = 13


@dataclass
class ContentionReport:
    """What happened, and every count that must be zero."""

    runs: int = 0
    kills: int = 0
    samples: int = 0
    max_active: int = 0  # most active runs in the emulated workspace in any sample
    max_admitted_per_window: int = 0  # most admitted_at in any window_s (Polysync's record)
    max_run_now_per_window: int = 0  # most successful run-now requests in any window_s
    run_now_requests: int = 0  # successful run-now requests (re-sends after a kill included)
    run_now_refused_count: int = 0  # run-now requests answered other than 200 (then re-sent)
    run_now_refused: list[int] = field(default_factory=list)  # their statuses
    databricks_runs: int = 0
    succeeded: int = 0
    timed_out: int = 0
    rejected: int = 0
    drain_s: float = 0.0  # from the first Execute Now to the last run ended
    elapsed_s: float = 0.0
    over_cap: list[str] = field(default_factory=list)
    over_rate: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    wrong_end: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    unexpected_exits: list[str] = field(default_factory=list)
    tracebacks: list[str] = field(default_factory=list)

    def zero_counts(self) -> dict[str, int]:
        return {
            name: len(getattr(self, name))
            for name in (
                "over_cap",
                "over_rate",
                "stuck",
                "wrong_end",
                "duplicates",
                "unexpected_exits",
                "tracebacks",
            )
        }


def most_in_any_window(times_s: Sequence[float], window_s: float) -> int:
    """The most of `times_s` in any half-open window [t, t + window_s)."""
    ordered = sorted(times_s)
    best, low = 0, 0
    for high, t in enumerate(ordered):
        while ordered[low] <= t - window_s:
            low += 1
        best = max(best, high - low + 1)
    return best


class ContentionChaos:
    """The scenario; `run()` returns the report."""

    def __init__(
        self, emulator: Emulator, postgres_url: str, tmp: Path, config: ContentionChaosConfig
    ) -> None:
        self.emulator = emulator
        self.url = postgres_url
        self.tmp = tmp
        self.config = config
        self.rng = random.Random(config.seed)
        self.report = ContentionReport()
        self.workers = [
            Worker(name, ["engine"], self._env(), tmp) for name in ("engine-a", "engine-b")
        ]
        self.run_now: dict[tuple[float, float], float] = {}  # (time_s, duration_ms) -> time_s
        self.refused: dict[tuple[float, float], int] = {}  # run-now answered other than 200
        self.done = asyncio.Event()

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "POLYSYNC_HOME": str(self.tmp),
            "POLYSYNC_DATABASE_URL": self.url,
            "POLYSYNC_POLL_MIN_S": "0.2",
            "POLYSYNC_POLL_MAX_S": "1",
            "POLYSYNC_SWEEP_INTERVAL_S": "0.5",
            "POLYSYNC_LEASE_S": str(self.config.lease_s),
            "POLYSYNC_PROFILE_RECHECK_S": str(self.config.profile_recheck_s),
            "POLYSYNC_LOG_LEVEL": "WARNING",
            TOKEN_VARIABLE: TOKEN,
        }

    async def run(self) -> ContentionReport:
        started_s = time.monotonic()
        os.environ[TOKEN_VARIABLE] = TOKEN
        services = await Services.open(Settings(home=self.tmp, database_url=self.url))
        try:
            jobs = await self._prepare(services)
            queued_s = time.monotonic()
            for index in range(self.config.runs):
                await services.execute(jobs[index % len(jobs)], {})
            for worker in self.workers:  # every run queued first, as a backlog meets the engines
                worker.start()
            async with httpx.AsyncClient(base_url=self.emulator.url, timeout=10) as client:
                sampler = asyncio.ensure_future(self._sample(client))
                try:
                    await self._kill_while_running(services)
                    await self._settle(services)
                    self.report.drain_s = time.monotonic() - queued_s
                finally:
                    self.done.set()
                    await sampler
                await self._read_requests(client)
            await self._check(services)
        finally:
            for worker in self.workers:
                code = worker.stop()
                if code not in (0, None):
                    self.report.unexpected_exits.append(f"{worker.name} stopped with {code}")
            await services.aclose()
        self._scan_logs()
        self.report.elapsed_s = time.monotonic() - started_s
        return self.report

    async def _prepare(self, services: Services) -> list[Any]:
        seeded = self.emulator.post(
            "/emulator/jobs",
            {
                "name": "contention-chaos",
                "max_concurrent_runs": 1000,
                "tasks": [
                    {
                        "task_key": "load",
                        "emulator": {"duration_s": self.config.run_duration_s, "pending_s": 2},
                    }
                ],
            },
        )
        external_id = str(seeded["job_ids"][0])
        for name in PLATFORMS:
            await services.add_platform(
                NewPlatform(
                    name=name,
                    workspace_url=self.emulator.url,
                    auth={"method": "pat", "token": f"env:{TOKEN_VARIABLE}"},
                )
            )
            await services.import_jobs(name, [external_id])
        config = self.config
        cap: dict[str, Any] = {
            "name": CAP,
            "type": "concurrency",
            "scope": "global",
            "max_concurrent": config.max_concurrent,
        }
        if config.queue_timeout_s is not None:
            cap["queue_timeout_s"] = config.queue_timeout_s
        if config.queue_size_limit is not None:
            cap["queue_size_limit"] = config.queue_size_limit
        await services.profiles.create(cap, platforms=list(PLATFORMS))
        await services.profiles.create(
            {
                "name": PACE,
                "type": "rate",
                "scope": "global",
                "limit": config.limit,
                "window_s": config.window_s,
                "algorithm": "token_bucket",
            },
            platforms=list(PLATFORMS),
        )
        return [await services.get_job(external_id, platform=name) for name in PLATFORMS]

    async def _kill_while_running(self, services: Services) -> None:
        """`kills` SIGKILLs, each of a random engine at a random moment while runs are still
        starting (spread over the time the rate profile needs to admit them all)."""
        config = self.config
        expected_s = config.runs / config.limit * config.window_s
        moments = sorted(self.rng.uniform(0.1, 0.8) * expected_s for _ in range(config.kills))
        began = time.monotonic()
        for moment in moments:
            while time.monotonic() - began < moment:
                self._check_alive()
                await asyncio.sleep(0.1)
            if not await services.list_runs(RunFilter(active_only=True, limit=1)):
                return  # all ended already: nothing left to disturb
            worker = self.rng.choice(self.workers)
            worker.kill9()
            self.report.kills += 1
            await asyncio.sleep(self.rng.uniform(0, 1.0))
            worker.start()

    async def _sample(self, client: httpx.AsyncClient) -> None:
        """Until `done`: the emulator's active runs, and its run-now request log (read often:
        the log keeps only the latest requests)."""
        every = 0
        while not self.done.is_set():
            with contextlib.suppress(httpx.HTTPError):
                health = (await client.get("/emulator/health")).json()
                active = int(health["active_runs"])
                self.report.samples += 1
                self.report.max_active = max(self.report.max_active, active)
                if active > self.config.max_concurrent:
                    self.report.over_cap.append(f"{active} active at {health['now_ms']} ms")
                every += 1
                if every % 10 == 0:
                    await self._read_requests(client)
            await asyncio.sleep(self.config.sample_every_s)

    async def _read_requests(self, client: httpx.AsyncClient) -> None:
        answer = await client.get("/emulator/requests", params={"limit": 10_000})
        for request in answer.json()["requests"]:
            if request["path"].endswith("/jobs/run-now"):
                key = (float(request["time_s"]), float(request["duration_ms"]))
                if request["status"] == 200:
                    self.run_now[key] = float(request["time_s"])
                else:
                    self.refused[key] = int(request["status"])

    def _check_alive(self) -> None:
        restart_exited(self.workers, self.report.unexpected_exits)

    async def _settle(self, services: Services) -> None:
        await settle(
            services, self.workers, self.report.unexpected_exits, self.config.settle_timeout_s, 0.25
        )

    async def _check(self, services: Services) -> None:
        report, config = self.report, self.config
        runs = await services.list_runs(RunFilter(limit=100_000))
        report.runs = len(runs)
        admitted = [run.admitted_at.timestamp() for run in runs if run.admitted_at is not None]
        report.max_admitted_per_window = most_in_any_window(admitted, config.window_s)
        if report.max_admitted_per_window > config.limit:
            report.over_rate.append(
                f"{report.max_admitted_per_window} admitted within {config.window_s:g} s"
            )
        report.run_now_requests = len(self.run_now)
        report.run_now_refused = sorted(set(self.refused.values()))
        report.run_now_refused_count = len(self.refused)
        report.max_run_now_per_window = most_in_any_window(
            list(self.run_now.values()), config.window_s
        )
        databricks = self.emulator.runs()
        report.databricks_runs = len(databricks)
        by_token: dict[str | None, list[str]] = {}
        for entry in databricks:
            by_token.setdefault(entry["idempotency_token"], []).append(str(entry["run_id"]))
        for run in runs:
            where = f"run {run.id} ({run.status.value}: {run.message[:200]!r})"
            if not run.is_terminal:
                report.stuck.append(where)
                continue
            seen = by_token.get(run.idempotency_token, [])
            if run.status is RunStatus.SUCCESS:
                report.succeeded += 1
                if seen != [run.run_id]:
                    report.duplicates.append(f"{where}: Databricks runs {seen}")
            elif run.status is RunStatus.FAILED and TIMED_OUT.match(run.message):
                report.timed_out += 1
            elif run.status is RunStatus.FAILED and REJECTED.match(run.message):
                report.rejected += 1
            else:
                report.wrong_end.append(where)
            if run.status is not RunStatus.SUCCESS and seen:
                report.duplicates.append(f"{where}: failed unsent, yet Databricks runs {seen}")

    def _scan_logs(self) -> None:
        self.report.tracebacks.extend(tracebacks_in(self.tmp))


def lines(report: ContentionReport, config: ContentionChaosConfig) -> Iterator[str]:
    """The report as `name  value` rows (figures, then the counts that must be zero)."""
    w = f"{config.window_s:g} s"
    rows = [
        ("runs (2 platforms, 2 engines, PostgreSQL)", str(report.runs)),
        ("engines killed with -9", str(report.kills)),
        ("active-run samples", str(report.samples)),
        (f"max active in the workspace (cap {config.max_concurrent})", str(report.max_active)),
        (
            f"max admitted in any {w} window (limit {config.limit})",
            str(report.max_admitted_per_window),
        ),
        (f"max run-now requests in any {w} window", str(report.max_run_now_per_window)),
        ("run-now requests answered 200", str(report.run_now_requests)),
        (
            "run-now requests refused (statuses)",
            f"{report.run_now_refused_count} {report.run_now_refused}",
        ),
        ("runs in Databricks", str(report.databricks_runs)),
        ("ended Success", str(report.succeeded)),
        ("ended timed out (profile's message)", str(report.timed_out)),
        ("ended rejected (profile's message)", str(report.rejected)),
        ("drain time", f"{report.drain_s:.1f} s"),
        ("elapsed", f"{report.elapsed_s:.1f} s"),
    ]
    rows += [(f"{name} (must be 0)", str(count)) for name, count in report.zero_counts().items()]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        yield f"{name:<{width}}  {value}"
