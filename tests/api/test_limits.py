"""Issue 9 on the REST API: every limit explicit, nothing parsed past the body cap, work stopped
when the client gives up, secrets never echoed, key guessing slowed down."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from polysync.api.throttle import MAX_FAILURES, WINDOW_S
from polysync.domain.limits import MAX_BODY_BYTES, MAX_IMPORT_IDS
from polysync.domain.records import RunFilter
from polysync.errors import UsageError
from tests.api.conftest import SALES, TOKEN_VARIABLE, Api
from tests.api.test_platforms import is_problem


async def runs_of(api: Api, external_id: str) -> int:
    return len(await api.services.list_runs(RunFilter(job_id=api.job_ids[external_id])))


def execute_path(api: Api, external_id: str = SALES) -> str:
    return f"/api/v1/jobs/{api.job_ids[external_id]}/runs"


# ------------------------------------------------------------------ the body cap


async def test_a_body_over_the_cap_is_413_and_never_parsed(api: Api) -> None:
    body = json.dumps({"parameters": {"env": "x" * (MAX_BODY_BYTES + 1)}})
    answer = await api.client.post(
        execute_path(api),
        headers={**api.auth("operator"), "Content-Type": "application/json"},
        content=body,
    )
    problem = is_problem(answer, 413)
    assert "1,048,576 bytes" in str(problem["detail"])
    assert answer.headers["content-security-policy"].startswith("default-src 'self'")
    assert await runs_of(api, SALES) == 0


async def test_a_chunked_body_is_counted_as_it_arrives(api: Api) -> None:
    chunk = b"x" * 65_536
    sent: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(64):  # 4 MiB if it were all read
            sent.append(len(chunk))
            yield chunk

    answer = await api.client.post(
        execute_path(api), headers=api.auth("operator"), content=chunks()
    )
    is_problem(answer, 413)
    assert "content-length" not in answer.request.headers
    assert await runs_of(api, SALES) == 0


async def test_a_body_within_the_cap_still_works(api: Api) -> None:
    answer = await api.client.post(
        execute_path(api), headers=api.auth("operator"), json={"parameters": {"env": "dev"}}
    )
    assert answer.status_code == 201, answer.text


# ------------------------------------------------------------------ text fields and numbers


@pytest.mark.parametrize(
    ("parameters", "field"),
    [
        ({"env": "x" * 10_001}, "parameters.env"),  # over the 10,000-character value cap
        ({"env": "dev\x00"}, "parameters.env"),
        ({"env": "\x1b]0;owned\x07"}, "parameters.env"),
        ({"env": "\ud800"}, "parameters.env"),  # a lone surrogate: not encodable
        ({"x" * 501: "dev"}, "parameters"),
    ],
)
async def test_override_text_is_refused_at_the_edge(
    api: Api, parameters: dict[str, str], field: str
) -> None:
    answer = await api.client.post(
        execute_path(api),
        headers={**api.auth("operator"), "Content-Type": "application/json"},
        content=json.dumps({"parameters": parameters}),  # \ud800 stays an escape in the JSON
    )
    problem = is_problem(answer, 422)
    fields = [error["field"] for error in problem["errors"]]  # type: ignore[union-attr]
    assert any(f.startswith(f"body.{field}") for f in fields), fields
    assert all(len(f) < 200 for f in fields)  # a huge name is not echoed whole
    assert await runs_of(api, SALES) == 0


async def test_a_lone_surrogate_in_any_text_field_names_the_character(api: Api) -> None:
    """pydantic cannot read a lone surrogate; the shared rule runs before it, so the answer says
    which character and where, not "unable to parse raw data" (every text type at the edge)."""
    answer = await api.client.post(
        "/api/v1/platforms",
        headers={**api.auth("admin"), "Content-Type": "application/json"},
        content=json.dumps(
            {"name": "bad\ud800", "workspace_url": "https://adb-1.1.azuredatabricks.net"}
        ),
    )
    problem = is_problem(answer, 422)
    assert "U+D800" in str(problem["detail"])
    assert "unable to parse" not in str(problem["detail"])


async def test_a_multi_line_value_is_kept(api: Api) -> None:
    answer = await api.client.post(
        execute_path(api),
        headers=api.auth("operator"),
        json={"parameters": {"env": "line one\n\tline two"}},
    )
    assert answer.status_code == 201, answer.text


async def test_an_int_outside_64_bits_is_refused_before_any_call(api: Api) -> None:
    calls = api.harness.app.emulator.stats.count("jobs/run-now")
    answer = await api.client.post(
        execute_path(api),
        headers=api.auth("operator"),
        json={"parameters": {"batch_size": "9" * 400}},
    )
    problem = is_problem(answer, 400)
    assert "batch_size" in str(problem["detail"])
    assert "64-bit" in str(problem["detail"])
    assert await runs_of(api, SALES) == 0
    assert api.harness.app.emulator.stats.count("jobs/run-now") == calls


@pytest.mark.parametrize(
    "changes",
    [
        {"name": "prod\x00"},
        {"name": "\x1b[2Jprod"},
        {"name": "p" * 201},
        {"description": "d" * 27_701},
        {"description": "bell\x07"},
        {"cluster_id": "c" * 201},
        {"workspace_url": "https://adb-1.2.azuredatabricks.net\r\nX: 1"},
        {"auth": {"method": "pat", "token": "env:" + "A" * 3000}},
    ],
)
async def test_platform_text_is_refused_at_the_edge(api: Api, changes: dict[str, Any]) -> None:
    answer = await api.client.patch(
        f"/api/v1/platforms/{api.platform_id}", headers=api.auth("admin"), json=changes
    )
    is_problem(answer, 422)


async def test_a_multi_line_description_is_kept(api: Api) -> None:
    answer = await api.client.patch(
        f"/api/v1/platforms/{api.platform_id}",
        headers=api.auth("admin"),
        json={"description": "line one\nline two"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["description"] == "line one\nline two"


async def test_an_env_name_is_never_echoed(api: Api) -> None:
    pasted = "dapi0123456789abcdef0123456789abcdef"
    for name in (pasted, "B" * 300):
        answer = await api.client.patch(
            f"/api/v1/platforms/{api.platform_id}",
            headers=api.auth("admin"),
            json={"auth": {"method": "pat", "token": f"env:{name}"}},
        )
        problem = is_problem(answer, 400)
        assert name not in answer.text
        assert "not shown" in str(problem["detail"])
    stored = await api.store.get_platform(api.platform_id)
    assert stored.auth["token"] == f"env:{TOKEN_VARIABLE}"  # nothing was saved


@pytest.mark.parametrize(
    "options",
    [
        {"retry": {"deadline_s": 1e9}},
        {"retry": {"max_attempts": 1_000_000}},
        {"request_timeout_s": 86_400},
        {"max_connections": 1_000_000},
        {"tls_ca_bundle": "/dev/zero"},
        {"tls_ca_bundle": "/etc/hostname"},
    ],
)
async def test_options_are_bounded(api: Api, options: dict[str, Any]) -> None:
    answer = await api.client.patch(
        f"/api/v1/platforms/{api.platform_id}", headers=api.auth("admin"), json={"options": options}
    )
    is_problem(answer, 400)
    assert (await api.store.get_platform(api.platform_id)).options == {}


# ------------------------------------------------------------------ imports


async def test_repeated_ids_cost_one_call(api: Api) -> None:
    stats = api.harness.app.emulator.stats
    before = stats.count("jobs/get")
    answer = await api.client.post(
        f"/api/v1/platforms/{api.platform_id}/import",
        headers=api.auth("admin"),
        json={"external_ids": [SALES] * 10_000},
    )
    assert answer.status_code == 200, answer.text
    assert [r["external_id"] for r in answer.json()["results"]] == [SALES]
    assert stats.count("jobs/get") - before == 1


async def test_too_many_distinct_ids_are_refused_before_any_call(api: Api) -> None:
    stats = api.harness.app.emulator.stats
    before = stats.count("jobs/get")
    ids = [str(n) for n in range(1, MAX_IMPORT_IDS + 2)]
    answer = await api.client.post(
        f"/api/v1/platforms/{api.platform_id}/import",
        headers=api.auth("admin"),
        json={"external_ids": ids},
    )
    problem = is_problem(answer, 400)
    assert "1,000" in str(problem["detail"])
    assert stats.count("jobs/get") == before


async def test_work_stops_when_the_client_disconnects(api: Api) -> None:
    """The ASGI app is driven directly: the client sends its import, then goes away while the
    `jobs/get` calls are held open; they are cancelled and no further call starts."""
    started = asyncio.Event()
    release = asyncio.Event()
    calls: list[str] = []
    transport = api.harness.transport()

    class HeldTransport(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith("/jobs/get"):
                calls.append(str(request.url))
                started.set()
                await release.wait()
            return await transport.handle_async_request(request)

    api.services.connections._transport_factory = lambda _platform: HeldTransport()
    api.services.connections._clients.clear()
    body = json.dumps({"external_ids": [str(n) for n in range(1, 1001)]}).encode()
    gone = asyncio.Event()
    messages: list[dict[str, Any]] = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await gone.wait()
        return {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": f"/api/v1/platforms/{api.platform_id}/import",
        "raw_path": f"/api/v1/platforms/{api.platform_id}/import".encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"polysync.test"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"authorization", f"Bearer {api.keys['admin']}".encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("polysync.test", 80),
    }
    request = asyncio.ensure_future(api.app(scope, receive, send))
    await asyncio.wait_for(started.wait(), timeout=30)
    in_flight = len(calls)
    gone.set()  # the client closes the connection
    await asyncio.wait_for(request, timeout=30)
    release.set()
    for _ in range(100):
        await asyncio.sleep(0)
    assert len(calls) == in_flight  # nothing more was asked of Databricks
    assert in_flight < 1000
    assert not any(m["type"] == "http.response.start" for m in sent)  # nobody to answer


# ------------------------------------------------------------------ secrets in errors


async def test_proc_environ_never_reaches_an_error(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLYSYNC_TEST_OTHER_TOKEN", "dapi-another-platforms-secret")
    stats = api.harness.app.emulator.stats
    before = stats.count()
    patched = await api.client.patch(
        f"/api/v1/platforms/{api.platform_id}",
        headers=api.auth("admin"),
        json={"auth": {"method": "pat", "token": "file:/proc/self/environ"}},
    )
    assert patched.status_code == 200, patched.text
    tested = await api.client.post(
        f"/api/v1/platforms/{api.platform_id}/test", headers=api.auth("operator")
    )
    problem = is_problem(tested, 400)
    assert "dapi-another-platforms-secret" not in tested.text
    assert TOKEN_VARIABLE not in tested.text  # no variable name from the environment either
    assert "not a credential" in str(problem["detail"])
    assert stats.count() == before  # refused before any request: nothing to retry


async def test_plain_http_off_loopback_is_refused(api: Api) -> None:
    answer = await api.client.patch(
        f"/api/v1/platforms/{api.platform_id}",
        headers=api.auth("admin"),
        json={"workspace_url": "http://adb-1.2.azuredatabricks.net"},
    )
    problem = is_problem(answer, 400)
    assert "--allow-insecure-http" in str(problem["detail"])


# ------------------------------------------------------------------ key guessing


async def test_refused_keys_are_logged_and_slowed_down(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = {"Authorization": "Bearer psk_wrongkey0123456789abcdefghijklmnopqrstuvwxyz0"}
    with caplog.at_level(logging.WARNING, logger="polysync.api.throttle"):
        for _ in range(MAX_FAILURES):
            assert (await api.client.get("/api/v1/runs", headers=wrong)).status_code == 401
        blocked = await api.client.get("/api/v1/runs", headers=wrong)
        valid_too = await api.client.get("/api/v1/runs", headers=api.auth("viewer"))
    problem = is_problem(blocked, 429)
    assert "Too many invalid API keys" in str(problem["detail"])
    assert 0 < int(blocked.headers["Retry-After"]) <= WINDOW_S
    # M1: a valid key is never refused for others' failures from the same address (a proxy).
    assert valid_too.status_code == 200
    assert "from 127.0.0.1" in caplog.text
    assert "psk_wrongkey..." in caplog.text  # the public prefix only
    assert "0123456789abcdef" not in caplog.text
    api.harness.advance(WINDOW_S)
    assert (await api.client.get("/api/v1/runs", headers=api.auth("viewer"))).status_code == 200


async def test_a_missing_key_is_not_a_failure(api: Api) -> None:
    for _ in range(MAX_FAILURES + 2):
        assert (await api.client.get("/api/v1/runs")).status_code == 401
    assert (await api.client.get("/api/v1/runs", headers=api.auth("viewer"))).status_code == 200


async def test_the_limits_are_in_the_openapi_document(api: Api) -> None:
    schema = (await api.client.get("/openapi.json")).json()["components"]["schemas"]
    assert schema["ExecuteIn"]["properties"]["parameters"]["maxProperties"] == 1000
    assert schema["PlatformIn"]["properties"]["name"]["maxLength"] == 200


async def test_a_job_named_by_a_hostile_workspace_stays_editable(api: Api) -> None:
    """Limits apply to what a user types: a name imported with an ESC in it does not block
    saving a parameter, while typing such a name is refused."""
    job = await api.store.get_job(api.job_ids[SALES])
    await api.store.save_job(replace(job, name="sales\x1b[2J"), api.services.now())
    edited = await api.client.patch(
        f"/api/v1/jobs/{job.id}",
        headers=api.auth("operator"),
        json={"parameters": [{"name": "env", "stored_value": "prod"}]},
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["name"] == "sales\x1b[2J"
    with pytest.raises(UsageError, match="ESC"):
        await api.services.save_job(replace(job, name="other\x1b[2J"))
