"""The web UI in a real headless Chromium: sign in, add a platform, import, sync, execute, watch
runs to Success / Failed / Cancelled; a viewer sees no action. With POLYSYNC_SCREENSHOTS=1 the
pages are saved to docs/screenshots/."""

from __future__ import annotations

import os
import re

import httpx
from playwright.sync_api import (
    Locator,
    Page,
    expect,
)

from polysync.domain.records import NewPlatform
from tests.web.conftest import TOKEN_VARIABLE, WebServer, needs_chromium, shot, sign_in

SALES, FRAUD, BACKFILL = "nightly-sales-etl", "fraud-scoring", "warehouse-backfill"
SALES_ID = 914275016372845
RUN_BOUND_MS = 45_000  # an upper bound for a run at 60x, not an expected duration

pytestmark = needs_chromium


def change_sales_parameters(web: WebServer) -> None:
    """Edit the job in the emulated workspace: a new parameter and a new default to sync."""
    token = {"Authorization": f"Bearer {os.environ[TOKEN_VARIABLE]}"}
    with httpx.Client(base_url=web.emulator_url, headers=token) as client:
        settings = client.get("/api/2.1/jobs/get", params={"job_id": SALES_ID}).json()["settings"]
        parameters = [
            {**p, "default": "750"} if p["name"] == "batch_size" else p
            for p in settings["parameters"]
        ]
        parameters.append({"name": "region", "default": "westeurope"})
        answer = client.post(
            "/api/2.1/jobs/update",
            json={"job_id": SALES_ID, "new_settings": {"parameters": parameters}},
        )
        answer.raise_for_status()


def nav(page: Page, name: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name=name).click()


def badge(page: Page) -> Locator:
    return page.locator(".run-status .badge")


