"""The Task JSON shape read by `parse_task` (issue 12): hostile input is refused with a
TaskDefinitionError naming the field, never another exception; a valid shape round-trips."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polysync.errors import TaskDefinitionError
from polysync.task_services import parse_task, task_data
from polysync.tasks.retry import RetryStrategy

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=40)
)
JSONISH = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = st.sampled_from(
    [
        "name", "parameters", "paused", "description", "tags", "priority", "concurrency_cap",
        "on_overlap", "timeout_s", "retry", "schedules", "dependencies", "unknown\x00field",
    ]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(FIELDS, JSONISH, max_size=6), st.text(min_size=1, max_size=30))
def test_any_shape_is_a_task_or_a_task_definition_error_naming_a_field(
    data: dict[str, Any], name: str
) -> None:
    shape = {"name": name, **data}
    refused: TaskDefinitionError | None = None
    try:
        task = parse_task(shape, job_id=7)
    except TaskDefinitionError as exc:
        refused = exc
    if refused is not None:
        assert refused.message
        assert refused.field is None or len(refused.field) <= 200
        return
    assert task.job_id == 7
    assert task.name == shape["name"]


def test_a_full_shape_round_trips() -> None:
    shape = {
        "name": "report",
        "parameters": {"env": "{{upstream.ingest.parameters.env}}"},
        "paused": True,
        "description": "<b>daily</b>",
        "tags": {"team": "bi"},
        "priority": 70,
        "concurrency_cap": 3,
        "on_overlap": "skip",
        "timeout_s": 900,
        "retry": {"enabled": True, "max_attempts": 5, "backoff": "Fixed", "strategy": "Restart"},
        "schedules": [{"cron": "*/10 * * * *", "timezone": "Asia/Kolkata", "misfire_cap": 3}],
        "dependencies": [{"upstream": "ingest", "condition": "on_completion"}],
    }
    task = parse_task(shape, job_id=3)
    again = parse_task(task_data(task), job_id=3)
    assert again == task
    assert task_data(again)["schedules"][0]["misfire_cap"] == 3


def test_a_naive_start_and_a_bad_condition_name_their_fields() -> None:
    for shape, field in (
        ({"schedules": [{"cron": "0 2 * * *", "starts_at": "2026-05-01T02:00:00"}]},
         "schedules[0].starts_at"),
        ({"dependencies": [{"upstream": "a", "condition": "sometimes"}]},
         "dependencies[0].condition"),
        ({"retry": {"max_attempts": 0}}, "retry.max_attempts"),
        ({"schedules": "0 2 * * *"}, "schedules"),
    ):  # fmt: skip
        with pytest.raises(TaskDefinitionError) as caught:
            parse_task({"name": "t", **shape}, job_id=1)
        assert caught.value.field == field, (shape, caught.value.message)


@pytest.mark.parametrize(
    ("retry", "field", "says"),
    [
        ({"enabled": "false"}, "retry.enabled", "must be true or false, not 'false'"),
        ({"max_attempts": "3"}, "retry.max_attempts", "must be a whole number, not '3'"),
        ({"initial_delay_s": "60"}, "retry.initial_delay_s", "a number of seconds, not '60'"),
        ({"max_delay_s": True}, "retry.max_delay_s", "a number of seconds, not True"),
        ({"backoff": "Bogus"}, "retry.backoff", "'Bogus' is not one of Fixed, Linear, Exponential"),
        ({"strategy": "mend"}, "retry.strategy", "'mend' is not one of Repair, Restart"),
    ],
)
def test_each_retry_field_is_named_with_its_choices(
    retry: dict[str, Any], field: str, says: str
) -> None:
    # Found by trying the CLI: "'Bogus' is not a valid Backoff" named no choices, and a text
    # "false" for enabled turned retries on (bool("false") is True).
    with pytest.raises(TaskDefinitionError) as caught:
        parse_task({"name": "t", "retry": retry}, job_id=1)
    assert caught.value.field == field
    assert says in caught.value.message


def test_choices_are_taken_in_any_case() -> None:
    # Found by a new user: `--strategy repair` and `--backoff fixed` were refused.
    task = parse_task(
        {
            "name": "t",
            "on_overlap": "SKIP",
            "retry": {
                "enabled": True,
                "max_attempts": 2,
                "backoff": " fixed",
                "strategy": "repair",
            },
        },
        job_id=1,
    )
    assert (task.on_overlap.value, task.retry.backoff.value, task.retry.strategy) == (
        "skip",
        "Fixed",
        RetryStrategy.REPAIR,
    )
