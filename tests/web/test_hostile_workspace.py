"""A hostile workspace against the served product (issue 9): `javascript:` links, HTML and
escape sequences in every string, an endless answer and a trickling one. In the REST API nothing
of it becomes a link and nothing hangs; in a real Chromium nothing of it executes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from playwright.sync_api import Dialog, Page, expect

from polysync.domain.records import NewPlatform, Platform
from polysync.emulator.serving import run_in_thread
from tests.hostile_workspace import (
    ENDLESS_ID,
    SCRIPT,
    TRICKLE_ID,
    WORKFLOW_ID,
    hostile_workspace,
)
from tests.web.conftest import TOKEN_VARIABLE, WebServer, needs_chromium, sign_in

RUN_WAIT_S = 30  # long-poll bound per request while the server's engine polls the run


@dataclass(frozen=True)
class Hostile:
    url: str
    platform: Platform
    job_id: int
    run_id: int


@pytest.fixture(scope="module")
def hostile(web: WebServer) -> Iterator[Hostile]:
    url, stop = run_in_thread(hostile_workspace())
    try:
        services = web.services
        platform = web.call(
            services.add_platform(
                NewPlatform(
                    name="hostile",
                    workspace_url=url,
                    auth={"method": "pat", "token": f"env:{TOKEN_VARIABLE}"},
                    # Short bounds, so the trickling answer is given up on quickly.
                    options={"request_timeout_s": 1, "retry": {"max_attempts": 2}},
                )
            )
        )
        _, results = web.call(services.import_jobs(platform.name, [str(WORKFLOW_ID)]))
        job = results[0].job
        assert job is not None, results[0].error
        run = web.call(services.execute(job, {}))
        yield Hostile(url, platform, job.id, run.id)
    finally:
        stop()


def api(web: WebServer, role: str) -> httpx.Client:
    return httpx.Client(
        base_url=web.base_url,
        headers={"Authorization": f"Bearer {web.keys[role]}"},
        timeout=RUN_WAIT_S + 30,
    )


def finished_run(web: WebServer, run_id: int) -> dict[str, Any]:
    with api(web, "viewer") as client:
        for _ in range(20):
            run: dict[str, Any] = client.get(
                f"/api/v1/runs/{run_id}", params={"wait": RUN_WAIT_S, "since": 0}
            ).json()
            if run["terminal"]:
                return run
            client.get(
                f"/api/v1/runs/{run_id}",
                params={"wait": RUN_WAIT_S, "since": run["last_event_id"]},
            )
    raise AssertionError(f"run {run_id} did not end")


def test_the_api_answers_json_and_no_hostile_link(web: WebServer, hostile: Hostile) -> None:
    run = finished_run(web, hostile.run_id)
    assert run["status"] == "Failed"
    assert SCRIPT in run["message"]  # kept as data: JSON, never HTML
    # D7 amended: the fallback with the job and the run each in its slot.
    assert run["run_page_url"] == f"{hostile.url}/#job/101/run/{run['databricks_run_id']}"
    assert "\ufffd\ufffd\ufffd" in run["message"]  # NUL and lone surrogates: U+FFFD at entry
    assert [task["run_page_url"] for task in run["tasks"]] == [None, None]
    with api(web, "operator") as client:
        answer = client.get(f"/api/v1/platforms/{hostile.platform.id}/pipelines")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert {job["external_id"] for job in answer.json()} == {"101", "102", "103"}


def test_endless_and_trickling_answers_fail_without_hanging(
    web: WebServer, hostile: Hostile
) -> None:
    with api(web, "admin") as client:
        answer = client.post(
            f"/api/v1/platforms/{hostile.platform.id}/import",
            json={"external_ids": [str(WORKFLOW_ID), str(ENDLESS_ID), str(TRICKLE_ID)]},
        )
    assert answer.status_code == 200, answer.text
    errors = {r["external_id"]: r["error"] for r in answer.json()["results"]}
    assert errors[str(WORKFLOW_ID)] is None
    assert "larger than 16,777,216 bytes" in errors[str(ENDLESS_ID)]
    assert "no complete answer within 1 s" in errors[str(TRICKLE_ID)]


@needs_chromium
def test_nothing_of_it_executes_in_the_browser(
    page: Page, web: WebServer, hostile: Hostile
) -> None:
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    finished_run(web, hostile.run_id)
    sign_in(page, web.keys["admin"])

    page.goto(f"/platforms/{hostile.platform.id}")
    page.get_by_role("button", name="Get Pipelines").click()
    expect(page.locator("#pipelines")).to_contain_text(SCRIPT)  # shown as text
    assert_inert(page)

    for path in ("/jobs", f"/jobs/{hostile.job_id}", "/runs"):
        page.goto(path)
        expect(page.locator("main")).to_contain_text(SCRIPT)
        assert_inert(page)

    page.goto(f"/runs/{hostile.run_id}")
    expect(page.locator(".run-status .badge")).to_have_text("Failed")
    expect(page.locator("#run-message")).to_contain_text(SCRIPT)
    link = page.get_by_role("link", name="Open in Databricks")
    assert link.get_attribute("href") == f"{hostile.url}/#job/101/run/5001"
    # The tasks' javascript: and off-site links are not links at all.
    expect(page.locator(".timeline a")).to_have_count(0)
    assert_inert(page)
    assert dialogs == []


def assert_inert(page: Page) -> None:
    page.wait_for_load_state("networkidle")
    assert page.evaluate("() => window.__pwned === undefined")
    assert page.locator("img[src=x]").count() == 0
    assert page.locator("script:not([src])").count() == 0
    hrefs = page.eval_on_selector_all("a[href]", "links => links.map(a => a.href)")
    assert not [h for h in hrefs if not h.startswith(("http://", "https://"))], hrefs
