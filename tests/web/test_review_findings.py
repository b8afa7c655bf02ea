"""Breaker review findings on the web UI: non-ASCII `next` and CSRF values are handled as
input (a redirect on the site, a 403), never a 500."""

from __future__ import annotations

from tests.web.test_security import CSRF_INPUT, App, app  # noqa: F401 - the fixture


async def test_a_non_ascii_next_is_sent_back_to_the_runs_page(app: App) -> None:  # noqa: F811
    for target in (
        "/r\u00e9sum\u00e9",
        "/\u202e/x",
        "/\ud800".encode("utf-8", "surrogatepass").decode("latin-1"),
    ):
        app.client.cookies.clear()  # signed out: a fresh session and CSRF token
        page = await app.client.get("/sign-in")
        token = CSRF_INPUT.search(page.text)
        assert token is not None
        answer = await app.client.post(
            "/sign-in",
            data={"api_key": app.keys["viewer"], "csrf_token": token.group(1), "next": target},
        )
        assert answer.status_code == 303, answer.text
        location = answer.headers["Location"]
        assert location.isascii()
        assert location.startswith("/")
        assert not location.startswith("//")


async def test_a_non_ascii_csrf_token_is_refused_as_bad_input(app: App) -> None:  # noqa: F811
    await app.sign_in("operator")
    answer = await app.client.post("/sign-out", headers={"X-CSRF-Token": "t\u00f6ken".encode()})
    assert answer.status_code == 403, answer.text
    answer = await app.client.post("/sign-out", data={"csrf_token": "t\u00f6ken"})
    assert answer.status_code == 403, answer.text
