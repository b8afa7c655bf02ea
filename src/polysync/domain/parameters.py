"""Parameter rules every job type shares: Data Types (D2), run values (D3), Sync (D9)."""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from polysync.domain.limits import (
    MAX_INT64,
    MIN_INT64,
    check_parameter_text,
    fits_int64,
    is_env_name,
)
from polysync.domain.models import (
    DataType,
    Direction,
    ImportedJob,
    Parameter,
    ParameterChange,
    ParameterDiff,
)
from polysync.domain.text import shown

if TYPE_CHECKING:
    from polysync.domain.records import Job
from polysync.errors import (
    AccessDeniedError,
    ParameterValueError,
    TaskScopedParameterError,
    UnknownParameterError,
    UsageError,
    sync_parameters_hint,
)

# D2 inference accepts only the canonical spelling a value would be sent back in, so inference
# never changes what Databricks receives: "0042" (an id, a zip code) and "3.10" (a version) stay
# String instead of being sent as 42 and 3.1.
_CANONICAL_INT = re.compile(r"0|-?[1-9][0-9]*")
_FLOAT_REPR_SHAPE = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:e[-+][0-9]+)?")
# What a user may type for a number at run time: looser, then canonicalised.
_INT_INPUT = re.compile(r"[-+]?[0-9]+")
_FLOAT_INPUT = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")

_EXPECTED: dict[DataType, str] = {
    DataType.STRING: "a String (text)",
    DataType.SECRET: "a Secret (text)",
    DataType.INT: (
        f"an Int: a whole number from {MIN_INT64} to {MAX_INT64} (signed 64-bit), such as 42 or -7"
    ),
    DataType.FLOAT: "a Float: a decimal number such as 1.5, -2 or 1e3",
    DataType.BOOL: "a Bool: true or false",
    DataType.JSON: 'JSON: a JSON object such as {"key": "value"}',
    DataType.JSON_ARRAY: "a JsonArray: a JSON array such as [1, 2]",
}


# --- D2: Data Types ------------------------------------------------------------------------


def infer_data_type(default: object) -> DataType:
    """The Data Type inferred from a Databricks default (D2).

    `true`/`false` in any case -> Bool; a canonical decimal integer (`0`, `42`, `-7`; no sign
    `+`, no leading zeros, no `-0`) within the signed 64-bit range -> Int; a float written exactly as Python's `repr` writes it
    (`1.5`, `-0.0`, `1e+16`, `1.5e-07`; not `1.50`, `1e3`, `.5`, `nan`, `inf`) -> Float; anything
    else, including empty, surrounding whitespace, `0x10` and `1_000` -> String. A JSON boolean
    or number given as a non-string default is typed the same way (a non-finite float -> String).
    """
    if isinstance(default, bool):  # before int: bool is an int subclass
        return DataType.BOOL
    if isinstance(default, int):
        return DataType.INT if MIN_INT64 <= default <= MAX_INT64 else DataType.STRING
    if isinstance(default, float):
        return DataType.FLOAT if math.isfinite(default) else DataType.STRING
    if not isinstance(default, str) or not default.isascii():
        return DataType.STRING
    if default.lower() in ("true", "false"):
        return DataType.BOOL
    if _CANONICAL_INT.fullmatch(default):
        # Past the signed 64-bit range it is no Int Databricks can read: a long id, kept text.
        return DataType.INT if fits_int64(default) else DataType.STRING
    if _FLOAT_REPR_SHAPE.fullmatch(default) and _is_float_repr(default):
        return DataType.FLOAT
    return DataType.STRING


def default_text(raw: object) -> str | None:
    """A default as the string the platform would hold (Databricks defaults are strings, D2)."""
    if raw is None:
        return None
    if isinstance(raw, str):
        return raw
    if isinstance(raw, bool | int | float):
        return _scalar_text(raw)
    try:
        return json.dumps(raw, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError):
        return str(raw)


def _is_float_repr(text: str) -> bool:
    number = float(text)
    return math.isfinite(number) and repr(number) == text


