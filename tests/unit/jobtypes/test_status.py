"""Run status decoding (D6), run page URLs (D7) and the cancel no-op text (D10)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from polysync.domain.models import RunSnapshot, RunStatus, Termination, cancel_noop_message
from polysync.jobtypes.databricks.status import (
    best_run_url,
    decode_run,
    fallback_run_url,
    is_terminal,
    keep_terminal,
    run_message,
    task_runs_to_fetch_errors,
    with_task_errors,
)
from tests.unit.domain.fixtures import (
    FAILED_RUN_MESSAGE,
    FAILED_TASK_MESSAGE,
    RUN_ID,
    RUN_PAGE_URL,
    WORKSPACE_URL,
    failed_run,
    run,
    task,
)

S = RunStatus
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
    "SOMETHING_NEW",
]
RESULTS = [
    None,
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
    "SOMETHING_NEW",
]
ANY = frozenset(RESULTS)
# decisions.md D6, row by row; every other pair is Unknown.
D6_TABLE: list[tuple[set[str], frozenset[str | None] | set[str | None], RunStatus]] = [
    ({"QUEUED", "PENDING", "BLOCKED"}, ANY, S.STARTING),
    ({"RUNNING", "TERMINATING", "WAITING_FOR_RETRY"}, ANY, S.RUNNING),
    ({"TERMINATED"}, {"SUCCESS"}, S.SUCCESS),
    ({"TERMINATED"}, {"SUCCESS_WITH_FAILURES"}, S.SUCCESS),
    ({"TERMINATED"}, {"EXCLUDED"}, S.SUCCESS),
    (
        {"TERMINATED", "INTERNAL_ERROR"},
        {"FAILED", "TIMEDOUT", "MAXIMUM_CONCURRENT_RUNS_REACHED", "UPSTREAM_FAILED"},
        S.FAILED,
    ),
    ({"TERMINATED"}, {"CANCELED", "UPSTREAM_CANCELED", "DISABLED"}, S.CANCELLED),
    ({"SKIPPED"}, ANY, S.FAILED),
    ({"INTERNAL_ERROR"}, {None}, S.FAILED),
]


def expected_d6(life_cycle: str, result: str | None) -> RunStatus:
    for life_cycles, results, status in D6_TABLE:
        if life_cycle in life_cycles and result in results:
            return status
    return S.UNKNOWN


def expected_task(life_cycle: str, result: str | None) -> RunStatus:
    """Tasks use the D6 table, except that a SKIPPED task's result_state says why."""
    if life_cycle == "SKIPPED" and result == "EXCLUDED":
        return S.SUCCESS
    if life_cycle == "SKIPPED" and result in {"CANCELED", "UPSTREAM_CANCELED", "DISABLED"}:
        return S.CANCELLED
    return expected_d6(life_cycle, result)


def decode(body: dict[str, Any]) -> RunSnapshot:
    return decode_run(body, workspace_url=WORKSPACE_URL)


@pytest.mark.parametrize("result", RESULTS)
@pytest.mark.parametrize("life_cycle", LIFE_CYCLES)
def test_every_d6_pair(life_cycle: str, result: str | None) -> None:
    snapshot = decode(run(life_cycle, result))
    expected = expected_d6(life_cycle, result)
    assert snapshot.status is expected
    assert snapshot.is_terminal is (expected in {S.SUCCESS, S.FAILED, S.CANCELLED})
    assert (snapshot.life_cycle_state, snapshot.result_state) == (life_cycle, result)
    if expected is S.UNKNOWN:
        assert len(snapshot.warnings) == 1
        assert repr(life_cycle) in snapshot.warnings[0]
        assert "keeps polling" in snapshot.warnings[0]
    else:
        assert snapshot.warnings == ()


