"""TaskRun statuses, what triggers a TaskRun, and which status changes are allowed (issue 12)."""

from __future__ import annotations

from enum import StrEnum

from polysync.errors import TaskRunTransitionError


class TriggerType(StrEnum):
    """Why a TaskRun exists."""

    SCHEDULE = "Schedule"
    """One of the Task's schedules fired; `scheduled_for` is the fire time."""
    DEPENDENCY = "Dependency"
    """Its upstream Tasks' runs of one cycle met their conditions (docs/tasks.md)."""
    MANUAL = "Manual"
    """A user pressed Run once."""
    RETRY = "Retry"
    """A user restarted a finished TaskRun as a new attempt chain (`retry_of` names it). The
    retry policy's automatic attempts stay inside their own TaskRun and need no new one."""

    @property
    def by_user(self) -> bool:
        """A user's action made it (Run once, a restart): every press is a TaskRun of its own,
        so two presses at one instant are two TaskRuns (the store moves the second one's
        scheduled-for a microsecond on). A Schedule fire or a Dependency cycle is recorded
        at most once per scheduled-for instead."""
        return self in (TriggerType.MANUAL, TriggerType.RETRY)


class TaskRunStatus(StrEnum):
    """Where a TaskRun is: Queued -> Running -> Succeeded / Failed / Cancelled, or Skipped."""

    QUEUED = "Queued"
    RUNNING = "Running"
    """An attempt is running, or the next attempt waits for its retry delay (it keeps its
    concurrency slot meanwhile, as Databricks' WAITING_FOR_RETRY counts as running)."""
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    """Its last attempt failed or timed out, and the retry policy allows no more."""
    CANCELLED = "Cancelled"
    SKIPPED = "Skipped"
    """Never ran: a dependency condition was not met, or the concurrency cap's on-overlap
    setting is skip. Recorded so the fire is visible and counted once."""

    @property
    def is_terminal(self) -> bool:
        """Succeeded, Failed, Cancelled and Skipped never change again, except by a repair."""
        return self in _TERMINAL

    @property
    def is_active(self) -> bool:
        """Queued or Running: what the concurrency cap's on-overlap rule looks at."""
        return not self.is_terminal


_TERMINAL = frozenset(
    {
        TaskRunStatus.SUCCEEDED,
        TaskRunStatus.FAILED,
        TaskRunStatus.CANCELLED,
        TaskRunStatus.SKIPPED,
    }
)

INITIAL_STATUSES = frozenset({TaskRunStatus.QUEUED, TaskRunStatus.SKIPPED})
"""A TaskRun is created Queued, or directly Skipped (a condition not met, an overlap skipped)."""

ALLOWED_TRANSITIONS: dict[TaskRunStatus, frozenset[TaskRunStatus]] = {
    TaskRunStatus.QUEUED: frozenset(
        {TaskRunStatus.RUNNING, TaskRunStatus.CANCELLED, TaskRunStatus.SKIPPED}
    ),
    TaskRunStatus.RUNNING: frozenset(
        {TaskRunStatus.SUCCEEDED, TaskRunStatus.FAILED, TaskRunStatus.CANCELLED}
    ),
    TaskRunStatus.SUCCEEDED: frozenset(),
    TaskRunStatus.FAILED: frozenset(),
    TaskRunStatus.CANCELLED: frozenset(),
    TaskRunStatus.SKIPPED: frozenset(),
}
"""Every ordinary status change. Repairs are the one exception (`REPAIRABLE_STATUSES`)."""

REPAIRABLE_STATUSES = frozenset({TaskRunStatus.FAILED, TaskRunStatus.CANCELLED})
"""A repair (`jobs/runs/repair`) reopens a Failed or Cancelled TaskRun: it goes back to Running
and then follows the repaired run (D6 as amended for repairs; the history shows the repair)."""


def check_transition(current: TaskRunStatus, new: TaskRunStatus, *, repair: bool = False) -> None:
    """Nothing when a TaskRun may go from `current` to `new`; TaskRunTransitionError saying why
    not otherwise. `repair`: the change is a repair reopening the TaskRun (Failed/Cancelled ->
    Running only)."""
    if repair:
        if new is TaskRunStatus.RUNNING and current in REPAIRABLE_STATUSES:
            return
        if current not in REPAIRABLE_STATUSES:
            raise TaskRunTransitionError(
                f"A {current} TaskRun cannot be repaired: only Failed or Cancelled TaskRuns can."
            )
        raise TaskRunTransitionError(f"A repair reopens a TaskRun as Running, not {new}.")
    if new in ALLOWED_TRANSITIONS[current]:
        return
    if current.is_terminal:
        hint = (
            " Repair it to rerun its failed tasks, or run the Task once."
            if current in REPAIRABLE_STATUSES
            else ""
        )
        raise TaskRunTransitionError(
            f"The TaskRun is already {current}; it cannot become {new}.{hint}"
        )
    allowed = ", ".join(sorted(ALLOWED_TRANSITIONS[current]))
    raise TaskRunTransitionError(
        f"A {current} TaskRun cannot become {new}; from {current} it can become {allowed}."
    )
