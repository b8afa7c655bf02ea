"""The job types this Polysync ships: one line per Job Type (name, provider, factory)."""

from __future__ import annotations

from polysync.jobtypes.base import JobTypeRegistry
from polysync.jobtypes.databricks.job import DatabricksJobJobType
from polysync.jobtypes.databricks.notebook import NOTEBOOK, DatabricksNotebookJobType
from polysync.jobtypes.databricks.parameters import JobKind
from polysync.jobtypes.databricks.pipeline import PIPELINE, DatabricksPipelineJobType
from polysync.jobtypes.databricks.workflow import DatabricksWorkflowJobType

AZURE_DATABRICKS = "azure-databricks"
WORKFLOW, JOB = JobKind.WORKFLOW.value, JobKind.JOB.value


def default_registry() -> JobTypeRegistry:
    """Every shipped job type. Databricks Job is discovered by Databricks Workflow: one jobs/list
    finds both, classified by task count (D5)."""
    registry = JobTypeRegistry()
    registry.register(
        WORKFLOW, AZURE_DATABRICKS, DatabricksWorkflowJobType.for_platform, repairs=True
    )
    registry.register(
        JOB,
        AZURE_DATABRICKS,
        DatabricksJobJobType.for_platform,
        discovered_by=WORKFLOW,
        repairs=True,
    )
    registry.register(NOTEBOOK, AZURE_DATABRICKS, DatabricksNotebookJobType.for_platform)
    registry.register(PIPELINE, AZURE_DATABRICKS, DatabricksPipelineJobType.for_platform)
    return registry