def test_every_task_is_decoded_with_the_same_table_but_skipped_says_why() -> None:
    tasks = [
        task(f"t{i}", life_cycle, result, run_id=1000 + i)
        for i, (life_cycle, result) in enumerate((lc, r) for lc in LIFE_CYCLES for r in RESULTS)
    ]
    snapshot = decode(run("RUNNING", tasks=tasks))
    assert [t.status for t in snapshot.tasks] == [
        expected_task(t["state"]["life_cycle_state"], t["state"].get("result_state")) for t in tasks
    ]


# --- status-only shape (no `state`) -----------------------------------------------------------


def status_only(
    state: str | None, code: str | None = None, type_: str | None = None
) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if state is not None:
        status["state"] = state
    if code is not None or type_ is not None:
        status["termination_details"] = {"code": code, "type": type_, "message": "m"}
    return run(None, status=status)


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("QUEUED", S.STARTING),
        ("PENDING", S.STARTING),
        ("BLOCKED", S.STARTING),
        ("RUNNING", S.RUNNING),
        ("TERMINATING", S.RUNNING),
        ("WAITING", S.RUNNING),
    ],
)
def test_status_only_active_states(state: str, expected: RunStatus) -> None:
    snapshot = decode(status_only(state))
    assert snapshot.status is expected
    assert snapshot.warnings == ()
    assert snapshot.life_cycle_state is None


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("SUCCESS", S.SUCCESS),
        ("SUCCESS_WITH_FAILURES", S.SUCCESS),
        ("USER_CANCELED", S.CANCELLED),
        ("DISABLED", S.CANCELLED),
        ("CANCELED", S.FAILED),  # the platform cancelling, e.g. max run duration: a timeout
        ("SKIPPED", S.FAILED),
        ("MAX_CONCURRENT_RUNS_EXCEEDED", S.FAILED),
        ("MAX_JOB_QUEUE_SIZE_EXCEEDED", S.FAILED),
        ("WORKSPACE_RUN_LIMIT_EXCEEDED", S.FAILED),
        ("INTERNAL_ERROR", S.FAILED),
        ("DRIVER_ERROR", S.FAILED),
        ("CLUSTER_ERROR", S.FAILED),
        ("REPOSITORY_CHECKOUT_FAILED", S.FAILED),
        ("INVALID_CLUSTER_REQUEST", S.FAILED),
        ("FEATURE_DISABLED", S.FAILED),
        ("CLUSTER_REQUEST_LIMIT_EXCEEDED", S.FAILED),
        ("STORAGE_ACCESS_ERROR", S.FAILED),
        ("RUN_EXECUTION_ERROR", S.FAILED),
        ("UNAUTHORIZED_ERROR", S.FAILED),
        ("LIBRARY_INSTALLATION_ERROR", S.FAILED),
        ("MAX_SPARK_CONTEXTS_EXCEEDED", S.FAILED),
        ("RESOURCE_NOT_FOUND", S.FAILED),
        ("INVALID_RUN_CONFIGURATION", S.FAILED),
        ("CLOUD_FAILURE", S.FAILED),
        ("BREAKING_CHANGE", S.FAILED),
        ("CLUSTER_TERMINATED_BY_USER", S.FAILED),
        ("BUDGET_POLICY_LIMIT_EXCEEDED", S.FAILED),
    ],
)
def test_status_only_terminated_by_code(code: str, expected: RunStatus) -> None:
    snapshot = decode(status_only("TERMINATED", code, "CLIENT_ERROR"))
    assert snapshot.status is expected
    assert snapshot.warnings == ()
    assert snapshot.termination == Termination(code, "CLIENT_ERROR", "m")


@pytest.mark.parametrize(
    ("type_", "expected"),
    [
        ("SUCCESS", S.SUCCESS),
        ("CLIENT_ERROR", S.FAILED),
        ("INTERNAL_ERROR", S.FAILED),
        ("CLOUD_FAILURE", S.FAILED),
        ("SOMETHING_NEW", S.UNKNOWN),
        (None, S.UNKNOWN),
    ],
)
def test_status_only_unknown_code_falls_back_to_type(
    type_: str | None, expected: RunStatus
) -> None:
    snapshot = decode(status_only("TERMINATED", "BRAND_NEW_CODE", type_))
    assert snapshot.status is expected
    assert len(snapshot.warnings) == 1
    assert "'BRAND_NEW_CODE'" in snapshot.warnings[0]