def serialise_value(data_type: DataType, value: object, *, name: str | None = None) -> str:
    """The string sent in `job_parameters` for a value of a Data Type (D2), or ParameterValueError.

    Bool -> `true`/`false` (input: true/false in any case). Int -> canonical decimal (input may
    carry a sign and leading zeros; the value must fit a signed 64-bit integer). Float -> Python's shortest round-trip `repr`, which uses an
    exponent only outside 1e-4 <= |x| < 1e16 (`1e3` -> `1000.0`, `1e16` -> `1e+16`); input is a
    decimal literal, finite (no nan/inf/hex/underscores). Surrounding whitespace is ignored for
    these three. String and Secret pass through; JSON (an object) and JsonArray (an array) pass
    through once they parse as JSON of that shape. Python bool/int/float/dict/list values are
    accepted where they fit.
    """
    if data_type in (DataType.STRING, DataType.SECRET):
        if isinstance(value, str):
            return value
        if isinstance(value, bool | int | float):
            return _scalar_text(value)
    elif data_type is DataType.BOOL:
        text = _bool_text(value)
        if text is not None:
            return text
    elif data_type is DataType.INT:
        text = _int_text(value)
        if text is not None:
            return text
    elif data_type is DataType.FLOAT:
        text = _float_text(value)
        if text is not None:
            return text
    elif data_type in (DataType.JSON, DataType.JSON_ARRAY):
        text = _json_text(value, dict if data_type is DataType.JSON else list)
        if text is not None:
            return text
    raise _value_error(data_type, value, name)


def value_fits(data_type: DataType, value: object) -> bool:
    """Whether `serialise_value` accepts the value."""
    try:
        serialise_value(data_type, value)
    except ParameterValueError:
        return False
    return True


def _scalar_text(value: bool | int | float) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)  # int: decimal digits; float: shortest round-trip form (or nan/inf)


def _bool_text(value: object) -> str | None:
    if isinstance(value, bool):
        return _scalar_text(value)
    if isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.lower() in ("true", "false"):
            return text.lower()
    return None


def _int_text(value: object) -> str | None:
    # Databricks reads job parameters as signed 64-bit integers: a larger one is refused here
    # rather than by the job (D2; docs/security.md "Limits").
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, int):
            number = value
        elif isinstance(value, str) and _INT_INPUT.fullmatch(value.strip()):
            if not fits_int64(value.strip()):
                return None
            number = int(value.strip())
        else:
            return None
    except ValueError:  # over CPython's 4300-digit int/str conversion limit
        return None
    return str(number) if MIN_INT64 <= number <= MAX_INT64 else None


def _float_text(value: object) -> str | None:
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, int | float):
            number = float(value)
        elif isinstance(value, str) and _FLOAT_INPUT.fullmatch(value.strip()):
            number = float(value.strip())
        else:
            return None
    except OverflowError:  # an int too large for a float
        return None
    return repr(number) if math.isfinite(number) else None


def _json_text(value: object, shape: type[dict[Any, Any]] | type[list[Any]]) -> str | None:
    if isinstance(value, str):
        try:
            parsed = json.loads(value, parse_constant=_refuse_constant)
        except ValueError:
            return None
        return value if isinstance(parsed, shape) else None
    if isinstance(value, shape):
        try:
            return json.dumps(value, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError):
            return None
    return None


def _refuse_constant(constant: str) -> object:
    # json.loads accepts NaN and Infinity, which are not JSON (RFC 8259) and which Databricks'
    # JSON readers refuse.
    raise ValueError(f"{constant} is not valid JSON")


def _value_error(data_type: DataType, value: object, name: str | None) -> ParameterValueError:
    subject = f"Parameter {name!r}" if name else "The value"
    # A Secret's value never appears in a message (STYLE.md, Errors).
    value_text = "(hidden)" if data_type is DataType.SECRET else shown(value)
    return ParameterValueError(
        f"{subject} must be {_EXPECTED[data_type]}; got {value_text}. Give a value of that "
        f"type, or change the parameter's Data Type: {CHANGE_DATA_TYPE}."
    )


