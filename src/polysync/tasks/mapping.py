"""Mapped parameter values: `{{upstream.<task>.<field>}}` references to an upstream Task's run.

A Task's parameter value is text in which references to its upstream Tasks' runs of the same
cycle are replaced when the TaskRun starts, e.g. `{{upstream.ingest.parameters.run_date}}` or
`s3://lake/{{upstream.ingest.run_id}}/out`. Fields (docs/tasks.md "Parameter mapping"):

    run_id            the upstream run's RunId (Databricks run_id; "{pipeline}:{update}" for a
                      Pipeline, D11)
    run_page_url      its run page URL (D7)
    status            its TaskRun status: Succeeded, Failed, Cancelled or Skipped
    start_time        when it started, ISO 8601 in UTC ("2026-05-01T02:00:00Z")
    end_time          when it ended, the same format
    scheduled_for     the upstream TaskRun's scheduled-for time, the same format
    parameters.<name> the value of parameter <name> its run sent

Any other `{{...}}` is left as it is: Databricks resolves its own dynamic value references
(`{{job.start_time.iso_date}}`, `{{tasks.x.values.y}}`) in job parameters. Spaces inside the
braces are allowed (`{{ upstream.ingest.run_id }}`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from polysync.domain.limits import MAX_PARAMETER_VALUE_CHARS
from polysync.domain.text import shown
from polysync.errors import ParameterMappingError

PREFIX = "upstream"
FIELDS = ("run_id", "run_page_url", "status", "start_time", "end_time", "scheduled_for")
"""The fields a reference may name, besides `parameters.<name>`."""
PARAMETERS_FIELD = "parameters"

_MAX_LISTED = 10
"""Upstream names a message lists before "and N more"."""
# Non-greedy, no braces inside: `{{a}}{{b}}` is two references, `{{{x}}}` reads `{x}` as text.
_REFERENCE = re.compile(r"\{\{([^{}]*)\}\}")
# An opening of ours that never closes, e.g. "{{upstream.ingest.run_id".
_UNCLOSED = re.compile(r"\{\{\s*upstream\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Reference:
    """One `{{upstream.<task>.<field>}}` in a value: where it is and what it names."""

    start: int
    end: int
    """`value[start:end]` is the reference with its braces."""
    upstream: str
    field: str
    """One of FIELDS, or "parameters"."""
    parameter: str | None = None
    """The parameter name, for `parameters.<name>`."""

    @property
    def text(self) -> str:
        suffix = f".{self.parameter}" if self.parameter is not None else ""
        return f"{{{{{PREFIX}.{self.upstream}.{self.field}{suffix}}}}}"


@dataclass(frozen=True, slots=True)
class UpstreamRunFacts:
    """What a reference can read from an upstream Task's TaskRun of the cycle and its run."""

    status: str
    run_id: str | None = None
    run_page_url: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    scheduled_for: datetime | None = None
    parameters: Mapping[str, str] = field(default_factory=dict, hash=False)
    """The parameters its run sent (`Run.parameters_sent`)."""


def parse_references(value: str, *, parameter: str = "the value") -> tuple[Reference, ...]:
    """The upstream references in `value`, in order. ParameterMappingError (field
    "parameters.<name>") for a reference of ours that is malformed: unclosed, no Task, no field,
    an unknown field. `parameter` names the parameter in messages. Never raises anything else."""
    if not isinstance(value, str):
        raise _error(parameter, f"must be text, not {type(value).__name__}")
    if len(value) > MAX_PARAMETER_VALUE_CHARS:
        raise _error(
            parameter,
            f"is {len(value):,} characters long; the limit is {MAX_PARAMETER_VALUE_CHARS:,}",
        )
    references: list[Reference] = []
    covered: list[tuple[int, int]] = []
    for match in _REFERENCE.finditer(value):
        inner = match.group(1).strip()
        head, _, rest = inner.partition(".")
        if head.lower() != PREFIX:
            if _looks_like_ours(head):
                meant = f"{{{{{PREFIX}.{rest or '<task>.<field>'}}}}}"
                raise _error(
                    parameter,
                    f"has {shown(match.group(0))}: did you mean {shown(meant)}? References to "
                    f"upstream runs start with {PREFIX!r}",
                )
            continue  # a Databricks dynamic value reference: sent as it is
        if head != PREFIX:
            raise _error(parameter, f"has {shown(match.group(0))}: write {PREFIX!r} in lower case")
        references.append(_reference(match.start(), match.end(), rest, match.group(0), parameter))
        covered.append((match.start(), match.end()))
    for unclosed in _UNCLOSED.finditer(value):
        if not any(start <= unclosed.start() < end for start, end in covered):
            raise _error(
                parameter,
                f"has a reference that is not closed at character {unclosed.start() + 1}: end "
                "it with '}}'",
            )
    return tuple(references)


