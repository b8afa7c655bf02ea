"""Sync Parameters (D9): reconcile a stored schema with a fresh import and report the difference."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from polysync.domain.models import DataType, Direction, ImportedJob, Parameter, ParameterDiff
from polysync.domain.parameters import describe_diff, diff_parameters, merge_user_settings, sync_job
from polysync.jobtypes.databricks.parameters import (
    JobKind,
    ParameterSource,
    extract_parameters,
    imported_job,
)

from .fixtures import job

T = DataType
NB = ParameterSource.NOTEBOOK_BASE_PARAMETERS


def schema(*parameters: Parameter, task_count: int = 2) -> ImportedJob:
    return ImportedJob(
        external_id="42",
        name="etl",
        kind=JobKind.WORKFLOW if task_count > 1 else JobKind.JOB,
        task_count=task_count,
        parameters=parameters,
    )


def test_unchanged_schema_has_an_empty_diff() -> None:
    imported = imported_job(job())
    diff = diff_parameters(imported, imported)
    assert diff == ParameterDiff()
    assert diff.is_empty
    assert describe_diff(diff) == ()


def test_added_removed_and_changed() -> None:
    old = schema(
        Parameter("env", T.STRING, "prod"),
        Parameter("gone", T.STRING, "x"),
        Parameter("n", T.STRING, "ten"),
    )
    new = schema(
        Parameter("env", T.STRING, "dev"),
        Parameter("n", T.INT, "10"),
        Parameter("fresh", T.BOOL, "true"),
    )
    diff = diff_parameters(old, new)
    assert [p.name for p in diff.added] == ["fresh"]
    assert [p.name for p in diff.removed] == ["gone"]
    assert [(c.name, c.fields) for c in diff.changed] == [
        ("env", ("default",)),
        ("n", ("default", "data_type")),
    ]
    assert diff.kind_changed is None
    assert not diff.is_empty
    lines = describe_diff(diff)
    assert "Added parameter 'fresh' (job level) (Bool, default 'true')." in lines
    assert "Removed parameter 'gone' (job level)." in lines
    assert "Changed parameter 'env' (job level): default 'prod' -> 'dev'." in lines
    assert (
        "Changed parameter 'n' (job level): default 'ten' -> '10'; Data Type String -> Int."
        in lines
    )


def test_kind_change_is_reported_both_ways() -> None:
    single, multi = schema(task_count=1), schema(task_count=3)
    assert diff_parameters(single, multi).kind_changed == (JobKind.JOB, JobKind.WORKFLOW)
    assert diff_parameters(multi, single).kind_changed == (JobKind.WORKFLOW, JobKind.JOB)
    assert describe_diff(diff_parameters(single, multi))[0] == (
        "Job Type changed from Databricks Job to Databricks Workflow (the task count crossed 1)."
    )
    assert diff_parameters(schema(task_count=2), schema(task_count=5)).kind_changed is None


def test_user_settings_are_kept_for_parameters_that_remain() -> None:
    old = [
        Parameter("env", T.STRING, "prod", direction=Direction.INPUT_OUTPUT, stored_value="uat"),
        Parameter("gone", T.STRING, "x", direction=Direction.OUTPUT, stored_value="y"),
        Parameter("mode", T.STRING, "full", task_key="a", source=NB, stored_value="inc"),
    ]
    new = [
        Parameter("env", T.STRING, "dev"),
        Parameter("mode", T.STRING, "full", task_key="a", source=NB),
        Parameter("added", T.INT, "1"),
    ]
    merged = merge_user_settings(old, new)
    assert merged == (
        Parameter("env", T.STRING, "dev", direction=Direction.INPUT_OUTPUT, stored_value="uat"),
        Parameter("mode", T.STRING, "full", task_key="a", source=NB, stored_value="inc"),
        Parameter("added", T.INT, "1"),
    )


def test_same_name_on_different_tasks_is_matched_by_scope() -> None:
    old = [
        Parameter("mode", task_key="a", source=NB, stored_value="for a"),
        Parameter("mode", task_key="b", source=NB, stored_value="for b"),
    ]
    new = [Parameter("mode", task_key="b", source=NB), Parameter("mode", task_key="a", source=NB)]
    assert [p.stored_value for p in merge_user_settings(old, new)] == ["for b", "for a"]


def test_moving_a_parameter_to_the_job_level_keeps_it_and_reports_the_move() -> None:
    # The troubleshooting fix: declare the task parameter at job level, then Sync Parameters.
    old = schema(
        Parameter("mode", T.STRING, "full", task_key="ingest", source=NB, stored_value="inc")
    )
    new = schema(Parameter("mode", T.STRING, "full"))
    merged, diff = sync_job(old, new)
    assert merged.parameters == (Parameter("mode", T.STRING, "full", stored_value="inc"),)
    assert (diff.added, diff.removed) == ((), ())
    assert [(c.name, c.fields) for c in diff.changed] == [("mode", ("scope",))]
    assert describe_diff(diff) == (
        "Changed parameter 'mode' (job level): moved from task 'ingest' to job level.",
    )


def test_ambiguous_moves_are_an_add_and_removes() -> None:
    old = schema(Parameter("mode", task_key="a"), Parameter("mode", task_key="b"))
    new = schema(Parameter("mode"))
    diff = diff_parameters(old, new)
    assert [p.key for p in diff.added] == [("mode", None)]
    assert [p.key for p in diff.removed] == [("mode", "a"), ("mode", "b")]
    assert diff.changed == ()


def test_a_data_type_the_user_chose_is_kept_while_the_new_default_fits() -> None:
    old = schema(
        Parameter("token", T.SECRET, "vault://kv/a"),
        Parameter("cfg", T.JSON, "{}"),
        Parameter("cfg2", T.JSON, "{}"),
        Parameter("zip", T.INT, "0042"),  # inferred String; the user said Int
    )
    new = schema(
        Parameter("token", T.STRING, "vault://kv/b"),
        Parameter("cfg", T.STRING, '{"a": 1}'),
        Parameter("cfg2", T.STRING, "not json"),
        Parameter("zip", T.STRING, "0043"),
    )
    merged, diff = sync_job(old, new)
    assert [p.data_type for p in merged.parameters] == [T.SECRET, T.JSON, T.STRING, T.INT]
    fields = {c.name: c.fields for c in diff.changed}
    assert fields == {
        "token": ("default",),
        "cfg": ("default",),
        "cfg2": ("default", "data_type"),
        "zip": ("default",),
    }


def test_an_inferred_type_follows_the_new_default() -> None:
    old = schema(Parameter("n", T.INT, "10"))
    new = schema(Parameter("n", T.STRING, "ten"))
    merged, diff = sync_job(old, new)
    assert merged.parameters[0].data_type is T.STRING
    assert diff.changed[0].fields == ("default", "data_type")


def test_stored_values_that_no_longer_fit_are_reported() -> None:
    old = schema(Parameter("n", T.STRING, "abc", stored_value="lots"))
    new = schema(Parameter("n", T.INT, "5"))
    merged, diff = sync_job(old, new)
    assert merged.parameters[0].stored_value == "lots"
    assert [p.name for p in diff.unfit_stored_values] == ["n"]
    assert any("no longer fits its Data Type Int" in line for line in describe_diff(diff))


def test_sync_job_takes_the_fresh_identity() -> None:
    old = imported_job(job())
    answer = job()
    answer["settings"]["name"] = "renamed"
    answer["settings"]["parameters"].append({"name": "extra", "default": "1"})
    merged, diff = sync_job(old, imported_job(answer))
    assert merged.name == "renamed"
    assert [p.name for p in diff.added] == ["extra"]


_parameters = st.lists(
    st.builds(
        Parameter,
        name=st.sampled_from(["a", "b", "c"]),
        data_type=st.sampled_from(list(DataType)),
        default=st.none() | st.sampled_from(["1", "x", "true", "{}", "[]"]),
        direction=st.none() | st.sampled_from(list(Direction)),
        task_key=st.none() | st.sampled_from(["t1", "t2"]),
        stored_value=st.none() | st.sampled_from(["1", "v"]),
    ),
    max_size=6,
    unique_by=lambda p: p.key,
)


@given(_parameters, _parameters)
def test_merge_keeps_the_new_schema_shape(old: list[Parameter], new: list[Parameter]) -> None:
    merged = merge_user_settings(old, new)
    assert [p.key for p in merged] == [p.key for p in new]
    assert [p.default for p in merged] == [p.default for p in new]
    diff = diff_parameters(schema(*old), schema(*new))
    assert len(diff.added) + len(diff.changed) <= len(new)
    assert len(diff.removed) + len(new) - len(diff.added) == len(old)


@given(_parameters)
def test_syncing_a_schema_with_itself_changes_nothing(parameters: list[Parameter]) -> None:
    fresh = [replace(p, direction=None, stored_value=None) for p in parameters]
    merged, diff = sync_job(schema(*parameters), schema(*fresh))
    assert (diff.added, diff.removed, diff.kind_changed) == ((), (), None)
    assert diff.changed == ()
    assert [(p.direction, p.stored_value) for p in merged.parameters] == [
        (p.direction, p.stored_value) for p in parameters
    ]


def test_reference_settings_round_trip_through_sync() -> None:
    settings = job()["settings"]
    parameters = extract_parameters(settings)
    assert merge_user_settings(parameters, parameters) == parameters
