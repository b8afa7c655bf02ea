"""Jobs: list, read, edit (Direction, stored values checked against the Data Type), Sync
Parameters' diff, Execute Now and its refusals."""

from __future__ import annotations

from dataclasses import replace

import pytest

from polysync.domain.models import DataType, ImportedJob
from polysync.domain.records import RunFilter
from polysync.jobtypes.databricks.parameters import JobKind
from tests.api.conftest import FRAUD, SALES, Api
from tests.api.test_platforms import is_problem


def by_name(job: dict[str, object]) -> dict[str, dict[str, object]]:
    parameters = job["parameters"]
    assert isinstance(parameters, list)
    return {p["name"]: p for p in parameters if p["task_key"] is None}


async def test_list_and_read(api: Api) -> None:
    viewer = api.auth("viewer")
    listed = await api.client.get("/api/v1/jobs", headers=viewer)
    assert {j["external_id"] for j in listed.json()} == set(api.job_ids)
    scoped = await api.client.get(f"/api/v1/jobs?platform_id={api.platform_id}", headers=viewer)
    assert len(scoped.json()) == 3
    is_problem(await api.client.get("/api/v1/jobs?platform_id=999", headers=viewer), 404)
    job = (await api.client.get(f"/api/v1/jobs/{api.job_ids[SALES]}", headers=viewer)).json()
    assert job["job_type"] == "Databricks Workflow"
    assert job["task_keys"] == ["ingest", "clean", "enrich", "publish"]
    parameters = by_name(job)
    assert parameters["batch_size"]["data_type"] == "Int"
    assert parameters["full_refresh"]["data_type"] == "Bool"
    scoped_params = [p for p in job["parameters"] if p["task_key"] == "ingest"]
    assert {p["name"] for p in scoped_params} == {"source", "mode"}
    assert not any(p["sent_at_run_time"] for p in scoped_params)
    is_problem(await api.client.get("/api/v1/jobs/999", headers=viewer), 404)


async def test_edit_name_direction_and_stored_values_kept_as_typed(api: Api) -> None:
    path = f"/api/v1/jobs/{api.job_ids[SALES]}"
    response = await api.client.patch(
        path,
        headers=api.auth("operator"),
        json={
            "name": "Nightly sales",
            "parameters": [
                {"name": "batch_size", "stored_value": " 0042 "},
                {"name": "full_refresh", "stored_value": "TRUE", "direction": "Input&Output"},
                {"name": "env", "direction": "Output"},
            ],
        },
    )
    assert response.status_code == 200, response.text
    parameters = by_name(response.json())
    assert response.json()["name"] == "Nightly sales"
    # Validated, trimmed, never re-formatted (D2 amended).
    assert parameters["batch_size"]["stored_value"] == "0042"
    assert parameters["full_refresh"]["stored_value"] == "TRUE"
    assert parameters["full_refresh"]["direction"] == "Input&Output"
    assert parameters["env"]["sent_at_run_time"] is False
    cleared = await api.client.patch(
        path,
        headers=api.auth("operator"),
        json={"parameters": [{"name": "batch_size", "stored_value": None}]},
    )
    assert by_name(cleared.json())["batch_size"]["stored_value"] is None
    assert by_name(cleared.json())["full_refresh"]["stored_value"] == "TRUE"  # untouched


async def test_a_stored_value_that_does_not_fit_names_the_parameter(api: Api) -> None:
    response = await api.client.patch(
        f"/api/v1/jobs/{api.job_ids[SALES]}",
        headers=api.auth("operator"),
        json={"parameters": [{"name": "batch_size", "stored_value": "lots"}]},
    )
    detail = str(is_problem(response, 400)["detail"])
    assert "batch_size" in detail
    assert "Int" in detail
    assert "lots" in detail
    unknown = await api.client.patch(
        f"/api/v1/jobs/{api.job_ids[SALES]}",
        headers=api.auth("operator"),
        json={"parameters": [{"name": "nope", "stored_value": "1"}]},
    )
    assert "nope" in str(is_problem(unknown, 400)["detail"])
    wrong_direction = await api.client.patch(
        f"/api/v1/jobs/{api.job_ids[SALES]}",
        headers=api.auth("operator"),
        json={"parameters": [{"name": "env", "direction": "Sideways"}]},
    )
    is_problem(wrong_direction, 422)


