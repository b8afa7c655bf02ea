"""Property tests for run decoding (D6): never raises, deterministic, terminal results stable."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from polysync.domain.models import RunSnapshot, RunStatus
from polysync.jobtypes.databricks.status import decode_run, keep_terminal, with_task_errors
from tests.unit.domain.fixtures import WORKSPACE_URL

LIFE_CYCLES = [
    "QUEUED",
    "PENDING",
    "RUNNING",
    "TERMINATING",
    "TERMINATED",
    "SKIPPED",
    "INTERNAL_ERROR",
    "BLOCKED",
    "WAITING_FOR_RETRY",
]
RESULTS = [
    "SUCCESS",
    "FAILED",
    "TIMEDOUT",
    "CANCELED",
    "MAXIMUM_CONCURRENT_RUNS_REACHED",
    "EXCLUDED",
    "SUCCESS_WITH_FAILURES",
    "UPSTREAM_FAILED",
    "UPSTREAM_CANCELED",
    "DISABLED",
]
V2_STATES = ["BLOCKED", "PENDING", "QUEUED", "RUNNING", "TERMINATED", "TERMINATING", "WAITING"]
CODES = [
    "SUCCESS",
    "SUCCESS_WITH_FAILURES",
    "USER_CANCELED",
    "CANCELED",
    "SKIPPED",
    "INTERNAL_ERROR",
    "DRIVER_ERROR",
    "RUN_EXECUTION_ERROR",
    "MAX_CONCURRENT_RUNS_EXCEEDED",
    "DISABLED",
]
TYPES = ["SUCCESS", "INTERNAL_ERROR", "CLIENT_ERROR", "CLOUD_FAILURE"]

junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=8),
    st.just([]),
    st.just({}),
)


def enum_or_junk(values: list[str]) -> st.SearchStrategy[object]:
    return st.one_of(st.sampled_from(values), st.sampled_from(values), junk)


states = st.one_of(
    junk,
    st.fixed_dictionaries(
        {},
        optional={
            "life_cycle_state": enum_or_junk(LIFE_CYCLES),
            "result_state": enum_or_junk(RESULTS),
            "state_message": junk,
            "queue_reason": junk,
            "user_cancelled_or_timedout": junk,
        },
    ),
)
statuses = st.one_of(
    junk,
    st.fixed_dictionaries(
        {},
        optional={
            "state": enum_or_junk(V2_STATES),
            "termination_details": st.one_of(
                junk,
                st.fixed_dictionaries(
                    {},
                    optional={
                        "code": enum_or_junk(CODES),
                        "type": enum_or_junk(TYPES),
                        "message": junk,
                    },
                ),
            ),
            "queue_details": st.one_of(
                junk, st.fixed_dictionaries({}, optional={"code": junk, "message": junk})
            ),
        },
    ),
)
ids = st.one_of(st.integers(min_value=1, max_value=2**63 - 1), junk)
tasks = st.fixed_dictionaries(
    {},
    optional={
        "task_key": st.one_of(st.sampled_from(["a", "b", "c"]), junk),
        "run_id": ids,
        "attempt_number": st.one_of(st.integers(min_value=0, max_value=3), junk),
        "state": states,
        "status": statuses,
        "start_time": ids,
        "end_time": ids,
        "run_duration": ids,
        "run_page_url": junk,
    },
)
runs = st.fixed_dictionaries(
    {},
    optional={
        "run_id": ids,
        "job_id": ids,
        "state": states,
        "status": statuses,
        "tasks": st.one_of(junk, st.lists(st.one_of(tasks, junk), max_size=5)),
        "run_page_url": junk,
        "start_time": ids,
        "end_time": ids,
        "run_duration": ids,
    },
)


def decode(body: dict[str, Any]) -> RunSnapshot:
    return decode_run(body, workspace_url=WORKSPACE_URL)


@given(runs)
def test_decode_never_raises_and_is_deterministic(body: dict[str, Any]) -> None:
    before = copy.deepcopy(body)
    snapshot = decode(body)
    assert isinstance(snapshot.status, RunStatus)
    assert isinstance(snapshot.message, str)
    assert body == before
    assert decode(body) == snapshot
    if snapshot.status is RunStatus.UNKNOWN:
        assert snapshot.warnings
    assert all(isinstance(w, str) and w for w in snapshot.warnings)
    assert len(set(snapshot.warnings)) == len(snapshot.warnings)


@given(runs, runs)
def test_status_depends_only_on_state_and_status(
    body: dict[str, Any], other: dict[str, Any]
) -> None:
    # Tasks, times, URLs and ids of another run do not change the decided status.
    mixed = {**other, "state": body.get("state"), "status": body.get("status")}
    if "state" not in body:
        del mixed["state"]
    if "status" not in body:
        del mixed["status"]
    assert decode(mixed).status is decode(body).status


@given(runs, st.dictionaries(st.integers(min_value=1), st.text(max_size=10), max_size=3))
def test_task_errors_never_change_the_status(body: dict[str, Any], errors: dict[int, str]) -> None:
    snapshot = decode(body)
    merged = with_task_errors(snapshot, errors)
    assert merged.status is snapshot.status
    assert len(merged.tasks) == len(snapshot.tasks)


@given(st.lists(runs, min_size=1, max_size=6))
def test_terminal_statuses_never_change_again(bodies: list[dict[str, Any]]) -> None:
    recorded: RunSnapshot | None = None
    first_terminal: RunStatus | None = None
    for body in bodies:
        recorded = keep_terminal(recorded, decode(body))
        if first_terminal is None and recorded.is_terminal:
            first_terminal = recorded.status
        if first_terminal is not None:
            assert recorded.status is first_terminal


@given(st.sampled_from(LIFE_CYCLES), st.none() | st.sampled_from(RESULTS))
def test_known_states_agree_with_the_clients_on_terminality(
    life_cycle: str, result: str | None
) -> None:
    # Reference §4 "Which states are terminal": every official client calls exactly TERMINATED,
    # SKIPPED and INTERNAL_ERROR terminal. A decided status must agree.
    state: dict[str, Any] = {"life_cycle_state": life_cycle}
    if result is not None:
        state["result_state"] = result
    snapshot = decode({"run_id": 1, "state": state})
    if snapshot.status is not RunStatus.UNKNOWN:
        assert snapshot.is_terminal is (life_cycle in {"TERMINATED", "SKIPPED", "INTERNAL_ERROR"})
