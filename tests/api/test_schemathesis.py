"""Property-based fuzzing of every operation in /openapi.json (admin key): never a 5xx.

Schemathesis runs ASGI apps on its own event-loop thread, so the app here opens its Services in
its lifespan, on that loop. The SSE stream is left out (it is meant not to end); a long poll may
hold a request for at most 10 ms here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import shutdown_lifespans

from polysync.api import create_api_app, create_api_key
from polysync.api.deps import ApiSettings
from polysync.clock import SystemClock
from polysync.config import Settings
from polysync.domain.records import NewPlatform
from polysync.emulator.spec import load_workspace
from polysync.services import Services
from polysync.store import SqlStore
from tests.api.conftest import BACKFILL, SALES, TOKEN_VARIABLE
from tests.conftest import TEST_TOKEN, make_harness

MAX_EXAMPLES = 10
FAST = 10_000.0  # client-side rate limits out of the way: the emulator has no limits here
RATE_LIMITS = {
    name: FAST
    for name in (
        "jobs_list",
        "jobs_get",
        "jobs_create",
        "jobs_delete",
        "run_now",
        "runs_get",
        "runs_get_output",
        "runs_list",
        "runs_cancel",
        "runs_cancel_all",
    )
}


class LifespanApi:
    """An ASGI app that opens Services and the API when its lifespan starts."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.services: Services | None = None
        self.app: Any = None
        self.admin_key = ""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self._open()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.services is not None:
                    await self.services.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _open(self) -> None:
        spec = load_workspace("demo")
        spec.auth.tokens.append(TEST_TOKEN)
        spec.rate_limits.enabled = False
        harness = make_harness(spec, served=True)
        settings_ = Settings(home=self.db.parent, database_url=f"sqlite+aiosqlite:///{self.db}")
        services = await Services.open(
            settings_,
            clock=SystemClock(),
            api_clock=SystemClock(),
            transport_factory=lambda _platform: harness.transport(),
        )
        self.services = services
        await services.add_platform(
            NewPlatform(
                name="demo",
                workspace_url=harness.base_url,
                auth={"method": "pat", "token": f"env:{TOKEN_VARIABLE}"},
                options={"rate_limits": RATE_LIMITS},
            )
        )
        _, results = await services.import_jobs("demo", [SALES, BACKFILL])
        assert all(r.error is None for r in results)
        job = results[0].job
        assert job is not None
        await services.execute(job, {})
        assert isinstance(services.store, SqlStore)
        _, self.admin_key = await create_api_key(services.store, "fuzz", "admin")
        self.app = create_api_app(services, settings=ApiSettings(live_poll_s=0.01, max_wait_s=0.01))


@pytest.fixture(scope="module")
def lifespan_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LifespanApi]:
    previous = os.environ.get(TOKEN_VARIABLE)
    os.environ[TOKEN_VARIABLE] = TEST_TOKEN
    try:
        yield LifespanApi(tmp_path_factory.mktemp("fuzz") / "polysync.db")
    finally:
        shutdown_lifespans()
        if previous is None:
            os.environ.pop(TOKEN_VARIABLE, None)
        else:
            os.environ[TOKEN_VARIABLE] = previous


@pytest.fixture(scope="module")
def api_schema(lifespan_api: LifespanApi) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", lifespan_api)


def aim_at_seeded_records(case: Any) -> None:
    """Generated ids rarely exist: map them onto the seeded ones (1-3) so the fuzzing reaches
    past the 404; and send only the admin key (the generated auth headers would replace it)."""
    for name, value in (case.path_parameters or {}).items():
        if name.endswith("_id") and isinstance(value, int):
            case.path_parameters[name] = value % 3 + 1
    for header in list(case.headers or {}):
        if header.lower() in ("authorization", "x-api-key"):
            del case.headers[header]


def test_no_operation_answers_5xx(api_schema: Any, lifespan_api: LifespanApi) -> None:
    headers = {"Authorization": f"Bearer {lifespan_api.admin_key}"}
    operations = [
        result.ok() for result in api_schema.exclude(path_regex=r"/events$").get_all_operations()
    ]
    assert len(operations) >= 18

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def no_server_error(case: Any) -> None:
            aim_at_seeded_records(case)
            case.call_and_validate(headers=headers, checks=[not_a_server_error])

        no_server_error()
