"""Contract: the official databricks-sdk drives the emulator over real HTTP(S), unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import NotFound, OperationFailed, ResourceDoesNotExist
from databricks.sdk.service import jobs

from polysync.emulator.serving import run_in_thread
from polysync.emulator.tls import make_self_signed_cert
from tests.conftest import EmulatorHarness, make_harness, make_spec


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(("DATABRICKS_", "ARM_", "AZURE_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", "/nonexistent/.databrickscfg")


@pytest.fixture
def served(clean_env: None) -> Iterator[tuple[EmulatorHarness, str]]:
    harness = make_harness(make_spec(), served=True)
    base_url, stop = run_in_thread(harness.app)
    try:
        yield harness, base_url
    finally:
        stop()


def sdk(base_url: str, token: str) -> WorkspaceClient:
    return WorkspaceClient(host=base_url, token=token, auth_type="pat")


def tasks(count: int, **script: Any) -> list[dict[str, Any]]:
    return [
        {
            "task_key": f"t{i}",
            "notebook_task": {"notebook_path": f"/t{i}"},
            "emulator": {"duration_s": 1, **script},
            **({"depends_on": [{"task_key": f"t{i - 1}"}]} if i else {}),
        }
        for i in range(count)
    ]


def test_sdk_lists_every_job_across_pages(served: tuple[EmulatorHarness, str]) -> None:
    harness, url = served
    ids = {
        harness.state.create_job({"name": f"j{i}", "tasks": tasks(1 + i % 3)}).job_id
        for i in range(57)
    }
    listed = [job.job_id for job in sdk(url, harness.token).jobs.list(limit=10)]
    assert len(listed) == 57
    assert set(listed) == ids


def test_sdk_gets_a_job_with_more_than_100_tasks(served: tuple[EmulatorHarness, str]) -> None:
    harness, url = served
    job = harness.state.create_job({"name": "wide", "tasks": tasks(230)})
    got = sdk(url, harness.token).jobs.get(job.job_id)
    assert got.settings is not None
    assert got.settings.tasks is not None
    assert [t.task_key for t in got.settings.tasks] == [f"t{i}" for i in range(230)]


def test_sdk_run_now_and_wait_for_success(served: tuple[EmulatorHarness, str]) -> None:
    harness, url = served
    job = harness.state.create_job(
        {"name": "etl", "parameters": [{"name": "env", "default": "prod"}], "tasks": tasks(3)}
    )
    waiter = sdk(url, harness.token).jobs.run_now(job_id=job.job_id, job_parameters={"env": "dev"})
    run = waiter.result(timeout=timedelta(minutes=2), callback=lambda _: harness.clock.advance(60))
    assert run.run_id == waiter.run_id
    assert run.state is not None
    assert run.state.result_state == jobs.RunResultState.SUCCESS
    assert run.job_parameters is not None
    assert [(p.name, p.value) for p in run.job_parameters] == [("env", "dev")]
    assert run.tasks is not None
    assert len(run.tasks) == 3


def test_sdk_waiter_raises_on_a_failed_multi_task_run(served: tuple[EmulatorHarness, str]) -> None:
    harness, url = served
    job = harness.state.create_job({"name": "bad", "tasks": tasks(2, outcome="failure")})
    waiter = sdk(url, harness.token).jobs.run_now(job_id=job.job_id)
    # The real SDK raises on INTERNAL_ERROR, the top-level state of a failed multi-task run.
    with pytest.raises(OperationFailed, match="Task t0 failed with message"):
        waiter.result(timeout=timedelta(minutes=2), callback=lambda _: harness.clock.advance(60))


def test_sdk_cancels_a_run(served: tuple[EmulatorHarness, str]) -> None:
    harness, url = served
    job = harness.state.create_job({"name": "long", "tasks": tasks(1, duration_s=3600)})
    client = sdk(url, harness.token)
    run_id = client.jobs.run_now(job_id=job.job_id).run_id
    run = client.jobs.cancel_run(run_id).result(
        timeout=timedelta(minutes=2), callback=lambda _: harness.clock.advance(5)
    )
    assert run.state is not None
    assert run.state.result_state == jobs.RunResultState.CANCELED


def test_sdk_lists_runs(served: tuple[EmulatorHarness, str]) -> None:
    harness, url = served
    job = harness.state.create_job(
        {"name": "many", "max_concurrent_runs": 100, "tasks": tasks(1, duration_s=3600)}
    )
    client = sdk(url, harness.token)
    started = {client.jobs.run_now(job_id=job.job_id).run_id for _ in range(15)}
    active = {r.run_id for r in client.jobs.list_runs(job_id=job.job_id, active_only=True)}
    assert active == started


def test_sdk_maps_a_missing_job_to_not_found(served: tuple[EmulatorHarness, str]) -> None:
    harness, url = served
    with pytest.raises(ResourceDoesNotExist) as missing:
        sdk(url, harness.token).jobs.get(998654886170278)
    assert isinstance(missing.value, NotFound)
    assert "Job 998654886170278 does not exist." in str(missing.value)


def test_sdk_retries_through_429_with_retry_after(served: tuple[EmulatorHarness, str]) -> None:
    harness, url = served
    job = harness.state.create_job({"name": "x", "tasks": tasks(1)})
    added = httpx.post(
        f"{url}/emulator/faults",
        json={
            "method": "GET",
            "path": "jobs/get$",
            "kind": "status",
            "status": 429,
            "error_code": "REQUEST_LIMIT_EXCEEDED",
            "message": "slow down",
            "retry_after_s": 1,
            "times": 2,
        },
    )
    assert added.status_code == 200
    got = sdk(url, harness.token).jobs.get(job.job_id)
    assert got.job_id == job.job_id
    statuses = [
        r["status"]
        for r in httpx.get(f"{url}/emulator/requests").json()["requests"]
        if r["path"].endswith("/jobs/get")
    ]
    assert statuses == [429, 429, 200]


def test_sdk_over_https_with_the_emulator_ca(
    clean_env: None, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = make_harness(make_spec(), served=True)
    files = make_self_signed_cert(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(files.ca_path))
    base_url, stop = run_in_thread(harness.app, tls=files)
    try:
        assert base_url.startswith("https://")
        job = harness.state.create_job({"name": "tls", "tasks": tasks(2)})
        assert sdk(base_url, harness.token).jobs.get(job.job_id).settings.name == "tls"  # type: ignore[union-attr]
    finally:
        stop()


def test_sdk_refused_with_a_wrong_token(served: tuple[EmulatorHarness, str]) -> None:
    from databricks.sdk.errors import PermissionDenied

    _, url = served
    with pytest.raises(PermissionDenied, match="Invalid access token"):
        list(sdk(url, "dapi-wrong").jobs.list())
