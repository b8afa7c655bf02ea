"""Parameter edits (one rule for every adapter), Secret references and how values are shown."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from polysync.domain.models import DataType, Direction, ImportedJob, Parameter
from polysync.domain.parameters import (
    MASK,
    Keep,
    ParameterEdit,
    apply_edits,
    check_secret_choice,
    checked_parameter,
    describe_diff,
    diff_parameters,
    is_secret_reference,
    merge_user_settings,
    shown_default,
    shown_value,
    shown_values,
    user_value,
)
from polysync.domain.records import Job
from polysync.errors import (
    AccessDeniedError,
    ParameterTextError,
    ParameterValueError,
    SecretReferenceError,
    UnknownParameterError,
    UsageError,
)
from polysync.jobtypes.databricks.parameters import JobKind
from polysync.secrets import SecretScope, reveal_parameters

T = DataType
NOW = datetime(2026, 11, 30, tzinfo=UTC)
ENV = Parameter("env", T.STRING, "prod")
SIZE = Parameter("batch_size", T.INT, "500")
SCOPED = Parameter("source", T.STRING, "pos", task_key="ingest")


def job(*parameters: Parameter) -> Job:
    return Job(
        id=7,
        platform_id=1,
        job_type=JobKind.WORKFLOW,
        external_id="42",
        name="sales",
        description="",
        tags={},
        task_count=2,
        task_keys=("ingest", "clean"),
        parameters=parameters,
        imported_at=NOW,
        synced_at=NOW,
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("env:DB_PASSWORD", True),
        ("  env:DB_PASSWORD ", True),
        ("file:/run/secrets/db", True),
        ("file:db.txt", True),
        ("env:", False),
        ("env:1BAD", False),
        ("env:has space", False),
        ("vault://kv/a", True),
        ("vault:kv/a", False),
        ("hunter2", False),
        ("", False),
    ],
)
def test_is_secret_reference(text: str, expected: bool) -> None:
    assert is_secret_reference(text) is expected


@given(st.text(max_size=40))
def test_a_secret_given_as_text_is_refused_and_never_quoted(text: str) -> None:
    value = f"Zq9{text}"  # no reference whatever follows (no scheme), and easy to look for
    with pytest.raises(ParameterValueError) as refused:
        user_value(T.SECRET, value, name="password")
    if not isinstance(refused.value, ParameterTextError):  # unsendable text says so first
        assert "env:NAME" in refused.value.message
    assert "Zq9" not in refused.value.message


def test_values_are_kept_as_typed_and_a_secret_as_its_reference() -> None:
    assert user_value(T.INT, " 0042 ", name="n") == "0042"
    assert user_value(T.STRING, " 0042 ", name="n") == " 0042 "
    assert user_value(T.SECRET, " env:DB ", name="n") == "env:DB"


def test_shown_values_mask_every_secret_that_is_not_a_reference() -> None:
    secret = Parameter("password", T.SECRET, "clear-default", stored_value="env:DB")
    assert shown_value(T.SECRET, "env:DB") == "env:DB"
    assert shown_value(T.SECRET, "clear text") == MASK
    assert shown_value(T.STRING, "clear text") == "clear text"
    assert shown_default(secret) == MASK
    assert shown_default(replace(secret, default=None)) is None
    assert shown_values([secret, ENV], {"password": "hunter2", "env": "dev"}) == {
        "password": MASK,
        "env": "dev",
    }


def test_checked_parameter_keeps_the_value_as_typed() -> None:
    assert checked_parameter(SIZE, replace(SIZE, stored_value=" 0042 ")).stored_value == "0042"
    assert checked_parameter(ENV, replace(ENV, direction=Direction.OUTPUT)).direction is (
        Direction.OUTPUT
    )
    with pytest.raises(ParameterValueError, match="set-param"):
        checked_parameter(SIZE, replace(SIZE, stored_value="lots"))


def test_a_data_type_must_fit_the_databricks_default() -> None:
    with pytest.raises(ParameterValueError, match="Databricks default 'prod'"):
        checked_parameter(ENV, replace(ENV, data_type=T.INT))
    assert checked_parameter(SIZE, replace(SIZE, data_type=T.STRING)).data_type is T.STRING
    secret = checked_parameter(ENV, replace(ENV, data_type=T.SECRET, stored_value="env:X"))
    assert (secret.data_type, secret.stored_value) == (T.SECRET, "env:X")
    with pytest.raises(ParameterValueError, match="secret reference"):
        checked_parameter(ENV, replace(ENV, data_type=T.SECRET, stored_value="dev"))


def test_leaving_secret_needs_a_new_value_or_none() -> None:
    secret = replace(ENV, data_type=T.SECRET, stored_value="env:X")
    with pytest.raises(UsageError, match="new stored value"):
        checked_parameter(secret, replace(secret, data_type=T.STRING))
    assert checked_parameter(secret, replace(secret, data_type=T.STRING, stored_value=None))
    assert checked_parameter(secret, replace(secret, data_type=T.STRING, stored_value="dev"))


def test_a_task_scoped_parameter_cannot_be_edited() -> None:
    with pytest.raises(UsageError, match="reference only"):
        checked_parameter(SCOPED, replace(SCOPED, data_type=T.INT))
    assert checked_parameter(SCOPED, SCOPED) == SCOPED


def test_apply_edits_finds_by_name_and_scope() -> None:
    same_name = replace(SCOPED, name="env")
    edited = apply_edits(
        job(ENV, SIZE, same_name),
        [ParameterEdit("batch_size", stored_value="7", data_type=T.STRING)],
    )
    assert edited[1] == replace(SIZE, stored_value="7", data_type=T.STRING)
    with pytest.raises(UsageError, match="several scopes"):
        apply_edits(job(ENV, same_name), [ParameterEdit("env", direction=None)])
    only_job_level = apply_edits(
        job(ENV, same_name), [ParameterEdit("env", task_key=None, direction=Direction.OUTPUT)]
    )
    assert only_job_level[0].direction is Direction.OUTPUT
    assert only_job_level[1] == same_name
    with pytest.raises(UnknownParameterError, match="batch_size, env"):
        apply_edits(job(ENV, SIZE), [ParameterEdit("nope", stored_value=Keep.KEEP)])


def test_choosing_a_secret_reference_needs_the_right() -> None:
    secret = replace(ENV, data_type=T.SECRET)
    with_reference = replace(secret, stored_value="env:X")
    with pytest.raises(AccessDeniedError, match="admin"):
        check_secret_choice([ENV], [with_reference], may_choose_secrets=False)
    with pytest.raises(AccessDeniedError):
        check_secret_choice([secret], [secret], {"env": "env:Y"}, may_choose_secrets=False)
    check_secret_choice([ENV], [secret], may_choose_secrets=False)  # Secret, no value: allowed
    check_secret_choice([with_reference], [with_reference], may_choose_secrets=False)
    check_secret_choice([ENV], [with_reference], {"env": "env:Y"}, may_choose_secrets=True)


def test_sync_keeps_a_secret_and_its_report_never_shows_a_secret_default() -> None:
    old = ImportedJob(
        "42", "sales", JobKind.WORKFLOW, 2, parameters=(replace(ENV, data_type=T.SECRET),)
    )
    new = replace(old, parameters=(replace(ENV, default="new-clear-password"),))
    merged = merge_user_settings(old.parameters, new.parameters)
    assert merged[0].data_type is T.SECRET
    lines = describe_diff(diff_parameters(old, new))
    assert lines == (
        "Changed parameter 'env' (job level): default changed (a Secret's is not shown).",
    )
    assert "new-clear-password" not in " ".join(lines)


def test_secret_references_are_read_only_when_run_now_is_sent() -> None:
    secret = Parameter("password", T.SECRET, stored_value="env:POLYSYNC_SECRET_DB")
    values = {"password": "env:POLYSYNC_SECRET_DB", "env": "dev"}
    environ = {"POLYSYNC_SECRET_DB": "s3cr3t"}
    revealed = asyncio.run(reveal_parameters([secret, ENV], values, environ=environ))
    assert revealed == {"password": "s3cr3t", "env": "dev"}
    assert values["password"] == "env:POLYSYNC_SECRET_DB"  # the caller's map is not changed
    with pytest.raises(SecretReferenceError, match=r"Secret parameter 'password'.*not set"):
        asyncio.run(reveal_parameters([secret], values, environ={}))
    scoped = SecretScope(env_prefix="POLYSYNC_ALLOWED_")
    with pytest.raises(SecretReferenceError, match="POLYSYNC_SECRET_ENV_PREFIX"):
        asyncio.run(reveal_parameters([secret], values, scoped, environ=environ))
