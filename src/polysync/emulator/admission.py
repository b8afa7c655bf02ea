"""Admission of job runs: the per-job and workspace limits on active runs, and the queue (reference §3)."""

from __future__ import annotations

from collections import Counter

from polysync.emulator.errors import REQUEST_LIMIT_EXCEEDED, ApiError
from polysync.emulator.records import BLOCKED, QUEUED, SKIPPED, JobRun, Termination
from polysync.emulator.spec import WorkspaceSettings


class Admission:
    """Which runs may start now. The others wait QUEUED in arrival order, or are SKIPPED when the
    job's `max_concurrent_runs` is reached and the run does not queue. One-time (submit) runs
    count towards the workspace limit only."""

    def __init__(self, settings: WorkspaceSettings) -> None:
        self._settings = settings
        self._queue: list[JobRun] = []  # QUEUED runs in arrival order
        self._active_count = 0  # admitted (not queued), not terminal
        self._job_active: Counter[int] = Counter()  # the same, per job

    def check_capacity(self, queue_enabled: bool) -> None:
        """Refuse a new run that cannot queue while the workspace is at `max_active_runs`.

        Raises ApiError 429 `REQUEST_LIMIT_EXCEEDED` with `Retry-After` (the documented older
        behaviour; reference §3).
        """
        if self._active_count >= self._settings.max_active_runs and not queue_enabled:
            raise ApiError(
                429,
                REQUEST_LIMIT_EXCEEDED,
                f"The workspace has reached its limit of {self._settings.max_active_runs} "
                "concurrent active runs; this run cannot start now.",
                {"Retry-After": "10"},
            )

    def admit(self, run: JobRun, now_ms: int) -> bool:
        """True if `run` may start now (it then counts as active); False if it waits QUEUED or was
        SKIPPED (its state says which)."""
        limit = run.job.max_concurrent_runs()
        if not run.is_submit_run and self._job_active[run.job_id] >= limit:
            if run.queue_enabled:
                self._enqueue(
                    run,
                    "MAX_CONCURRENT_RUNS_REACHED",
                    f"Queued due to reaching maximum concurrent runs of {limit}.",
                    now_ms,
                )
            else:
                _skip(run, limit, now_ms)
            return False
        if self._active_count >= self._settings.max_active_runs:
            self._enqueue(
                run,
                "ACTIVE_RUNS_LIMIT_REACHED",
                "Queued due to reaching the workspace limit of active runs.",
                now_ms,
            )
            return False
        self.count(run)
        return True

    def count(self, run: JobRun) -> None:
        """Count `run` as active, within the limits or not (a repaired run becomes active again)."""
        self._active_count += 1
        self._job_active[run.job_id] += 1

    def release(self, run: JobRun, now_ms: int) -> list[JobRun]:
        """`run` ended and no longer counts. Returns the queued runs that may start now, in arrival
        order, each counted as active and out of the queue."""
        self._active_count -= 1
        self._job_active[run.job_id] -= 1
        admitted: list[JobRun] = []
        waiting, self._queue = self._queue, []
        for queued in waiting:
            if queued.terminal:
                continue
            if self._active_count >= self._settings.max_active_runs:
                self._queue.append(queued)
                continue
            if (
                not queued.is_submit_run
                and self._job_active[queued.job_id] >= queued.job.max_concurrent_runs()
            ):
                self._queue.append(queued)
                continue
            assert queued.queued_since_ms is not None
            queued.queue_duration_ms += now_ms - queued.queued_since_ms
            queued.queued_since_ms = None
            queued.st.queue_code = None
            queued.st.queue_message = ""
            self.count(queued)
            admitted.append(queued)
        return admitted

    def withdraw(self, run: JobRun, now_ms: int) -> None:
        """Take a QUEUED run out of the queue (it was cancelled); its queue time stops now."""
        assert run.queued_since_ms is not None
        run.queue_duration_ms += now_ms - run.queued_since_ms
        self._queue.remove(run)
        run.st.queue_code = None

    def _enqueue(self, run: JobRun, code: str, message: str, now_ms: int) -> None:
        run.st.life_cycle_state = QUEUED
        run.st.queue_code = code
        run.st.queue_message = message
        run.queued_since_ms = now_ms
        for attempt in run.attempts:
            attempt.st.life_cycle_state = BLOCKED
        self._queue.append(run)


def _skip(run: JobRun, limit: int, now_ms: int) -> None:
    message = (
        f"Skipping this run because the limit of {limit} maximum concurrent runs has been reached."
    )
    run.st.life_cycle_state = SKIPPED
    run.st.state_message = message
    run.st.termination = Termination("MAX_CONCURRENT_RUNS_EXCEEDED", "CLIENT_ERROR", message)
    run.end_time_ms = now_ms
    for attempt in run.attempts:
        attempt.st.life_cycle_state = SKIPPED
        attempt.st.termination = Termination("SKIPPED", "CLIENT_ERROR")
