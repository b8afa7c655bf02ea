"""Parameter import (D1), classification (D5) and ImportedJob from a jobs/get answer."""

from __future__ import annotations

from typing import Any

import pytest

from polysync.domain.models import DataType, Parameter
from polysync.errors import InvalidExternalIdError
from polysync.jobtypes.databricks.parameters import (
    JobKind,
    ParameterSource,
    classify,
    extract_parameters,
    imported_job,
)
from tests.unit.domain.fixtures import JOB_ID, job

S = ParameterSource


def test_reference_job_settings() -> None:
    parameters = extract_parameters(job()["settings"])
    assert parameters == (
        Parameter("run_date", DataType.STRING, "", source=S.PARAMETERS),
        Parameter("env", DataType.STRING, "prod", source=S.PARAMETERS),
        Parameter(
            "mode", DataType.STRING, "full", task_key="ingest", source=S.NOTEBOOK_BASE_PARAMETERS
        ),
    )
    # A list-shaped task parameter (python_wheel_task.parameters) has no names: nothing imported.
    assert all(p.task_key != "transform" for p in parameters)


def test_spec_shape_job_parameters() -> None:
    settings = {
        "job_parameters": [
            {"name": "count", "default_value": "10"},
            {"name": "ratio", "default_value": "0.5"},
            {"name": "dry_run", "default_value": "False"},
        ]
    }
    assert extract_parameters(settings) == (
        Parameter("count", DataType.INT, "10", source=S.JOB_PARAMETERS),
        Parameter("ratio", DataType.FLOAT, "0.5", source=S.JOB_PARAMETERS),
        Parameter("dry_run", DataType.BOOL, "False", source=S.JOB_PARAMETERS),
    )


def test_name_in_both_shapes_is_one_parameter_and_the_real_shape_wins() -> None:
    settings = {
        "parameters": [{"name": "env", "default": "prod"}],
        "job_parameters": [
            {"name": "env", "default_value": "dev"},
            {"name": "only_spec", "default_value": "1"},
        ],
    }
    assert extract_parameters(settings) == (
        Parameter("env", DataType.STRING, "prod", source=S.PARAMETERS),
        Parameter("only_spec", DataType.INT, "1", source=S.JOB_PARAMETERS),
    )


def test_spec_shape_falls_back_to_default_key() -> None:
    settings = {"job_parameters": [{"name": "a", "default": "x"}]}
    assert extract_parameters(settings)[0].default == "x"


def test_map_shaped_job_level_parameters_are_accepted() -> None:
    settings = {"parameters": {"a": "1"}, "job_parameters": {"b": "true"}}
    assert extract_parameters(settings) == (
        Parameter("a", DataType.INT, "1", source=S.PARAMETERS),
        Parameter("b", DataType.BOOL, "true", source=S.JOB_PARAMETERS),
    )


def test_every_task_source_is_read_and_scoped_to_its_task() -> None:
    settings = {
        "tasks": [
            {"task_key": "nb", "notebook_task": {"base_parameters": {"mode": "full"}}},
            {"task_key": "sql", "sql_task": {"warehouse_id": "w", "parameters": {"day": "1"}}},
            {"task_key": "child", "run_job_task": {"job_id": 7, "job_parameters": {"x": "y"}}},
            {
                "task_key": "wheel",
                "python_wheel_task": {"named_parameters": {"verbose": "true"}},
            },
        ]
    }
    assert extract_parameters(settings) == (
        Parameter(
            "mode", DataType.STRING, "full", task_key="nb", source=S.NOTEBOOK_BASE_PARAMETERS
        ),
        Parameter("day", DataType.INT, "1", task_key="sql", source=S.SQL_PARAMETERS),
        Parameter("x", DataType.STRING, "y", task_key="child", source=S.RUN_JOB_PARAMETERS),
        Parameter(
            "verbose",
            DataType.BOOL,
            "true",
            task_key="wheel",
            source=S.PYTHON_WHEEL_NAMED_PARAMETERS,
        ),
    )
    assert {str(S.SQL_PARAMETERS), str(S.RUN_JOB_PARAMETERS)} == {
        "sql_task.parameters",
        "run_job_task.job_parameters",
    }


def test_same_name_on_job_level_and_several_tasks_is_kept_per_scope() -> None:
    settings = {
        "parameters": [{"name": "env", "default": "prod"}],
        "tasks": [
            {"task_key": "a", "notebook_task": {"base_parameters": {"env": "a"}}},
            {"task_key": "b", "notebook_task": {"base_parameters": {"env": "b"}}},
        ],
    }
    keys = [p.key for p in extract_parameters(settings)]
    assert keys == [("env", None), ("env", "a"), ("env", "b")]


