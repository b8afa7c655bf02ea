"""Breaker review findings on the API: a platform's workspace or sign-in identity cannot change
under active runs (H4); client addresses are the proxy's unless it is trusted, and logged
safely (M1)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from polysync.api.deps import loggable_address, source_address
from polysync.api.middleware import SECURITY_HEADERS
from polysync.api.server import uvicorn_config
from polysync.clock import ManualClock
from polysync.config import Settings
from polysync.errors import StoreUnavailableError
from polysync.store import database
from tests.api.conftest import SALES, TOKEN_VARIABLE, Api
from tests.api.test_platforms import is_problem
from tests.conftest import autojump


@pytest.mark.parametrize(
    ("change", "what"),
    [
        ({"workspace_url": "http://127.0.0.2:9"}, "its workspace URL"),
        (
            {
                "auth": {
                    "method": "databricks_oauth_m2m",
                    "client_id": "app-1",
                    "client_secret": "env:SP_SECRET",
                }
            },
            "its sign-in identity",
        ),
    ],
)
async def test_the_workspace_or_identity_cannot_change_under_active_runs(
    api: Api, change: dict[str, object], what: str
) -> None:
    platform = f"/api/v1/platforms/{api.platform_id}"
    started = await api.client.post(
        f"/api/v1/jobs/{api.job_ids[SALES]}/runs", json={}, headers=api.auth("operator")
    )
    run_id = started.json()["id"]
    refused = await api.client.patch(platform, json=change, headers=api.auth("admin"))
    problem = is_problem(refused, 409)
    assert what in str(problem["detail"])
    assert f"1 active run(s) (id {run_id})" in str(problem["detail"])
    assert "polysync runs list --active" in str(problem["detail"])
    unchanged = (await api.client.get(platform, headers=api.auth("viewer"))).json()
    assert unchanged["workspace_url"] == api.harness.base_url
    assert unchanged["auth"]["method"] == "pat"
    # A rotated token for the same identity, and other fields, may change at any time.
    rotated = await api.client.patch(
        platform,
        json={
            "auth": {"method": "pat", "token": f"env:{TOKEN_VARIABLE}_NEXT"},
            "description": "rotated",
        },
        headers=api.auth("admin"),
    )
    assert rotated.status_code == 200, rotated.text
    await api.services.store.record_failure(run_id, "ended (test)", api.services.now())
    moved = await api.client.patch(platform, json=change, headers=api.auth("admin"))
    assert moved.status_code == 200, moved.text


async def test_a_workspace_url_change_is_audited_old_to_new(api: Api) -> None:
    platform = f"/api/v1/platforms/{api.platform_id}"
    moved = await api.client.patch(
        platform, json={"workspace_url": "http://127.0.0.2:9"}, headers=api.auth("admin")
    )
    assert moved.status_code == 200, moved.text
    (entry, *_) = await api.services.store.list_audit_events(  # type: ignore[attr-defined]
        subject_type="platform", subject_id=api.platform_id
    )
    assert entry.action == "platform.update"
    assert entry.detail == f"changed workspace_url ({api.harness.base_url} -> http://127.0.0.2:9)"


# ------------------------------------------------------------------ M1: client addresses


def _echo_client() -> Starlette:
    async def echo(request: Request) -> PlainTextResponse:
        return PlainTextResponse(source_address(request))

    return Starlette(routes=[Route("/", echo)])


@pytest.mark.parametrize(
    ("trusted", "seen"),
    [(None, "127.0.0.1"), ("10.0.0.0/8", "127.0.0.1"), ("127.0.0.1", "203.0.113.9")],
)
async def test_forwarded_addresses_are_believed_only_from_trusted_proxies(
    trusted: str | None, seen: str
) -> None:
    settings = Settings(trusted_proxies=trusted)
    config = uvicorn_config(_echo_client(), settings, "127.0.0.1", 0)  # type: ignore[arg-type]
    config.load()
    transport = httpx.ASGITransport(app=config.loaded_app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        answer = await client.get("/", headers={"X-Forwarded-For": "203.0.113.9"})
    assert answer.text == seen


def test_an_address_that_is_not_an_ip_is_logged_quoted_and_short() -> None:
    assert loggable_address("::ffff:7f00:1") == "::ffff:7f00:1"
    assert loggable_address("2001:DB8::1") == "2001:db8::1"
    assert loggable_address(None) == "unknown"
    forged = loggable_address("1.2.3.4\n2026-01-01 WARNING sign-in ok\x1b[2J" + "x" * 100)
    assert forged.startswith("invalid '1.2.3.4\\n2026-01-01 WARNING sign-in ok\\x1b[2J")
    assert "\n" not in forged
    assert "\x1b" not in forged
    assert len(forged) < 90


# ------------------------------------------------------------------ M2: slow bodies


async def _send_raw(
    api: Api, path: str, headers: list[tuple[bytes, bytes]], first_chunk: bytes
) -> tuple[int, bytes, list[str]]:
    """One request straight to the ASGI app: `first_chunk` of a larger body, then nothing more
    ever arrives (the client trickles, or stalls). The status and body answered, and what of the
    request the app was handed."""
    received: list[str] = []
    stalled = asyncio.Event()
    sent_first = False

    async def receive() -> dict[str, Any]:
        nonlocal sent_first
        if not sent_first:
            sent_first = True
            received.append("first chunk")
            return {"type": "http.request", "body": first_chunk, "more_body": True}
        await stalled.wait()  # never set: the rest never comes
        return {"type": "http.disconnect"}

    answer: dict[str, Any] = {}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        elif message["type"] == "http.response.body":
            answer["body"] = answer.get("body", b"") + message.get("body", b"")

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"test"), (b"content-length", b"100000"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("test", 80),
    }
    clock = api.services.clock
    assert isinstance(clock, ManualClock)
    await autojump(clock, api.app(scope, receive, send))
    return answer["status"], answer.get("body", b""), received


async def test_a_body_that_never_finishes_arriving_is_answered_408(api: Api) -> None:
    status, body, _ = await _send_raw(
        api,
        f"/api/v1/jobs/{api.job_ids[SALES]}/runs",
        [(b"content-type", b"application/json"), (b"x-api-key", api.keys["operator"].encode())],
        b'{"parameters": {',
    )
    assert status == 408
    assert json.loads(body)["detail"] == "The request body did not arrive within 30 s."


async def test_an_api_request_without_a_valid_key_is_refused_before_its_body_is_read(
    api: Api,
) -> None:
    for headers in ([], [(b"authorization", b"Bearer psk_notarealkey000000000000000000000000")]):
        status, body, _ = await _send_raw(
            api, f"/api/v1/jobs/{api.job_ids[SALES]}/runs", headers, b'{"parameters": {'
        )
        assert status == 401  # at once, not 408 after waiting for the rest of the body
        assert json.loads(body)["status"] == 401


# ------------------------------------------------------------------ M7: open streams


async def test_open_streams_are_capped_per_key_and_in_all(api: Api) -> None:
    context = api.app.state.polysync_api
    context.streams.per_key, context.streams.total = 2, 3
    started = await api.client.post(
        f"/api/v1/jobs/{api.job_ids[SALES]}/runs", json={}, headers=api.auth("operator")
    )
    run = started.json()
    poll = f"/api/v1/runs/{run['id']}?wait=60&since={run['last_event_id']}"

    def hold(role: str) -> asyncio.Task[httpx.Response]:
        return asyncio.ensure_future(api.client.get(poll, headers=api.auth(role)))

    async def parked(count: int) -> None:
        # Bounded wait for the requests' handlers (and aiosqlite's thread) to get there.
        for _ in range(2000):
            if context.streams.open == count:
                return
            await asyncio.sleep(0.005)
        raise AssertionError(f"{count} streams never opened")

    held = [hold("operator"), hold("operator")]
    await parked(2)
    third = await api.client.get(poll, headers=api.auth("operator"))
    problem = is_problem(third, 429)
    assert third.headers["Retry-After"] == "5"
    assert "This API key already has 2 event streams or long polls open" in str(problem["detail"])
    sse = await api.client.get(f"/api/v1/runs/{run['id']}/events", headers=api.auth("operator"))
    is_problem(sse, 429)  # the event stream counts the same
    held.append(hold("viewer"))  # another key still gets one
    await parked(3)
    full = await api.client.get(poll, headers=api.auth("admin"))
    assert "The server already holds 3" in str(is_problem(full, 429)["detail"])
    # A plain read is never held open, so never counted.
    plain = await api.client.get(f"/api/v1/runs/{run['id']}", headers=api.auth("admin"))
    assert plain.status_code == 200
    for task in held:
        assert (await api.drive_until_done(task)).status_code == 200
    assert context.streams.open == 0  # every slot given back


# ------------------------------------------------------------------ M4: an unwritable database


async def test_health_reports_a_full_disk_under_the_database(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (await api.client.get("/health")).status_code == 200
    monkeypatch.setattr(
        database.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9, 4096)
    )
    answer = await api.client.get("/health")
    problem = is_problem(answer, 503)
    assert problem["detail"] == database.DISK_FULL_MESSAGE
    assert "the disk holding it is full" in str(problem["detail"])


async def test_health_reports_a_read_only_database(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    db_file = Path(str(api.store.engine.url.database))
    real_access = os.access

    def access(path: Any, mode: int, **kwargs: Any) -> bool:
        if Path(path) == db_file and mode & os.W_OK:
            return False  # as a read-only file or mount answers (root ignores file modes)
        return real_access(path, mode, **kwargs)

    monkeypatch.setattr(database.os, "access", access)
    problem = is_problem(await api.client.get("/health"), 503)
    assert "it is read-only" in str(problem["detail"])


# ------------------------------------------------------------------ M4: Idempotency-Key


async def test_an_idempotency_key_makes_execute_now_happen_once(api: Api) -> None:
    path = f"/api/v1/jobs/{api.job_ids[SALES]}/runs"
    body = {"parameters": {"env": "dev"}}
    operator = {**api.auth("operator"), "Idempotency-Key": "retry-7f3a"}
    first = await api.client.post(path, json=body, headers=operator)
    assert first.status_code == 201, first.text
    again = await api.client.post(path, json=body, headers=operator)  # the answer was lost
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    other = await api.client.post(path, json={"parameters": {"env": "prod"}}, headers=operator)
    problem = is_problem(other, 409)
    assert f"already used for run {first.json()['id']}" in str(problem["detail"])
    # Keys are the caller's own: another API key with the same one starts its own run.
    admin = {**api.auth("admin"), "Idempotency-Key": "retry-7f3a"}
    theirs = await api.client.post(path, json=body, headers=admin)
    assert theirs.status_code == 201
    assert theirs.json()["id"] != first.json()["id"]
    runs = await api.client.get("/api/v1/runs", headers=api.auth("viewer"))
    assert len(runs.json()) == 2


@pytest.mark.parametrize("key", ["two words", "é", "x" * 256])
async def test_an_idempotency_key_must_be_printable_ascii(api: Api, key: str) -> None:
    # Sent as UTF-8 bytes: the header is what the wire carries, not what httpx would allow.
    headers = {**api.auth("operator"), "Idempotency-Key": key.encode("utf-8")}
    answer = await api.client.post(
        f"/api/v1/jobs/{api.job_ids[SALES]}/runs", json={}, headers=headers
    )
    is_problem(answer, 422)


# ------------------------------------------------------------------ security headers on a 500


async def test_an_unexpected_error_answers_500_with_the_security_headers(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken() -> None:
        raise RuntimeError("a bug, with Bearer dapi0123456789abcdef in its text")

    api.app.add_api_route("/api/v1/broken", broken)
    answer = await api.client.get("/api/v1/broken", headers=api.auth("viewer"))
    problem = is_problem(answer, 500)
    assert "dapi" not in answer.text
    assert problem["detail"] == "Polysync hit an unexpected error; the server log has the details."
    for header, value in SECURITY_HEADERS:
        assert answer.headers[header.decode()] == value.decode()
    assert "RuntimeError" in caplog.text


async def test_a_platform_whose_secret_does_not_resolve_yet_is_saved_with_a_warning(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    answer = await api.client.post(
        "/api/v1/platforms",
        json={
            "name": "later",
            "workspace_url": api.harness.base_url,
            "auth": {"method": "pat", "token": "env:POLYSYNC_NOT_SET_YET"},
        },
        headers=api.auth("admin"),
    )
    assert answer.status_code == 201, answer.text
    assert "platform 'later' saved, but its credentials cannot be read yet" in caplog.text
    assert "POLYSYNC_NOT_SET_YET" in caplog.text


async def test_a_misspelled_patch_field_says_what_to_do(api: Api) -> None:
    answer = await api.client.patch(
        f"/api/v1/platforms/{api.platform_id}",
        json={"url": "https://adb-1.2.azuredatabricks.net"},
        headers=api.auth("admin"),
    )
    problem = is_problem(answer, 422)
    assert "url: not a field of this request: check its spelling against /docs" in str(
        problem["detail"]
    )


async def test_an_edit_that_spells_out_a_default_is_no_identity_change(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A form that sends every field (a default included) must not look like a new identity."""
    monkeypatch.setenv("SP_SECRET", "not-used-here")
    platform = await api.services.store.get_platform(api.platform_id)
    await api.client.patch(
        f"/api/v1/platforms/{api.platform_id}",
        json={
            "auth": {
                "method": "entra_service_principal",
                "tenant_id": "t1",
                "client_id": "c1",
                "client_secret": "env:SP_SECRET",
            }
        },
        headers=api.auth("admin"),
    )
    started = await api.client.post(
        f"/api/v1/jobs/{api.job_ids[SALES]}/runs", json={}, headers=api.auth("operator")
    )
    assert started.status_code == 201
    spelled_out = await api.client.patch(
        f"/api/v1/platforms/{api.platform_id}",
        json={
            "description": "edited on the web",
            "auth": {
                "method": "entra_service_principal",
                "tenant_id": "t1",
                "client_id": "c1",
                "client_secret": "env:SP_SECRET_ROTATED",
                "authority_host": "https://login.microsoftonline.com",
            },
        },
        headers=api.auth("admin"),
    )
    assert spelled_out.status_code == 200, spelled_out.text
    assert platform.workspace_url == spelled_out.json()["workspace_url"]


async def test_a_database_outage_while_checking_a_key_before_the_body_is_a_503_not_a_crash(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def unreachable(prefix: str) -> None:
        raise StoreUnavailableError("The database cannot be reached: connection refused")

    monkeypatch.setattr(api.store, "find_api_key", unreachable)
    answer = await api.client.post(
        f"/api/v1/jobs/{api.job_ids[SALES]}/runs", json={}, headers=api.auth("operator")
    )
    assert is_problem(answer, 503)["detail"] == (
        "The database cannot be reached: connection refused"
    )
    assert "Traceback" not in caplog.text
    assert "unexpected error" not in caplog.text
