"""The Databricks job types (Workflow, Job, Notebook, Pipeline) and the Databricks decoding they share."""
