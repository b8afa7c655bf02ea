"""Job and run ids as workspaces show them: int64 values that grow by random steps from a seed."""

from __future__ import annotations

import random
from collections.abc import Container


class Ids:
    """The id sequences of one workspace; the same seed gives the same ids."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._next_job_id = 100_000_000_000_000 + self._rng.randrange(10**13)
        self._next_run_id = 700_000_000_000_000 + self._rng.randrange(10**13)

    def job_id(self, taken: Container[int]) -> int:
        """A fresh job id that is not in `taken`."""
        self._next_job_id += self._rng.randrange(1, 10**6)
        while self._next_job_id in taken:
            self._next_job_id += 1
        return self._next_job_id

    def run_id(self) -> int:
        """A fresh id for a job run or a task run; repair ids share the sequence, as on real
        workspaces where repair ids look like run ids."""
        self._next_run_id += self._rng.randrange(1, 1000)
        return self._next_run_id
