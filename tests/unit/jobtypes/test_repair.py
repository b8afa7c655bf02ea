"""The repair capability's pure parts (D13): reading `repair_history`, the history line of a
request, and which Job Types declare the capability."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from polysync.domain.records import DESCRIBED_TASKS, RunRepair
from polysync.jobtypes.base import RepairableJobType
from polysync.jobtypes.databricks.job import DatabricksJobJobType
from polysync.jobtypes.databricks.notebook import DatabricksNotebookJobType
from polysync.jobtypes.databricks.pipeline import DatabricksPipelineJobType
from polysync.jobtypes.databricks.repair import repair_ids
from polysync.jobtypes.databricks.workflow import DatabricksWorkflowJobType
from polysync.jobtypes.registry import default_registry

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=12,
)


def test_repair_ids_are_the_repair_entries_in_order() -> None:
    history = [
        {"type": "ORIGINAL", "start_time": 1, "task_run_ids": [5, 6]},
        {"type": "REPAIR", "id": 734650698524280, "task_run_ids": [7]},
        {"type": "REPAIR", "id": 734650698524299},
    ]
    assert repair_ids(history) == [734650698524280, 734650698524299]


@given(JSON)
def test_repair_ids_never_fail_and_keep_only_positive_ids_of_repairs(history: Any) -> None:
    ids = repair_ids(history)
    assert all(isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in ids)
    entries = history if isinstance(history, list) else []
    repairs = [e for e in entries if isinstance(e, dict) and e.get("type") == "REPAIR"]
    assert len(ids) <= len(repairs)


def test_a_request_names_its_tasks_and_counts_past_the_limit() -> None:
    at = datetime(2026, 12, 1, tzinfo=UTC)
    few = RunRepair(2, ("build", "score"), "9", at)
    assert few.describe() == "Repair #2 requested (tasks: build, score)"
    keys = tuple(f"t{i}" for i in range(DESCRIBED_TASKS + 5))
    many = RunRepair(1, keys, None, at).describe()
    assert many.endswith(f"t{DESCRIBED_TASKS - 1} and 5 more)")
    assert f"t{DESCRIBED_TASKS}," not in many


def test_workflow_and_job_declare_the_capability_notebook_and_pipeline_do_not() -> None:
    registry = default_registry()
    assert registry.repairable == ("Databricks Workflow", "Databricks Job")
    for cls in (DatabricksWorkflowJobType, DatabricksJobJobType):
        assert isinstance(object.__new__(cls), RepairableJobType)
        assert registry.supports_repair(cls.name)
    for other in (DatabricksNotebookJobType, DatabricksPipelineJobType):
        assert not isinstance(object.__new__(other), RepairableJobType)
        assert not registry.supports_repair(other.name)
    assert not registry.supports_repair("No Such Type")