SECRET_VARIABLE = "POLYSYNC_TEST_PARAMETER_SECRET"
SECRET = "s3cr3t-Value-0f-env"


async def test_secret_data_type_is_set_by_an_admin_kept_by_sync_and_read_only_at_run_now(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_VARIABLE, SECRET)
    path = f"/api/v1/jobs/{api.job_ids[SALES]}"
    reference = f"env:{SECRET_VARIABLE}"
    # Choosing which secret the server reads is an admin's (docs/security.md).
    denied = await api.client.patch(
        path,
        headers=api.auth("operator"),
        json={"parameters": [{"name": "env", "data_type": "Secret", "stored_value": reference}]},
    )
    assert "admin" in str(is_problem(denied, 403)["detail"])
    # A secret given as text is refused, with how to give a reference, and never echoed.
    clear = await api.client.patch(
        path,
        headers=api.auth("admin"),
        json={"parameters": [{"name": "env", "data_type": "Secret", "stored_value": SECRET}]},
    )
    detail = str(is_problem(clear, 400)["detail"])
    assert "env:NAME" in detail
    assert "file:PATH" in detail
    assert SECRET not in clear.text
    response = await api.client.patch(
        path,
        headers=api.auth("admin"),
        json={"parameters": [{"name": "env", "data_type": "Secret", "stored_value": reference}]},
    )
    assert response.status_code == 200, response.text
    env = by_name(response.json())["env"]
    assert env["data_type"] == "Secret"
    assert env["stored_value"] == reference  # the reference, never a secret
    assert env["default"] == "********"  # the Databricks default of a Secret is masked
    stored = await api.store.get_job(api.job_ids[SALES])
    assert {p.name: p.stored_value for p in stored.parameters}["env"] == reference

    synced = await api.client.post(f"{path}/sync-parameters", headers=api.auth("operator"))
    assert by_name(synced.json()["job"])["env"]["data_type"] == "Secret"  # D9 keeps it

    # An operator runs it with the stored reference, but may not choose another one.
    refused = await api.client.post(
        f"{path}/runs", headers=api.auth("operator"), json={"parameters": {"env": "env:HOME"}}
    )
    is_problem(refused, 403)
    run = await api.client.post(f"{path}/runs", headers=api.auth("operator"), json={})
    assert run.status_code == 201, run.text
    assert run.json()["parameters_sent"]["env"] == reference
    await api.services.engine.step()
    (sent,) = api.harness.state.runs.values()
    assert {p["name"]: p["value"] for p in sent.job_parameters}["env"] == SECRET
    recorded = await api.store.get_run(run.json()["id"])
    assert recorded.parameters_sent["env"] == reference  # the store never holds the secret
    shown = await api.client.get(f"/api/v1/runs/{recorded.id}", headers=api.auth("viewer"))
    assert SECRET not in shown.text


async def test_an_unreadable_secret_reference_fails_the_run_naming_the_parameter(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SECRET_VARIABLE, raising=False)
    path = f"/api/v1/jobs/{api.job_ids[SALES]}"
    await api.client.patch(
        path,
        headers=api.auth("admin"),
        json={"parameters": [{"name": "env", "data_type": "Secret"}]},
    )
    run = await api.client.post(
        f"{path}/runs",
        headers=api.auth("admin"),
        json={"parameters": {"env": f"env:{SECRET_VARIABLE}"}},
    )
    assert run.status_code == 201, run.text
    await api.services.engine.step()
    failed = await api.store.get_run(run.json()["id"])
    assert failed.status.value == "Failed"
    assert "Secret parameter 'env'" in failed.message
    assert SECRET_VARIABLE in failed.message
    assert api.harness.state.runs == {}  # run-now was never sent


