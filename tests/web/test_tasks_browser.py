"""Tasks in a real headless Chromium, against the served product (API + web UI + engine, the demo
workspace at 60x): create Tasks with a schedule and a dependency in the editor's tabs, preview
the fire times, see the dependency diagram drawn by dagre, Run once and follow the TaskRun to its
run, the home page's timeline; hostile names stay text. With POLYSYNC_SCREENSHOTS=1 the pages are
saved to docs/screenshots/."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Dialog, Page, expect

from polysync.domain.records import NewPlatform
from tests.web.conftest import TOKEN_VARIABLE, WebServer, needs_chromium, shot, sign_in

SALES, FRAUD = "914275016372845", "306118823409576"
RUN_BOUND_MS = 45_000  # an upper bound for the engine to start a run at 60x, not an expectation
HOSTILE = "<img src=x onerror=alert(1)> & </script><b>bold</b>"

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def job_ids(web: WebServer) -> dict[str, int]:
    services = web.services
    web.call(
        services.add_platform(
            NewPlatform(
                name="demo",
                workspace_url=web.emulator_url,
                auth={"method": "pat", "token": f"env:{TOKEN_VARIABLE}"},
            )
        )
    )
    _, results = web.call(services.import_jobs("demo", [SALES, FRAUD]))
    ids = {r.external_id: r.job.id for r in results if r.job is not None}
    assert len(ids) == 2, [r.error for r in results]
    return ids


def open_tab(page: Page, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).click()
    expect(page.get_by_role("tab", name=name, exact=True)).to_have_attribute(
        "aria-selected", "true"
    )


def new_task(page: Page, name: str, job_id: int) -> None:
    page.goto("/tasks")
    page.get_by_role("link", name="New Task").click()
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Job", exact=True).select_option(str(job_id))


def test_create_preview_diagram_run_once_and_follow_the_run(
    page: Page, web: WebServer, job_ids: dict[str, int]
) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    sign_in(page, web.keys["admin"])
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Tasks").click()
    expect(page.get_by_role("heading", name="Tasks", exact=True)).to_be_visible()

    new_task(page, "ingest", job_ids[SALES])
    page.get_by_role("button", name="Create Task").click()
    expect(page.get_by_role("status")).to_have_text("Task created.")

    # --- report: a value mapped from ingest's run, a dependency, a schedule, a priority.
    new_task(page, "report", job_ids[SALES])
    open_tab(page, "Settings")
    expect(page.get_by_label("Value of run_date")).to_be_visible()  # the Job's parameters came
    page.get_by_label("Value of run_date").fill("{{upstream.ingest.run_id}}")
    page.get_by_label("Value of env").fill("dev")
    open_tab(page, "Dependencies")
    expect(page.locator("#task-graph")).to_have_attribute("data-rendered", "empty")
    page.get_by_role("button", name="Add upstream").click()
    page.get_by_label("Upstream Task").select_option("ingest")
    page.get_by_label("Condition").select_option("on_success")
    # The diagram follows the list before the Task is saved (the new Task is not a node yet).
    open_tab(page, "Scheduling")
    page.get_by_role("button", name="Add schedule").click()
    page.get_by_label("Cron").fill("0 2 * * *")
    page.get_by_label("Time zone").fill("Europe/London")
    page.get_by_role("button", name="Preview next fire times").click()
    fires = page.locator("#schedule-preview li")
    expect(fires).to_have_count(10)
    expect(fires.first).to_contain_text(re.compile(r"02:00 (GMT|BST)"))
    shot(page, "20-task-editor-scheduling")
    open_tab(page, "Runtime Settings")
    page.get_by_label("Priority").fill("70")
    page.get_by_role("button", name="Create Task").click()
    expect(page.get_by_role("status")).to_have_text("Task created.")
    expect(page.get_by_role("heading", level=1)).to_have_text("report")
    report_url = page.url.split("?", 1)[0]

    # --- The saved Task's diagram: two nodes drawn by dagre, one edge, the focus marked.
    open_tab(page, "Dependencies")
    graph = page.locator("#task-graph")
    expect(graph).to_have_attribute("data-rendered", "2")
    expect(graph.locator("svg a.node")).to_have_count(2)
    expect(graph.locator("svg polyline.edge")).to_have_count(1)
    expect(graph.locator("svg a.node-focus text")).to_have_text("report")
    shot(page, "21-task-editor-dependencies")
    # Removing the upstream in the list redraws the diagram at once (not saved yet).
    page.get_by_role("button", name="Remove this upstream").click()
    expect(graph.locator("svg polyline.edge")).to_have_count(0)
    page.get_by_role("link", name="Discard changes").click()
    expect(graph.locator("svg polyline.edge")).to_have_count(1)

    # --- The list: next fire time, no result yet, the whole dependency diagram.
    page.goto("/tasks")
    report_row = page.locator("tr", has=page.get_by_role("link", name="report", exact=True))
    expect(report_row).to_contain_text("never run")
    expect(report_row).to_contain_text("0 2 * * *")
    expect(report_row.locator("td").nth(3)).to_contain_text(re.compile(r"\d{4}-\d\d-\d\d 0[12]:00"))
    whole = page.locator("#all-tasks-graph")
    expect(whole.locator("svg a.node", has_text="report")).to_have_count(1)
    expect(whole.locator("svg a.node", has_text="ingest")).to_have_count(1)
    shot(page, "22-tasks-list")

    # --- Run once ingest: its TaskRun page, then its attempt's run.
    ingest_row = page.locator("tr", has=page.get_by_role("link", name="ingest", exact=True))
    ingest_row.get_by_role("button", name="Run ingest once").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("TaskRun #")
    run_link = page.get_by_role("link", name=re.compile(r"^Run #\d+$"))
    expect(run_link).to_be_visible(timeout=RUN_BOUND_MS)
    expect(page.locator("table.attempts")).to_contain_text("start")
    shot(page, "23-taskrun")
    run_link.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(
        re.compile(r"Run #\d+ of nightly-sales-etl")
    )
    expect(page.get_by_role("link", name=re.compile(r"^TaskRun #\d+$"))).to_be_visible()
    databricks_run_id = page.locator("dt:text-is('Databricks RunId') + dd")
    expect(databricks_run_id).to_have_text(re.compile(r"^\d+$"), timeout=RUN_BOUND_MS)
    ingest_run_id = databricks_run_id.inner_text()

    # --- ingest succeeds, so report runs (its dependency), with ingest's RunId mapped.
    page.goto(report_url)
    report_run = page.locator("#task-runs").get_by_role("link", name=re.compile(r"^#\d+$"))
    expect(report_run).to_be_visible(timeout=RUN_BOUND_MS)
    report_run.click()
    expect(page.locator(".props")).to_contain_text("Dependency")
    page.get_by_role("link", name=re.compile(r"^Run #\d+$")).click(timeout=RUN_BOUND_MS)
    expect(page.locator(".params-sent")).to_contain_text(f"run_date={ingest_run_id}")
    expect(page.locator(".params-sent")).to_contain_text("env=dev")

    # --- The home page: the TaskRun on the 24 h timeline, linked.
    page.get_by_role("link", name="Polysync").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    lane = page.locator("table.timeline-24h tr", has=page.get_by_role("link", name="report"))
    expect(lane.locator("rect.bar")).to_have_count(1)
    shot(page, "24-home-timeline")
    assert dialogs == []


def test_hostile_names_are_shown_as_text(
    page: Page, web: WebServer, job_ids: dict[str, int]
) -> None:
    dialogs: list[Dialog] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog), dialog.dismiss()))
    sign_in(page, web.keys["admin"])
    # A control character is refused, and the message shows it made visible.
    new_task(page, "bell\x07name", job_ids[FRAUD])
    page.get_by_role("button", name="Create Task").click()
    expect(page.locator("#task-error")).to_contain_text("control character")
    expect(page.get_by_label("Name", exact=True)).to_have_attribute("aria-invalid", "true")

    new_task(page, HOSTILE, job_ids[FRAUD])
    page.get_by_role("button", name="Create Task").click()
    expect(page.get_by_role("status")).to_have_text("Task created.")
    expect(page.get_by_role("heading", level=1)).to_have_text(HOSTILE)
    new_task(page, "after hostile", job_ids[FRAUD])
    open_tab(page, "Dependencies")
    page.get_by_role("button", name="Add upstream").click()
    page.get_by_label("Upstream Task").select_option(HOSTILE)
    page.get_by_role("button", name="Create Task").click()
    expect(page.get_by_role("status")).to_have_text("Task created.")
    open_tab(page, "Dependencies")
    graph = page.locator("#task-graph")
    expect(graph).to_have_attribute("data-rendered", "2")
    # The SVG label is the name as text (cut to 32 characters), its tooltip the whole name.
    expect(graph.locator("svg a.node title").first).to_contain_text(HOSTILE)
    page.goto("/tasks")
    expect(
        page.locator("table.tasks").get_by_role("link", name=HOSTILE, exact=True)
    ).to_be_visible()
    whole = page.locator("#all-tasks-graph svg")
    expect(whole.locator("a.node title", has_text=HOSTILE)).to_have_count(1)
    for path in ("/tasks", "/"):
        page.goto(path)
        assert page.locator("img").count() == 0
        assert page.locator("b", has_text="bold").count() == 0
    assert dialogs == []


def test_an_operator_repairs_a_failed_task_run(
    page: Page, web: WebServer, job_ids: dict[str, int]
) -> None:
    task = web.call(web.services.tasks.create({"name": "fraud nightly", "job_id": job_ids[FRAUD]}))
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, web.keys["operator"])
    page.goto(f"/tasks/{task.id}")
    expect(page.get_by_role("button", name="Save Task")).to_have_count(0)  # an operator's view
    page.get_by_role("button", name="Run once").click()
    badge = page.locator(".run-status .badge")
    expect(badge).to_have_text("Failed", timeout=RUN_BOUND_MS)  # fraud-scoring fails
    expect(page.get_by_role("button", name="Cancel TaskRun")).to_have_count(0)
    page.get_by_role("button", name="Repair run").click()
    expect(page.get_by_role("status")).to_contain_text("Repair requested")
    attempts = page.locator("table.attempts tbody tr")
    expect(attempts).to_have_count(2)
    expect(attempts.nth(1)).to_contain_text("repair")
    expect(page.locator("ol.history")).to_contain_text("reopened by a repair")
