"""Contention profiles in a real headless Chromium (D14): an admin adds one in the editor
(General / Settings), Execute Now waits on it and the runs list says which profile and why;
hostile names are refused and shown as text; a viewer reads without a Save button."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from polysync.domain.records import NewPlatform, RunFilter
from tests.web.conftest import TOKEN_VARIABLE, WebServer, needs_chromium, shot, sign_in

BACKFILL_ID = "681940257713388"  # runs for hours at 60x: it keeps its slot
RUN_BOUND_MS = 45_000  # an upper bound for the engine at 60x, not an expected duration

pytestmark = needs_chromium


def platform_with_backfill(web: WebServer) -> None:
    async def add() -> None:
        names = [p.name for p in await web.services.store.list_platforms()]
        if "demo" not in names:
            await web.services.add_platform(
                NewPlatform(
                    name="demo",
                    workspace_url=web.emulator_url,
                    auth={"method": "pat", "token": f"env:{TOKEN_VARIABLE}"},
                )
            )
            await web.services.import_jobs("demo", [BACKFILL_ID])

    web.call(add())


def test_a_profile_made_in_the_editor_holds_execute_now_and_says_why(
    page: Page, web: WebServer
) -> None:
    platform_with_backfill(web)
    sign_in(page, web.keys["admin"])
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Profiles").click()
    page.get_by_role("link", name="Add profile").click()
    expect(page.get_by_role("heading", name="General")).to_be_visible()
    expect(page.get_by_role("heading", name="Settings")).to_be_visible()
    page.get_by_label("Name").fill("one at a time")
    page.get_by_label("Type").select_option("concurrency")
    page.get_by_label("Max Concurrent").fill("1")
    page.get_by_label("demo").check()
    shot(page, "20-contention-profile-editor")
    page.get_by_role("button", name="Add profile").click()
    expect(page.get_by_role("status")).to_contain_text("Contention profile saved")
    expect(page.get_by_label("Type")).to_be_disabled()  # locked after creation

    async def execute_twice() -> None:
        job = await web.services.get_job(BACKFILL_ID, platform="demo")
        for _ in range(2):
            await web.services.execute(job, {})

    web.call(execute_twice())
    page.goto("/runs")
    waiting = page.locator("table.runs tbody tr", has_text="Waiting for profile")
    expect(waiting).to_have_count(1, timeout=RUN_BOUND_MS)
    expect(waiting).to_contain_text("Queued")
    expect(waiting).to_contain_text("Waiting for profile 'one at a time' (1 of 1 running)")
    shot(page, "21-runs-waiting-for-a-profile")
    page.goto("/profiles")
    page.get_by_role("link", name="one at a time").click()
    expect(page.locator("#profile-usage")).to_have_text("demo: 1 of 1 running, 1 waiting")

    # Raising the cap applies at once: the waiting run starts, no restart.
    page.get_by_label("Max Concurrent").fill("2")
    page.get_by_role("button", name="Save profile").click()
    page.goto("/runs")
    expect(page.locator("table.runs tbody tr", has_text="Waiting for profile")).to_have_count(
        0, timeout=RUN_BOUND_MS
    )

    async def cancel_all() -> None:
        for run in await web.services.store.list_runs(RunFilter(active_only=True)):
            await web.services.cancel(run.id)

    web.call(cancel_all())


def test_a_hostile_name_is_refused_and_shown_as_text(page: Page, web: WebServer) -> None:
    sign_in(page, web.keys["admin"])
    page.goto("/profiles/new")
    page.get_by_label("Name").fill("<img src=x onerror=alert(1)>\u202e")
    page.get_by_label("Max Concurrent").fill("3")
    page.get_by_role("button", name="Add profile").click()
    expect(page.get_by_role("alert")).to_contain_text("text-direction control")
    expect(page.locator("img[src=x]")).to_have_count(0)
    page.get_by_label("Name").fill("ok")
    page.get_by_label("Max Concurrent").fill("0")
    page.get_by_role("button", name="Add profile").click()
    expect(page.get_by_role("alert")).to_contain_text(
        "Max Concurrent must be from 1 to 100000, not 0"
    )


def test_a_viewer_reads_profiles_without_editing(page: Page, web: WebServer) -> None:
    async def add() -> int:
        profile = await web.services.profiles.create(
            {"name": "read me", "type": "rate", "limit": 10, "window_s": 60}
        )
        return profile.id

    profile_id = web.call(add())
    sign_in(page, web.keys["viewer"])
    page.goto("/profiles")
    expect(page.get_by_role("link", name="Add profile")).to_have_count(0)
    expect(page.get_by_role("row", name=re.compile("read me"))).to_contain_text(
        "10 per 60 s (token bucket)"
    )
    page.get_by_role("link", name="read me").click()
    expect(page).to_have_url(re.compile(f"/profiles/{profile_id}$"))
    expect(page.get_by_role("button", name="Save profile")).to_have_count(0)
    expect(page.get_by_role("button", name="Delete profile")).to_have_count(0)
    expect(
        page.locator("#profile-form input:enabled:visible, #profile-form select:enabled")
    ).to_have_count(0)
    expect(page.get_by_label("Limit", exact=True)).to_have_value("10")
