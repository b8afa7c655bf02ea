"""The run message says each error text once (issue 10): Databricks often repeats the
runs/get-output error in the task's state message."""

from __future__ import annotations

from polysync.domain.models import RunSnapshot, RunStatus, TaskRunState
from polysync.jobtypes.databricks.status import run_message

ERROR = "AnalysisException: A column `merchant_category` cannot be resolved."


def message(state_message: str, error: str | None) -> str:
    task = TaskRunState(
        task_key="build_features",
        status=RunStatus.FAILED,
        result_state="FAILED",
        state_message=state_message,
        error=error,
        run_id=11,
    )
    return run_message(RunSnapshot(status=RunStatus.FAILED, tasks=(task,)))


def test_an_error_the_state_message_already_says_is_not_repeated() -> None:
    text = message(f"Workload failed: {ERROR}", ERROR)
    assert text.count("merchant_category") == 1
    assert text == f"Task build_features failed (FAILED): Workload failed: {ERROR}"


def test_a_state_message_the_error_contains_gives_way_to_the_error() -> None:
    text = message("A column `merchant_category`  cannot be resolved.", f"Traceback:\n{ERROR}")
    assert text.count("merchant_category") == 1
    assert text.endswith(f"Error: Traceback:\n{ERROR}")


def test_different_texts_are_both_kept() -> None:
    text = message("Workload failed, see run output for details", ERROR)
    assert "Workload failed, see run output for details. Error: AnalysisException" in text


def test_a_task_text_the_run_state_message_holds_is_not_repeated() -> None:
    task = TaskRunState(
        task_key="build_features",
        status=RunStatus.FAILED,
        result_state="FAILED",
        state_message="Workload failed, see run output for details",
        error=ERROR,
        run_id=11,
    )
    snapshot = RunSnapshot(
        status=RunStatus.FAILED,
        tasks=(task,),
        state_message="Task build_features failed with message: Workload failed, see run output "
        "for details. This caused all downstream tasks to get skipped.",
    )
    text = run_message(snapshot)
    assert text.count("see run output for details") == 1
    assert text.endswith(f"Task build_features failed (FAILED). Error: {ERROR}")