CHANGE_DATA_TYPE = (
    "`polysync jobs set-param JOB PARAMETER --data-type TYPE`, the Parameters of the Job's page, "
    "or PATCH /api/v1/jobs/{id}"
)
"""Where a parameter's Data Type is changed, for messages that tell users to change it."""

CHANGE_DIRECTION = (
    "`polysync jobs set-param JOB PARAMETER --direction Input`, the Parameters of the Job's "
    "page, or PATCH /api/v1/jobs/{id}"
)
"""Where a parameter's Direction is changed, for messages that tell users to change it."""

# --- Secret values: references only ----------------------------------------------------------

MASK = "********"
"""How a Secret value that is not a reference is shown (a Databricks default, an old value)."""

SECRET_REFERENCE_SCHEMES = ("env", "file", "vault")
"""`env:NAME`, `file:PATH` and `vault://VAULT/SECRET[/VERSION]`: the secret-reference schemes
(polysync.secrets resolves them; a vault is a registered Secret Vault, D15)."""

_VAULT_TARGET = re.compile(r"//[A-Za-z0-9-]{1,63}/[0-9A-Za-z-]{1,127}(?:/[0-9A-Za-z]{1,64})?")


def is_secret_reference(text: str) -> bool:
    """Whether `text` is shaped as a secret reference: `env:NAME` (NAME an environment variable
    name), `file:PATH` or `vault://VAULT/SECRET[/VERSION]`, whitespace around ignored. The shape only: polysync.secrets parses it
    fully (scope, token-shaped names) and resolves it when a run starts."""
    scheme, sep, target = text.strip().partition(":")
    target = target.strip()
    if not sep or scheme not in SECRET_REFERENCE_SCHEMES or not target:
        return False
    if scheme == "vault":
        return _VAULT_TARGET.fullmatch(target) is not None
    return is_env_name(target) if scheme == "env" else True


def secret_reference_needed(name: str) -> ParameterValueError:
    """The refusal of a Secret value given as text rather than as a reference (never quoted)."""
    return ParameterValueError(
        f"Parameter {name!r} is a Secret: give a secret reference, not the secret itself - "
        "`env:NAME` (an environment variable of the Polysync server and engine), `file:PATH` "
        "(a file they can read) or `vault://VAULT/SECRET` (a secret of a registered vault). Polysync stores and shows only the reference and reads the "
        "secret when the run starts. The value given is not shown."
    )


def shown_value(data_type: DataType, value: str | None) -> str | None:
    """A stored value or a run's value as it may be shown (CLI, API, web, logs): as it is, except
    a Secret's, which shows as its reference (`env:NAME`, `file:PATH`: not secret) or MASK."""
    if value is None or data_type is not DataType.SECRET:
        return value
    return value.strip() if is_secret_reference(value) else MASK


def shown_default(parameter: Parameter) -> str | None:
    """The Databricks default as it may be shown: a Secret's is always MASK (None stays None)."""
    if parameter.default is None or parameter.data_type is not DataType.SECRET:
        return parameter.default
    return MASK


def shown_values(parameters: Sequence[Parameter], values: Mapping[str, str]) -> dict[str, str]:
    """A run's values (overrides, parameters sent) as they may be shown: those of the Job's
    Secret parameters masked (`shown_value`), whatever they hold."""
    secret = {p.name for p in parameters if p.data_type is DataType.SECRET}
    return {
        name: (shown_value(DataType.SECRET, value) or MASK) if name in secret else value
        for name, value in values.items()
    }


