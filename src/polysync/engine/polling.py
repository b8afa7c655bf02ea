"""When to look at a run again: adaptive per-run intervals, and workspace-wide sweeps for many runs.

Two ways to watch runs, chosen per workspace on every cycle:
- per run: `runs/get` at an adaptive interval - soon after the start (to see it leave Starting),
  sparse in the middle, dense around the end expected from the job's history;
- sweep: one `runs/list?active_only=true` pass (25 runs a page) tells the state of every active run
  of the workspace; only runs whose state changed, or that left the active list, get a `runs/get`.
  With hundreds of runs this costs a few list pages instead of one call per run, which is what
  keeps a thousand watched runs far below the workspace's rate limits.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PollPolicy:
    """Bounds and rhythms of watching (all in seconds of the engine's clock)."""

    first_poll_s: float = 5.0  # after run-now: catch Starting -> Running early
    min_interval_s: float = 5.0
    max_interval_s: float = 120.0
    # A workspace with at least this many runs due together is swept with runs/list.
    sweep_min_runs: int = 8
    sweep_interval_s: float = 15.0
    # Even when swept, refresh the per-task snapshot with runs/get this often.
    task_refresh_s: float = 300.0
    cancel_poll_s: float = 5.0  # after a cancel request: confirm quickly (D10)
    submit_retry_s: float = 10.0

    def __post_init__(self) -> None:
        if not 0 < self.min_interval_s <= self.max_interval_s:
            raise ValueError("poll bounds need 0 < min_interval_s <= max_interval_s")


def expected_duration_s(history_s: Sequence[float]) -> float | None:
    """The job's typical duration: the median of its recent successful runs, if any."""
    return statistics.median(history_s) if history_s else None


def next_poll_delay_s(elapsed_s: float, expected_s: float | None, policy: PollPolicy) -> float:
    """Seconds until the next runs/get of one run that has been going for `elapsed_s`."""
    low, high = policy.min_interval_s, policy.max_interval_s
    if elapsed_s < 60:
        return low
    if expected_s is None:
        # No history: back off with the run's age (a quarter of it), within the bounds.
        return max(low, min(high, elapsed_s / 4))
    window_s = max(30.0, expected_s * 0.1)  # dense polling around the expected end
    until_window_s = expected_s - window_s - elapsed_s
    if until_window_s > 0:
        return max(low, min(high, until_window_s))
    if elapsed_s <= expected_s + window_s:
        return low
    overdue_s = elapsed_s - expected_s
    return max(low, min(high, overdue_s / 4))
