"""Runs: listing filters, details, the live event stream and long poll driven on manual clocks,
cancel and its 409 once terminal."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote

from tests.api.conftest import BACKFILL, FRAUD, SALES, Api
from tests.api.test_platforms import is_problem


def parse_sse(text: str) -> list[tuple[str, int | None, dict[str, Any]]]:
    events = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            event_id = int(fields["id"]) if "id" in fields else None
            events.append((fields["event"], event_id, json.loads(fields["data"])))
    return events


async def execute(api: Api, external_id: str, **overrides: str) -> dict[str, Any]:
    response = await api.client.post(
        f"/api/v1/jobs/{api.job_ids[external_id]}/runs",
        headers=api.auth("operator"),
        json={"parameters": overrides},
    )
    assert response.status_code == 201, response.text
    run: dict[str, Any] = response.json()
    return run


async def test_execute_now_then_watch_the_stream_to_success(api: Api) -> None:
    run = await execute(api, SALES, env="dev")
    watch = asyncio.ensure_future(
        api.client.get(f"/api/v1/runs/{run['id']}/events", headers=api.auth("viewer"))
    )
    response = await api.drive_until_done(watch)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text)
    kinds = [kind for kind, _, _ in events]
    assert kinds[-1] == "end"
    assert set(kinds[:-1]) == {"status"}
    ids = [event_id for _, event_id, _ in events[:-1]]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)  # each change once
    last = events[-2][2]
    assert last["status"] == "Success"
    assert last["terminal"] is True
    assert "?o=1234567890123456#job/" in last["run_page_url"]
    assert {t["task_key"] for t in last["tasks"]} == {"ingest", "clean", "enrich", "publish"}
    assert [e["status"] for e in last["events"]][-1] == "Success"
    assert "Running" in [e["status"] for e in last["events"]]
    assert events[-1][2] == {"id": run["id"], "status": "Success"}


async def test_stream_resumes_after_last_event_id_and_ends_for_a_terminal_run(api: Api) -> None:
    run = await execute(api, FRAUD)
    final = await api.drive(run["id"])
    events = await api.store.run_events(run["id"])
    response = await api.client.get(
        f"/api/v1/runs/{run['id']}/events",
        headers={**api.auth("viewer"), "Last-Event-ID": str(events[-2].id)},
    )
    parsed = parse_sse(response.text)
    assert [(kind, event_id) for kind, event_id, _ in parsed] == [
        ("status", events[-1].id),
        ("end", events[-1].id),
    ]
    assert parsed[0][2]["status"] == final.status.value == "Failed"
    assert "merchant_category" in parsed[0][2]["message"]
    is_problem(await api.client.get("/api/v1/runs/999/events", headers=api.auth("viewer")), 404)


async def test_long_poll_answers_on_the_next_change(api: Api) -> None:
    run = await execute(api, BACKFILL)
    await api.step(0)  # the engine starts it
    since = (await api.client.get(f"/api/v1/runs/{run['id']}", headers=api.auth("viewer"))).json()[
        "last_event_id"
    ]
    assert since > run["last_event_id"]
    immediate = await api.client.get(
        f"/api/v1/runs/{run['id']}?since={since}", headers=api.auth("viewer")
    )
    assert immediate.json()["last_event_id"] == since  # no wait: answers at once
    poll = asyncio.ensure_future(
        api.client.get(
            f"/api/v1/runs/{run['id']}?wait=60&since={since}", headers=api.auth("viewer")
        )
    )
    response = await api.drive_until_done(poll)
    body = response.json()
    assert body["last_event_id"] > since
    assert body["status"] == "Running"


async def test_long_poll_gives_up_after_wait_seconds(api: Api) -> None:
    run = await execute(api, BACKFILL)
    await api.step(60)  # started
    await api.step(60)  # seen Running: later polls change nothing
    current = (await api.client.get(f"/api/v1/runs/{run['id']}", headers=api.auth("viewer"))).json()
    poll = asyncio.ensure_future(
        api.client.get(
            f"/api/v1/runs/{run['id']}?wait=3&since={current['last_event_id']}",
            headers=api.auth("viewer"),
        )
    )
    for _ in range(50):
        await asyncio.sleep(0)
    api.harness.advance(5)  # no engine step: nothing changes; the wait runs out
    response = await api.drive_until_done(poll)
    assert response.json()["last_event_id"] == current["last_event_id"]


async def test_cancel_is_accepted_then_confirmed_and_a_terminal_run_conflicts(api: Api) -> None:
    run = await execute(api, BACKFILL)
    await api.step(60)
    databricks_run = api.harness.state.runs[int((await api.store.get_run(run["id"])).run_id or 0)]
    operator = api.auth("operator")
    response = await api.client.post(f"/api/v1/runs/{run['id']}/cancel", headers=operator)
    assert response.status_code == 202, response.text
    assert response.json()["run"]["cancel_requested_at"] is not None
    assert not databricks_run.cancel_requested  # the request records the intent ...
    await api.step(0)
    assert databricks_run.cancel_requested  # ... and the engine sends it
    final = await api.drive(run["id"])
    assert final.status.value == "Cancelled"
    again = await api.client.post(f"/api/v1/runs/{run['id']}/cancel", headers=operator)
    problem = is_problem(again, 409)
    assert problem["detail"] == f"Run {run['id']} is already Cancelled; nothing to cancel."
    is_problem(await api.client.post("/api/v1/runs/999/cancel", headers=operator), 404)


async def test_read_shows_tasks_parameters_and_history(api: Api) -> None:
    run = await execute(api, FRAUD, model_version="13")
    await api.drive(run["id"])
    body = (await api.client.get(f"/api/v1/runs/{run['id']}", headers=api.auth("viewer"))).json()
    assert body["status"] == "Failed"
    assert body["parameters_sent"]["model_version"] == "13"
    assert body["overrides"] == {"model_version": "13"}
    failed = [t for t in body["tasks"] if t["status"] == "Failed"]
    assert any(t["task_key"] == "build_features" and t["error"] for t in failed)
    statuses = [e["status"] for e in body["events"]]
    assert statuses[0] == "Starting"
    assert statuses[-1] == "Failed"
    assert body["ended_at"] is not None


async def test_list_filters_by_job_status_window_and_limit(api: Api) -> None:
    first = await execute(api, BACKFILL)
    api.harness.advance(60)
    second = await execute(api, FRAUD)
    await api.drive(second["id"])
    viewer = api.auth("viewer")

    async def ids(query: str) -> list[int]:
        response = await api.client.get(f"/api/v1/runs{query}", headers=viewer)
        assert response.status_code == 200, response.text
        return [r["id"] for r in response.json()]

    assert await ids("") == [second["id"], first["id"]]  # newest first
    assert await ids(f"?job_id={api.job_ids[BACKFILL]}") == [first["id"]]
    assert await ids("?status=Failed") == [second["id"]]
    assert await ids("?status=Failed&status=Starting&status=Running") == [
        second["id"],
        first["id"],
    ]
    assert await ids("?active=true") == [first["id"]]
    assert await ids("?limit=1") == [second["id"]]
    boundary = quote(second["created_at"])  # [created_after, created_before)
    assert await ids(f"?created_after={boundary}") == [second["id"]]
    assert await ids(f"?created_before={boundary}") == [first["id"]]
    assert await ids(f"?created_before={quote(first['created_at'])}") == []
    is_problem(await api.client.get("/api/v1/runs?limit=0", headers=viewer), 422)
    is_problem(await api.client.get("/api/v1/runs?status=Bogus", headers=viewer), 422)
    naive = await api.client.get("/api/v1/runs?created_after=2026-01-01T00:00:00", headers=viewer)
    is_problem(naive, 400)
