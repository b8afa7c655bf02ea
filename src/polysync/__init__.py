"""Polysync for Azure Databricks: the Databricks Workflow job type, its engine, and a Jobs API emulator."""

__version__ = "0.1.0"
