"""The Notebook and Pipeline job types in a real headless Chromium: Get Pipelines lists them, their
job pages show widgets and reference-only parameters, Execute Now runs them to the end."""

from __future__ import annotations

import re

from playwright.sync_api import Locator, Page, expect

from polysync.domain.records import PLATFORM_ATTRIBUTES, NewPlatform
from tests.conftest import seed_endless_notebook, seed_endless_pipeline
from tests.web.conftest import TOKEN_VARIABLE, WebServer, needs_chromium, shot, sign_in

RUN_BOUND_MS = 45_000  # an upper bound for a run at 60x, not an expected duration
NOTEBOOK = "daily_sales_report"
PIPELINE = "sales-medallion-dlt"
PIPELINE_ID = "6f1c2b7e-3a4d-4e5f-8a9b-0c1d2e3f4a5b"

pytestmark = needs_chromium


def prepare(web: WebServer) -> None:
    """The demo platform with serverless notebook runs, every job type imported."""

    async def run() -> None:
        if not await web.services.store.list_platforms():
            await web.services.add_platform(
                NewPlatform(
                    name="demo",
                    workspace_url=web.emulator_url,
                    auth={"method": "pat", "token": f"env:{TOKEN_VARIABLE}"},
                    options={PLATFORM_ATTRIBUTES: {"serverless": "true"}},
                )
            )
            await web.services.import_jobs("demo", None)

    web.call(run())


def badge(page: Page) -> Locator:
    return page.locator(".run-status .badge")


def test_notebook_job_page_and_run(page: Page, web: WebServer) -> None:
    prepare(web)
    sign_in(page, web.keys["operator"])
    page.goto("/platforms")
    page.get_by_role("link", name="demo").click()
    expect(page.locator("dd", has_text="serverless=true")).to_be_visible()
    page.goto("/jobs")
    expect(page.locator("tr", has_text=NOTEBOOK).locator(".kind")).to_have_text("Notebook")
    page.get_by_role("link", name=NOTEBOOK).click()
    expect(page.locator(".kind").first).to_have_text("Notebook")
    expect(page.locator("main")).to_contain_text("Databricks Notebook")
    region = page.locator("#parameters tr", has_text="region")
    expect(region).to_contain_text("choices: emea, apac, amer")
    page.get_by_role("button", name="Execute Now").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.locator("datalist option")).to_have_count(3 + 3 + 3)  # region, currency, channels
    dialog.get_by_label("region").fill("mars")
    dialog.get_by_role("button", name="Run now").click()
    expect(dialog.get_by_role("alert")).to_contain_text("'emea', 'apac', 'amer'")
    dialog.get_by_label("region").fill("apac")
    dialog.get_by_role("button", name="Run now").click()
    expect(page).to_have_url(re.compile(r"/runs/\d+$"))
    expect(badge(page)).to_have_text("Success", timeout=RUN_BOUND_MS)
    expect(page.locator(".params-sent")).to_contain_text("region=apac")
    expect(page.locator(".timeline tbody tr")).to_have_count(1)
    expect(page.get_by_role("link", name=re.compile("Open in Databricks"))).to_have_attribute(
        "href", re.compile(r"#job/run/\d+")
    )
    shot(page, "11-notebook-run")


def test_an_admin_edits_the_job_type_attributes(page: Page, web: WebServer) -> None:
    prepare(web)
    sign_in(page, web.keys["admin"])
    page.goto("/platforms")
    page.get_by_role("link", name="demo").click()
    attributes = page.get_by_label("Job type attributes")
    expect(attributes).to_have_value("serverless=true")
    attributes.fill("serverless=true\nnot a pair")
    page.get_by_role("button", name="Save platform").click()
    expect(page.locator("#err-attributes")).to_contain_text("KEY=VALUE")
    page.get_by_label("Job type attributes").fill(
        "serverless=true\ndefault_notebook_path=/Shared/polysync-demo"
    )
    page.get_by_role("button", name="Save platform").click()
    expect(page.get_by_label("Job type attributes")).to_have_value(
        "default_notebook_path=/Shared/polysync-demo\nserverless=true"
    )

    async def stored() -> dict[str, str]:
        return (await web.services.store.get_platform("demo")).attributes

    assert web.call(stored()) == {
        "default_notebook_path": "/Shared/polysync-demo",
        "serverless": "true",
    }


