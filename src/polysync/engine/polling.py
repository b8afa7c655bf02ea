"""When to look at runs: one sweep grid per workspace, so no run is seen later than the grid.

Every watched run of a workspace belongs to its grid: every `sweep_interval_s` each sweep group
of the workspace's job types is swept once (`JobType.sweep`): for the Jobs API types one
`runs/list?active_only=true&expand_tasks=true` pass (25 runs a page) gives the state and task
states of all their runs at once (reference §6); for pipeline updates, one call per pipeline.
What changed is written; a run the sweep does not show as active gets one `poll` to learn how it
ended. So the detection lag of any change is at most one interval plus the calls' time, by
construction, whatever the job type.

Where a sweep would cost more calls than polling each of our runs (a workspace with far more
active runs than ours: other users' runs), the job type says so (`JobType.sweep_pays`) and each
of our runs gets its own poll on the same grid instead - the cheaper of the two, same lag bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PollPolicy:
    """Rhythms of watching (all in seconds of the engine's clock)."""

    # The grid: the longest a change of an active run waits to be seen (plus the calls' time).
    sweep_interval_s: float = 10.0
    # First retry after a failed poll or sweep; doubles with consecutive failures up to the cap.
    min_interval_s: float = 5.0
    max_interval_s: float = 120.0
    cancel_poll_s: float = 5.0  # after a cancel request: confirm quickly (D10)
    submit_retry_s: float = 10.0

    def __post_init__(self) -> None:
        if not 0 < self.min_interval_s <= self.max_interval_s:
            raise ValueError("poll bounds need 0 < min_interval_s <= max_interval_s")
        if self.sweep_interval_s <= 0:
            raise ValueError("sweep_interval_s must be > 0")

    def next_tick_s(self, now_s: float) -> float:
        """The next point of the grid strictly after `now_s` (grid points are multiples of the
        interval, so every engine and every workspace share them)."""
        interval = self.sweep_interval_s
        return (math.floor(now_s / interval) + 1) * interval