def check_secret_choice(
    before: Sequence[Parameter],
    after: Sequence[Parameter],
    overrides: Mapping[str, str] | None = None,
    *,
    may_choose_secrets: bool,
) -> None:
    """AccessDeniedError when a caller who may not choose which secret the server reads (below
    admin on the API and web UI; docs/security.md) sets a Secret's reference: a Secret stored
    value that changed, a Data Type changed to Secret with a value, or a run's Secret override."""
    if may_choose_secrets:
        return
    old = {p.key: p for p in before}
    for parameter in after:
        previous = old.get(parameter.key)
        if (
            parameter.data_type is DataType.SECRET
            and parameter.stored_value is not None
            and (
                previous is None
                or previous.stored_value != parameter.stored_value
                or previous.data_type is not DataType.SECRET
            )
        ):
            raise _secret_denied(parameter.name)
    secret = {p.name for p in after if p.data_type is DataType.SECRET}
    for name in overrides or {}:
        if name in secret:
            raise _secret_denied(name)


def _secret_denied(name: str) -> AccessDeniedError:
    return AccessDeniedError(
        f"Parameter {name!r} is a Secret, and choosing which secret the server reads needs the "
        "admin role. Ask an admin to set its reference, or run without a value for it (its "
        "stored reference is used)."
    )


def user_value(data_type: DataType, value: str, *, name: str) -> str:
    """A value the user gave (a run's override or a Job's stored value) as it is sent (D2 amended).

    Checked for sendable text (`check_parameter_text`) and against its Data Type (`serialise_value`), then
    sent as typed: String and Secret exactly, every other type with surrounding whitespace trimmed
    and nothing re-formatted (`007` stays `007`, `True` stays `True`, `1.50` stays `1.50`).
    Raises ParameterTextError or ParameterValueError naming the parameter.
    """
    check_parameter_text(value, name=name)
    if data_type is DataType.SECRET:
        if not is_secret_reference(value):
            raise secret_reference_needed(name)
        return value.strip()
    serialise_value(data_type, value, name=name)
    return value if data_type is DataType.STRING else value.strip()


def checked_parameter(before: Parameter, after: Parameter) -> Parameter:
    """A user's edit of one parameter (its Data Type, Direction and stored value), checked and
    with the stored value as it is kept (`user_value`: as typed, trimmed unless String; a Secret
    a reference). The one rule every adapter (API, web, CLI) goes through (`Services.save_job`).

    Refused (UsageError): any change to a task-scoped (reference-only) parameter; a Data Type
    the Databricks default does not fit (Sync would not keep it, D9); leaving Secret while the
    stored value is still a reference (give a new value or clear it); a stored value that does
    not fit the Data Type (ParameterValueError) or is a Secret given as text.
    """
    if after == before:
        return after
    if not before.is_job_level:
        raise UsageError(
            f"Parameter {before.name!r} is defined on task {before.task_key!r}: it is imported "
            "for reference only and never sent, so nothing can be set on it. Declare it on the "
            "Databricks Job's job-level parameters, then Sync Parameters."
        )
    if after.data_type is not before.data_type:
        if (
            after.data_type not in (DataType.STRING, DataType.SECRET)
            and before.default is not None
            and not value_fits(after.data_type, before.default)
        ):
            raise ParameterValueError(
                f"Parameter {before.name!r} cannot be {after.data_type}: its Databricks default "
                f"{shown(shown_default(before))} is not {_EXPECTED[after.data_type]}. Choose a "
                f"Data Type its default fits (String always does)."
            )
        if (
            before.data_type is DataType.SECRET
            and after.stored_value is not None
            and after.stored_value == before.stored_value
        ):
            raise UsageError(
                f"Parameter {before.name!r} holds a secret reference: give it a new stored value "
                f"of Data Type {after.data_type} with the change, or clear its stored value."
            )
    value = after.stored_value
    if value is not None and (
        value != before.stored_value or after.data_type is not before.data_type
    ):
        value = user_value(after.data_type, value, name=after.name)
    return replace(after, stored_value=value)


class Keep(enum.Enum):
    """A field of an edit that is left as it is (None means "clear" where a field may be None)."""

    KEEP = "keep"


@dataclass(frozen=True, slots=True)
class ParameterEdit:
    """A change to one parameter of a Job, as a user asks for it (API, web, CLI)."""

    name: str
    task_key: str | Keep | None = Keep.KEEP
    """Which scope, when the name is on several (None: the job level); KEEP: find by name."""
    data_type: DataType | Keep = Keep.KEEP
    direction: Direction | Keep | None = Keep.KEEP
    stored_value: str | Keep | None = Keep.KEEP


