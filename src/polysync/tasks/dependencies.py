"""Dependencies between Tasks: edges with a condition, loops refused, and when a downstream runs.

**The same cycle** (docs/tasks.md "Dependencies"): a downstream Task's cycle starts at its previous
Dependency TaskRun's cycle key (its scheduled-for: the latest end time among the upstream runs
that decided it), or, before it ever had one, when its dependencies were saved. An upstream has
finished *in this cycle* when one of its TaskRuns reached a terminal status after that moment;
its latest such TaskRun is the one its edge's condition is checked against. The downstream waits
until every upstream has finished in the cycle, then runs if every condition is met, else is
recorded Skipped; that TaskRun's cycle key starts the next cycle. Every upstream run therefore
belongs to exactly one cycle (it ended at or before the key, or after it), whatever the timing
of the engines that decided: one upstream run never triggers the same downstream twice, and an
upstream that runs several times meanwhile counts once (its latest run).
"""

from __future__ import annotations

import graphlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from polysync.domain.text import shown
from polysync.errors import DependencyCycleError, DependencyError
from polysync.tasks.states import TaskRunStatus

MAX_UPSTREAMS = 100
"""Upstream edges one Task may have."""


class Condition(StrEnum):
    """When an edge lets its downstream run, given the upstream's TaskRun of the cycle."""

    ON_SUCCESS = "on_success"
    """The upstream Succeeded (the default)."""
    ON_FAILURE = "on_failure"
    """The upstream Failed (timeouts included), after its retries."""
    ON_COMPLETION = "on_completion"
    """The upstream ended in any way: Succeeded, Failed, Cancelled or Skipped."""

    def is_met_by(self, status: TaskRunStatus) -> bool:
        """Whether an upstream TaskRun that ended `status` meets this condition. A Cancelled or
        Skipped upstream meets only on_completion: a cancel is nobody's failure to handle."""
        if not status.is_terminal:
            return False
        if self is Condition.ON_SUCCESS:
            return status is TaskRunStatus.SUCCEEDED
        if self is Condition.ON_FAILURE:
            return status is TaskRunStatus.FAILED
        return True


@dataclass(frozen=True, slots=True)
class Dependency:
    """One upstream edge of a Task: the upstream Task's name and the condition."""

    upstream: str
    condition: Condition = Condition.ON_SUCCESS


class Decision(StrEnum):
    RUN = "run"
    """Queue a Dependency TaskRun of the downstream."""
    SKIP = "skip"
    """Record a Skipped TaskRun of the downstream (its own downstreams then decide in turn)."""
    WAIT = "wait"
    """Some upstream has not finished in this cycle: decide again when it does."""


@dataclass(frozen=True, slots=True)
class UpstreamOutcome:
    """What one upstream edge sees in the downstream's current cycle.

    `status` and `ended_at` are those of the upstream's latest TaskRun that ended after the
    cycle started (`cycle_outcome` picks it), or None when none has.
    """

    upstream: str
    condition: Condition
    status: TaskRunStatus | None = None
    ended_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DownstreamDecision:
    """What to do with a downstream Task now, and why (for its TaskRun's message)."""

    decision: Decision
    reason: str
    cycle_key: datetime | None = None
    """When deciding RUN or SKIP: the latest `ended_at` among the upstreams' runs. Stored as the
    TaskRun's scheduled-for, it makes the unique (task, trigger, scheduled-for) constraint hold one
    decision per cycle however many engines decide it."""
    unmet: tuple[str, ...] = ()
    """Upstreams whose condition is not met (SKIP) or which have not finished (WAIT)."""


def cycle_outcome(
    runs: Iterable[tuple[TaskRunStatus, datetime | None]], cycle_start: datetime
) -> tuple[TaskRunStatus | None, datetime | None]:
    """(status, ended_at) of the latest of an upstream's TaskRuns (given as (status, ended_at))
    that reached a terminal status after `cycle_start`; (None, None) when none did."""
    latest: tuple[TaskRunStatus | None, datetime | None] = (None, None)
    for status, ended_at in runs:
        if not status.is_terminal or ended_at is None or ended_at <= cycle_start:
            continue
        if latest[1] is None or ended_at > latest[1]:
            latest = (status, ended_at)
    return latest