@pytest.mark.parametrize(
    "body",
    [
        status_only("TERMINATED"),  # terminated without termination_details
        status_only("SOMETHING_NEW"),
        status_only(None),
        run(None),  # neither state nor status
        run(None, status={"state": None}),
        {"run_id": RUN_ID, "state": {}, "status": {}},
        {"run_id": RUN_ID, "state": "TERMINATED", "status": ["TERMINATED"]},
    ],
)
def test_undecidable_is_unknown_with_a_warning(body: dict[str, Any]) -> None:
    snapshot = decode(body)
    assert snapshot.status is S.UNKNOWN
    assert not snapshot.is_terminal
    assert len(snapshot.warnings) == 1
    assert "unknown Databricks state" in snapshot.warnings[0]


def test_unknown_state_is_decided_by_a_known_status() -> None:
    body = run(
        "INTERNAL_ERROR",
        "CANCELED",
        status={
            "state": "TERMINATED",
            "termination_details": {"code": "USER_CANCELED", "type": "SUCCESS"},
        },
    )
    snapshot = decode(body)
    assert snapshot.status is S.CANCELLED
    assert len(snapshot.warnings) == 1
    assert "'INTERNAL_ERROR'" in snapshot.warnings[0]
    assert "'CANCELED'" in snapshot.warnings[0]


def test_a_known_state_wins_over_status() -> None:
    body = run(
        "RUNNING", status={"state": "TERMINATED", "termination_details": {"code": "SUCCESS"}}
    )
    assert decode(body).status is S.RUNNING


def test_non_string_state_values_are_unknown_and_shown() -> None:
    snapshot = decode({"run_id": RUN_ID, "state": {"life_cycle_state": 5, "result_state": ["x"]}})
    assert snapshot.status is S.UNKNOWN
    assert "'5'" in snapshot.warnings[0]


# --- realistic runs ----------------------------------------------------------------------------


def test_reference_failed_run() -> None:
    snapshot = decode(failed_run())
    assert snapshot.status is S.FAILED
    assert snapshot.run_id == str(RUN_ID)
    assert (snapshot.life_cycle_state, snapshot.result_state) == ("INTERNAL_ERROR", "FAILED")
    assert snapshot.run_page_url == RUN_PAGE_URL
    assert (snapshot.start_time_ms, snapshot.end_time_ms) == (1719000000000, 1719000404690)
    assert snapshot.duration_ms == 404690
    assert snapshot.warnings == ()
    assert snapshot.message.splitlines() == [
        FAILED_RUN_MESSAGE,
        "Termination: RUN_EXECUTION_ERROR (CLIENT_ERROR)",
        # The task's state message is in the run's own (FAILED_RUN_MESSAGE): said once.
        "Task ingest failed (FAILED)",
        "Task transform skipped (UPSTREAM_FAILED)",
    ]
    ingest, transform = snapshot.tasks
    assert (ingest.task_key, ingest.status, ingest.run_id) == ("ingest", S.FAILED, 1052232433102040)
    assert ingest.duration_ms == 1719000400000 - 1719000000500
    assert ingest.run_page_url is not None
    assert (transform.status, transform.life_cycle_state) == (S.FAILED, "SKIPPED")
    assert (transform.start_time_ms, transform.end_time_ms, transform.duration_ms) == (
        None,
        None,
        None,
    )
    assert transform.run_page_url is None
    assert [t.task_key for t in snapshot.failed_tasks] == ["ingest", "transform"]
    # The skipped task never ran, so only ingest has a get-output error to fetch.
    assert task_runs_to_fetch_errors(snapshot) == (1052232433102040,)


