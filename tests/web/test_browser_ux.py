"""What a new user meets in a real headless Chromium: empty pages that say what to do next, Get
Pipelines' "In Polysync" right after an import, tags, deleting a platform, the favicon, a Secret
parameter set as a reference, and Execute Now with a multi-line default that is no override."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Dialog, Locator, Page, Response, expect

from polysync.domain.records import NewPlatform, RunFilter
from tests.web.conftest import (
    TOKEN_VARIABLE,
    UI_BOUND_MS,
    WebServer,
    needs_chromium,
    serve_web,
    shot,
    sign_in,
)

pytestmark = needs_chromium
SALES, BACKFILL = "nightly-sales-etl", "warehouse-backfill"
SALES_ID, BACKFILL_ID = 914275016372845, 681940257713388
SECRET_VARIABLE = "POLYSYNC_WEB_TEST_PARAMETER_SECRET"
SECRET = "s3cr3t-Of-The-Web-Test"
MULTI_LINE = "SELECT *\nFROM sales\nWHERE day = :run_date"
NOT_IMPORTED = "\u2013"  # an en dash: the "In Polysync" cell of a job not imported
RUN_BOUND_MS = 45_000  # an upper bound for a run at 60x, not an expected duration


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[WebServer]:
    """A server of its own: nothing added yet (the empty states are the point)."""
    with serve_web(tmp_path) as server:
        yield server


@pytest.fixture
def fresh_page(browser: Browser, fresh: WebServer) -> Iterator[Page]:
    """A browser page on the `fresh` server."""
    context = browser.new_context(base_url=fresh.base_url, viewport={"width": 1366, "height": 900})
    context.set_default_timeout(UI_BOUND_MS)
    yield context.new_page()
    context.close()


def add_platform(web: WebServer) -> None:
    web.call(
        web.services.add_platform(
            NewPlatform(
                name="demo",
                workspace_url=web.emulator_url,
                auth={"method": "pat", "token": f"env:{TOKEN_VARIABLE}"},
            )
        )
    )


def not_found(page: Page) -> list[str]:
    """Every 404 the page's requests get, recorded from now on."""
    missing: list[str] = []

    def record(response: Response) -> None:
        if response.status == 404:
            missing.append(response.url)

    page.on("response", record)
    return missing