def test_pipeline_job_page_and_run(page: Page, web: WebServer) -> None:
    prepare(web)
    sign_in(page, web.keys["operator"])
    page.goto("/jobs")
    expect(page.locator("tr", has_text=PIPELINE).locator(".kind")).to_have_text("Pipeline")
    page.get_by_role("link", name=PIPELINE).click()
    source_path = page.locator("#parameters tr", has_text="source_path")
    expect(source_path).to_contain_text("reference only")
    expect(source_path).to_contain_text("spec.configuration")
    shot(page, "12-pipeline-job")
    page.get_by_role("button", name="Execute Now").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_label("source_path")).to_have_count(0)  # never sent: not offered
    dialog.get_by_label("full_refresh").fill("true")
    dialog.get_by_role("button", name="Run now").click()
    expect(page).to_have_url(re.compile(r"/runs/\d+$"))
    expect(badge(page)).to_have_text("Success", timeout=RUN_BOUND_MS)
    expect(page.locator(".params-sent")).to_contain_text("full_refresh=true")
    expect(page.get_by_role("link", name=re.compile("Open in Databricks"))).to_have_attribute(
        "href", re.compile(rf"#joblist/pipelines/{PIPELINE_ID}/updates/")
    )
    expect(page.locator("main")).to_contain_text(PIPELINE_ID)


def seed_endless(web: WebServer) -> tuple[str, str]:
    """A notebook and a pipeline whose runs never end on their own, seeded in the emulator and
    imported: (notebook path, pipeline id)."""
    path = seed_endless_notebook(web.emulator_url)
    pipeline_id = seed_endless_pipeline(web.emulator_url)

    async def imported() -> None:
        _, results = await web.services.import_jobs("demo", [path, pipeline_id])
        assert all(result.error is None for result in results), results

    web.call(imported())
    return path, pipeline_id


def execute_from_job_page(page: Page, name: str) -> None:
    page.goto("/jobs")
    page.get_by_role("link", name=name, exact=True).click()
    page.get_by_role("button", name="Execute Now").click()
    page.get_by_role("dialog").get_by_role("button", name="Run now").click()
    expect(page).to_have_url(re.compile(r"/runs/\d+$"))


def test_notebook_and_pipeline_runs_fail_and_cancel(page: Page, web: WebServer) -> None:
    # Issue 11's proof in the web UI: each new type watched to Failed (with Databricks' error)
    # and cancelled from its run page.
    prepare(web)
    notebook_path, pipeline_id = seed_endless(web)
    sign_in(page, web.keys["operator"])
    execute_from_job_page(page, "forecast_demand")
    expect(badge(page)).to_have_text("Failed", timeout=RUN_BOUND_MS)
    expect(page.locator("main")).to_contain_text("there is no package called 'forecast'")
    execute_from_job_page(page, "iot-telemetry-dlt")
    expect(badge(page)).to_have_text("Failed", timeout=RUN_BOUND_MS)
    expect(page.locator("main")).to_contain_text("TABLE_OR_VIEW_NOT_FOUND")
    for name in (notebook_path.rsplit("/", 1)[-1], "endless-dlt"):
        execute_from_job_page(page, name)
        expect(badge(page)).to_have_text(re.compile("Starting|Running"), timeout=RUN_BOUND_MS)
        page.once("dialog", lambda confirm: confirm.accept())
        page.get_by_role("button", name="Cancel run").click()
        expect(badge(page)).to_have_text("Cancelled", timeout=RUN_BOUND_MS)
    expect(page.locator("main")).to_contain_text(pipeline_id)  # the last: the pipeline's run