async def test_a_secret_stored_in_clear_before_is_masked(api: Api) -> None:
    job = await api.store.get_job(api.job_ids[SALES])
    secret = "s3cr3t-value"
    parameters = tuple(
        replace(p, data_type=DataType.SECRET, stored_value=secret) if p.name == "env" else p
        for p in job.parameters
    )
    await api.store.save_job(replace(job, parameters=parameters), api.services.now())
    response = await api.client.get(f"/api/v1/jobs/{job.id}", headers=api.auth("viewer"))
    assert by_name(response.json())["env"]["stored_value"] == "********"
    assert secret not in response.text
    run = await api.client.post(
        f"/api/v1/jobs/{job.id}/runs", headers=api.auth("operator"), json={}
    )
    # Refused (it is no reference), without quoting it.
    assert "secret reference" in str(is_problem(run, 400)["detail"])
    assert secret not in run.text


async def test_a_data_type_change_is_checked(api: Api) -> None:
    path = f"/api/v1/jobs/{api.job_ids[SALES]}"
    env_default = by_name((await api.client.get(path, headers=api.auth("viewer"))).json())["env"]
    assert env_default["data_type"] == "String"
    # `env` defaults to "dev": no Int; the message says why and what fits.
    refused = await api.client.patch(
        path,
        headers=api.auth("operator"),
        json={"parameters": [{"name": "env", "data_type": "Int"}]},
    )
    detail = str(is_problem(refused, 400)["detail"])
    assert "env" in detail
    assert "Databricks default" in detail
    # batch_size (Int, default 500) may become a String, and its value is then text.
    ok = await api.client.patch(
        path,
        headers=api.auth("operator"),
        json={"parameters": [{"name": "batch_size", "data_type": "String", "stored_value": "x"}]},
    )
    assert ok.status_code == 200, ok.text
    assert by_name(ok.json())["batch_size"]["data_type"] == "String"
    scoped = await api.client.patch(
        path,
        headers=api.auth("operator"),
        json={"parameters": [{"name": "source", "task_key": "ingest", "data_type": "Int"}]},
    )
    assert "reference only" in str(is_problem(scoped, 400)["detail"])


async def test_sync_parameters_returns_the_diff(api: Api) -> None:
    settings = api.harness.state.jobs[int(SALES)].settings
    settings["parameters"] = [
        p for p in settings["parameters"] if p["name"] != "quality_threshold"
    ] + [{"name": "region", "default": "westeurope"}]
    for p in settings["parameters"]:
        if p["name"] == "batch_size":
            p["default"] = "750"
    response = await api.client.post(
        f"/api/v1/jobs/{api.job_ids[SALES]}/sync-parameters", headers=api.auth("operator")
    )
    assert response.status_code == 200, response.text
    diff = response.json()
    assert [p["name"] for p in diff["added"]] == ["region"]
    assert [p["name"] for p in diff["removed"]] == ["quality_threshold"]
    changed = {c["name"]: c for c in diff["changed"]}
    assert changed["batch_size"]["fields"] == ["default"]
    assert changed["batch_size"]["new"]["default"] == "750"
    assert diff["kind_changed"] is None
    assert "region" in by_name(diff["job"])


async def test_sync_reports_a_kind_change(api: Api) -> None:
    settings = api.harness.state.jobs[int(FRAUD)].settings
    settings["tasks"] = settings["tasks"][:1]
    response = await api.client.post(
        f"/api/v1/jobs/{api.job_ids[FRAUD]}/sync-parameters", headers=api.auth("operator")
    )
    assert response.json()["kind_changed"] == {
        "old": "Databricks Workflow",
        "new": "Databricks Job",
    }


async def test_sync_of_a_deleted_job_is_the_d4_error(api: Api) -> None:
    api.harness.state.delete_job(int(SALES))
    response = await api.client.post(
        f"/api/v1/jobs/{api.job_ids[SALES]}/sync-parameters", headers=api.auth("operator")
    )
    detail = str(is_problem(response, 400)["detail"])
    assert detail.startswith("INVALID_PARAMETER_VALUE: job_id")
    assert "deleted" in detail


