"""`polysync emulator ...`: serve the Databricks Jobs API emulator on its own."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from polysync.cli.terminal import make_console
from polysync.errors import WorkspaceFileError

app = typer.Typer(help="The Databricks Jobs API emulator.", no_args_is_help=True)
err = make_console(stderr=True)


@app.command()
def serve(
    workspace: Annotated[
        str, typer.Option("--workspace", "-w", help="Workspace file (JSON or YAML), or `demo`.")
    ] = "demo",
    port: Annotated[int, typer.Option(help="TCP port (0 picks a free one).")] = 8765,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    speed: Annotated[
        float, typer.Option(help="Emulated time runs this many times faster than real time.")
    ] = 1.0,
    tls: Annotated[
        bool, typer.Option("--tls/--no-tls", help="Serve HTTPS with a self-signed certificate.")
    ] = False,
    tls_dir: Annotated[
        Path | None,
        typer.Option(help="Where to write the certificate files (default: a temp dir)."),
    ] = None,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="Accept requests without a token.")
    ] = False,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            metavar="TOKEN",
            help="The personal access token the emulator accepts, instead of the workspace "
            "file's (the demo's is dapi-demo-token-0000000000000000); env:NAME reads it from "
            "the environment variable NAME.",
            show_default=False,
        ),
    ] = None,
    emulated_limits: Annotated[
        bool,
        typer.Option(
            "--emulated-limits",
            help="Pace rate limits and token lifetimes on emulated time (with --speed: a faithful "
            "simulation of a workspace's limits, for benchmarks).",
        ),
    ] = False,
) -> None:
    """Serve the Jobs API (/api/2.0, 2.1, 2.2), the identity endpoints and the control plane."""
    # Imported here, not at the top: uvicorn and the emulator would slow every command's start.
    import uvicorn

    from polysync.clock import ScaledClock
    from polysync.emulator.app import create_app
    from polysync.emulator.spec import load_workspace
    from polysync.emulator.tls import make_self_signed_cert

    try:
        spec = load_workspace(workspace)
    except WorkspaceFileError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(2) from exc
    if speed <= 0:
        err.print(f"[red]error:[/red] --speed must be > 0, got {speed}.")
        raise typer.Exit(2)
    if no_auth:
        spec.auth.enabled = False
    if token is not None:
        chosen = os.environ.get(token[4:], "") if token.startswith("env:") else token
        if not chosen.strip():
            err.print(
                f"[red]error:[/red] --token {token}: "
                + ("the environment variable is not set." if chosen == "" else "empty token.")
                + " Give the token the emulator should accept, or env:NAME."
            )
            raise typer.Exit(2)
        spec.auth.tokens = [chosen.strip()]
    ssl: dict[str, str] = {}
    scheme = "http"
    if tls:
        directory = tls_dir or Path(tempfile.mkdtemp(prefix="polysync-emulator-tls-"))
        files = make_self_signed_cert(directory, hostnames=("localhost", "127.0.0.1", "::1", host))
        ssl = {"ssl_certfile": str(files.cert_path), "ssl_keyfile": str(files.key_path)}
        scheme = "https"
        err.print(f"CA certificate (trust it): {files.ca_path}")
        err.print(f"  export REQUESTS_CA_BUNDLE={files.ca_path} SSL_CERT_FILE={files.ca_path}")
    clock = ScaledClock(speed)
    emulator_app = create_app(spec, clock=clock, real_clock=clock if emulated_limits else None)
    config = uvicorn.Config(
        emulator_app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        **ssl,  # type: ignore[arg-type]
    )
    server = uvicorn.Server(config)

    async def run() -> None:
        task = asyncio.create_task(server.serve())
        # uvicorn exposes readiness only as a flag, so poll it (bounded by the task ending).
        while not server.started and not task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        if server.started:
            bound = server.servers[0].sockets[0].getsockname()[1]
            url = f"{scheme}://{'localhost' if host == '127.0.0.1' else host}:{bound}"
            err.print(
                f"Databricks Jobs API emulator serving {len(spec.jobs)} jobs at {url}",
                soft_wrap=True,
            )
            faster = " (--speed 20 runs it 20 times faster)" if speed == 1 else ""
            err.print(
                f"  workspace {workspace!r}, clock speed x{speed:g}{faster}, auth "
                f"{'on' if spec.auth.enabled else 'off'}",
                soft_wrap=True,
            )
            if spec.auth.enabled and spec.auth.tokens:
                if token is not None:
                    shown = (
                        f"${token[4:]}" if token.startswith("env:") else "<the --token you gave>"
                    )
                elif workspace == "demo":
                    shown = spec.auth.tokens[0]  # the demo workspace's: public, a demo token
                else:
                    shown = "<a token from the workspace file>"
                err.print(f"  export DATABRICKS_HOST={url}", soft_wrap=True)
                err.print(f"  export DATABRICKS_TOKEN={shown}", soft_wrap=True)
            err.print(
                "  control plane: /emulator/health, /emulator/stats, /emulator/faults (Ctrl-C stops)",
                soft_wrap=True,
            )
        await task

    asyncio.run(run())