def apply_edits(job: Job, edits: Iterable[ParameterEdit]) -> tuple[Parameter, ...]:
    """The Job's parameters with the edits applied, unchecked (`checked_parameter` checks each,
    in `Services.save_job`). UsageError when a name is on several scopes and no `task_key` says
    which; UnknownParameterError, listing the Job's parameters, when there is no such parameter."""
    parameters = list(job.parameters)
    for edit in edits:
        index = _find_parameter(job, parameters, edit)
        current = parameters[index]
        if not isinstance(edit.data_type, Keep):
            current = replace(current, data_type=edit.data_type)
        if not isinstance(edit.direction, Keep):
            current = replace(current, direction=edit.direction)
        if not isinstance(edit.stored_value, Keep):
            current = replace(current, stored_value=edit.stored_value)
        parameters[index] = current
    return tuple(parameters)


def _find_parameter(job: Job, parameters: Sequence[Parameter], edit: ParameterEdit) -> int:
    matches = [
        i
        for i, p in enumerate(parameters)
        if p.name == edit.name and (isinstance(edit.task_key, Keep) or p.task_key == edit.task_key)
    ]
    if len(matches) == 1:
        return matches[0]
    if matches:
        scopes = ", ".join(str(parameters[i].scope) for i in matches)
        raise UsageError(
            f"Parameter {edit.name!r} exists on several scopes ({scopes}) of job {job.id}: say "
            "which with its task key (`--task TASK_KEY`, or `task_key` in the API: null for the "
            "job level)."
        )
    names = ", ".join(sorted({p.name for p in parameters})) or "none"
    on_task = f" on task {edit.task_key!r}" if isinstance(edit.task_key, str) else ""
    raise UnknownParameterError(
        f"Job {job.id} ({job.name!r}) has no parameter {edit.name!r}{on_task}. Its parameters: "
        f"{names}. If it was added in Databricks since the import, Sync Parameters first."
    )


# --- D3: what a run sends --------------------------------------------------------------------


def resolve_run_parameters(
    parameters: Sequence[Parameter], overrides: Mapping[str, str]
) -> dict[str, str]:
    """The `job_parameters` map of run-now, or the UsageError that must stop the run (D2, D3).

    Sent: job-level parameters whose Direction is Input, Input&Output or unset and whose names
    do not start with `_`, each as the run's override, else the Job's stored value, as the user
    typed it (`user_value`). A parameter with neither is not sent, so Databricks applies its own
    default exactly as it defines it (D2 amended: what Databricks receives never depends on the
    Data Type Polysync inferred). Refused, before any API call: a name or value that cannot be
    sent (ParameterTextError), an override of a task-scoped parameter
    (TaskScopedParameterError), of an Output parameter, of an internal `_` parameter
    (UsageError), of a name the Job does not have (UnknownParameterError), or a value that does
    not fit its Data Type (ParameterValueError).
    """
    job_level: dict[str, Parameter] = {}
    task_scoped: dict[str, list[Parameter]] = {}
    for parameter in parameters:
        if parameter.is_job_level:
            job_level.setdefault(parameter.name, parameter)
        else:
            task_scoped.setdefault(parameter.name, []).append(parameter)

    for name in overrides:
        check_parameter_text(name, what="name")
        _check_override(name, job_level, task_scoped)

    resolved: dict[str, str] = {}
    for parameter in job_level.values():
        if not parameter.is_sent:
            continue
        if parameter.name in overrides:
            value = overrides[parameter.name]
        elif parameter.stored_value is not None:
            value = parameter.stored_value
        else:
            continue  # Databricks' own default applies
        resolved[parameter.name] = user_value(parameter.data_type, value, name=parameter.name)
    return resolved