def check_mapping(
    value: str,
    *,
    parameter: str,
    upstreams: Collection[str],
    upstream_parameters: Mapping[str, Collection[str]] | None = None,
    secret_parameters: Mapping[str, Collection[str]] | None = None,
) -> tuple[Reference, ...]:
    """The references in `value` (`parse_references`), each checked against the Task's
    upstream Tasks: ParameterMappingError naming the parameter and the fix for a Task that is
    not an upstream of this one, or a parameter the upstream's Job does not have
    (`upstream_parameters` = {upstream: its Job's parameter names}; an upstream missing from it
    is not checked), or one of its Secret parameters (`secret_parameters`: a secret never
    travels through a mapping; reference the secret itself instead)."""
    references = parse_references(value, parameter=parameter)
    for reference in references:
        if reference.upstream not in upstreams:
            listed = sorted(upstreams)
            known = ", ".join(shown(u) for u in listed[:_MAX_LISTED]) or "none"
            if len(listed) > _MAX_LISTED:
                known += f" and {len(listed) - _MAX_LISTED} more"
            raise _error(
                parameter,
                f"refers to {shown(reference.upstream)}, which is not an upstream Task of this "
                f"Task (its upstream Tasks: {known}). Add it under Dependencies first",
            )
        if reference.parameter is None:
            continue
        secrets = (secret_parameters or {}).get(reference.upstream, ())
        if reference.parameter in secrets:
            raise _error(
                parameter,
                f"maps Secret parameter {shown(reference.parameter)} of {reference.upstream!r}; "
                "secrets are not passed through mappings. Use the same secret reference here",
            )
        names = (upstream_parameters or {}).get(reference.upstream)
        if names is not None and reference.parameter not in names:
            close = difflib.get_close_matches(reference.parameter, sorted(names), n=1)
            choices = ", ".join(sorted(names)[:20]) or "none"
            hint = f"; did you mean {close[0]!r}" if close else ""
            raise _error(
                parameter,
                f"refers to parameter {shown(reference.parameter)} of {reference.upstream!r}, "
                f"whose Job has no such parameter (its parameters: {choices}){hint}",
            )
    return references


def render(value: str, facts: Mapping[str, UpstreamRunFacts], *, parameter: str) -> str:
    """`value` with each upstream reference replaced from `facts` = {upstream: its run's facts}.

    ParameterMappingError (the TaskRun then fails before any API call) when a fact is missing:
    no run of that upstream in the cycle, a run without a RunId, start or end time, or a
    parameter its run did not send; or when the result is longer than a value may be.
    """
    pieces: list[str] = []
    position = 0
    for reference in parse_references(value, parameter=parameter):
        pieces.append(value[position : reference.start])
        pieces.append(_fact(reference, facts, parameter))
        position = reference.end
    pieces.append(value[position:])
    rendered = "".join(pieces)
    if len(rendered) > MAX_PARAMETER_VALUE_CHARS:
        raise _error(
            parameter,
            f"would be {len(rendered):,} characters long once mapped; the limit is "
            f"{MAX_PARAMETER_VALUE_CHARS:,}",
        )
    return rendered


def iso_utc(moment: datetime) -> str:
    """The mapped form of a time: ISO 8601 in UTC to the second, e.g. "2026-05-01T02:00:00Z"."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fact(reference: Reference, facts: Mapping[str, UpstreamRunFacts], parameter: str) -> str:
    run = facts.get(reference.upstream)
    if run is None:
        raise _error(
            parameter,
            f"maps {shown(reference.text)}, but {shown(reference.upstream)} has no run in this "
            "cycle",
        )
    if reference.parameter is not None:
        sent = run.parameters.get(reference.parameter)
        if sent is None:
            raise _error(
                parameter,
                f"maps {shown(reference.text)}, but that run of {shown(reference.upstream)} did "
                f"not send parameter {shown(reference.parameter)}",
            )
        return sent
    found: str | datetime | None = getattr(run, reference.field)
    if found is None:
        raise _error(
            parameter,
            f"maps {shown(reference.text)}, but that run of {shown(reference.upstream)} "
            f"({run.status}) has no {reference.field}",
        )
    return iso_utc(found) if isinstance(found, datetime) else found


def _reference(start: int, end: int, rest: str, text: str, parameter: str) -> Reference:
    task, _, field_text = rest.partition(".")
    task = task.strip()
    field_name, _, name = field_text.partition(".")
    field_name = field_name.strip()
    if not task:
        raise _error(
            parameter,
            f"has {shown(text)}: name the upstream Task, e.g. {{{{upstream.ingest.run_id}}}}",
        )
    choices = ", ".join((*FIELDS, "parameters.<name>"))
    if not field_name:
        raise _error(parameter, f"has {shown(text)}: name a field after the Task: {choices}")
    if field_name == PARAMETERS_FIELD:
        if not name.strip():
            raise _error(
                parameter,
                f"has {shown(text)}: name the parameter, e.g. "
                f"{{{{upstream.{task}.parameters.run_date}}}}",
            )
        return Reference(start, end, task, field_name, name.strip())
    if field_name not in FIELDS or name:
        close = difflib.get_close_matches(field_name, (*FIELDS, PARAMETERS_FIELD), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise _error(
            parameter,
            f"has {shown(text)}: {shown(field_text)} is not a field of an upstream run{hint}. "
            f"Fields: {choices}",
        )
    return Reference(start, end, task, field_name)


def _looks_like_ours(head: str) -> bool:
    word = head.strip().lower()
    return word != PREFIX and bool(difflib.get_close_matches(word, [PREFIX], n=1, cutoff=0.75))


def _error(parameter: str, reason: str) -> ParameterMappingError:
    return ParameterMappingError(
        f"The value of parameter {shown(parameter)} {reason}.", field=f"parameters.{parameter}"
    )
