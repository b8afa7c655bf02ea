"""Chaos for the engine (issue 8): engines killed with -9 at random, API faults, database cuts.

Two workers share one PostgreSQL database: a `polysync engine` and a `polysync serve` (API + web +
engine), each reaching the database through its own loopback TCP proxy that the harness cuts and
restores. The emulator (a subprocess) answers with lost responses, 5xx and 429 storms. Runs are
started through the store and through the served API (Execute Now); some are cancelled, some are
deleted in Databricks while they run. Then the faults stop, the workers keep going, and
`ChaosReport` counts everything that must be zero: runs lost or stuck, runs started more than once
in Databricks, wrong final statuses, histories that went backwards, workers that exited on their
own, errors with a traceback.

Used by tests/acceptance/test_chaos.py (bounded, in CI) and benchmarks/chaos.py (longer, figures).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import make_url

from polysync.api.keys import create_api_key
from polysync.config import Settings
from polysync.domain.models import RunStatus
from polysync.domain.records import NewPlatform, Run, RunFilter
from polysync.engine.engine import DELETED_MESSAGE
from polysync.errors import UsageError
from polysync.services import Services
from polysync.store import SqlStore
from polysync.store.sql_store import CANCELLED_UNSENT_MESSAGE
from tests.acceptance.conftest import POLYSYNC, TOKEN, Emulator
from tests.conftest import free_port

TOKEN_VARIABLE = "POLYSYNC_CHAOS_TOKEN"
# What Databricks ended a run with -> the status Polysync must show (D6).
EXPECTED = {"SUCCESS": RunStatus.SUCCESS, "CANCELED": RunStatus.CANCELLED}
# Faults that stay on while the chaos lasts (each request meets the first that fires).
STEADY_FAULTS: list[dict[str, Any]] = [
    {"method": "POST", "path": "jobs/run-now$", "kind": "lose_response", "probability": 0.15},
    {"method": "POST", "path": "jobs/run-now$", "kind": "status", "status": 500,
     "error_code": "INTERNAL_ERROR", "message": "chaos", "probability": 0.1},
    {"method": "GET", "path": "jobs/runs/get$", "kind": "status", "status": 500,
     "error_code": "INTERNAL_ERROR", "message": "chaos", "probability": 0.1},
    {"method": "GET", "path": "jobs/runs/get$", "kind": "drop", "probability": 0.05},
    {"method": "GET", "path": "jobs/runs/list$", "kind": "status", "status": 503,
     "retry_after_s": 1, "probability": 0.1},
    {"method": "POST", "path": "jobs/runs/cancel$", "kind": "lose_response", "probability": 0.2},
]  # fmt: skip
STORM = {
    "path": "/api/",
    "kind": "status",
    "status": 429,
    "error_code": "REQUEST_LIMIT_EXCEEDED",
    "message": "chaos storm",
    "retry_after_s": 1,
}


@dataclass(frozen=True)
class ChaosConfig:
    """How much chaos, for how long (seconds of real time)."""

    duration_s: float = 45.0
    runs: int = 40
    kill_every_s: float = 7.0
    cut_every_s: float = 9.0
    cut_for_s: float = 3.0
    storm_every_s: float = 15.0
    storm_for_s: float = 2.0
    cancel_fraction: float = 0.2
    delete_fraction: float = 0.1
    settle_timeout_s: float = 120.0
    seed: int = 8


@dataclass
class ChaosReport:
    """What happened, and every count that must be zero."""

    runs: int = 0  # runs in the database at the end (ours, and any a killed request created)
    via_api: int = 0
    kills: int = 0
    cuts: int = 0
    storms: int = 0
    faults_applied: int = 0
    run_now_requests: int = 0
    cancels: int = 0
    cancelled_unsent: int = 0  # cancelled before any run-now was sent: no Databricks run at all
    deleted: int = 0
    health_503: int = 0  # /health answers 503 seen while serve's database was cut
    elapsed_s: float = 0.0
    lost: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    wrong_status: list[str] = field(default_factory=list)
    backwards: list[str] = field(default_factory=list)
    unexpected_exits: list[str] = field(default_factory=list)
    tracebacks: list[str] = field(default_factory=list)

    def zero_counts(self) -> dict[str, int]:
        return {
            name: len(getattr(self, name))
            for name in (
                "lost",
                "stuck",
                "duplicates",
                "orphans",
                "wrong_status",
                "backwards",
                "unexpected_exits",
                "tracebacks",
            )
        }


class TcpProxy:
    """A loopback TCP proxy to `target`, in threads: `cut()` closes every connection through it
    and refuses new ones until `restore()` (a database connection cut, as a network sees it)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._cut = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        self._cut.set()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            self._sockets.clear()

    def restore(self) -> None:
        self._cut.clear()

    def close(self) -> None:
        self._closed.set()
        self.cut()
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._cut.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            # shutdown, not just close: the other direction's thread is blocked in recv on these
            # sockets, and only a shutdown wakes it and sends the FIN (a closed fd with a blocked
            # reader stays open, and the server would wait for its client for ever).
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()
            with self._lock:
                self._sockets -= {source, sink}