def _check_override(
    name: str, job_level: Mapping[str, Parameter], task_scoped: Mapping[str, list[Parameter]]
) -> None:
    if name.startswith("_"):
        # Refused rather than silently dropped: the caller asked for something that cannot happen.
        raise UsageError(
            f"Parameter {name!r} is internal (its name starts with '_') and is never sent to "
            f"Databricks. Remove it from the run's values."
        )
    parameter = job_level.get(name)
    if parameter is None:
        if name in task_scoped:
            raise task_scoped_parameter_error(task_scoped[name])
        settable = sorted(p.name for p in job_level.values() if p.is_sent)
        known = (
            f"Parameters that can be set for a run: {', '.join(settable)}."
            if settable
            else "This Job has no job-level parameters that can be set for a run."
        )
        raise UnknownParameterError(
            f"This Job has no parameter {name!r}. {known} If it was added to the Databricks Job "
            f"since the import, sync the Polysync Job's parameters first (Sync Parameters).",
            hint=sync_parameters_hint(),
        )
    if parameter.reference_only:
        raise UsageError(
            f"Parameter {name!r} was imported for reference only ({parameter.source}) and is "
            f"never sent with a run. Remove it from the run's values; change it on the "
            f"platform itself if it must change."
        )
    if parameter.effective_direction is Direction.OUTPUT:
        raise UsageError(
            f"Parameter {name!r} has Direction Output, and Output parameters are never sent to "
            f"Databricks, so it cannot be set for a run. Remove it from the run's values, or "
            f"change its Direction to Input or Input&Output: {CHANGE_DIRECTION}."
        )


def task_scoped_parameter_error(scoped: Sequence[Parameter]) -> TaskScopedParameterError:
    """The specification's troubleshooting text for a value that would not reach the workflow."""
    name = scoped[0].name
    places = ", ".join(f"task {p.task_key!r} ({p.source})" for p in scoped)
    return TaskScopedParameterError(
        f"Parameter {name!r} is defined on {places}, not at the job level, so a value for it "
        f"would not reach the workflow: Polysync sends only job-level parameters. Fix: declare "
        f"it on the Databricks Job's job-level parameters (settings.parameters), then sync the "
        f"Polysync Job's parameters (Sync Parameters).",
        hint=sync_parameters_hint(),
    )


# --- D9: Sync Parameters -------------------------------------------------------------------


def merge_user_settings(
    old: Sequence[Parameter], new: Sequence[Parameter]
) -> tuple[Parameter, ...]:
    """The new schema, keeping what the user set on parameters that remain (D9).

    A parameter remains when (name, task_key) matches; failing that, when exactly one vanished
    and one new parameter share a name (it moved between the job level and a task, e.g. after
    following the task-scoped troubleshooting fix). It keeps its Direction and stored value, and
    its Data Type when the user changed it from the inferred one and the new default still fits.
    """
    merged, _, _ = _reconcile(old, new)
    return merged


def diff_parameters(old: ImportedJob, new: ImportedJob) -> ParameterDiff:
    """What Sync Parameters changes: `old` is the stored Job, `new` a fresh import (D9).

    Changes are measured against the merged schema, so a Data Type the user chose and Sync
    keeps is not reported as changed.
    """
    merged, pairs, removed = _reconcile(old.parameters, new.parameters)
    changed: list[ParameterChange] = []
    added: list[Parameter] = []
    for index, parameter in enumerate(merged):
        previous = pairs.get(index)
        if previous is None:
            added.append(parameter)
            continue
        fields = tuple(
            field_name
            for field_name, differs in (
                ("default", previous.default != parameter.default),
                ("data_type", previous.data_type != parameter.data_type),
                ("scope", previous.task_key != parameter.task_key),
            )
            if differs
        )
        if fields:
            changed.append(ParameterChange(old=previous, new=parameter, fields=fields))
    unfit = tuple(
        p
        for p in merged
        if p.stored_value is not None and not value_fits(p.data_type, p.stored_value)
    )
    return ParameterDiff(
        added=tuple(added),
        removed=removed,
        changed=tuple(changed),
        kind_changed=(old.kind, new.kind) if old.kind != new.kind else None,
        unfit_stored_values=unfit,
    )