def downstream_decision(outcomes: Sequence[UpstreamOutcome]) -> DownstreamDecision:
    """RUN when every upstream finished in the cycle and met its edge's condition; SKIP when all
    finished and some condition is not met; WAIT while any has not finished. ValueError for no
    outcomes (a Task without upstreams is not triggered by dependencies)."""
    if not outcomes:
        raise ValueError("downstream_decision needs at least one upstream outcome")
    waiting = tuple(o.upstream for o in outcomes if o.status is None or not o.status.is_terminal)
    if waiting:
        return DownstreamDecision(
            Decision.WAIT,
            f"waiting for {_names(waiting)} to finish",
            unmet=waiting,
        )
    cycle_key = max(o.ended_at for o in outcomes if o.ended_at is not None)
    unmet = tuple(
        o.upstream for o in outcomes if o.status is not None and not o.condition.is_met_by(o.status)
    )
    if unmet:
        detail = "; ".join(
            f"{o.upstream!r} {o.status} (needs {o.condition})"
            for o in outcomes
            if o.upstream in unmet
        )
        return DownstreamDecision(
            Decision.SKIP, f"skipped: upstream condition not met: {detail}", cycle_key, unmet
        )
    met = ", ".join(f"{o.upstream!r} {o.status}" for o in outcomes)
    return DownstreamDecision(Decision.RUN, f"upstreams finished: {met}", cycle_key)


def check_dependencies(task: str, dependencies: Sequence[Dependency], known: Iterable[str]) -> None:
    """Nothing when `task`'s edges can be saved; DependencyError (field "dependencies[i]") for an
    edge to itself, to a Task that does not exist, a repeated upstream or too many edges."""
    names = set(known)
    if len(dependencies) > MAX_UPSTREAMS:
        raise DependencyError(
            f"Task {task!r} has {len(dependencies)} upstream Tasks; the limit is {MAX_UPSTREAMS}.",
            field="dependencies",
        )
    seen: set[str] = set()
    for index, edge in enumerate(dependencies):
        where = f"dependencies[{index}]"
        if not isinstance(edge.condition, Condition):
            choices = ", ".join(c.value for c in Condition)
            raise DependencyError(
                f"The condition {shown(edge.condition)} on upstream {shown(edge.upstream)} is not "
                f"one of {choices}.",
                field=f"{where}.condition",
            )
        if edge.upstream == task:
            raise DependencyError(
                f"Task {task!r} cannot depend on itself. Remove it from its upstream Tasks.",
                field=where,
            )
        if edge.upstream not in names:
            raise DependencyError(
                f"Task {task!r} depends on {shown(edge.upstream)}, which is not a Task. Create "
                "it first, or check the name.",
                field=where,
            )
        if edge.upstream in seen:
            raise DependencyError(
                f"Task {task!r} lists upstream {edge.upstream!r} twice. Keep one edge, with the "
                "condition you mean.",
                field=where,
            )
        seen.add(edge.upstream)


def check_acyclic(graph: Mapping[str, Iterable[str]]) -> tuple[str, ...]:
    """An order that runs every upstream before its downstreams, for `graph` = {task: its
    upstream task names}; DependencyCycleError naming a loop ("a → b → c → a", each Task an
    upstream of the next) when there is one. Names not in `graph` as keys are Tasks without
    upstreams."""
    sorter = graphlib.TopologicalSorter({task: tuple(ups) for task, ups in graph.items()})
    try:
        return tuple(sorter.static_order())
    except graphlib.CycleError as exc:
        # graphlib lists the loop so that each node is a predecessor (upstream) of the next.
        loop = tuple(str(node) for node in exc.args[1])
        start = loop.index(min(loop[:-1]))  # start at a stable place, whatever the dict order
        loop = (*loop[start:-1], *loop[:start], loop[start])
        text = " → ".join(loop)
        raise DependencyCycleError(
            f"These dependencies would make a loop: {text}. A Task cannot wait for itself; "
            f"remove one of these edges.",
            cycle=loop,
        ) from None


def _names(names: Sequence[str]) -> str:
    return ", ".join(repr(name) for name in names)