def test_sign_in_refuses_a_wrong_key_then_signs_in_and_out(page: Page, web: WebServer) -> None:
    page.goto("/runs")
    expect(page).to_have_url(re.compile(r"/sign-in\?next=/runs$"))
    expect(page.get_by_role("heading", name="Sign in to Polysync")).to_be_visible()
    shot(page, "01-sign-in")
    page.get_by_label("API key").fill("psk-not-a-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text(re.compile("not valid"))
    page.get_by_label("API key").fill(web.keys["viewer"])
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/runs$"))
    expect(page.locator(".role-chip")).to_have_text("viewer")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/sign-in$"))
    page.goto("/jobs")
    expect(page).to_have_url(re.compile(r"/sign-in"))


def test_platform_import_sync_execute_fail_and_cancel(page: Page, web: WebServer) -> None:
    sign_in(page, web.keys["admin"])

    # --- Platform editor: a secret value is refused inline and never echoed back.
    nav(page, "Platforms")
    page.get_by_role("link", name="Add platform").click()
    page.get_by_label("Name").fill("demo")
    page.get_by_label("Workspace Url").fill(web.emulator_url)
    page.get_by_label("Description").fill("The demo workspace (emulated at 60x).")
    expect(page.get_by_label("Method")).to_have_value("pat")
    page.get_by_label("Token reference").fill("dapi0123456789abcdef-a-real-looking-token")
    page.get_by_role("button", name="Add platform").click()
    expect(page.locator("#err-pat_token")).to_contain_text("secret reference, not the secret")
    expect(page.get_by_label("Token reference")).to_have_value("")
    assert "dapi0123456789abcdef" not in page.content()
    page.get_by_label("Token reference").fill(f"env:{TOKEN_VARIABLE}")
    page.get_by_role("button", name="Add platform").click()
    expect(page.get_by_role("status").filter(has_text="Platform saved.")).to_be_visible()

    # --- Test connectivity, Get Pipelines, Import selected.
    page.get_by_role("button", name="Test connectivity").click()
    expect(page.locator("#connectivity")).to_contain_text("Connected.")
    expect(page.locator("#connectivity")).to_contain_text("1234567890123456")
    page.get_by_role("button", name="Get Pipelines").click()
    rows = page.locator("#pipelines tbody tr")
    expect(rows).to_have_count(16)
    expect(page.locator("#pipelines .summary")).to_have_text(
        "16 jobs found: 7 Workflows, 4 Notebooks, 3 Jobs, 2 Pipelines."
    )
    expect(rows.filter(has_text="daily_sales_report").locator(".kind")).to_have_text("Notebook")
    expect(rows.filter(has_text="sales-medallion-dlt").locator(".kind")).to_have_text("Pipeline")
    expect(rows.filter(has_text=SALES).locator(".kind")).to_have_text("Workflow")
    expect(rows.filter(has_text="vacuum-delta-tables").locator(".kind")).to_have_text("Job")
    for name in (SALES, FRAUD, BACKFILL):
        page.get_by_label(f"Select {name}").check()
    shot(page, "02-platform-editor-pipelines")
    page.get_by_role("button", name="Import selected").click()
    expect(page.locator("#import-result")).to_contain_text("Imported 3 of 3")
    expect(page.locator("#platform-jobs tbody tr")).to_have_count(3)
    shot(page, "03-platform-imported")

    # --- Job page: parameters, a stored value, Sync Parameters with its diff.
    page.locator("#platform-jobs").get_by_role("link", name=SALES).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(SALES)
    expect(page.locator("#parameters")).to_contain_text("reference only")
    page.get_by_label("Stored value of env").fill("staging")
    page.get_by_label("Direction of quality_threshold").select_option("Input&Output")
    page.get_by_role("button", name="Save parameters").click()
    expect(page.locator("#parameters .alert-success")).to_have_text("Parameters saved.")
    expect(page.get_by_label("Stored value of env")).to_have_value("staging")
    page.get_by_label("Stored value of batch_size").fill("lots")
    page.get_by_role("button", name="Save parameters").click()
    expect(page.locator("#parameters .field-error")).to_contain_text("batch_size")
    page.get_by_label("Stored value of batch_size").fill("")
    page.get_by_role("button", name="Save parameters").click()
    expect(page.locator("#parameters .alert-success")).to_be_visible()

    change_sales_parameters(web)
    page.get_by_role("button", name="Sync Parameters").click()
    diff = page.locator("#sync-diff")
    expect(diff).to_contain_text("Added parameter 'region'")
    expect(diff).to_contain_text("default '500' -> '750'")
    expect(page.get_by_label("Stored value of env")).to_have_value("staging")  # kept (D9)
    expect(page.get_by_label("Direction of quality_threshold")).to_have_value("Input&Output")
    shot(page, "04-job-parameters-sync-diff")

    # --- Execute Now with an override, watched to Success.
    page.get_by_role("button", name="Execute Now").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("env")).to_have_value("staging")
    dialog.get_by_label("batch_size").fill("1000")
    dialog.get_by_label("run_date").fill("2026-11-24")
    shot(page, "05-execute-dialog", full_page=False)  # the viewport: the modal
    dialog.get_by_label("batch_size").fill("abc")
    dialog.get_by_role("button", name="Run now").click()
    expect(dialog.get_by_role("alert")).to_contain_text("batch_size")  # refused, no API call
    dialog.get_by_label("batch_size").fill("1000")
    dialog.get_by_label("run_date").fill("2026-11-24")
    dialog.get_by_role("button", name="Run now").click()
    expect(page).to_have_url(re.compile(r"/runs/\d+$"))
    expect(badge(page)).to_have_text("Success", timeout=RUN_BOUND_MS)
    expect(page.locator(".params-sent")).to_contain_text("batch_size=1000")
    expect(page.locator(".params-sent")).to_contain_text("env=staging")
    expect(page.locator(".timeline tbody tr")).to_have_count(4)
    expect(page.get_by_role("link", name=re.compile("Open in Databricks"))).to_have_attribute(
        "href", re.compile(r"\?o=1234567890123456#job/")
    )
    expect(page.locator(".history li").last).to_contain_text("Success")
    shot(page, "07-run-success")

    # --- fraud-scoring fails with a clear message.
    nav(page, "Jobs")
    page.get_by_role("link", name=FRAUD).click()
    page.get_by_role("button", name="Execute Now").click()
    page.get_by_role("dialog").get_by_role("button", name="Run now").click()
    expect(badge(page)).to_have_text("Failed", timeout=RUN_BOUND_MS)
    expect(page.locator("#run-message")).to_contain_text("merchant_category")
    expect(page.locator(".timeline .badge.status-failed").first).to_be_visible()
    shot(page, "08-run-failure")

    # --- warehouse-backfill: the job page shows it Running; cancel it from the run page.
    nav(page, "Jobs")
    page.get_by_role("link", name=BACKFILL).click()
    page.get_by_role("button", name="Execute Now").click()
    page.get_by_role("dialog").get_by_role("button", name="Run now").click()
    expect(page).to_have_url(re.compile(r"/runs/\d+$"))
    run_url = page.url
    page.get_by_role("link", name=BACKFILL).click()
    expect(page.locator("#job-activity")).to_contain_text("Running")
    page.locator("#job-activity a").click()
    expect(page).to_have_url(run_url)
    expect(
        page.locator(".timeline tbody tr").filter(has_text="backfill").locator(".badge")
    ).to_have_text("Running", timeout=RUN_BOUND_MS)
    shot(page, "10-run-running")
    page.once("dialog", lambda confirm: confirm.accept())
    page.get_by_role("button", name="Cancel run").click()
    expect(badge(page)).to_have_text("Cancelled", timeout=RUN_BOUND_MS)
    expect(page.get_by_role("button", name="Cancel run")).to_have_count(0)
    shot(page, "09-run-cancelled")

    # --- Runs list, filtered.
    nav(page, "Runs")
    runs = page.locator("#runs-table tbody tr")
    expect(runs).to_have_count(3)
    shot(page, "06-runs-list")
    page.get_by_label("Status").select_option("Failed")
    expect(runs).to_have_count(1)
    expect(runs.first).to_contain_text(FRAUD)
    expect(page).to_have_url(re.compile(r"status=Failed"))
    page.get_by_label("Status").select_option("")
    page.get_by_label("Job", exact=True).select_option(label=SALES)
    expect(runs).to_have_count(1)
    expect(runs.first).to_contain_text("Success")


