"""The Azure Databricks client: auth, retries, rate limiting, wire models, error mapping."""
