"""A faithful emulator of the Azure Databricks Jobs API: the embedded demo workspace and the test double."""
