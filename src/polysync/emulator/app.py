"""Composition of the emulator: the workspace, the Jobs API, identity endpoints, edges and control plane."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from polysync.clock import AdvanceableClock, Clock, ScaledClock, SystemClock
from polysync.emulator.auth import BearerAuthMiddleware, TokenIssuer
from polysync.emulator.control import control_routes
from polysync.emulator.engine import Workspace
from polysync.emulator.faults import FaultInjector, FaultMiddleware, fault_routes
from polysync.emulator.identity import identity_routes
from polysync.emulator.jobs_api import jobs_routes
from polysync.emulator.keyvault import Vault
from polysync.emulator.keyvault_api import KeyVaultService, keyvault_routes
from polysync.emulator.pipelines_api import pipelines_routes
from polysync.emulator.ratelimit import RateLimiter, RateLimitMiddleware, ratelimit_routes
from polysync.emulator.routing import not_found
from polysync.emulator.spec import WorkspaceSpec
from polysync.emulator.stats import RequestStats, StatsMiddleware, stats_routes
from polysync.emulator.workspace_api import workspace_routes


class Emulator:
    """The state behind one emulated workspace, shared by every route (`app.state.emulator`)."""

    def __init__(
        self,
        spec: WorkspaceSpec,
        *,
        clock: AdvanceableClock,
        real_clock: Clock,
    ) -> None:
        self.spec = spec
        self.clock = clock
        self.real_clock = real_clock
        self.stats = RequestStats()
        self.faults = FaultInjector()
        self.issuer = TokenIssuer(real_clock)
        # The personal access tokens the bearer middleware accepts (`/emulator/tokens` edits it).
        self.auth = spec.auth
        self.limiter = RateLimiter(spec.rate_limits, real_clock)
        self.workspace = self._new_workspace(spec)
        self.keyvault = KeyVaultService(self._new_vault(spec), self.issuer, spec.workspace.host)

    @property
    def host(self) -> str | None:
        return self.spec.workspace.host

    def _new_workspace(self, spec: WorkspaceSpec) -> Workspace:
        workspace = Workspace(self.clock, spec.workspace)
        workspace.load(spec)
        return workspace

    def _new_vault(self, spec: WorkspaceSpec) -> Vault | None:
        if spec.vault is None:
            return None
        return Vault(spec.vault, self.clock.now, seed=spec.workspace.seed)

    def reset(self, spec: WorkspaceSpec | None = None) -> None:
        """Back to the workspace file (or a new spec): jobs, runs, notebooks, pipelines, the
        vault's secrets, faults and counters."""
        if spec is not None:
            self.spec = spec
        self.workspace = self._new_workspace(self.spec)
        self.keyvault.vault = self._new_vault(self.spec)
        self.keyvault.host = self.spec.workspace.host
        self.faults.clear()
        self.stats.reset()


class EmulatorApp:
    """The emulator as a plain ASGI app. The edges wrap Starlette from the outside, so that a
    dropped connection is not turned into a 500 by Starlette's error middleware."""

    def __init__(self, asgi: ASGIApp, emulator: Emulator) -> None:
        self._asgi = asgi
        self.emulator = emulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._asgi(scope, receive, send)


def create_app(
    spec: WorkspaceSpec | None = None,
    *,
    clock: AdvanceableClock | None = None,
    real_clock: Clock | None = None,
) -> EmulatorApp:
    """Build the emulator. `clock` is the workspace's time; `real_clock` paces rate limits and token
    lifetimes, which must stay real even when the workspace clock runs fast."""
    spec = spec or WorkspaceSpec()
    real = real_clock or SystemClock()
    emulator = Emulator(spec, clock=clock or ScaledClock(1.0), real_clock=real)

    async def api_not_found(request: Request) -> Response:
        return not_found(request)

    app = Starlette()
    app.state.emulator = emulator
    limited = RateLimitMiddleware(app, emulator.limiter)
    routes = [
        *jobs_routes(),
        *workspace_routes(),
        *pipelines_routes(),
        *keyvault_routes(emulator.keyvault),
        *identity_routes(spec.auth, emulator.issuer),
        *control_routes(),
        *fault_routes(emulator.faults),
        *stats_routes(emulator.stats),
        *ratelimit_routes(emulator.limiter),
        Route("/api/{rest:path}", api_not_found, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
    ]
    app.router.routes.extend(routes)
    authed = BearerAuthMiddleware(limited, spec.auth, emulator.issuer)
    faulty = FaultMiddleware(authed, emulator.faults)
    return EmulatorApp(StatsMiddleware(faulty, emulator.stats, real), emulator)
