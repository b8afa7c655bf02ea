"""`polysync demo`: the whole story in under a minute, against an in-process emulated workspace."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.rule import Rule
from rich.text import Text

from polysync.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_RUN_FAILED,
    cli_actor,
    load_settings,
    out,
    run_async,
    session,
)
from polysync.cli.render import discover_summary, discover_table, kinds_summary
from polysync.cli.terminal import safe_markup, terminal_safe
from polysync.cli.watch import print_outcome, watch
from polysync.domain.models import RunStatus
from polysync.domain.records import PLATFORM_ATTRIBUTES, NewPlatform, NewSecretVault, Run
from polysync.errors import ConfigError, NotFoundError, UsageError

if TYPE_CHECKING:
    from polysync.services import Services

PLATFORM = "demo"
TOKEN_VARIABLE = "POLYSYNC_DEMO_TOKEN"  # noqa: S105 - the name of a variable, not a token
KV_SECRET_VARIABLE = "POLYSYNC_DEMO_KV_SECRET"  # noqa: S105 - the name of a variable
DEMO_VAULT = "demo-kv"
DEMO_TOKEN_REFERENCE = "vault://demo-kv/databricks-token"  # noqa: S105 - a reference
SALES, FRAUD, BACKFILL = "nightly-sales-etl", "fraud-scoring", "warehouse-backfill"
VACUUM = "vacuum-delta-tables"  # a single-task Databricks Job
REPORT = "daily_sales_report"  # a Databricks Notebook (/Shared/polysync-demo)
MEDALLION = "sales-medallion-dlt"  # a Databricks Pipeline
SALES_VALUES = {"env": "dev", "run_date": "2026-11-24", "batch_size": "1000"}
REPORT_VALUES = {"region": "apac", "channels": "web,store"}
# Where discovery walks for notebooks, and how notebook runs get compute (docs/job-types.md).
DEMO_ATTRIBUTES = {"default_notebook_path": "/Shared/polysync-demo", "serverless": "true"}
EXPECTED = [
    RunStatus.SUCCESS,
    RunStatus.FAILED,
    RunStatus.CANCELLED,
    RunStatus.SUCCESS,
    RunStatus.SUCCESS,
    RunStatus.SUCCESS,
]
POLL_S = 0.25  # the demo's engine polls this often (real seconds) while the workspace runs fast


def say(title: str, text: str | Text, *, gap: bool = False) -> None:
    """One line of narration per step (`gap`: after a blank line, before a live display)."""
    if gap:
        out.line()
    line = Text.assemble(("▸ ", "bold cyan"), (f"{title:<9}", "bold"), " ")
    line.append_text(text if isinstance(text, Text) else Text.from_markup(text))
    out.print(line, soft_wrap=True)


def demo(
    speed: Annotated[
        float, typer.Option(min=1, help="The emulated workspace's clock runs this much faster.")
    ] = 30.0,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve/--no-serve", help="Keep the emulator serving afterwards, until Ctrl-C."
        ),
    ] = False,
) -> None:
    """Run the demo: emulator, platform, discovery, import, a success, a failure, a cancel, and
    one run of each other job type (Databricks Job, Notebook, Pipeline)."""
    home_given = bool(os.environ.get("POLYSYNC_HOME"))
    home = (
        Path(os.environ["POLYSYNC_HOME"]).expanduser().resolve()
        if home_given
        else Path(tempfile.mkdtemp(prefix="polysync-demo-"))
    )
    try:
        runs = run_async(lambda: _demo(speed, serve, home, home_given))
    except KeyboardInterrupt:
        out.print("Demo interrupted.")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    outcomes = [run.status for run in runs]
    expected = EXPECTED
    if outcomes != expected:
        out.print(
            f"[red]The demo's runs ended {[s.value for s in outcomes]}, expected "
            f"{[s.value for s in expected]}.[/]"
        )
        raise typer.Exit(EXIT_RUN_FAILED)


async def _demo(speed: float, serve: bool, home: Path, home_given: bool) -> list[Run]:
    """`home`: POLYSYNC_HOME when set (`home_given`), else a fresh temporary directory."""
    # Imported here: the emulator (uvicorn, starlette) would slow every other command's start.
    from polysync.clock import ScaledClock
    from polysync.emulator.app import create_app
    from polysync.emulator.serving import running_server
    from polysync.emulator.spec import load_workspace

    started_s = time.monotonic()
    spec = load_workspace("demo")
    # The platform stores the reference `env:POLYSYNC_DEMO_TOKEN`; the token is the emulator's own.
    os.environ[TOKEN_VARIABLE] = spec.auth.tokens[0]
    settings = load_settings(
        home=home,
        database_url=f"sqlite+aiosqlite:///{home / 'polysync.db'}",
        poll_min_s=POLL_S,
        sweep_interval_s=POLL_S,
    )
    out.print(
        Rule("[bold]Polysync demo[/]: Databricks workflows, end to end, on an emulated workspace")
    )
    from polysync.emulator.tls import make_self_signed_cert

    app = create_app(spec, clock=ScaledClock(speed))
    # The demo vault (Key Vault clients speak https only): the same emulator, also over TLS.
    tls = make_self_signed_cert(home / "demo-tls")
    sp = spec.auth.service_principals[0]
    os.environ[KV_SECRET_VARIABLE] = sp.client_secret.get_secret_value()
    vault = DemoVault(tenant_id=sp.tenant_id, client_id=sp.client_id, ca_path=tls.ca_path)
    async with running_server(app) as url, running_server(app, tls=tls) as vault_url:
        say(
            "Emulator",
            f"serving the demo workspace ({len(spec.jobs)} jobs, clock x{speed:g}) at "
            f"[link={url}]{url}[/link]",
        )
        say("Database", f"SQLite at {safe_markup(str(home / 'polysync.db'))}")
        async with session(settings=settings) as services:
            runs = await _story(services, url, replace(vault, url=vault_url))
        _summary(time.monotonic() - started_s, None if home_given else home, runs, serve)
        if serve:
            await _serve_until_stopped(url, home, home_given, spec.auth.tokens[0])
    return runs


async def _story(services: Services, url: str, vault: DemoVault) -> list[Run]:
    await _register(services, url)
    await _use_the_demo_vault(services, vault)

    _, found = await services.discover(PLATFORM)
    say("Discover", f"Get Pipelines: {discover_summary(found)}")
    out.print(discover_table(found, set()))

    _, results = await services.import_jobs(PLATFORM, None, actor=cli_actor())
    created = sum(1 for r in results if r.job and r.created)
    updated = sum(1 for r in results if r.job and not r.created)
    kinds = kinds_summary(r.job.job_type for r in results if r.job)
    say(
        "Import",
        f"{len(results)} jobs imported with their parameter schema ({created} created, "
        f"{updated} updated; {kinds}).",
    )

    sales = await services.get_job(SALES, PLATFORM)
    try:
        await services.execute(sales, {"source": "adls"}, actor=cli_actor())
    except UsageError as exc:
        say("Guard", f"-p source=adls on {SALES} is refused before any API call:")
        out.print(Text(f"  {terminal_safe(exc.message)}", style="dim"), soft_wrap=True)

    values = ", ".join(f"{k}={v}" for k, v in SALES_VALUES.items())
    say("Execute", f"[bold]{SALES}[/] with {values}", gap=True)
    outcomes = [await _execute(services, SALES, SALES_VALUES)]

    say("Execute", f"[bold]{FRAUD}[/]: its feature step fails on a schema mismatch", gap=True)
    outcomes.append(await _execute(services, FRAUD, {}))

    say(
        "Cancel",
        f"[bold]{BACKFILL}[/]: started, then cancelled while its 3-hour backfill runs",
        gap=True,
    )
    outcomes.append(await _execute(services, BACKFILL, {}, cancel_when=_backfill_running))

    say("Job", f"[bold]{VACUUM}[/]: a single-task Databricks Job, started with run-now", gap=True)
    outcomes.append(await _execute(services, VACUUM, {}))

    values = ", ".join(f"{k}={v}" for k, v in REPORT_VALUES.items())
    say(
        "Notebook",
        f"[bold]{REPORT}[/]: a one-time run (runs/submit, serverless) with widgets {values}",
        gap=True,
    )
    outcomes.append(await _execute(services, REPORT, REPORT_VALUES))

    say("Pipeline", f"[bold]{MEDALLION}[/]: an update of a Lakeflow pipeline", gap=True)
    outcomes.append(await _execute(services, MEDALLION, {"full_refresh": "true"}))
    await _tasks(services)
    return outcomes


async def _tasks(services: Services) -> None:
    """Two Tasks (issue 12): a scheduled one and one that depends on it, with a mapped value
    and a retry that repairs the failed run in place."""
    sales = await services.get_job(SALES, PLATFORM)
    fraud = await services.get_job(FRAUD, PLATFORM)
    for name in ("fraud-after-ingest", "nightly-ingest"):  # a database kept in POLYSYNC_HOME
        with contextlib.suppress(NotFoundError):
            await services.tasks.delete(name, actor=cli_actor())
    await services.tasks.create(
        {
            "name": "nightly-ingest",
            "job": sales.id,
            "parameters": {"env": "dev", "batch_size": "700"},
            "schedules": [{"cron": "0 2 * * *", "timezone": "Europe/London"}],
        },
        actor=cli_actor(),
    )
    await services.tasks.create(
        {
            "name": "fraud-after-ingest",
            "job": fraud.id,
            "parameters": {"model_version": "{{upstream.nightly-ingest.parameters.batch_size}}"},
            "dependencies": ["nightly-ingest"],
            "retry": {"enabled": True, "max_attempts": 2, "initial_delay_s": 1},
        },
        actor=cli_actor(),
    )
    fires = await services.tasks.preview("nightly-ingest", 3)
    say(
        "Tasks",
        "[bold]nightly-ingest[/] runs "
        f"{SALES} at 02:00 Europe/London (next: "
        + ", ".join(f.at.strftime("%d %b %H:%M UTC") for f in fires)
        + f"); [bold]fraud-after-ingest[/] runs {FRAUD} after it succeeds, with model_version "
        "mapped from its batch_size, and repairs its run once if it fails.",
        gap=True,
    )
    await services.tasks.run_once("nightly-ingest", actor=cli_actor())
    say("Run once", "nightly-ingest queued; the engine starts it, then its downstream Task")
    for _ in range(2400):  # at most ~10 minutes of real time
        await services.engine.step()
        runs = await services.tasks.list_runs("fraud-after-ingest", limit=1)
        if runs and runs[0].status.is_terminal:
            break
        await asyncio.sleep(POLL_S)
    for name in ("nightly-ingest", "fraud-after-ingest"):
        latest = (await services.tasks.list_runs(name, limit=1))[0]
        attempts = ", ".join(
            f"{a.kind.value} run {a.run_id}: {a.status.value if a.status else 'running'}"
            for a in latest.attempts
        )
        say(
            "TaskRun",
            f"{latest.id} of [bold]{name}[/] ({latest.trigger.value}): "
            f"{latest.status.value} - attempts: {safe_markup(attempts) or 'none'}",
        )


async def _register(services: Services, url: str) -> None:
    new = NewPlatform(
        name=PLATFORM,
        workspace_url=url,
        auth={"method": "pat", "token": f"env:{TOKEN_VARIABLE}"},
        description="The Polysync demo workspace (emulated).",
        options={PLATFORM_ATTRIBUTES: DEMO_ATTRIBUTES},
    )
    try:
        existing = await services.store.get_platform(PLATFORM)
    except NotFoundError:
        await services.add_platform(new, actor=cli_actor())
        verb = "registered"
    else:  # a database kept in POLYSYNC_HOME: point the platform at this emulator
        fresh = replace(existing, workspace_url=url, auth=new.auth, options=dict(new.options))
        await services.update_platform(fresh, actor=cli_actor())
        verb = "updated"
    report = await services.test_platform(PLATFORM)
    say(
        "Platform",
        f"'{PLATFORM}' {verb}: Personal Access Token from env:{TOKEN_VARIABLE} (the reference is "
        f"stored, never the token). Test connectivity [green]✔[/] workspace {report.workspace_id}",
    )


@dataclass(frozen=True, slots=True)
class DemoVault:
    """Where the demo's emulated Key Vault answers and who signs in to it."""

    tenant_id: str
    client_id: str
    ca_path: Path
    url: str = ""


