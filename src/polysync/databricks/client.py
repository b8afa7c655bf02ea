"""The async Jobs API client of one workspace: auth, shared rate limits, retries, paging, errors."""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote

import httpx
from pydantic import SecretStr, ValidationError

import polysync
from polysync.clock import Clock, SystemClock
from polysync.databricks.auth import TokenProvider, build_auth, token_principal
from polysync.databricks.endpoints import Endpoint
from polysync.databricks.errors import MAX_MESSAGE_CHARS, error_from_response, redact
from polysync.databricks.metrics import TRANSPORT_ERROR, ClientMetrics
from polysync.databricks.models import (
    MAX_INT64,
    DatabricksJob,
    DatabricksRun,
    RunOutput,
    WireModel,
)
from polysync.databricks.paging import (
    JOB_PAGED_ARRAYS,
    RUN_PAGED_ARRAYS,
    ListPager,
    PageBudget,
    merge_array_page,
    next_page_token,
)
from polysync.databricks.ratelimit import RateLimiterRegistry
from polysync.databricks.retry import RetryPolicy, retry_delay_s
from polysync.databricks.settings import WorkspaceSettings
from polysync.domain.limits import replace_unencodable, replace_unencodable_in
from polysync.errors import (
    ConfigError,
    DatabricksAnswerError,
    DatabricksError,
    DatabricksRateLimitError,
    DatabricksTransportError,
    DatabricksUnconfirmedError,
    PolysyncError,
    TokenExpiredError,
)
from polysync.secrets import UNRESTRICTED, SecretScope

_log = logging.getLogger(__name__)

M = TypeVar("M", bound=WireModel)

MAX_IDEMPOTENCY_TOKEN_CHARS = 64  # reference §3, §8
MAX_JOBS_PAGE = 100  # jobs/list limit (reference §1)
MAX_RUNS_PAGE = 25  # runs/list limit on 2.1+ (reference §6)
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
"""The largest answer read: runs/get-output holds at most 5 MB of output (reference §4); a
jobs/get of a 1,000-task job is far smaller. Beyond it the answer is refused unread."""
# Failures raised before any byte of the request left: safe to repeat whatever the method.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True, slots=True)
class ConnectivityReport:
    """What answered a Test connectivity call, and as whom."""

    workspace_url: str
    auth_method: str
    principal: str | None
    """Who the token says we are (Entra/OAuth token claims); None for an opaque PAT."""
    workspace_id: str | None
    """The `X-Databricks-Org-Id` the workspace answered with, when it sends one."""
    api_version: str
    jobs_visible: bool