def test_reference_failed_run_with_get_output_errors() -> None:
    snapshot = with_task_errors(
        decode(failed_run()),
        {1052232433102040: "ZeroDivisionError: division by zero", 999: "not a task of this run"},
    )
    assert snapshot.tasks[0].error == "ZeroDivisionError: division by zero"
    assert snapshot.tasks[1].error is None
    assert FAILED_TASK_MESSAGE in FAILED_RUN_MESSAGE
    assert (
        "Task ingest failed (FAILED). Error: ZeroDivisionError: division by zero"
        in snapshot.message.splitlines()
    )
    assert snapshot.message.count(FAILED_TASK_MESSAGE) == 1
    assert task_runs_to_fetch_errors(snapshot) == ()
    assert snapshot.status is S.FAILED


def test_empty_get_output_errors_change_nothing() -> None:
    snapshot = decode(failed_run())
    assert with_task_errors(snapshot, {1052232433102040: ""}) == snapshot


def test_reference_failed_run_in_status_only_shape() -> None:
    body = failed_run()
    del body["state"]
    for t in body["tasks"]:
        del t["state"]
    snapshot = decode(body)
    assert snapshot.status is S.FAILED
    assert snapshot.warnings == ()
    assert [t.status for t in snapshot.tasks] == [S.FAILED, S.FAILED]
    assert snapshot.message.splitlines() == [
        f"Termination: RUN_EXECUTION_ERROR (CLIENT_ERROR): {FAILED_RUN_MESSAGE}",
        "Task ingest failed (RUN_EXECUTION_ERROR)",
        "Task transform skipped (SKIPPED)",
    ]


def test_success_with_failures_names_the_failed_tasks() -> None:
    body = run(
        "TERMINATED",
        "SUCCESS_WITH_FAILURES",
        tasks=[
            task("extract", "TERMINATED", "FAILED", run_id=11, message="boom"),
            task("cleanup", "TERMINATED", "SUCCESS", run_id=12),
        ],
    )
    snapshot = decode(body)
    assert snapshot.status is S.SUCCESS
    assert snapshot.message.splitlines() == [
        "Succeeded with failures in: extract.",
        "Task extract failed (FAILED): boom",
    ]


def test_success_with_failures_without_task_details() -> None:
    snapshot = decode(run("TERMINATED", "SUCCESS_WITH_FAILURES"))
    assert "Succeeded with failures (Databricks listed no failed task)." in snapshot.message


def test_plain_success_has_a_quiet_message() -> None:
    body = run(
        "TERMINATED",
        "SUCCESS",
        tasks=[task("a", "TERMINATED", "SUCCESS", run_id=1)],
        status={
            "state": "TERMINATED",
            "termination_details": {"code": "SUCCESS", "type": "SUCCESS"},
        },
    )
    snapshot = decode(body)
    assert snapshot.status is S.SUCCESS
    assert snapshot.message == ""
    assert snapshot.failed_tasks == ()


def test_skipped_for_max_concurrent_runs() -> None:
    text = "Skipping this run because the limit of 1 maximum concurrent runs has been reached."
    snapshot = decode(run("SKIPPED", message=text))
    assert snapshot.status is S.FAILED
    assert snapshot.message == f"Skipped: {text}"


def test_skipped_without_a_message_explains_itself() -> None:
    snapshot = decode(run("SKIPPED", "MAXIMUM_CONCURRENT_RUNS_REACHED"))
    assert snapshot.status is S.FAILED
    assert snapshot.message.startswith("Skipped: ")
    assert "maximum concurrent runs" in snapshot.message


def test_skipped_in_status_only_shape() -> None:
    body = run(
        None,
        status={
            "state": "TERMINATED",
            "termination_details": {
                "code": "MAX_CONCURRENT_RUNS_EXCEEDED",
                "type": "CLIENT_ERROR",
                "message": "limit of 1 reached",
            },
        },
    )
    snapshot = decode(body)
    assert snapshot.status is S.FAILED
    assert snapshot.message.splitlines() == [
        "Skipped: limit of 1 reached",
        "Termination: MAX_CONCURRENT_RUNS_EXCEEDED (CLIENT_ERROR)",
    ]


