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
from polysync.databricks.settings import WorkspaceSettings
from polysync.errors import DatabricksError, DatabricksTransportError
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
        httpx.MockTransport(answer), request_timeout_s=0.05, retry={"max_attempts": 2}
    ) as databricks:
        clock = databricks._clock
        assert isinstance(clock, ManualClock)
        with pytest.raises(DatabricksTransportError, match=r"no complete answer within 0\.05 s"):
            await autojump(clock, databricks.get_job(1))
