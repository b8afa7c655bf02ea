"""A hostile workspace cannot make the client read for ever (issue 9): answers are capped in size
(decoded) and in total time, however slowly they trickle in."""

from __future__ import annotations

import asyncio
import gzip
import random
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from polysync.clock import ManualClock
from polysync.databricks.client import MAX_RESPONSE_BYTES, DatabricksClient
from polysync.databricks.paging import MAX_LIST_PAGES
from polysync.databricks.settings import WorkspaceSettings
from polysync.errors import DatabricksError, DatabricksTransportError, DatabricksUnconfirmedError
from tests.conftest import autojump

URL = "https://adb-1234567890123456.7.azuredatabricks.net"


def client(transport: httpx.AsyncBaseTransport, **options: Any) -> DatabricksClient:
    settings = WorkspaceSettings.model_validate(
        {"url": URL, "auth": {"method": "pat", "token": "env:DATABRICKS_TOKEN"}, **options}
    )
    return DatabricksClient(
        settings, transport=transport, clock=ManualClock(), rng=random.Random(0)
    )


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABRICKS_TOKEN", "dapi-test")


async def test_an_endless_answer_is_refused_after_the_cap_and_not_retried() -> None:
    produced: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        yield b'{"jobs": ["'
        while True:
            produced.append(1)
            yield b"x" * 65_536

    calls: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(200, content=endless())

    async with client(httpx.MockTransport(answer)) as databricks:
        with pytest.raises(DatabricksError, match="larger than 16,777,216 bytes") as caught:
            await databricks.get_job(1)
    assert not caught.value.retryable
    assert calls == ["/api/2.1/jobs/get"]
    assert len(produced) * 65_536 <= MAX_RESPONSE_BYTES + 2 * 65_536  # stopped reading


async def test_a_compression_bomb_is_measured_decoded() -> None:
    bomb = gzip.compress(b" " * (MAX_RESPONSE_BYTES + 1))  # 16 MiB of spaces: ~16 KB on the wire

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=bomb, headers={"Content-Encoding": "gzip"})

    async with client(httpx.MockTransport(answer)) as databricks:
        with pytest.raises(DatabricksError, match="larger than"):
            await databricks.get_job(1)


async def test_a_normal_compressed_answer_still_reads() -> None:
    body = b'{"job_id": 1, "settings": {"name": "etl"}}'

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, content=gzip.compress(body), headers={"Content-Encoding": "gzip"}
        )

    async with client(httpx.MockTransport(answer)) as databricks:
        assert (await databricks.get_job(1)).settings.name == "etl"


async def test_a_trickling_answer_times_out_as_a_whole() -> None:
    """A byte now and then resets a per-read timeout for ever; the whole answer has a deadline
    (request_timeout_s). The server here never finishes: only that deadline can end the call."""
    never = asyncio.Event()

    async def trickle() -> AsyncIterator[bytes]:
        yield b"{"
        await never.wait()
        yield b"}"

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=trickle())

    async with client(
        httpx.MockTransport(answer), request_timeout_s=1, retry={"max_attempts": 2}
    ) as databricks:
        clock = databricks._clock
        assert isinstance(clock, ManualClock)
        with pytest.raises(DatabricksTransportError, match=r"no complete answer within 1 s"):
            await autojump(clock, databricks.get_job(1))


async def test_header_bytes_that_are_not_ascii_or_not_text_do_not_crash_the_client() -> None:
    """Header values are kept as the bytes that came (a decoded str would not encode back)."""
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if len(seen) == 1:
            return httpx.Response(
                429, headers=[(b"Retry-After", b"\xff\xfe"), (b"X-Odd", "é".encode())]
            )
        return httpx.Response(
            200,
            headers=[(b"X-Databricks-Org-Id", b"\xe9\xff"), (b"X-Odd", b"\x80\x00")],
            content=b'{"job_id": 1, "settings": {"name": "etl"}}',
        )

    async with client(httpx.MockTransport(answer)) as databricks:
        clock = databricks._clock
        assert isinstance(clock, ManualClock)
        job = await autojump(clock, databricks.get_job(1))
    assert job.settings.name == "etl"
    assert seen == ["/api/2.1/jobs/get", "/api/2.1/jobs/get"]  # the 429 was retried