def test_excluded_task_is_not_a_failure() -> None:
    body = run(
        "TERMINATED",
        "SUCCESS",
        tasks=[
            task("check", "TERMINATED", "SUCCESS", run_id=1),
            task("if_false", "SKIPPED", "EXCLUDED", run_id=2),
        ],
    )
    snapshot = decode(body)
    assert [t.status for t in snapshot.tasks] == [S.SUCCESS, S.SUCCESS]
    assert snapshot.message == ""


def test_cancelled_run() -> None:
    body = run(
        "TERMINATED",
        "CANCELED",
        message="Run cancelled.",
        tasks=[
            task("a", "TERMINATED", "CANCELED", run_id=1),
            task("b", "SKIPPED", "UPSTREAM_CANCELED", run_id=2),
        ],
    )
    snapshot = decode(body)
    assert snapshot.status is S.CANCELLED
    assert [t.status for t in snapshot.tasks] == [S.CANCELLED, S.CANCELLED]
    assert snapshot.message == "Run cancelled."


def test_timed_out_task_is_worded_so() -> None:
    body = run("TERMINATED", "TIMEDOUT", tasks=[task("slow", "TERMINATED", "TIMEDOUT", run_id=3)])
    assert "Task slow timed out (TIMEDOUT)" in decode(body).message


def test_queued_run_says_why() -> None:
    body = run(
        "QUEUED",
        status={
            "state": "QUEUED",
            "queue_details": {
                "code": "MAX_CONCURRENT_RUNS_REACHED",
                "message": "waiting for run 1",
            },
        },
    )
    snapshot = decode(body)
    assert snapshot.status is S.STARTING
    assert snapshot.queue_reason == "waiting for run 1"
    assert snapshot.message == "Queued: waiting for run 1"
    body["state"]["queue_reason"] = "Queued due to reaching maximum concurrent runs of 1."
    assert decode(body).message == "Queued: Queued due to reaching maximum concurrent runs of 1."


def test_running_run_has_no_end_time_yet() -> None:
    snapshot = decode(run("RUNNING", start_time=1719000000000, end_time=0, run_duration=0))
    assert snapshot.status is S.RUNNING
    assert (snapshot.start_time_ms, snapshot.end_time_ms, snapshot.duration_ms) == (
        1719000000000,
        None,
        None,
    )


# --- retries --------------------------------------------------------------------------------


def test_a_retried_task_keeps_every_attempt_and_the_last_decides() -> None:
    body = run(
        "TERMINATED",
        "SUCCESS",
        tasks=[
            task("ingest", "TERMINATED", "FAILED", run_id=1, attempt=0, message="flaky"),
            task("transform", "TERMINATED", "SUCCESS", run_id=3),
            task("ingest", "TERMINATED", "SUCCESS", run_id=2, attempt=1),
        ],
    )
    snapshot = decode(body)
    assert len(snapshot.tasks) == 3
    latest = snapshot.latest_attempts()
    assert [(t.task_key, t.run_id) for t in latest] == [("ingest", 2), ("transform", 3)]
    assert snapshot.failed_tasks == ()
    assert snapshot.message == ""


def test_attempts_listed_out_of_order() -> None:
    body = run(
        "INTERNAL_ERROR",
        "FAILED",
        tasks=[
            task("ingest", "TERMINATED", "FAILED", run_id=2, attempt=1, message="again"),
            task("ingest", "TERMINATED", "FAILED", run_id=1, attempt=0, message="first"),
        ],
    )
    snapshot = decode(body)
    assert [t.run_id for t in snapshot.latest_attempts()] == [2]
    assert "Task ingest failed (FAILED) on attempt 2: again" in snapshot.message
    assert "first" not in snapshot.message
    assert task_runs_to_fetch_errors(snapshot) == (2,)