async def _use_the_demo_vault(services: Services, vault: DemoVault) -> None:
    """Register the emulator's vault `demo-kv` and move the platform's token into it (D15)."""
    new = NewSecretVault(
        name=DEMO_VAULT,
        vault_url=vault.url,
        auth={
            "method": "entra_service_principal",
            "tenant_id": vault.tenant_id,
            "client_id": vault.client_id,
            "client_secret": f"env:{KV_SECRET_VARIABLE}",
            "authority_host": vault.url,
            "disable_instance_discovery": True,
        },
        description="The demo's emulated Azure Key Vault.",
        options={"tls_ca_bundle": str(vault.ca_path)},
    )
    with contextlib.suppress(NotFoundError):  # a database kept in POLYSYNC_HOME
        await services.remove_vault(DEMO_VAULT, actor=cli_actor())
    await services.add_vault(new, actor=cli_actor())
    report = await services.test_vault(DEMO_VAULT, "databricks-token")
    if not report.ok:
        raise ConfigError(report.message)
    platform = await services.store.get_platform(PLATFORM)
    await services.update_platform(
        replace(platform, auth={"method": "pat", "token": DEMO_TOKEN_REFERENCE}),
        actor=cli_actor(),
    )
    say(
        "Vault",
        f"Secret Vault '{DEMO_VAULT}' (Azure Key Vault, emulated at {vault.url}) registered; "
        f"the platform's token is now {DEMO_TOKEN_REFERENCE}, read on demand "
        f"(secret version {report.version}; the value is never stored or shown).",
    )


