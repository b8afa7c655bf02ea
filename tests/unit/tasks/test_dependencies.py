"""Dependencies: conditions, the same-cycle decision, edge checks and loops."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from polysync.errors import DependencyCycleError, DependencyError
from polysync.tasks.dependencies import (
    Condition,
    Decision,
    Dependency,
    UpstreamOutcome,
    check_acyclic,
    check_dependencies,
    cycle_outcome,
    downstream_decision,
)
from polysync.tasks.states import TaskRunStatus

S = TaskRunStatus
T0 = datetime(2026, 5, 1, tzinfo=UTC)


def minutes(n: int) -> datetime:
    return T0 + timedelta(minutes=n)


@pytest.mark.parametrize(
    ("condition", "met_by"),
    [
        (Condition.ON_SUCCESS, {S.SUCCEEDED}),
        (Condition.ON_FAILURE, {S.FAILED}),
        (Condition.ON_COMPLETION, {S.SUCCEEDED, S.FAILED, S.CANCELLED, S.SKIPPED}),
    ],
)
def test_conditions(condition: Condition, met_by: set[TaskRunStatus]) -> None:
    assert {status for status in S if condition.is_met_by(status)} == met_by


def test_default_condition_is_on_success() -> None:
    assert Dependency("ingest").condition is Condition.ON_SUCCESS


def test_waits_until_every_upstream_finished_in_the_cycle() -> None:
    decision = downstream_decision(
        [
            UpstreamOutcome("a", Condition.ON_SUCCESS, S.SUCCEEDED, minutes(5)),
            UpstreamOutcome("b", Condition.ON_SUCCESS),
        ]
    )
    assert (decision.decision, decision.unmet, decision.cycle_key) == (Decision.WAIT, ("b",), None)
    assert decision.reason == "waiting for 'b' to finish"


def test_runs_when_all_conditions_are_met_keyed_by_the_last_end() -> None:
    decision = downstream_decision(
        [
            UpstreamOutcome("a", Condition.ON_SUCCESS, S.SUCCEEDED, minutes(5)),
            UpstreamOutcome("b", Condition.ON_FAILURE, S.FAILED, minutes(9)),
            UpstreamOutcome("c", Condition.ON_COMPLETION, S.CANCELLED, minutes(7)),
        ]
    )
    assert (decision.decision, decision.cycle_key) == (Decision.RUN, minutes(9))


def test_skips_when_a_condition_is_not_met_and_says_which() -> None:
    decision = downstream_decision(
        [
            UpstreamOutcome("a", Condition.ON_SUCCESS, S.FAILED, minutes(5)),
            UpstreamOutcome("b", Condition.ON_SUCCESS, S.SUCCEEDED, minutes(6)),
        ]
    )
    assert (decision.decision, decision.unmet, decision.cycle_key) == (
        Decision.SKIP,
        ("a",),
        minutes(6),
    )
    assert decision.reason == "skipped: upstream condition not met: 'a' Failed (needs on_success)"


def test_no_upstream_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="at least one upstream"):
        downstream_decision([])


def test_cycle_outcome_takes_the_latest_run_ended_after_the_cycle_start() -> None:
    runs = [
        (S.SUCCEEDED, minutes(1)),  # before the cycle: consumed by the previous one
        (S.FAILED, minutes(20)),
        (S.SUCCEEDED, minutes(30)),  # the latest: the one the edge is checked against
        (S.RUNNING, None),
    ]
    assert cycle_outcome(runs, minutes(10)) == (S.SUCCEEDED, minutes(30))
    assert cycle_outcome(runs, minutes(30)) == (None, None)
    assert cycle_outcome([(S.QUEUED, None)], minutes(0)) == (None, None)


def test_a_repaired_upstream_ends_again_and_starts_a_new_cycle() -> None:
    # The downstream was skipped at minute 20 after 'a' failed; a repair makes 'a' succeed later.
    status, ended = cycle_outcome([(S.SUCCEEDED, minutes(45))], minutes(20))
    decision = downstream_decision([UpstreamOutcome("a", Condition.ON_SUCCESS, status, ended)])
    assert (decision.decision, decision.cycle_key) == (Decision.RUN, minutes(45))


def test_edge_checks_name_the_edge_and_the_fix() -> None:
    known = ["ingest", "clean", "report"]
    with pytest.raises(DependencyError, match="cannot depend on itself") as caught:
        check_dependencies("clean", [Dependency("ingest"), Dependency("clean")], known)
    assert caught.value.field == "dependencies[1]"
    with pytest.raises(DependencyError, match="'nope', which is not a Task"):
        check_dependencies("clean", [Dependency("nope")], known)
    with pytest.raises(DependencyError, match="lists upstream 'ingest' twice"):
        check_dependencies(
            "report", [Dependency("ingest"), Dependency("ingest", Condition.ON_FAILURE)], known
        )
    always = Dependency("ingest", "always")  # type: ignore[arg-type]
    with pytest.raises(DependencyError, match="is not one of on_success") as caught:
        check_dependencies("report", [always], known)
    assert caught.value.field == "dependencies[0].condition"
    check_dependencies("report", [Dependency("ingest"), Dependency("clean")], known)


def test_loops_are_refused_naming_the_loop() -> None:
    graph = {"a": ["c"], "b": ["a"], "c": ["b"], "d": ["a"]}
    with pytest.raises(DependencyCycleError) as caught:
        check_acyclic(graph)
    assert caught.value.cycle == ("a", "b", "c", "a")
    assert "would make a loop: a → b → c → a" in str(caught.value)
    assert caught.value.field == "dependencies"
    with pytest.raises(DependencyCycleError, match="x → x"):
        check_acyclic({"x": ["x"]})


def test_an_acyclic_graph_gives_upstreams_first() -> None:
    order = check_acyclic({"report": ["clean", "ingest"], "clean": ["ingest"], "other": []})
    assert order.index("ingest") < order.index("clean") < order.index("report")
    assert set(order) == {"ingest", "clean", "report", "other"}


@given(st.dictionaries(st.sampled_from("abcdefg"), st.lists(st.sampled_from("abcdefg"))))
def test_every_graph_is_ordered_or_a_real_loop_is_named(graph: dict[str, list[str]]) -> None:
    try:
        order = check_acyclic(graph)
    except DependencyCycleError as exc:
        loop = exc.cycle
        problem = loop
    else:
        problem = ()
        for task, upstreams in graph.items():
            assert all(order.index(up) < order.index(task) for up in upstreams)
    # Each step of a named loop is a real edge: upstream -> downstream.
    assert all(a in graph.get(b, []) for a, b in pairwise(problem))
    if problem:
        assert problem[0] == problem[-1]


def test_a_dag_of_six_tasks_with_one_failing_node() -> None:
    """ingest_a and ingest_b feed clean; alert handles ingest_b's failure; report runs after clean
    whatever happens; audit needs clean to succeed. ingest_b fails."""
    edges = {
        "ingest_a": [],
        "ingest_b": [],
        "clean": [Dependency("ingest_a"), Dependency("ingest_b")],
        "alert": [Dependency("ingest_b", Condition.ON_FAILURE)],
        "report": [Dependency("clean", Condition.ON_COMPLETION)],
        "audit": [Dependency("clean")],
    }
    order = check_acyclic({task: [e.upstream for e in ups] for task, ups in edges.items()})
    outcome = {"ingest_a": S.SUCCEEDED, "ingest_b": S.FAILED}
    ended = {"ingest_a": minutes(3), "ingest_b": minutes(4)}
    decisions: dict[str, Decision] = {}
    for task in order:
        if not edges[task]:
            continue
        decision = downstream_decision(
            [
                UpstreamOutcome(e.upstream, e.condition, outcome[e.upstream], ended[e.upstream])
                for e in edges[task]
            ]
        )
        decisions[task] = decision.decision
        # What a run or a skip records, for the next level down (a run here succeeds).
        outcome[task] = S.SUCCEEDED if decision.decision is Decision.RUN else S.SKIPPED
        ended[task] = minutes(10 + len(decisions))
    assert decisions == {
        "clean": Decision.SKIP,
        "alert": Decision.RUN,
        "report": Decision.RUN,
        "audit": Decision.SKIP,
    }