def test_a_task_waiting_for_retry_is_not_failed() -> None:
    body = run(
        "RUNNING",
        tasks=[
            task("ingest", "TERMINATED", "FAILED", run_id=1, attempt=0),
            task("ingest", "WAITING_FOR_RETRY", run_id=2, attempt=1),
        ],
    )
    snapshot = decode(body)
    assert [t.status for t in snapshot.latest_attempts()] == [S.RUNNING]
    assert snapshot.failed_tasks == ()


def test_tasks_without_a_task_key_are_not_merged() -> None:
    body = run(
        "INTERNAL_ERROR",
        "FAILED",
        tasks=[
            {"run_id": 7, "state": {"life_cycle_state": "TERMINATED", "result_state": "FAILED"}},
            {"run_id": 8, "state": {"life_cycle_state": "TERMINATED", "result_state": "FAILED"}},
        ],
    )
    snapshot = decode(body)
    assert [t.run_id for t in snapshot.latest_attempts()] == [7, 8]
    assert "Task (task run 7) failed (FAILED)" in snapshot.message


def test_unknown_task_states_warn_once_each() -> None:
    body = run(
        "RUNNING",
        tasks=[
            task("a", "NEW_STATE", run_id=1),
            task("a", "NEW_STATE", run_id=1),
            task("b", "RUNNING", run_id=2),
        ],
    )
    snapshot = decode(body)
    assert [t.status for t in snapshot.tasks] == [S.UNKNOWN, S.UNKNOWN, S.RUNNING]
    assert len(snapshot.warnings) == 1
    assert "Task 'a'" in snapshot.warnings[0]


@pytest.mark.parametrize(
    "tasks",
    [None, "oops", 5, [None, 1, "x"], [{"task_key": 5, "state": "x", "start_time": True}]],
)
def test_odd_tasks_never_raise(tasks: object) -> None:
    body = failed_run()
    body["tasks"] = tasks
    snapshot = decode(body)
    assert snapshot.status is S.FAILED


def test_decoding_does_not_modify_its_input() -> None:
    body = failed_run()
    before = copy.deepcopy(body)
    decode(body)
    assert body == before


# --- run message composition ---------------------------------------------------------------


def test_message_shows_a_termination_message_that_differs_from_the_state_message() -> None:
    snapshot = RunSnapshot(
        status=S.FAILED,
        life_cycle_state="INTERNAL_ERROR",
        state_message="Task a failed.",
        termination=Termination("DRIVER_ERROR", "INTERNAL_ERROR", "The driver died."),
    )
    assert run_message(snapshot).splitlines() == [
        "Task a failed.",
        "Termination: DRIVER_ERROR (INTERNAL_ERROR): The driver died.",
    ]


# --- D6 terminal, D7 URLs, D10 cancel ----------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "terminal"),
    [
        (S.STARTING, False),
        (S.RUNNING, False),
        (S.UNKNOWN, False),
        (S.SUCCESS, True),
        (S.FAILED, True),
        (S.CANCELLED, True),
    ],
)
def test_is_terminal(status: RunStatus, terminal: bool) -> None:
    assert is_terminal(status) is terminal
    assert status.is_terminal is terminal


def test_status_values() -> None:
    assert [str(s) for s in RunStatus] == [
        "Starting",
        "Queued",
        "Running",
        "Success",
        "Failed",
        "Cancelled",
        "Unknown",
    ]


def test_keep_terminal() -> None:
    running, failed = RunSnapshot(status=S.RUNNING), RunSnapshot(status=S.FAILED, message="x")
    success = RunSnapshot(status=S.SUCCESS)
    assert keep_terminal(None, running) is running
    assert keep_terminal(running, failed) is failed
    assert keep_terminal(failed, success) is failed
    assert keep_terminal(failed, running) is failed


