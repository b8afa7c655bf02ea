"""How records are shown to people, the same in the CLI and the web UI (issue 11): labels of Job
Types and sign-in methods, times, durations, status words and colours, and the masking of
Secret values. The renderers (Rich in `cli/render.py`, Jinja2 filters in `web/context.py`) only
dress these up; neither decides a rule of its own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from polysync.domain.models import RunStatus
from polysync.domain.parameters import MASK, shown_default, shown_value, shown_values
from polysync.domain.records import Run

__all__ = [
    "AUTH_LABELS",
    "MASK",
    "NOTHING",
    "STATUS_COLOURS",
    "STATUS_ICONS",
    "counts_text",
    "duration_text",
    "local_time_text",
    "run_duration_ms",
    "short_label",
    "shown_default",
    "shown_value",
    "shown_values",
    "utc_time_text",
]

NOTHING = "\u2013"
"""What an empty time or duration shows (an en dash)."""

AUTH_LABELS = {
    "pat": "Personal Access Token",
    "entra_service_principal": "Service principal (Microsoft Entra ID)",
    "managed_identity": "Managed identity",
    "azure_default": "Azure default credential",
    "databricks_oauth_m2m": "Databricks OAuth (machine-to-machine)",
}
"""A platform's sign-in method (`auth_method`) as people read it."""

STATUS_COLOURS = {
    RunStatus.STARTING: "cyan",
    RunStatus.QUEUED: "magenta",  # held back by a contention profile (D14)
    RunStatus.RUNNING: "blue",
    RunStatus.SUCCESS: "green",
    RunStatus.FAILED: "red",
    RunStatus.CANCELLED: "grey50",
    RunStatus.UNKNOWN: "yellow",
}
"""Each status's colour: the CLI's Rich style and the hue of the web UI's `status-<status>`
badges and bars (web/static/app.css). The status's word is its value ("Success")."""

STATUS_ICONS = {RunStatus.SUCCESS: "✔", RunStatus.FAILED: "✘", RunStatus.CANCELLED: "■"}
"""The mark before an ended run's one-line outcome; other statuses show "•"."""


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


def duration_text(ms: int | float | None, *, nothing: str = NOTHING) -> str:
    """A duration in ms as "45s", "2m 05s", "1h 02m 05s" (rounded to the second)."""
    if ms is None:
        return nothing
    seconds = max(0, round(ms / 1000))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def run_duration_ms(run: Run) -> int | None:
    """How long an ended run ran (ms): in Databricks' own times when its tasks have them (first
    task start to last task end), else by Polysync's clock from its start request to its end (a
    pipeline update, a run that never started). None while it has not ended."""
    if not run.is_terminal:
        return None
    starts = [t.start_time_ms for t in run.tasks if t.start_time_ms]
    ends = [t.end_time_ms for t in run.tasks if t.end_time_ms]
    if starts and ends:
        return max(0, max(ends) - min(starts))
    if run.ended_at is None:
        return None
    started = run.submitted_at or run.created_at
    return max(0, int((run.ended_at - started).total_seconds() * 1000))


def local_time_text(moment: datetime | None, *, short: bool = False, nothing: str = "-") -> str:
    """A time in the reader's local zone (the CLI runs where its user is); `short` for tables (a
    month abbreviation, to the minute)."""
    if moment is None:
        return nothing
    return moment.astimezone().strftime("%b %d %H:%M" if short else "%Y-%m-%d %H:%M:%S")


def utc_time_text(moment: datetime | None) -> str:
    """A time in UTC, zone named (the web server's zone is not its reader's)."""
    if moment is None:
        return NOTHING
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
