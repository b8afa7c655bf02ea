""" "Repair run" in a real headless Chromium (D13): a Failed run's page offers it to an operator
(never to a viewer, never for a successful run); a click (CSRF-checked POST, like Cancel)
reopens the run, and the page follows the repaired run to Success with its history."""

from __future__ import annotations

import re

import httpx
from playwright.sync_api import Locator, Page, expect

from polysync.domain.records import NewPlatform
from tests.web.conftest import TOKEN_VARIABLE, WebServer, needs_chromium, shot, sign_in

RUN_BOUND_MS = 45_000  # an upper bound for a run at 60x, not an expected duration
FLAKY = "flaky-etl"

pytestmark = needs_chromium


def prepare(web: WebServer) -> int:
    """A workflow whose middle task fails once and succeeds when rerun, seeded in the emulator
    and imported; one run of it executed. Returns that run's id."""
    seeded = httpx.post(
        f"{web.emulator_url}/emulator/jobs",
        json={
            "name": FLAKY,
            "tasks": [
                {"task_key": "extract", "emulator": {"duration_s": 30}},
                {
                    "task_key": "transform",
                    "depends_on": [{"task_key": "extract"}],
                    "emulator": {"duration_s": 30, "attempts": ["failure", "success"]},
                },
                {"task_key": "load", "depends_on": [{"task_key": "transform"}]},
            ],
        },
    )
    seeded.raise_for_status()
    job_id = str(seeded.json()["job_ids"][0])

    async def run() -> int:
        if not await web.services.store.list_platforms():
            await web.services.add_platform(
                NewPlatform(
                    name="demo",
                    workspace_url=web.emulator_url,
                    auth={"method": "pat", "token": f"env:{TOKEN_VARIABLE}"},
                )
            )
        _, results = await web.services.import_jobs("demo", [job_id])
        job = results[0].job
        assert job is not None
        return (await web.services.execute(job, {})).id

    return web.call(run())


def badge(page: Page) -> Locator:
    return page.locator(".run-status .badge")


def test_an_operator_repairs_a_failed_run_from_its_page(page: Page, web: WebServer) -> None:
    run_id = prepare(web)
    sign_in(page, web.keys["viewer"])
    page.goto(f"/runs/{run_id}")
    expect(badge(page)).to_have_text("Failed", timeout=RUN_BOUND_MS)
    expect(page.get_by_role("button", name="Repair run")).to_have_count(0)  # a viewer
    page.get_by_role("button", name="Sign out").click()

    sign_in(page, web.keys["operator"])
    page.goto(f"/runs/{run_id}")
    expect(badge(page)).to_have_text("Failed")
    repair = page.get_by_role("button", name="Repair run")
    expect(repair).to_be_visible()
    shot(page, "12-run-repair-offered")
    page.once("dialog", lambda confirm: confirm.accept())
    repair.click()
    expect(page.locator("#run-repair")).to_contain_text("#1 of transform, load")
    expect(page.locator("#run-repair")).to_contain_text("web:")
    expect(badge(page)).to_have_text(re.compile("Running|Success"))
    expect(page.get_by_role("button", name="Repair run")).to_have_count(0)
    expect(badge(page)).to_have_text("Success", timeout=RUN_BOUND_MS)
    expect(page.locator("#run-repair")).to_contain_text("repair id")
    history = page.locator(".history li")
    expect(history.filter(has_text="Repair #1 requested (tasks: transform, load)")).to_have_count(1)
    expect(history.last).to_contain_text("Success")
    shot(page, "13-run-repaired")
    # A successful run offers no repair.
    page.reload()
    expect(page.get_by_role("button", name="Repair run")).to_have_count(0)

    def repairs() -> int:
        stats = httpx.get(f"{web.emulator_url}/emulator/stats").json()
        return int(stats["endpoints"].get("jobs/runs/repair", {}).get("total", 0))

    assert repairs() == 1


def test_a_repair_post_without_the_csrf_token_is_refused(page: Page, web: WebServer) -> None:
    run_id = prepare(web)
    sign_in(page, web.keys["operator"])
    answer = page.request.post(f"/runs/{run_id}/repair", headers={"HX-Request": "true"})
    assert answer.status == 403
    assert "security token is missing or out of date" in answer.text()
    run = web.call(web.services.store.get_run(run_id))
    assert run.repair is None
