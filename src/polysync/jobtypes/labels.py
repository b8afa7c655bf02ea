"""How Job Types are named on screen, the same in the CLI and the web UI."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable


def short_label(job_type: str) -> str:
    """A Job Type's name without its provider's word: "Databricks Workflow" -> "Workflow"."""
    return job_type.split(" ", 1)[-1]


def counts_text(job_types: Iterable[str], label: Callable[[str], str] = str) -> str:
    """How many of each Job Type, most first, then by name: "7 Databricks Workflows, 3
    Databricks Jobs" (with `label=short_label`: "7 Workflows, 3 Jobs"); "none" for none."""
    counts = sorted(Counter(job_types).items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(_plural(n, label(kind)) for kind, n in counts) or "none"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
