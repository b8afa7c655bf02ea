"""Empty pages say what to do next, in words that fit the visitor's role (httpx, no browser)."""

from __future__ import annotations

from polysync.web.context import STATIC_DIR
from tests.web.test_security import App, app  # noqa: F401 - `app` is the fixture


async def test_no_run_yet_says_execute_now_or_whom_to_ask(app: App) -> None:  # noqa: F811
    await app.sign_in("operator")
    runs = (await app.client.get("/runs")).text
    assert "No run yet" in runs
    assert "Execute Now" in runs
    filtered = (await app.client.get("/runs?status=Failed")).text
    assert "No run matches these filters." in filtered
    app.client.cookies.clear()
    await app.sign_in("viewer")
    runs = (await app.client.get("/runs")).text
    assert "Runs appear here when an operator executes" in runs
    assert "Not run yet." in (await app.client.get(f"/jobs/{app.job_id}")).text
    assert (
        "Click <strong>Execute Now</strong>"
        not in (await app.client.get(f"/jobs/{app.job_id}")).text
    )  # a viewer has no such button


async def test_no_job_yet_says_get_pipelines(app: App) -> None:  # noqa: F811
    platform = (await app.services.store.list_platforms())[0]
    await app.services.remove_platform(platform.id)
    await app.sign_in("viewer")
    jobs = (await app.client.get("/jobs")).text
    assert "No platform yet" in jobs
    assert "Ask an admin to add one." in jobs
    app.client.cookies.clear()
    await app.sign_in("admin")
    assert 'href="/platforms/new">Add a platform</a>' in (await app.client.get("/runs")).text


async def test_the_favicon_is_served_from_the_package(app: App) -> None:  # noqa: F811
    icon = await app.client.get("/favicon.ico")
    assert icon.status_code == 200
    assert icon.headers["content-type"].startswith("image/svg+xml")
    assert icon.content == (STATIC_DIR / "favicon.svg").read_bytes()
    linked = await app.client.get("/static/favicon.svg")
    assert linked.status_code == 200
    assert 'rel="icon" href="/static/favicon.svg"' in (await app.client.get("/sign-in")).text