def sync_job(old: ImportedJob, new: ImportedJob) -> tuple[ImportedJob, ParameterDiff]:
    """The Job after Sync Parameters (fresh schema, user settings kept) and the difference."""
    return replace(new, parameters=merge_user_settings(old.parameters, new.parameters)), (
        diff_parameters(old, new)
    )


def describe_diff(diff: ParameterDiff) -> tuple[str, ...]:
    """One line per difference, for the Sync Parameters report."""
    lines: list[str] = []
    if diff.kind_changed is not None:
        before, after = diff.kind_changed
        lines.append(f"Job Type changed from {before} to {after} (the task count crossed 1).")
    lines.extend(
        f"Added {_describe(p)} ({p.data_type}, default {shown_default(p)!r})." for p in diff.added
    )
    lines.extend(f"Removed {_describe(p)}." for p in diff.removed)
    for change in diff.changed:
        parts = []
        if "scope" in change.fields:
            parts.append(f"moved from {change.old.scope} to {change.new.scope}")
        if "default" in change.fields:
            parts.append(
                f"default {shown_default(change.old)!r} -> {shown_default(change.new)!r}"
                if DataType.SECRET not in (change.old.data_type, change.new.data_type)
                else "default changed (a Secret's is not shown)"
            )
        if "data_type" in change.fields:
            parts.append(f"Data Type {change.old.data_type} -> {change.new.data_type}")
        lines.append(f"Changed {_describe(change.new)}: {'; '.join(parts)}.")
    lines.extend(
        f"The stored value of {_describe(p)} no longer fits its Data Type {p.data_type}; "
        f"update it before the next run."
        for p in diff.unfit_stored_values
    )
    return tuple(lines)


def _describe(parameter: Parameter) -> str:
    return f"parameter {parameter.name!r} ({parameter.scope})"


def _reconcile(
    old: Sequence[Parameter], new: Sequence[Parameter]
) -> tuple[tuple[Parameter, ...], dict[int, Parameter], tuple[Parameter, ...]]:
    """(merged schema, index in `new` -> the old parameter it continues, removed parameters)."""
    old_index_by_key: dict[tuple[str, str | None], int] = {}
    for index, parameter in enumerate(old):
        old_index_by_key.setdefault(parameter.key, index)
    pairs: dict[int, int] = {}
    used_old: set[int] = set()
    for new_index, parameter in enumerate(new):
        old_index = old_index_by_key.get(parameter.key)
        if old_index is not None and old_index not in used_old:
            pairs[new_index] = old_index
            used_old.add(old_index)

    # Scope moves: pair by name only when it is unambiguous on both sides.
    vanished: dict[str, list[int]] = {}
    for index, parameter in enumerate(old):
        if index not in used_old:
            vanished.setdefault(parameter.name, []).append(index)
    appeared: dict[str, list[int]] = {}
    for index, parameter in enumerate(new):
        if index not in pairs:
            appeared.setdefault(parameter.name, []).append(index)
    for name, old_indexes in vanished.items():
        new_indexes = appeared.get(name, [])
        if len(old_indexes) == 1 and len(new_indexes) == 1:
            pairs[new_indexes[0]] = old_indexes[0]
            used_old.add(old_indexes[0])

    merged = tuple(
        _keep_user_settings(old[pairs[index]], parameter) if index in pairs else parameter
        for index, parameter in enumerate(new)
    )
    removed = tuple(p for index, p in enumerate(old) if index not in used_old)
    return merged, {index: old[old_index] for index, old_index in pairs.items()}, removed


def _keep_user_settings(old: Parameter, new: Parameter) -> Parameter:
    data_type = new.data_type
    # At import data_type == infer_data_type(default); a difference means the user chose it.
    user_chose_type = old.data_type is not infer_data_type(old.default)
    if user_chose_type and (new.default is None or value_fits(old.data_type, new.default)):
        data_type = old.data_type
    return replace(new, data_type=data_type, direction=old.direction, stored_value=old.stored_value)