def test_duplicate_definitions_keep_the_first() -> None:
    settings = {
        "parameters": [{"name": "a", "default": "1"}, {"name": "a", "default": "2"}],
        "tasks": [
            {
                "task_key": "t",
                "notebook_task": {"base_parameters": {"p": "nb"}},
                "sql_task": {"parameters": {"p": "sql"}},
            }
        ],
    }
    assert [(p.name, p.default, p.task_key) for p in extract_parameters(settings)] == [
        ("a", "1", None),
        ("p", "nb", "t"),
    ]


def test_json_typed_defaults() -> None:
    settings = {
        "parameters": [
            {"name": "flag", "default": True},
            {"name": "n", "default": 3},
            {"name": "x", "default": 2.5},
            {"name": "big", "default": 1e16},
            {"name": "none", "default": None},
            {"name": "missing"},
            {"name": "obj", "default": {"k": [1, 2]}},
        ]
    }
    by_name = {p.name: p for p in extract_parameters(settings)}
    assert (by_name["flag"].data_type, by_name["flag"].default) == (DataType.BOOL, "true")
    assert (by_name["n"].data_type, by_name["n"].default) == (DataType.INT, "3")
    assert (by_name["x"].data_type, by_name["x"].default) == (DataType.FLOAT, "2.5")
    assert (by_name["big"].data_type, by_name["big"].default) == (DataType.FLOAT, "1e+16")
    assert (by_name["none"].data_type, by_name["none"].default) == (DataType.STRING, None)
    assert (by_name["missing"].data_type, by_name["missing"].default) == (DataType.STRING, None)
    assert (by_name["obj"].data_type, by_name["obj"].default) == (DataType.STRING, '{"k":[1,2]}')


def test_imported_parameters_have_no_user_settings() -> None:
    for parameter in extract_parameters(job()["settings"]):
        assert parameter.direction is None
        assert parameter.stored_value is None


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"parameters": None, "job_parameters": "oops", "tasks": None},
        {"parameters": "oops", "tasks": "oops"},
        {"parameters": [None, 1, "x", [], {"default": "no name"}, {"name": ""}, {"name": 5}]},
        {"tasks": [None, 1, {"notebook_task": {"base_parameters": {"a": "1"}}}]},  # no task_key
        {"tasks": [{"task_key": "t", "notebook_task": "oops", "sql_task": {"parameters": [1]}}]},
        {"tasks": [{"task_key": "t", "notebook_task": {"base_parameters": {5: "x", "": "y"}}}]},
        {"tasks": [{"task_key": 5, "notebook_task": {"base_parameters": {"a": "1"}}}]},
    ],
)
def test_odd_settings_yield_nothing(settings: dict[str, Any]) -> None:
    assert extract_parameters(settings) == ()


def test_not_a_mapping_yields_nothing() -> None:
    assert extract_parameters(None) == ()  # type: ignore[arg-type]
    assert extract_parameters([]) == ()  # type: ignore[arg-type]


def test_odd_entries_are_skipped_not_fatal() -> None:
    settings = {"parameters": [None, {"name": "ok", "default": "1"}, 7]}
    assert [p.name for p in extract_parameters(settings)] == ["ok"]


@pytest.mark.parametrize(
    ("task_count", "kind"),
    [(0, JobKind.JOB), (1, JobKind.JOB), (2, JobKind.WORKFLOW), (100, JobKind.WORKFLOW)],
)
def test_classify(task_count: int, kind: JobKind) -> None:
    assert classify(task_count) is kind


def test_job_kind_values() -> None:
    assert [str(k) for k in JobKind] == ["Databricks Workflow", "Databricks Job"]


def test_imported_job_from_reference_answer() -> None:
    imported = imported_job(job())
    assert imported.external_id == str(JOB_ID)
    assert imported.name == "nightly-etl"
    assert imported.description == "Nightly ETL"
    assert imported.tags == {"team": "data"}
    assert imported.kind is JobKind.WORKFLOW
    assert imported.task_count == 2
    assert imported.task_keys == ("ingest", "transform")
    assert [p.name for p in imported.parameters] == ["run_date", "env", "mode"]


def test_imported_single_task_job_is_a_databricks_job() -> None:
    answer = job()
    del answer["settings"]["tasks"][1]
    assert imported_job(answer).kind is JobKind.JOB


def test_imported_job_tolerates_missing_settings() -> None:
    imported = imported_job({"job_id": 5})
    assert (imported.external_id, imported.name, imported.task_count) == ("5", "", 0)
    assert imported.kind is JobKind.JOB
    assert imported.tags == {}


@pytest.mark.parametrize("job_id", [None, True, 0, -3, 1.5, "abc"])
def test_imported_job_refuses_a_bad_job_id(job_id: object) -> None:
    with pytest.raises(InvalidExternalIdError):
        imported_job({"job_id": job_id, "settings": {}})