async def test_execute_now_records_the_run_and_the_engine_starts_it(api: Api) -> None:
    response = await api.client.post(
        f"/api/v1/jobs/{api.job_ids[SALES]}/runs",
        headers=api.auth("operator"),
        json={"parameters": {"env": "dev", "batch_size": "+007"}},
    )
    assert response.status_code == 201, response.text
    run = response.json()
    assert response.headers["location"] == f"/api/v1/runs/{run['id']}"
    assert run["status"] == "Starting"
    # Issue 8: the request records the intent and returns; no API call is made in it.
    assert run["databricks_run_id"] is None
    assert [e["status"] for e in run["events"]] == ["Starting"]
    assert run["parameters_sent"] == {"env": "dev", "batch_size": "+007"}  # as typed (D2)
    assert api.harness.state.runs == {}
    await api.services.engine.step()
    started = (await api.client.get(f"/api/v1/runs/{run['id']}", headers=api.auth("viewer"))).json()
    assert started["databricks_run_id"] is not None
    # D7 amended: both ids are known when run-now answers; each in its own slot.
    assert started["run_page_url"].endswith(f"#job/{SALES}/run/{started['databricks_run_id']}")
    assert [e["status"] for e in started["events"]] == ["Starting", "Starting"]
    assert len(api.harness.state.runs) == 1


async def test_execute_now_refusals_are_400_before_any_api_call(api: Api) -> None:
    operator = api.auth("operator")
    path = f"/api/v1/jobs/{api.job_ids[SALES]}/runs"
    scoped = await api.client.post(path, headers=operator, json={"parameters": {"source": "x"}})
    detail = str(is_problem(scoped, 400)["detail"])
    assert "source" in detail
    assert "ingest" in detail
    assert "Sync Parameters" in detail
    bad_value = await api.client.post(
        path, headers=operator, json={"parameters": {"full_refresh": "maybe"}}
    )
    detail = str(is_problem(bad_value, 400)["detail"])
    assert "full_refresh" in detail
    assert "maybe" in detail
    unknown = await api.client.post(path, headers=operator, json={"parameters": {"zzz": "1"}})
    assert "zzz" in str(is_problem(unknown, 400)["detail"])
    broken, _ = await api.store.upsert_job(
        api.platform_id,
        ImportedJob(external_id="12ab", name="broken", kind=JobKind.JOB, task_count=1),
        api.services.now(),
    )
    bad_id = await api.client.post(f"/api/v1/jobs/{broken.id}/runs", headers=operator, json={})
    detail = str(is_problem(bad_id, 400)["detail"])
    assert detail.startswith("INVALID_PARAMETER_VALUE: job_id")
    assert "Re-import the job from the Platform editor" in detail
    assert api.harness.state.runs == {}
    assert await api.services.list_runs(RunFilter()) == []


@pytest.mark.parametrize(
    ("raw_value", "code_point"),
    [("\\ud800", "U+D800"), ("dev\\u0000", "U+0000"), ("\\u001b[2J", "U+001B")],
)
async def test_execute_now_refuses_unsendable_text_with_422_naming_the_parameter(
    api: Api, raw_value: str, code_point: str
) -> None:
    # Issue 8: a lone surrogate was committed and then crashed the engine's every cycle.
    body = '{"parameters": {"env": "' + raw_value + '"}}'
    response = await api.client.post(
        f"/api/v1/jobs/{api.job_ids[SALES]}/runs",
        headers={**api.auth("operator"), "Content-Type": "application/json"},
        content=body.encode("ascii"),
    )
    detail = str(is_problem(response, 422)["detail"])
    # The field, the rule's own words and the character; never pydantic's "unable to parse".
    assert "parameters.env" in detail
    assert "The value holds a " in detail
    assert code_point in detail
    assert await api.services.list_runs(RunFilter()) == []
    assert api.harness.state.runs == {}
