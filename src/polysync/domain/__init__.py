"""The domain: frozen records and the rules of the Databricks Workflow job type, with no I/O."""