@pytest.mark.parametrize(
    ("workspace_url", "expected"),
    [
        ("https://adb-1.2.azuredatabricks.net", "https://adb-1.2.azuredatabricks.net/#job/5/run/1"),
        (
            "https://adb-1.2.azuredatabricks.net/",
            "https://adb-1.2.azuredatabricks.net/#job/5/run/1",
        ),
        (
            "https://adb-1.2.azuredatabricks.net//",
            "https://adb-1.2.azuredatabricks.net/#job/5/run/1",
        ),
        (" https://h/ ", "https://h/#job/5/run/1"),
    ],
)
def test_fallback_run_url_without_a_job_id(workspace_url: str, expected: str) -> None:
    assert fallback_run_url(workspace_url, 5) == expected


def test_fallback_run_url_puts_the_job_and_the_run_in_their_slots() -> None:
    # D7 amended: the spec's fallback put the run id in the job slot (the wrong page).
    url = fallback_run_url("https://adb-1.2.azuredatabricks.net/", 5001, 42)
    assert url == "https://adb-1.2.azuredatabricks.net/#job/42/run/5001"
    assert best_run_url(None, "javascript:x", "https://ws", 7, 3) == "https://ws/#job/3/run/7"


@pytest.mark.parametrize(
    ("run_now_url", "runs_get_url", "expected"),
    [
        ("https://ws/now", "https://ws/get", "https://ws/now"),
        (None, "https://ws/get", "https://ws/get"),
        ("", "https://WS/get", "https://WS/get"),
        ("  ", None, "https://ws/#job/7/run/1"),
        (None, None, "https://ws/#job/7/run/1"),
        # D7: only http(s) on the workspace's own host; anything else is never a link.
        ("javascript:alert(1)", "https://ws/get", "https://ws/get"),
        ("https://attacker.example/now", None, "https://ws/#job/7/run/1"),
        ("data:text/html,<script>alert(1)</script>", None, "https://ws/#job/7/run/1"),
        ("https://ws.attacker.example/x", "//ws/x", "https://ws/#job/7/run/1"),
        ("https://attacker.example\\@ws/x", None, "https://ws/#job/7/run/1"),
        ("https://ws/x\x1b]8;;evil", None, "https://ws/#job/7/run/1"),
    ],
)
def test_best_run_url(run_now_url: str | None, runs_get_url: str | None, expected: str) -> None:
    assert best_run_url(run_now_url, runs_get_url, "https://ws/", 7) == expected


def test_decoded_run_url_falls_back_until_runs_get_gives_one() -> None:
    body = run("RUNNING")
    del body["run_page_url"]
    body.pop("job_id", None)
    assert decode(body).run_page_url == f"{WORKSPACE_URL}/#job/{RUN_ID}/run/1"
    body["run_page_url"] = 12345  # not a URL: ignored
    assert decode(body).run_page_url == f"{WORKSPACE_URL}/#job/{RUN_ID}/run/1"
    body["job_id"] = 42  # known: the job and the run in their own slots (D7 amended)
    assert decode(body).run_page_url == f"{WORKSPACE_URL}/#job/42/run/{RUN_ID}"
    del body["run_id"]
    assert decode(body).run_page_url is None


@pytest.mark.parametrize(
    ("status", "text"),
    [
        (S.SUCCESS, "Run 5 is already Success; nothing to cancel."),
        (S.FAILED, "Run 5 is already Failed; nothing to cancel."),
        (S.CANCELLED, "Run 5 is already Cancelled; nothing to cancel."),
    ],
)
def test_cancel_noop_message(status: RunStatus, text: str) -> None:
    assert cancel_noop_message(5, status) == text


@pytest.mark.parametrize("status", [S.STARTING, S.RUNNING, S.UNKNOWN])
def test_cancel_noop_message_is_only_for_terminal_runs(status: RunStatus) -> None:
    with pytest.raises(ValueError, match="not terminal"):
        cancel_noop_message(5, status)