@dataclass
class Worker:
    """One `polysync engine` or `polysync serve` process, restarted after each kill."""

    name: str
    args: list[str]
    env: dict[str, str]
    logs: Path
    process: subprocess.Popen[bytes] | None = None
    incarnation: int = 0
    killed: bool = False  # down because we killed it, until it is restarted

    def start(self) -> None:
        self.killed = False
        self.incarnation += 1
        log = (self.logs / f"{self.name}-{self.incarnation}.log").open("wb")
        self.process = subprocess.Popen(
            [POLYSYNC, *self.args], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )

    def exited_on_its_own(self) -> str | None:
        if not self.killed and self.process is not None and self.process.poll() is not None:
            return f"{self.name} #{self.incarnation} exited with {self.process.returncode}"
        return None

    def kill9(self) -> None:
        assert self.process is not None
        self.killed = True
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout=30)


class Chaos:
    """The scenario; `run()` returns the report."""

    def __init__(self, emulator: Emulator, postgres_url: str, tmp: Path, config: ChaosConfig):
        self.emulator = emulator
        self.url = postgres_url
        self.tmp = tmp
        self.config = config
        self.rng = random.Random(config.seed)
        self.report = ChaosReport()
        database = make_url(postgres_url)
        target = (database.host or "127.0.0.1", database.port or 5432)
        self.proxies = {"engine": TcpProxy(target), "serve": TcpProxy(target)}
        self.serve_port = free_port()
        self.workers = [
            Worker("engine", ["engine"], self._env("engine"), tmp),
            Worker("serve", ["serve", "--port", str(self.serve_port)], self._env("serve"), tmp),
        ]
        self.deleted_at: dict[str, dict[str, Any]] = {}  # RunId -> emulator state then
        self.cut_now: set[str] = set()
        self.created: set[int] = set()  # the runs we know we started (a 201, or the store)
        self.fates: dict[int, str] = {}  # run id -> "cancel" or "delete", still to do

    def _env(self, worker: str) -> dict[str, str]:
        url = make_url(self.url).set(host="127.0.0.1", port=self.proxies[worker].port)
        return {
            **os.environ,
            "POLYSYNC_HOME": str(self.tmp),
            "POLYSYNC_DATABASE_URL": url.render_as_string(hide_password=False),
            "POLYSYNC_POLL_MIN_S": "0.2",
            "POLYSYNC_POLL_MAX_S": "1",
            "POLYSYNC_SWEEP_INTERVAL_S": "0.5",
            "POLYSYNC_LEASE_S": "3",
            "POLYSYNC_LOG_LEVEL": "WARNING",
            TOKEN_VARIABLE: TOKEN,
        }

    # ------------------------------------------------------------------ the scenario
    async def run(self) -> ChaosReport:
        started_s = time.monotonic()
        os.environ[TOKEN_VARIABLE] = TOKEN
        services = await Services.open(Settings(home=self.tmp, database_url=self.url))
        try:
            job_id, api_key = await self._prepare(services)
            for worker in self.workers:
                worker.start()
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{self.serve_port}",
                headers={"Authorization": f"Bearer {api_key}"},
                timeout=10,
            ) as api:
                await self._chaos(services, job_id, api)
                await self._settle(services)
                await self._check(services)
                await self._final_health(api)
        finally:
            for worker in self.workers:
                code = worker.stop()
                # uvicorn re-raises SIGTERM once it has shut down gracefully: -15 is a clean stop.
                if code not in (0, None, -signal.SIGTERM):
                    self.report.unexpected_exits.append(f"{worker.name} stopped with {code}")
            for proxy in self.proxies.values():
                proxy.close()
            await services.aclose()
        self._scan_logs()
        self.report.elapsed_s = time.monotonic() - started_s
        return self.report

    async def _prepare(self, services: Services) -> tuple[int, str]:
        seeded = self.emulator.post(
            "/emulator/jobs",
            {
                "name": "chaos",
                "max_concurrent_runs": 1000,
                "tasks": [
                    {"task_key": "a", "emulator": {"duration_s": 60, "pending_s": 10}},
                    {"task_key": "b", "depends_on": ["a"], "emulator": {"duration_s": 60}},
                ],
            },
        )
        external_id = str(seeded["job_ids"][0])
        await services.add_platform(
            NewPlatform(
                name="demo",
                workspace_url=self.emulator.url,
                auth={"method": "pat", "token": f"env:{TOKEN_VARIABLE}"},
            )
        )
        await services.import_jobs("demo", [external_id])
        job = await services.get_job(external_id, platform="demo")
        store = services.store
        assert isinstance(store, SqlStore)
        _, api_key = await create_api_key(store, "chaos", "operator")
        return job.id, api_key

    async def _chaos(self, services: Services, job_id: int, api: httpx.AsyncClient) -> None:
        config = self.config
        job = await services.store.get_job(job_id)
        self.emulator.post("/emulator/faults", STEADY_FAULTS)
        deadline = time.monotonic() + config.duration_s
        # Runs are started evenly over the first two thirds, so the last ones meet chaos too.
        start_every_s = config.duration_s * 2 / 3 / config.runs
        next_start = time.monotonic()
        created = 0
        disturbances = [
            asyncio.ensure_future(self._every(config.kill_every_s, deadline, self._kill_one)),
            asyncio.ensure_future(
                self._every(config.cut_every_s, deadline, lambda: self._cut_one(api))
            ),
            asyncio.ensure_future(self._every(config.storm_every_s, deadline, self._storm)),
        ]
        try:
            while time.monotonic() < deadline:
                while created < config.runs and time.monotonic() >= next_start:
                    created += 1
                    await self._start_one(services, job, api)
                    next_start += start_every_s
                await self._meddle(services)
                self._check_alive()
                await asyncio.sleep(0.25)
        finally:
            await asyncio.gather(*disturbances)
        self.report.faults_applied += self.emulator.fault_applied()
        self.emulator.clear_faults()
        for proxy in self.proxies.values():
            proxy.restore()
        self.cut_now.clear()

    async def _every(
        self, mean_s: float, deadline: float, act: Callable[[], Awaitable[None]]
    ) -> None:
        """`act` at random intervals (uniform up to twice `mean_s`) until the deadline."""
        while True:
            await asyncio.sleep(self.rng.uniform(0.2, 2 * mean_s))
            if time.monotonic() >= deadline:
                return
            await act()

    async def _start_one(self, services: Services, job: Any, api: httpx.AsyncClient) -> None:
        run_id: int | None = None
        if self.rng.random() < 0.5 and "serve" not in self.cut_now:
            with contextlib.suppress(httpx.HTTPError):  # serve killed mid-request: see _check
                response = await api.post(f"/api/v1/jobs/{job.id}/runs", json={})
                if response.status_code == 201:
                    self.report.via_api += 1
                    run_id = int(response.json()["id"])
        if run_id is None:
            run_id = (await services.engine.submit(job, {})).id
        self.created.add(run_id)
        roll = self.rng.random()
        if roll < self.config.cancel_fraction:
            self.fates[run_id] = "cancel"
        elif roll < self.config.cancel_fraction + self.config.delete_fraction:
            self.fates[run_id] = "delete"

    async def _meddle(self, services: Services) -> None:
        """Cancel the runs meant to be cancelled; delete in Databricks (while they run) those
        meant to be deleted - each at a random moment of its life."""
        for run in await services.list_runs(RunFilter(active_only=True, limit=1000)):
            fate = self.fates.get(run.id)
            if fate is None or self.rng.random() < 0.5:
                continue
            if fate == "cancel":
                with contextlib.suppress(UsageError):
                    await services.cancel(run.id)
                    self.report.cancels += 1
                del self.fates[run.id]
            elif run.run_id is not None:
                await self._delete(run)
                del self.fates[run.id]

    async def _delete(self, run: Run) -> None:
        assert run.run_id is not None
        if run.run_id in self.deleted_at:
            return
        state = next((r for r in self.emulator.runs() if str(r["run_id"]) == run.run_id), None)
        if state is None:
            return
        if self.emulator.delete(f"/emulator/runs/{run.run_id}") == 200:
            self.deleted_at[run.run_id] = state
            self.report.deleted += 1

    async def _kill_one(self) -> None:
        worker = self.rng.choice(self.workers)
        self._check_alive()
        worker.kill9()
        self.report.kills += 1
        await asyncio.sleep(self.rng.uniform(0, 1.5))
        worker.start()

    async def _cut_one(self, api: httpx.AsyncClient) -> None:
        name = self.rng.choice([*self.proxies, "both"])
        cut = list(self.proxies) if name == "both" else [name]
        for proxy in cut:
            self.proxies[proxy].cut()
        self.cut_now |= set(cut)
        self.report.cuts += 1
        until = time.monotonic() + self.config.cut_for_s
        while time.monotonic() < until:
            if "serve" in self.cut_now:
                with contextlib.suppress(httpx.HTTPError):
                    if (await api.get("/health")).status_code == 503:
                        self.report.health_503 += 1
            await asyncio.sleep(0.5)
        for proxy in cut:
            self.proxies[proxy].restore()
        self.cut_now -= set(cut)

    async def _storm(self) -> None:
        (fault_id,) = self.emulator.post("/emulator/faults", STORM)["ids"]
        self.report.storms += 1
        await asyncio.sleep(self.config.storm_for_s)
        faults = self.emulator.get("/emulator/faults")["faults"]
        self.report.faults_applied += sum(f["applied"] for f in faults if f["id"] == fault_id)
        self.emulator.delete(f"/emulator/faults/{fault_id}")

    def _check_alive(self) -> None:
        restart_exited(self.workers, self.report.unexpected_exits)

    # ------------------------------------------------------------------ the verdict
    async def _settle(self, services: Services) -> None:
        """Faults over: every run must reach its end while both workers keep going."""
        await settle(
            services, self.workers, self.report.unexpected_exits, self.config.settle_timeout_s, 0.5
        )

    async def _check(self, services: Services) -> None:
        report = self.report
        runs = await services.list_runs(RunFilter(limit=100_000))
        report.runs = len(runs)
        databricks = self.emulator.runs()
        by_token: dict[str | None, list[dict[str, Any]]] = {}
        for entry in [*databricks, *self.deleted_at.values()]:
            by_token.setdefault(entry["idempotency_token"], []).append(entry)
        ours = {run.idempotency_token for run in runs}
        known = {run.id for run in runs}
        report.lost = [f"run {run_id} (not in the database)" for run_id in self.created - known]
        report.orphans = [
            f"Databricks run {e['run_id']}"
            for t, es in by_token.items()
            if t not in ours
            for e in es
        ]
        report.run_now_requests = int(
            self.emulator.get("/emulator/stats")["endpoints"]
            .get("jobs/run-now", {})
            .get("total", 0)
        )
        for run in runs:
            first = (run.message.splitlines() or [""])[0][:80]
            where = f"run {run.id} ({run.status.value}: {first})"
            if not run.is_terminal:
                report.stuck.append(where)
                continue
            seen = by_token.get(run.idempotency_token, [])
            if run.run_id is None:
                if run.status is RunStatus.CANCELLED and run.message == CANCELLED_UNSENT_MESSAGE:
                    # Cancelled before any run-now was sent: none may ever have been.
                    if seen:
                        report.duplicates.append(f"{where}: Databricks runs {seen}")
                    else:
                        report.cancelled_unsent += 1
                    continue
                report.lost.append(f"{where}: never started in Databricks")
                continue
            if len(seen) != 1 or str(seen[0]["run_id"]) != run.run_id:
                report.duplicates.append(f"{where}: Databricks runs {seen}")
                continue
            self._check_status(run, seen[0], where)
            await self._check_history(services, run, where)

    def _check_status(self, run: Run, seen: dict[str, Any], where: str) -> None:
        deleted = seen is self.deleted_at.get(run.run_id or "")
        gone = DELETED_MESSAGE.lower() in run.message.lower()
        if deleted and run.status is RunStatus.FAILED and gone:
            return
        if seen["life_cycle_state"] not in ("TERMINATED", "INTERNAL_ERROR"):
            if not deleted:
                self.report.wrong_status.append(f"{where}: Databricks {seen}")
            elif run.status is not RunStatus.FAILED:
                self.report.wrong_status.append(f"{where}: deleted while {seen}")
            return
        if run.status is not EXPECTED.get(seen["result_state"]):
            self.report.wrong_status.append(f"{where}: Databricks {seen}")

    async def _check_history(self, services: Services, run: Run, where: str) -> None:
        events = await services.store.run_events(run.id)
        statuses = [event.status for event in events]
        steps = itertools.pairwise(statuses)
        if any(not after.may_follow(before) for before, after in steps) or (
            sum(status.is_terminal for status in statuses) != 1 or not statuses[-1].is_terminal
        ):
            self.report.backwards.append(f"{where}: {[s.value for s in statuses]}")

    async def _final_health(self, api: httpx.AsyncClient) -> None:
        """After the chaos, serve's /health is 200 and its engine is running again."""
        for _ in range(240):
            with contextlib.suppress(httpx.HTTPError):
                response = await api.get("/health")
                body = response.json()
                if response.status_code == 200 and body["engine"]["state"] == "running":
                    return
            await asyncio.sleep(0.5)
        self.report.unexpected_exits.append("serve's /health never came back to 200")

    def _scan_logs(self) -> None:
        self.report.tracebacks.extend(tracebacks_in(self.tmp))