def _backfill_running(run: Run) -> bool:
    return any(t.task_key == "backfill" and t.status is RunStatus.RUNNING for t in run.tasks)


async def _execute(
    services: Services,
    name: str,
    values: dict[str, str],
    cancel_when: Callable[[Run], bool] | None = None,
) -> Run:
    job = await services.get_job(name, PLATFORM)
    run = await services.execute(job, values, actor=cli_actor())
    run = await watch(services, run, job, interval_s=POLL_S, console=out, cancel_when=cancel_when)
    print_outcome(run, out)
    return run


def _summary(elapsed_s: float, temp_home: Path | None, runs: list[Run], serve: bool) -> None:
    out.print(Rule())
    shown = ", ".join(f"{run.id} {run.status.value}" for run in runs)
    stays = "" if serve else " (the emulator stops with the demo; the database stays)"
    out.print(
        f"[green]✔[/] Demo finished in {elapsed_s:.1f} s: runs {shown}, each recorded with its "
        f"tasks and status history. Explore them{stays}:",
        soft_wrap=True,
    )
    if temp_home is not None:
        out.print(f"  export POLYSYNC_HOME={safe_markup(str(temp_home))}", soft_wrap=True)
    failed = next((run.id for run in runs if run.status is RunStatus.FAILED), runs[0].id)
    for command in (
        "polysync runs list",
        f"polysync runs show {failed}",
        "polysync jobs list",
        "polysync tasks list",
        "polysync taskruns list",
        f"polysync jobs show {SALES} --platform {PLATFORM}",
        f"polysync platform show {PLATFORM}",
    ):
        out.print(f"  [bold]{command}[/]", soft_wrap=True)
    if not serve:
        out.print(
            "  A workspace to keep playing with: [bold]polysync demo --serve[/], or "
            "[bold]polysync emulator serve --workspace demo[/]",
            soft_wrap=True,
        )


async def _serve_until_stopped(url: str, home: Path, home_given: bool, token: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    out.print(Rule("Still serving"))
    out.print(
        f"The emulator keeps serving at {url} until Ctrl-C. In another shell:", soft_wrap=True
    )
    if not home_given:
        out.print(f"  export POLYSYNC_HOME={safe_markup(str(home))}", soft_wrap=True)
    # The emulator's own demo credential (README), not a secret of any real workspace.
    out.print(f"  export {TOKEN_VARIABLE}={token}", soft_wrap=True)
    out.print(f"  polysync discover {PLATFORM}", soft_wrap=True)
    out.print(f"  polysync run {SALES} --platform {PLATFORM} -p env=dev", soft_wrap=True)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