def ensure_imported(web: WebServer) -> None:
    """The viewer test on its own (no story before it): a platform and its jobs, made directly."""
    services = web.services

    async def prepare() -> None:
        if not await services.store.list_platforms():
            await services.add_platform(
                NewPlatform(
                    name="demo",
                    workspace_url=web.emulator_url,
                    auth={"method": "pat", "token": f"env:{TOKEN_VARIABLE}"},
                )
            )
            await services.import_jobs("demo", None)

    web.call(prepare())


def test_a_viewer_sees_everything_and_no_action(page: Page, web: WebServer) -> None:
    ensure_imported(web)
    sign_in(page, web.keys["viewer"])
    page.goto("/platforms")
    expect(page.get_by_role("link", name="Add platform")).to_have_count(0)
    page.get_by_role("link", name="demo").click()
    expect(page.get_by_role("heading", name="Attributes")).to_be_visible()
    expect(page.locator("input:visible, select:visible, textarea:visible")).to_have_count(0)
    expect(page.get_by_role("button", name="Test connectivity")).to_have_count(0)
    expect(page.get_by_role("button", name="Get Pipelines")).to_have_count(0)
    page.locator("#platform-jobs tbody a").first.click()
    expect(page.get_by_role("heading", name="Parameters")).to_be_visible()
    for action in ("Execute Now", "Sync Parameters", "Save parameters"):
        expect(page.get_by_role("button", name=action)).to_have_count(0)
    expect(page.locator("#parameters select, #parameters input:visible")).to_have_count(0)