class DatabricksClient:
    """Jobs API calls for one workspace (one client per Platform, one connection pool).

    Every call waits for the workspace's rate limiter, sends a bearer token (refreshed once when
    Databricks says it expired), and retries what is safe to retry (D8) within a deadline.
    """

    def __init__(
        self,
        settings: WorkspaceSettings,
        *,
        auth: TokenProvider | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock | None = None,
        rate_limiters: RateLimiterRegistry | None = None,
        metrics: ClientMetrics | None = None,
        rng: random.Random | None = None,
        secret_scope: SecretScope = UNRESTRICTED,
    ) -> None:
        self.settings = settings
        self.secret_scope = secret_scope  # what Secret job parameters may read, too
        self.metrics = metrics or ClientMetrics()
        self._clock: Clock = clock or (rate_limiters.clock if rate_limiters else SystemClock())
        self._rng = rng or random.Random()
        self._policy = RetryPolicy.from_settings(settings.retry)
        self._http = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(settings.request_timeout_s, connect=settings.connect_timeout_s),
            limits=httpx.Limits(max_connections=settings.max_connections),
            verify=_tls_verify(settings),
            headers={"User-Agent": f"polysync/{polysync.__version__}"},
            follow_redirects=False,
        )
        self.auth = auth or build_auth(
            settings,
            http=self._http,
            clock=self._clock,
            metrics=self.metrics,
            secret_scope=secret_scope,
        )
        registry = rate_limiters or RateLimiterRegistry(self._clock)
        self.rate_limiter = registry.for_workspace(settings.url, settings.rate_limits)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.auth.aclose()
        await self._http.aclose()

    # ------------------------------------------------------------------ jobs
    async def list_jobs(
        self,
        *,
        expand_tasks: bool = False,
        name: str | None = None,
        page_size: int = MAX_JOBS_PAGE,
    ) -> AsyncIterator[DatabricksJob]:
        """`list_jobs_json`, each entry read into a DatabricksJob (a malformed one raises)."""
        async for entry in self.list_jobs_json(
            expand_tasks=expand_tasks, name=name, page_size=page_size
        ):
            yield _parse(DatabricksJob, entry, Endpoint.JOBS_LIST)

    async def list_jobs_json(
        self,
        *,
        expand_tasks: bool = False,
        name: str | None = None,
        page_size: int = MAX_JOBS_PAGE,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every job (newest first) as Databricks sent it, paging to the end whatever the
        configured version does (D5). The job types read these with their tolerant decoders.

        `name` is an exact, case-insensitive match; it is also applied here because 2.0 may ignore
        it. Without `expand_tasks`, `settings.tasks` is absent; in 2.2 a job with `has_more` shows
        only its first 100 tasks - get_job has them all. Pages are as large as allowed (100):
        fewer calls, and offset paging (2.0 only) reaches past its 1000 cap (reference §1).
        """
        _check_page_size(page_size, MAX_JOBS_PAGE)
        version = self.settings.api_versions.for_endpoint(Endpoint.JOBS_LIST)
        pager = ListPager(version, page_size)
        wanted = name.casefold() if name is not None else None
        budget = self._page_budget(Endpoint.JOBS_LIST)
        while not pager.done:
            budget.next_page()
            params = {**pager.params(), "expand_tasks": expand_tasks or None, "name": name}
            answer, _ = await self._call(Endpoint.JOBS_LIST, params=params)
            entries = _entries(answer, "jobs")
            pager.advance(answer, len(entries))
            for entry in entries:
                if not isinstance(entry, dict):
                    continue
                settings = entry.get("settings")
                job_name = settings.get("name") if isinstance(settings, dict) else None
                if wanted is None or (isinstance(job_name, str) and job_name.casefold() == wanted):
                    yield entry

    async def get_job(self, job_id: int) -> DatabricksJob:
        """`get_job_json` read into a DatabricksJob."""
        return _parse(DatabricksJob, await self.get_job_json(job_id), Endpoint.JOBS_GET)

    async def get_job_json(self, job_id: int) -> dict[str, Any]:
        """The job with all its tasks, job clusters, parameters, environments (2.2 pages
        merged), as Databricks sent it."""
        return await self._get_all_pages(
            Endpoint.JOBS_GET, {"job_id": job_id}, container="settings", keys=JOB_PAGED_ARRAYS
        )

    async def create_job(self, settings: Mapping[str, Any]) -> int:
        """Create a job from JobSettings JSON; its job_id. Never retried once it was sent."""
        answer, _ = await self._call(Endpoint.JOBS_CREATE, body=dict(settings))
        job_id = answer.get("job_id")
        if not isinstance(job_id, int):
            raise _unexpected(Endpoint.JOBS_CREATE, "no integer job_id")
        return job_id

    async def delete_job(self, job_id: int) -> None:
        await self._call(Endpoint.JOBS_DELETE, body={"job_id": job_id})

    # ------------------------------------------------------------------ runs
    async def run_now(
        self,
        job_id: int,
        job_parameters: Mapping[str, str] | None = None,
        idempotency_token: str | None = None,
    ) -> RunNowAnswer:
        """Start a run. With an idempotency token the call is retried until it is known to have
        landed, and Databricks starts at most one run per token (reference §3, D8); without one,
        only refusals (429) and unsent requests are retried.
        """
        if idempotency_token is not None and not (
            0 < len(idempotency_token) <= MAX_IDEMPOTENCY_TOKEN_CHARS
        ):
            raise ValueError(
                f"idempotency_token must be 1 to {MAX_IDEMPOTENCY_TOKEN_CHARS} characters, "
                f"got {len(idempotency_token)}"
            )
        body: dict[str, Any] = {"job_id": job_id}
        if job_parameters is not None:
            body["job_parameters"] = dict(job_parameters)
        if idempotency_token is not None:
            body["idempotency_token"] = idempotency_token
        try:
            answer, _ = await self._call(
                Endpoint.RUN_NOW, body=body, idempotent=idempotency_token is not None
            )
            return _run_now_answer(answer)
        except DatabricksAnswerError as exc:
            if idempotency_token is None:
                raise
            # A 2xx without a usable run_id: the run may have started. Asking again with the
            # same token is safe and answers with that run (reference §3, D8): never "failed".
            raise DatabricksUnconfirmedError(
                f"run-now was not confirmed ({exc.message}); it is sent again with the same "
                "idempotency token, which cannot start a second run",
                http_status=exc.http_status,
                method=exc.method,
                path=exc.path,
            ) from exc

    async def get_run(
        self, run_id: int, *, include_resolved_values: bool = False, include_history: bool = False
    ) -> DatabricksRun:
        """The run with all its task runs and job parameters (2.2 pages merged)."""
        params = {
            "run_id": run_id,
            "include_resolved_values": include_resolved_values or None,
            "include_history": include_history or None,
        }
        answer = await self._get_all_pages(
            Endpoint.RUNS_GET, params, container=None, keys=RUN_PAGED_ARRAYS
        )
        return _parse(DatabricksRun, answer, Endpoint.RUNS_GET)

    async def get_run_output(self, run_id: int) -> RunOutput:
        """`get_run_output_json` read into a RunOutput."""
        return _parse(RunOutput, await self.get_run_output_json(run_id), Endpoint.RUNS_GET_OUTPUT)

    async def get_run_output_json(self, run_id: int) -> dict[str, Any]:
        """Output of one task run (a multi-task parent answers 400, reference §4), as sent."""
        answer, _ = await self._call(Endpoint.RUNS_GET_OUTPUT, params={"run_id": run_id})
        return answer

    async def list_runs(
        self,
        *,
        job_id: int | None = None,
        active_only: bool = False,
        completed_only: bool = False,
        expand_tasks: bool = False,
        start_time_from_ms: int | None = None,
        start_time_to_ms: int | None = None,
        page_size: int = MAX_RUNS_PAGE,
    ) -> AsyncIterator[DatabricksRun]:
        """`list_runs_json`, each entry read into a DatabricksRun (a malformed one raises)."""
        async for entry in self.list_runs_json(
            job_id=job_id,
            active_only=active_only,
            completed_only=completed_only,
            expand_tasks=expand_tasks,
            start_time_from_ms=start_time_from_ms,
            start_time_to_ms=start_time_to_ms,
            page_size=page_size,
        ):
            yield _parse(DatabricksRun, entry, Endpoint.RUNS_LIST)

    async def list_runs_json(
        self,
        *,
        job_id: int | None = None,
        active_only: bool = False,
        completed_only: bool = False,
        expand_tasks: bool = False,
        start_time_from_ms: int | None = None,
        start_time_to_ms: int | None = None,
        page_size: int = MAX_RUNS_PAGE,
    ) -> AsyncIterator[dict[str, Any]]:
        """Runs, most recently started first, paging to the end, as Databricks sent them."""
        if active_only and completed_only:
            raise ValueError("active_only and completed_only cannot both be true")
        _check_page_size(page_size, MAX_RUNS_PAGE)
        version = self.settings.api_versions.for_endpoint(Endpoint.RUNS_LIST)
        pager = ListPager(version, page_size)
        budget = self._page_budget(Endpoint.RUNS_LIST)
        while not pager.done:
            budget.next_page()
            params = {
                **pager.params(),
                "job_id": job_id,
                "active_only": active_only or None,
                "completed_only": completed_only or None,
                "expand_tasks": expand_tasks or None,
                "start_time_from": start_time_from_ms,
                "start_time_to": start_time_to_ms,
            }
            answer, _ = await self._call(Endpoint.RUNS_LIST, params=params)
            entries = _entries(answer, "runs")
            pager.advance(answer, len(entries))
            for entry in entries:
                if isinstance(entry, dict):
                    yield entry

    async def cancel_run(self, run_id: int) -> None:
        """Ask Databricks to cancel a run: asynchronous; a no-op on a finished run (§5)."""
        await self._call(Endpoint.RUNS_CANCEL, body={"run_id": run_id})

    async def cancel_all_runs(self, job_id: int, *, all_queued_runs: bool = False) -> None:
        """Cancel every active run of a job (asynchronous; new runs may still start)."""
        body: dict[str, Any] = {"job_id": job_id}
        if all_queued_runs:
            body["all_queued_runs"] = True
        await self._call(Endpoint.RUNS_CANCEL_ALL, body=body)

    async def get_run_json(self, run_id: int, *, include_history: bool = False) -> dict[str, Any]:
        """runs/get as Databricks sent it (pages merged), for the tolerant decoder (D6): no wire
        model stands between the answer and `decode_run`, so an odd field never fails a poll.
        `include_history` adds `repair_history` (D13)."""
        params: dict[str, Any] = {"run_id": run_id}
        if include_history:
            params["include_history"] = True
        return await self._get_all_pages(
            Endpoint.RUNS_GET, params, container=None, keys=RUN_PAGED_ARRAYS
        )

    async def repair_run(
        self,
        run_id: int,
        *,
        rerun_all_failed_tasks: bool = False,
        rerun_tasks: Sequence[str] = (),
        latest_repair_id: int | None = None,
        job_parameters: Mapping[str, str] | None = None,
    ) -> int:
        """jobs/runs/repair: rerun tasks of an ended run inside that run; its `repair_id`.
        Sent once (no blind retry): a repeat that landed is refused by Databricks as a stale
        `latest_repair_id`, which the caller reads from `repair_history` (D13)."""
        body: dict[str, Any] = {"run_id": run_id}
        if rerun_all_failed_tasks:
            body["rerun_all_failed_tasks"] = True
        if rerun_tasks:
            body["rerun_tasks"] = list(rerun_tasks)
        if latest_repair_id is not None:
            body["latest_repair_id"] = latest_repair_id
        if job_parameters:
            body["job_parameters"] = dict(job_parameters)
        answer, _ = await self._call(Endpoint.RUNS_REPAIR, body=body)
        repair_id = answer.get("repair_id")
        if not isinstance(repair_id, int) or isinstance(repair_id, bool):
            raise DatabricksAnswerError(
                f"runs/repair answered without a repair_id: {str(answer)[:200]}",
                method="POST",
                path=Endpoint.RUNS_REPAIR.path,
            )
        return repair_id

    async def submit_run(
        self, body: Mapping[str, Any], *, idempotency_token: str
    ) -> dict[str, Any]:
        """jobs/runs/submit (a one-time run, D11) with its token, retried until known to have
        landed: Databricks starts at most one run per token, as for run-now (reference §3, D8)."""
        if not 0 < len(idempotency_token) <= MAX_IDEMPOTENCY_TOKEN_CHARS:
            raise ValueError(
                f"idempotency_token must be 1 to {MAX_IDEMPOTENCY_TOKEN_CHARS} characters, "
                f"got {len(idempotency_token)}"
            )
        answer, _ = await self._call(
            Endpoint.RUNS_SUBMIT,
            body={**body, "idempotency_token": idempotency_token},
            idempotent=True,
        )
        return answer

    # ------------------------------------------------------------------ workspace (2.0)
    async def list_workspace(self, path: str) -> list[dict[str, Any]]:
        """workspace/list: the objects directly under `path` (none: the key is omitted)."""
        answer, _ = await self._call(Endpoint.WORKSPACE_LIST, params={"path": path})
        return [entry for entry in _entries(answer, "objects") if isinstance(entry, dict)]

    async def export_workspace(self, path: str, *, format: str = "SOURCE") -> dict[str, Any]:
        """workspace/export: `{"content": base64, "file_type": ...}` of a notebook or file."""
        answer, _ = await self._call(
            Endpoint.WORKSPACE_EXPORT, params={"path": path, "format": format}
        )
        return answer

    async def get_workspace_status(self, path: str) -> dict[str, Any]:
        """workspace/get-status: the ObjectInfo at `path` (404 RESOURCE_DOES_NOT_EXIST)."""
        answer, _ = await self._call(Endpoint.WORKSPACE_GET_STATUS, params={"path": path})
        return answer

    # ------------------------------------------------------------------ pipelines (2.0)
    async def list_pipelines(self, *, page_size: int = 100) -> AsyncIterator[dict[str, Any]]:
        """Every pipeline (`statuses`), paging by `next_page_token` to the end."""
        _check_page_size(page_size, 100)
        token: str | None = None
        seen: set[str] = set()
        while True:
            answer, _ = await self._call(
                Endpoint.PIPELINES_LIST, params={"max_results": page_size, "page_token": token}
            )
            for entry in _entries(answer, "statuses"):
                if isinstance(entry, dict):
                    yield entry
            token = next_page_token(answer)
            if token is None:
                return
            if token in seen:
                raise _unexpected(Endpoint.PIPELINES_LIST, f"page token {token!r} repeated")
            seen.add(token)

    async def get_pipeline(self, pipeline_id: str) -> dict[str, Any]:
        answer, _ = await self._call(
            Endpoint.PIPELINES_GET, path_params={"pipeline_id": pipeline_id}
        )
        return answer

    async def start_pipeline_update(
        self, pipeline_id: str, *, full_refresh: bool, cause: str | None = None
    ) -> dict[str, Any]:
        """Start an update: `{"update_id"}`; 409 RESOURCE_CONFLICT while one is active."""
        body: dict[str, Any] = {"full_refresh": full_refresh}
        if cause is not None:
            body["cause"] = cause
        answer, _ = await self._call(
            Endpoint.PIPELINES_START_UPDATE, body=body, path_params={"pipeline_id": pipeline_id}
        )
        return answer

    async def get_pipeline_update(self, pipeline_id: str, update_id: str) -> dict[str, Any]:
        """`{"update": UpdateInfo}` of one update."""
        answer, _ = await self._call(
            Endpoint.PIPELINES_GET_UPDATE,
            path_params={"pipeline_id": pipeline_id, "update_id": update_id},
        )
        return answer

    async def list_pipeline_updates(
        self, pipeline_id: str, *, page_token: str | None = None, max_results: int = 100
    ) -> dict[str, Any]:
        """One page of the pipeline's updates, newest first: `{"updates": [UpdateInfo],
        "next_page_token"}` (both absent when there are none)."""
        _check_page_size(max_results, 100)
        answer, _ = await self._call(
            Endpoint.PIPELINES_LIST_UPDATES,
            params={"max_results": max_results, "page_token": page_token},
            path_params={"pipeline_id": pipeline_id},
        )
        return answer

    async def stop_pipeline(self, pipeline_id: str) -> None:
        """Stop the pipeline's active update (asynchronous; a no-op when it is idle)."""
        await self._call(Endpoint.PIPELINES_STOP, body={}, path_params={"pipeline_id": pipeline_id})

    async def list_pipeline_events(
        self, pipeline_id: str, *, filter: str | None = None, max_results: int = 25
    ) -> list[dict[str, Any]]:
        """The first page of the pipeline's events, newest first (`filter` as Databricks reads it)."""
        answer, _ = await self._call(
            Endpoint.PIPELINES_EVENTS,
            params={"filter": filter, "max_results": max_results},
            path_params={"pipeline_id": pipeline_id},
        )
        return [entry for entry in _entries(answer, "events") if isinstance(entry, dict)]

    async def test_connectivity(self) -> ConnectivityReport:
        """One cheap authenticated call (jobs/list, limit 1); raises the typed error on failure."""
        answer, headers = await self._call(Endpoint.JOBS_LIST, params={"limit": 1})
        return ConnectivityReport(
            workspace_url=self.settings.url,
            auth_method=self.auth.description,
            principal=token_principal(await self.auth.token()),
            workspace_id=_header_text(headers, "x-databricks-org-id"),
            api_version=self.settings.api_versions.for_endpoint(Endpoint.JOBS_LIST),
            jobs_visible=bool(_entries(answer, "jobs")),
        )

    # ------------------------------------------------------------------ plumbing
    async def _get_all_pages(
        self,
        endpoint: Endpoint,
        params: Mapping[str, Any],
        *,
        container: str | None,
        keys: tuple[str, ...],
    ) -> dict[str, Any]:
        budget = self._page_budget(endpoint)
        budget.next_page()
        merged, _ = await self._call(endpoint, params=params)
        seen: set[str] = set()
        while (token := next_page_token(merged)) is not None:
            if token in seen:
                raise _unexpected(endpoint, f"page token {token[:80]!r} repeated")
            seen.add(token)
            budget.next_page()
            page, _ = await self._call(endpoint, params={**params, "page_token": token})
            merge_array_page(merged, page, container=container, keys=keys)
        return merged

    def _page_budget(self, endpoint: Endpoint) -> PageBudget:
        """The page and time budget of one listing (every paged call goes through one)."""
        return PageBudget(self._clock.now, f"{endpoint.method} {endpoint.path}")

    async def _call(
        self,
        endpoint: Endpoint,
        *,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
        idempotent: bool | None = None,
        path_params: Mapping[str, str] | None = None,
    ) -> tuple[dict[str, Any], httpx.Headers]:
        """Send one API call with rate limiting, auth and retries; the JSON object and headers.
        `path_params` fill the endpoint's `{placeholders}`, each percent-encoded whole."""
        version = self.settings.api_versions.for_endpoint(endpoint)
        endpoint_path = endpoint.path.format_map(
            {key: quote(value, safe="") for key, value in (path_params or {}).items()}
        )
        path = f"/api/{version}/{endpoint_path}"
        url = self.settings.url + path
        query = {key: value for key, value in (params or {}).items() if value is not None}
        repeatable = endpoint.idempotent if idempotent is None else idempotent
        deadline_s = self._clock.now() + self._policy.deadline_s
        rejected: SecretStr | None = None
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            await self.rate_limiter.acquire(endpoint)
            token_value = ""
            sent = False
            try:
                token = await (
                    self.auth.refresh(rejected) if rejected is not None else self.auth.token()
                )
                rejected = None
                token_value = token.get_secret_value()
                request = self._build(endpoint, url, path, query, body, token_value)
                sent = True
                response = await self._send_once(request, endpoint, path)
            except DatabricksError as exc:
                error = exc  # from the token provider: the API request was never sent
                sent = False
            except httpx.RequestError as exc:  # transport failures, undecodable bodies, redirects
                sent = not isinstance(exc, _NOT_SENT)
                self.metrics.record_call(endpoint.key, TRANSPORT_ERROR)
                error = self._transport_error(exc, endpoint, path, token_value)
            except PolysyncError:
                raise  # the token provider's typed refusal (a secret reference that is not usable)
            except Exception as exc:  # a bug of a transport, a codec, a proxy...: never raw
                # Its text may quote the request (headers included): only a redacted first line.
                # Retryable as a lost answer is: whether it was sent is unknown (`sent` stays).
                self.metrics.record_call(endpoint.key, TRANSPORT_ERROR)
                error = DatabricksTransportError(
                    f"the call to {self.settings.url} failed unexpectedly: "
                    f"{_redacted_line(exc, token_value)}",
                    method=endpoint.method,
                    path=path,
                )
                error.__cause__ = exc
            else:
                self.metrics.record_call(endpoint.key, response.status_code)
                if response.is_success:
                    return _json_object(response, endpoint, path), response.headers
                error = error_from_response(
                    response.status_code,
                    response.headers,
                    response.content,
                    method=endpoint.method,
                    path=path,
                    secrets=(token_value,),
                    default_retry_after_s=self.settings.retry.default_retry_after_s,
                )
                if isinstance(error, DatabricksRateLimitError):
                    # Hold every caller of this endpoint, not just this one (peers.md §4 idea 2).
                    self.metrics.rate_limited[endpoint.key] += 1
                    self.rate_limiter.pause_until(
                        endpoint, self._clock.now() + (error.retry_after_s or 0.0)
                    )
                if isinstance(error, TokenExpiredError) and not refreshed:
                    # One refresh, one immediate retry (reference §7 "Auth"; peers.md §4 idea 10).
                    refreshed = True
                    rejected = token
                    self.metrics.token_rejections += 1
                    _log.info("%s %s: token expired, refreshing once", endpoint.method, path)
                    continue
            delay_s = retry_delay_s(
                error,
                attempt=attempt,
                idempotent=repeatable,
                request_sent=sent,
                remaining_s=deadline_s - self._clock.now(),
                policy=self._policy,
                rng=self._rng,
            )
            if delay_s is None:
                raise error
            _log.warning("%s; retrying in %.1f s (attempt %d)", error, delay_s, attempt + 1)
            self.metrics.record_retry(endpoint.key, delay_s)
            await self._clock.sleep(delay_s)

    def _build(
        self,
        endpoint: Endpoint,
        url: str,
        path: str,
        query: Mapping[str, Any],
        body: Mapping[str, Any] | None,
        token_value: str,
    ) -> httpx.Request:
        """The request to send; DatabricksError (not retried: it would be built the same way)
        when a value cannot be encoded (text no UTF-8 can carry, a value JSON cannot hold)."""
        try:
            return self._http.build_request(
                endpoint.method,
                url,
                params=query,
                json=None if body is None else dict(body),
                headers={"Authorization": f"Bearer {token_value}"},
            )
        except httpx.LocalProtocolError:
            raise  # a header value (the token): reported by _transport_error, never quoted
        except (UnicodeError, ValueError, TypeError) as exc:
            raise DatabricksError(
                f"the request could not be encoded: {type(exc).__name__} (a value holds text "
                "or a number that cannot be sent; the value is not shown)",
                method=endpoint.method,
                path=path,
            ) from None

    async def _send_once(
        self, request: httpx.Request, endpoint: Endpoint, path: str
    ) -> httpx.Response:
        """One request and its whole answer, within `request_timeout_s` in all (a workspace that
        trickles its answer a byte at a time never resets it) and MAX_RESPONSE_BYTES (decoded;
        a larger answer is refused unread: DatabricksError, not retried)."""
        try:
            async with asyncio.timeout(self.settings.request_timeout_s):
                response = await self._http.send(request, stream=True)
                try:
                    content = await _read_capped(response, MAX_RESPONSE_BYTES)
                finally:
                    await response.aclose()
        except TimeoutError:
            raise httpx.ReadTimeout(
                f"no complete answer within {self.settings.request_timeout_s:g} s",
                request=request,
            ) from None
        if content is None:
            raise DatabricksError(
                f"the answer of {self.settings.url} is larger than {MAX_RESPONSE_BYTES:,} bytes, "
                "more than any Jobs API answer: it was not read (is this a Databricks workspace?)",
                http_status=response.status_code,
                method=endpoint.method,
                path=path,
            )
        # The answer as httpx would have read it (already decoded: no Content-Encoding left).
        # Raw bytes: a header value that is not ASCII (or not text at all) passes as it came,
        # where its decoded str would not encode back (issue: a crash on a hostile header).
        headers = [
            (name, value)
            for name, value in response.headers.raw
            if name.lower() not in (b"content-encoding", b"content-length", b"transfer-encoding")
        ]
        return httpx.Response(
            response.status_code,
            headers=headers,
            content=content,
            request=request,
            extensions=response.extensions,
        )

    def _transport_error(
        self, exc: httpx.RequestError, endpoint: Endpoint, path: str, token_value: str
    ) -> DatabricksTransportError:
        if isinstance(exc, httpx.LocalProtocolError):
            # Raised before anything is sent, mostly for a header value with a line break or a
            # non-ASCII character: its text quotes the header (the bearer token). Not retried:
            # the same request is built the same way (issue: a secret echoed after 2 minutes).
            error = DatabricksTransportError(
                f"the request to {self.settings.url} could not be sent: {type(exc).__name__} "
                "(a header value, such as the token, is not valid in HTTP; the value is not "
                "shown). Check that the platform's secret reference names a real token.",
                method=endpoint.method,
                path=path,
            )
            error.retryable = False
            return error
        detail = redact(str(exc), token_value) or "connection failed"
        untrusted = _certificate_failure(exc)
        if untrusted:
            detail += (
                " - the workspace's TLS certificate is not trusted; if a proxy or private CA "
                "signs it, set tls_ca_bundle"
            )
        error = DatabricksTransportError(
            f"no answer from {self.settings.url}: {type(exc).__name__}: {detail}",
            method=endpoint.method,
            path=path,
        )
        error.__cause__ = exc
        if untrusted:
            error.retryable = False  # an untrusted certificate does not become trusted by retrying
        return error


def _header_text(headers: httpx.Headers, name: str) -> str | None:
    value = headers.get(name)
    return None if value is None else replace_unencodable(value)


def _redacted_line(exc: BaseException, token_value: str) -> str:
    first = str(exc).strip().splitlines()
    text = redact(first[0], token_value) if first else ""
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


async def _read_capped(response: httpx.Response, max_bytes: int) -> bytes | None:
    """The decoded body, or None once it grows past `max_bytes` (the rest is never read)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > max_bytes:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _certificate_failure(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _tls_verify(settings: WorkspaceSettings) -> ssl.SSLContext | bool:
    if settings.tls_ca_bundle is None:
        return True
    try:
        return ssl.create_default_context(cafile=str(settings.tls_ca_bundle))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"tls_ca_bundle {settings.tls_ca_bundle} cannot be used as a CA bundle: {exc}"
        ) from exc


def _check_page_size(page_size: int, maximum: int) -> None:
    if not 1 <= page_size <= maximum:
        raise ValueError(f"page_size must be 1 to {maximum}, got {page_size}")


def _entries(answer: Mapping[str, Any], key: str) -> list[Any]:
    # The array is omitted entirely when empty (reference §1, §6).
    entries = answer.get(key)
    return entries if isinstance(entries, list) else []


def _json_object(response: httpx.Response, endpoint: Endpoint, path: str) -> dict[str, Any]:
    if not response.content.strip():
        return {}  # cancel answers {} but an empty body means the same
    try:
        answer = response.json()
    except ValueError as exc:
        # A 200 HTML page usually means the URL is not a workspace (a login or portal page).
        snippet = redact(response.text[:200])
        raise DatabricksAnswerError(
            f"the answer is not JSON (is {response.url.host} a Databricks workspace?): {snippet}",
            http_status=response.status_code,
            method=endpoint.method,
            path=path,
        ) from exc
    if not isinstance(answer, dict):
        raise _unexpected(endpoint, f"a JSON {type(answer).__name__} instead of an object")
    # Where workspace text enters: a NUL or a lone surrogate (a JSON escape such as "\ud800")
    # becomes U+FFFD here, so no name, default or message can break a write, page or log later.
    cleaned: dict[str, Any] = replace_unencodable_in(answer)
    return cleaned


def _parse(model: type[M], answer: Any, endpoint: Endpoint) -> M:
    try:
        return model.model_validate(answer)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'answer'}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)[:3]
        )
        raise _unexpected(endpoint, problems[:MAX_MESSAGE_CHARS]) from exc


@dataclass(frozen=True, slots=True)
class RunNowAnswer:
    """run-now's answer read tolerantly: the run id is required (a start without one is not
    confirmed); `run_page_url` (real Databricks sends none, reference §3; used when present, D7)
    and `number_in_job` are kept only when usable, never a reason to refuse the answer."""

    run_id: int
    run_page_url: str | None = None
    number_in_job: int | None = None


def _run_now_answer(answer: Mapping[str, Any]) -> RunNowAnswer:
    def positive_int(value: object) -> int | None:
        if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_INT64:
            return value
        return None

    run_id = positive_int(answer.get("run_id"))
    if run_id is None:
        raise _unexpected(Endpoint.RUN_NOW, "no positive integer run_id")
    url = answer.get("run_page_url")
    return RunNowAnswer(
        run_id,
        url if isinstance(url, str) and url else None,
        positive_int(answer.get("number_in_job")),
    )


def _unexpected(endpoint: Endpoint, what: str) -> DatabricksAnswerError:
    return DatabricksAnswerError(
        f"unexpected answer from {endpoint.path}: {what}",
        method=endpoint.method,
        path=endpoint.path,
    )
