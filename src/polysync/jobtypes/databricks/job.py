"""The Databricks Job job type: a single-task Databricks job, started with run-now like a workflow."""

from __future__ import annotations

from polysync.jobtypes.databricks.parameters import JobKind
from polysync.jobtypes.databricks.workflow import DatabricksWorkflowJobType


class DatabricksJobJobType(DatabricksWorkflowJobType):
    """Same Jobs API calls as a workflow (run-now, runs/get, runs/cancel); one task, so the run
    message comes from that task (spec: "Databricks Job covers single-task Databricks Jobs").
    Discovered with the workflows (one jobs/list classifies both, D5)."""

    name = JobKind.JOB.value