def test_empty_pages_lead_to_the_next_step_import_marks_rows_and_a_platform_is_deleted(
    fresh_page: Page, fresh: WebServer
) -> None:
    page = fresh_page
    missing = not_found(page)
    sign_in(page, fresh.keys["admin"])
    page.goto("/runs")
    empty = page.locator("#runs-empty")
    expect(empty).to_contain_text("No platform yet")
    shot(page, "11-runs-empty-next-step")
    empty.get_by_role("link", name="Add a platform").click()
    expect(page).to_have_url(re.compile(r"/platforms/new$"))

    add_platform(fresh)
    page.goto("/runs")
    expect(empty).to_contain_text("Get Pipelines")
    page.goto("/jobs")
    expect(page.locator("#jobs-empty")).to_contain_text("Get Pipelines")

    # Get Pipelines, import two: their "In Polysync" cells say so at once (no stale table).
    page.goto("/platforms")
    page.get_by_role("link", name="demo").click()
    page.get_by_role("button", name="Get Pipelines").click()
    rows = page.locator("#pipelines tbody tr")
    _, found = fresh.call(fresh.services.discover("demo"))  # jobs, notebooks and pipelines
    assert len(found) > 10
    expect(rows).to_have_count(len(found))
    expect(rows.filter(has_text=SALES).locator("td").last).to_have_text(NOT_IMPORTED)
    sales_tags = next(job.tags for job in found if job.name == SALES)
    for key, value in sales_tags.items():  # tags help choose what to import
        expect(rows.filter(has_text=SALES)).to_contain_text(f"{key}: {value}")
    for name in (SALES, BACKFILL):
        page.get_by_label(f"Select {name}").check()
    page.get_by_role("button", name="Import selected").click()
    expect(page.locator("#import-result")).to_contain_text("Imported 2 of 2")
    for name in (SALES, BACKFILL):
        expect(rows.filter(has_text=name).locator("td").last).to_have_text("Imported")
    expect(rows.filter(has_text="fraud-scoring").locator("td").last).to_have_text(NOT_IMPORTED)
    expect(rows).to_have_count(len(found))  # the table stays; only the cells changed

    page.goto("/runs")
    expect(empty).to_contain_text("Execute Now")
    page.goto("/jobs")
    page.get_by_role("link", name=SALES).click()
    expect(page.get_by_text("Not run yet.")).to_contain_text("Execute Now")

    # Tags: in the job list and on the job page.
    tags = fresh.call(fresh.services.get_job(str(SALES_ID), "demo")).tags
    assert tags, "the demo job has tags"
    key, value = sorted(tags.items())[0]
    page.goto("/jobs")
    expect(page.locator("table").get_by_text(f"{key}: {value}")).to_be_visible()
    page.get_by_role("link", name=SALES).click()
    expect(page.locator(".props").get_by_text(f"{key}: {value}")).to_be_visible()

    # Delete: refused while a run is active (what the services enforce), then confirmed.
    backfill = fresh.call(fresh.services.get_job(str(BACKFILL_ID), "demo"))
    run = fresh.call(fresh.services.execute(backfill, {}))
    page.goto("/platforms")
    page.get_by_role("link", name="demo").click()
    page.once("dialog", lambda confirm: confirm.accept())
    page.get_by_role("button", name="Delete platform").click()
    expect(page.get_by_role("alert")).to_contain_text("active run")
    expect(page.get_by_role("alert").get_by_role("link", name=f"#{run.id}")).to_have_attribute(
        "href", f"/runs/{run.id}"
    )
    shot(page, "12-platform-delete-refused")
    fresh.call(fresh.services.cancel(run.id))
    expect(page.get_by_role("heading", name="Delete platform")).to_be_visible()
    for _ in range(RUN_BOUND_MS // 250):
        if fresh.call(fresh.services.store.get_run(run.id)).is_terminal:
            break
        page.wait_for_timeout(250)  # the server's engine confirms the cancel (D10)
    asked: list[str] = []

    def dismiss(confirm: Dialog) -> None:
        asked.append(confirm.message)
        confirm.dismiss()

    page.once("dialog", dismiss)  # "no": nothing happens
    page.get_by_role("button", name="Delete platform").click()
    expect(page.get_by_role("button", name="Delete platform")).to_be_visible()
    assert len(asked) == 1
    assert "cannot be undone" in asked[0]
    assert fresh.call(fresh.services.store.list_platforms())
    page.once("dialog", lambda confirm: confirm.accept())
    page.get_by_role("button", name="Delete platform").click()
    expect(page).to_have_url(re.compile(r"/platforms\?deleted=demo$"))
    expect(page.get_by_role("status")).to_contain_text("Platform demo deleted")
    assert fresh.call(fresh.services.store.list_platforms()) == []

    # The favicon comes from the package: no request of the session got a 404.
    assert missing == []
    icon = httpx.get(f"{fresh.base_url}/favicon.ico")
    assert icon.status_code == 200
    assert icon.headers["content-type"].startswith("image/svg+xml")


def test_deleting_a_platform_needs_an_admin_and_the_csrf_token(page: Page, web: WebServer) -> None:
    if not web.call(web.services.store.list_platforms()):
        add_platform(web)
    platform = web.call(web.services.store.list_platforms())[0]
    sign_in(page, web.keys["operator"])
    page.goto(f"/platforms/{platform.id}")
    expect(page.get_by_role("button", name="Delete platform")).to_have_count(0)
    # The server refuses whatever the page showed: an operator, then an admin without the token.
    answer = page.request.post(f"/platforms/{platform.id}/delete", max_redirects=0)
    assert answer.status == 403
    page.context.clear_cookies()
    sign_in(page, web.keys["admin"])
    answer = page.request.post(f"/platforms/{platform.id}/delete", max_redirects=0)
    assert answer.status == 403
    assert web.call(web.services.store.list_platforms())


def sales_with_multi_line_and_empty_defaults(web: WebServer) -> None:
    token = {"Authorization": f"Bearer {os.environ[TOKEN_VARIABLE]}"}
    with httpx.Client(base_url=web.emulator_url, headers=token) as client:
        settings = client.get("/api/2.1/jobs/get", params={"job_id": SALES_ID}).json()["settings"]
        parameters = [p for p in settings["parameters"] if p["name"] != "query"] + [
            {"name": "query", "default": MULTI_LINE}
        ]
        client.post(
            "/api/2.1/jobs/update",
            json={"job_id": SALES_ID, "new_settings": {"parameters": parameters}},
        ).raise_for_status()


def test_a_secret_parameter_and_execute_now_with_a_multi_line_default(
    page: Page, web: WebServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_VARIABLE, SECRET)  # the server's engine reads it at run-now
    if not web.call(web.services.store.list_platforms()):
        add_platform(web)
    web.call(web.services.import_jobs("demo", [str(SALES_ID)]))
    sales_with_multi_line_and_empty_defaults(web)
    job = web.call(web.services.get_job(str(SALES_ID), "demo"))
    web.call(web.services.sync_parameters(job))

    sign_in(page, web.keys["admin"])
    page.goto(f"/jobs/{job.id}")
    table = page.locator("#parameters table")

    def row(name: str) -> Locator:
        return table.locator("tr").filter(has=page.locator("th", has_text=re.compile(f"^{name}$")))

    expect(row("run_date").locator(".default-cell")).to_have_text('"" (empty text)')
    expect(row("query").locator(".default-cell")).to_have_text(MULTI_LINE)

    # A Secret given as text is refused, inline, without showing it back.
    page.get_by_label("Data Type of env").select_option("Secret")
    page.get_by_label("Stored value of env").fill(SECRET)
    page.get_by_role("button", name="Save parameters").click()
    expect(page.locator("#parameters .field-error")).to_contain_text("env:NAME")
    assert SECRET not in page.content()
    page.get_by_label("Data Type of env").select_option("Secret")
    page.get_by_label("Stored value of env").fill(f"env:{SECRET_VARIABLE}")
    page.get_by_role("button", name="Save parameters").click()
    expect(page.locator("#parameters .alert-success")).to_have_text("Parameters saved.")
    expect(page.get_by_label("Data Type of env")).to_have_value("Secret")
    expect(page.get_by_label("Stored value of env")).to_have_value(f"env:{SECRET_VARIABLE}")
    expect(row("env").locator(".default-cell")).to_have_text("********")  # "prod" is not shown
    shot(page, "13-job-parameters-secret")

    # Execute Now: the multi-line default sits in a textarea, whole; only the edited field is
    # an override (a value left as shown is none).
    page.get_by_role("button", name="Execute Now").click()
    dialog = page.get_by_role("dialog")
    query = dialog.get_by_label("query")
    expect(query).to_have_value(MULTI_LINE)
    assert query.evaluate("element => element.tagName") == "TEXTAREA"
    dialog.get_by_label("batch_size").fill("1000")
    shot(page, "14-execute-multi-line-default", full_page=False)
    dialog.get_by_role("button", name="Run now").click()
    expect(page).to_have_url(re.compile(r"/runs/\d+$"))
    run_id = int(page.url.rsplit("/", 1)[1])
    expect(page.locator(".params-sent")).to_contain_text(f"env=env:{SECRET_VARIABLE}")
    expect(page.locator(".params-sent .overridden")).to_have_text("batch_size=1000")
    run = web.call(web.services.store.get_run(run_id))
    assert dict(run.overrides) == {"batch_size": "1000"}
    assert "query" not in run.parameters_sent  # Databricks applies its own default, exactly
    expect(page.locator(".run-status .badge")).to_have_text("Success", timeout=RUN_BOUND_MS)
    assert SECRET not in page.content()
    runs = web.call(web.services.list_runs(RunFilter(job_id=job.id)))
    assert all(SECRET not in str(dict(r.parameters_sent)) for r in runs)