def restart_exited(workers: Iterable[Worker], unexpected_exits: list[str]) -> None:
    """Restart every worker that exited without being killed, recording how it exited."""
    for worker in workers:
        exited = worker.exited_on_its_own()
        if exited:
            unexpected_exits.append(exited)
            worker.start()


async def settle(
    services: Services,
    workers: Iterable[Worker],
    unexpected_exits: list[str],
    timeout_s: float,
    poll_s: float,
) -> None:
    """Wait (up to `timeout_s`, looking every `poll_s`) until no run is active, restarting any
    worker that exits meanwhile."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        restart_exited(workers, unexpected_exits)
        if not await services.list_runs(RunFilter(active_only=True, limit=1)):
            return
        await asyncio.sleep(poll_s)


def tracebacks_in(logs: Path) -> list[str]:
    """The first 2,000 characters from the first traceback of each `*.log` file in `logs`."""
    found: list[str] = []
    for log in sorted(logs.glob("*.log")):
        text = log.read_text(errors="replace")
        if "Traceback" in text:
            found.append(f"{log.name}: {text[text.index('Traceback') :][:2000]}")
    return found


def lines(report: ChaosReport) -> Iterator[str]:
    """The report as `name value` lines (figures first, then the counts that must be zero)."""
    for name in (
        "runs",
        "via_api",
        "kills",
        "cuts",
        "storms",
        "faults_applied",
        "run_now_requests",
        "cancels",
        "cancelled_unsent",
        "deleted",
        "health_503",
    ):
        yield f"{name:<18} {getattr(report, name)}"
    yield f"{'elapsed_s':<18} {report.elapsed_s:.0f}"
    for name, count in report.zero_counts().items():
        yield f"{name:<18} {count}   (must be 0)"
