"""Breaker review findings on the engine: an unconfirmed start is retried with its token, a run
cancelled before it was submitted never reaches Databricks, text from a workspace that no
encoder can carry never poisons a run (demo workspace over ASGI, real SQLite file)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import pytest

from polysync.databricks.client import DatabricksClient
from polysync.databricks.endpoints import Endpoint
from polysync.domain.models import RunStatus
from polysync.jobtypes.databricks.workflow import DatabricksWorkflowJobType
from polysync.services import Services
from tests.conftest import EmulatorHarness
from tests.integration.conftest import SALES, databricks_runs


async def test_a_run_now_answer_without_a_run_id_is_retried_with_the_same_token(
    harness: EmulatorHarness, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = DatabricksClient._call
    tokens: list[str] = []

    async def call(
        self: DatabricksClient, endpoint: Endpoint, **kwargs: Any
    ) -> tuple[dict[str, Any], httpx.Headers]:
        answer, headers = await original(self, endpoint, **kwargs)
        if endpoint is Endpoint.RUN_NOW:
            body: Mapping[str, Any] = kwargs["body"]
            tokens.append(body["idempotency_token"])
            if len(tokens) == 1:
                return {"run_id": "lost-in-a-proxy"}, headers  # the run did start
        return answer, headers

    monkeypatch.setattr(DatabricksClient, "_call", call)
    job = await services.get_job(SALES, platform="demo")
    run = await services.execute(job, {})
    await services.engine.step()
    deferred = await services.store.get_run(run.id)
    assert deferred.status is RunStatus.STARTING
    assert deferred.run_id is None
    assert "not confirmed" in deferred.message
    harness.advance(services.engine.settings.policy.max_interval_s)
    await services.engine.step()
    submitted = await services.store.get_run(run.id)
    assert submitted.run_id is not None
    assert tokens == [run.idempotency_token, run.idempotency_token]
    assert databricks_runs(harness) == [int(submitted.run_id)]  # one run, the one recorded


async def test_cancelling_a_run_an_engine_just_claimed_sends_no_run_now(
    harness: EmulatorHarness, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race, made deterministic: the cancel lands right after the engine claimed the run
    and before it sends run-now."""
    job = await services.get_job(SALES, platform="demo")
    run = await services.execute(job, {})
    store = services.store
    claim = store.claim_due_runs
    starts: list[str] = []

    async def claim_then_cancel(*args: Any, **kwargs: Any) -> Any:
        claimed = await claim(*args, **kwargs)
        if claimed:
            await services.cancel(run.id)  # the user, in another request
        return claimed

    original_start = DatabricksWorkflowJobType.start

    async def start(self: DatabricksWorkflowJobType, *args: Any, **kwargs: Any) -> Any:
        starts.append(kwargs["idempotency_token"])
        return await original_start(self, *args, **kwargs)

    monkeypatch.setattr(store, "claim_due_runs", claim_then_cancel)
    monkeypatch.setattr(DatabricksWorkflowJobType, "start", start)
    report = await services.engine.step()
    assert report.claimed == 1
    assert report.submitted == 0
    final = await store.get_run(run.id)
    assert final.status is RunStatus.CANCELLED
    assert final.message == "Cancelled before it was submitted to Databricks"
    assert starts == []
    assert databricks_runs(harness) == []
    assert harness.state.runs == {}