async def test_an_unexpected_exception_while_sending_is_a_retryable_error_without_secrets() -> None:
    calls: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request.headers["Authorization"])
        raise RuntimeError(f"proxy bug while sending {request.headers['Authorization']}\nmore")

    async with client(httpx.MockTransport(answer), retry={"max_attempts": 3}) as databricks:
        clock = databricks._clock
        assert isinstance(clock, ManualClock)
        with pytest.raises(DatabricksTransportError, match="RuntimeError") as caught:
            await autojump(clock, databricks.get_job(1))
    assert caught.value.retryable
    assert "dapi-test" not in str(caught.value)
    assert "more" not in str(caught.value)
    assert len(calls) == 3  # a GET is retried like a lost answer


async def test_a_request_that_cannot_be_encoded_is_refused_at_once() -> None:
    calls: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(200, json={"run_id": 1})

    async with client(httpx.MockTransport(answer)) as databricks:
        with pytest.raises(DatabricksError, match="could not be encoded") as caught:
            await databricks.run_now(1, {"env": "\ud800"}, idempotency_token="t")
    assert not caught.value.retryable
    assert "\ud800" not in str(caught.value)
    assert calls == []


@pytest.mark.parametrize(
    "answer_body",
    [
        b"{}",
        b'{"run_id": "12"}',
        b'{"run_id": 9223372036854775808}',
        b'{"run_id": true}',
        b'{"run_id": -1}',
        b"[]",
        b"<html>ok</html>",
    ],
)
async def test_a_run_now_answer_without_a_valid_run_id_is_unconfirmed_and_retryable(
    answer_body: bytes,
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=answer_body)

    async with client(httpx.MockTransport(answer)) as databricks:
        with pytest.raises(DatabricksUnconfirmedError, match="not confirmed") as caught:
            await databricks.run_now(1, idempotency_token="token-1")
        assert caught.value.retryable
        # Without a token a retry could start a second run: the answer error is not retryable.
        with pytest.raises(DatabricksError) as bare:
            await databricks.run_now(1)
        assert not bare.value.retryable


@pytest.mark.parametrize("run_id", ["12", 2**63, True, 1.5, -3])
async def test_invalid_run_ids_are_refused_when_a_run_is_decoded(run_id: object) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"run_id": run_id, "state": {}})

    async with client(httpx.MockTransport(answer)) as databricks:
        with pytest.raises(DatabricksError, match="run_id"):
            await databricks.get_run(1)


async def test_a_listing_that_pages_for_ever_ends_with_a_clear_error() -> None:
    """A new page token every time (or has_more for ever): capped at MAX_LIST_PAGES pages."""
    pages: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        pages.append(1)
        return httpx.Response(
            200, json={"runs": [{"run_id": len(pages)}], "next_page_token": f"t{len(pages)}"}
        )

    async with client(httpx.MockTransport(answer)) as databricks:
        clock = databricks._clock
        assert isinstance(clock, ManualClock)

        async def drain() -> None:
            async for _ in databricks.list_runs(active_only=True):
                pass

        with pytest.raises(DatabricksError, match="did not end after 2,000 pages"):
            await autojump(clock, drain())
    assert len(pages) == MAX_LIST_PAGES


async def test_a_listing_has_an_overall_deadline() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        clock.advance(10.0)  # each page takes 10 s of the client's clock
        offset = int(request.url.params.get("offset", "0"))
        return httpx.Response(200, json={"jobs": [{"job_id": offset + 1}], "has_more": True})

    databricks = client(httpx.MockTransport(answer), api_versions={"jobs_list": "2.0"})
    clock = databricks._clock
    assert isinstance(clock, ManualClock)
    async with databricks:

        async def drain() -> int:
            return len([job async for job in databricks.list_jobs()])

        with pytest.raises(DatabricksError, match=r"did not end within 600 s \(61 pages"):
            await autojump(clock, drain())


async def test_a_repeated_page_token_ends_the_listing() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        token = "b" if request.url.params.get("page_token") == "a" else "a"
        return httpx.Response(200, json={"jobs": [{"job_id": 1}], "next_page_token": token})

    async with client(httpx.MockTransport(answer)) as databricks:
        with pytest.raises(DatabricksError, match="'a' repeated"):
            _ = [job async for job in databricks.list_jobs()]
