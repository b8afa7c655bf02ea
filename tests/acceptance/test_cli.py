"""The `polysync` CLI end to end: the installed command against a served emulator, in subprocesses.

The emulator runs its demo workspace 200 times faster than real time, and the CLI's engine polls
every 0.1 s (POLYSYNC_POLL_MIN_S), so runs of minutes end in about a second; nothing here sleeps.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import seed_endless_notebook, seed_endless_pipeline

POLYSYNC = str(Path(sys.executable).with_name("polysync"))
DEMO_TOKEN = "dapi-demo-token-0000000000000000"  # the emulator's demo workspace credential
TOKEN_VAR = "POLYSYNC_ACCEPTANCE_TOKEN"
SALES, CUSTOMER = ("914275016372845", "527703982144019")
TROUBLESHOOTING = "declare it on the Databricks Job's job-level parameters"
COMMAND_TIMEOUT_S = 120


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass(frozen=True)
class Cli:
    """`polysync` with its own POLYSYNC_HOME, talking to the served emulator at `url`."""

    home: Path
    url: str

    def env(self, *, unset: tuple[str, ...] = (), **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("POLYSYNC_")}
        env.update(
            POLYSYNC_HOME=str(self.home),
            POLYSYNC_POLL_MIN_S="0.1",
            COLUMNS="200",  # no wrapping inside the texts the tests look for
            **{TOKEN_VAR: DEMO_TOKEN},
        )
        env.update(extra)
        for name in unset:
            env.pop(name, None)
        return env

    def __call__(self, *args: str, unset: tuple[str, ...] = (), **env: str) -> Result:
        done = subprocess.run(
            [POLYSYNC, *args],
            env=self.env(unset=unset, **env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def ok(self, *args: str, **env: str) -> Result:
        result = self(*args, **env)
        assert result.code == 0, result.output
        return result

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [POLYSYNC, *args],
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # A shell may start us with SIGINT ignored; the CLI must see Ctrl-C as a user's would.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509
        )

    def add_demo_platform(self) -> None:
        self.ok("platform", "add", "demo", "--url", self.url, "--token", f"env:{TOKEN_VAR}")


@pytest.fixture(scope="module")
def emulator_url() -> Iterator[str]:
    """`polysync emulator serve --port 0`: the URL it prints on stderr once it listens."""
    process = subprocess.Popen(
        [POLYSYNC, "emulator", "serve", "--workspace", "demo", "--port", "0", "--speed", "200"],
        env={**os.environ, "COLUMNS": "200"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def drain() -> None:  # keeps reading, so the emulator never blocks on a full pipe
        assert process.stderr is not None
        for line in process.stderr:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=drain, daemon=True).start()
    url = None
    while url is None:
        line = lines.get(timeout=60)
        assert line is not None, f"the emulator exited with {process.wait()}"
        match = re.search(r"serving \d+ jobs at (https?://\S+)", line)
        url = match.group(1) if match else None
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def cli(emulator_url: str, tmp_path: Path) -> Cli:
    """A fresh POLYSYNC_HOME (SQLite database) per test."""
    return Cli(tmp_path / "home", emulator_url)


@pytest.fixture(scope="module")
def workspace(emulator_url: str, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """One home shared by the run tests: the demo platform, every job imported."""
    shared = Cli(tmp_path_factory.mktemp("workspace") / "home", emulator_url)
    shared.add_demo_platform()
    shared.ok("import", "demo", "--all")
    return shared


@pytest.fixture(scope="module")
def forever(emulator_url: str) -> str:
    """The External Id of a job whose runs never end on their own (seeded in the emulator), so
    no test depends on how fast a busy machine gets to a run before it finishes."""
    seeded = httpx.post(
        f"{emulator_url}/emulator/jobs",
        json={
            "name": "forever",
            "max_concurrent_runs": 100,
            "tasks": [{"task_key": "wait", "emulator": {"duration_s": 10_000_000}}],
        },
    )
    seeded.raise_for_status()
    return str(seeded.json()["job_ids"][0])


@pytest.fixture(scope="module")
def endless(workspace: Cli, forever: str) -> str:
    """`forever`, imported into the shared workspace home."""
    workspace.ok("import", "demo", "--job-id", forever)
    return forever


def emulator_api(url: str) -> httpx.Client:
    return httpx.Client(
        base_url=f"{url}/api/2.1", headers={"Authorization": f"Bearer {DEMO_TOKEN}"}
    )


@contextlib.contextmanager
def running(process: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """A background `polysync` process, killed at the end if a failed test left it running."""
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=COMMAND_TIMEOUT_S)


def stop(process: subprocess.Popen[str]) -> str:
    """SIGTERM, then the stderr of the process once it has exited (with status 0)."""
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=COMMAND_TIMEOUT_S)
    assert process.returncode == 0, stderr
    return stderr


def no_traceback(result: Result) -> None:
    assert "Traceback" not in result.output, result.output


# --------------------------------------------------------------------------- platforms
def test_platform_add_list_show_and_test_connectivity(cli: Cli) -> None:
    added = cli.ok(
        "platform", "add", "demo", "--url", cli.url, "--token", f"env:{TOKEN_VAR}", "--json"
    )
    assert added.json()["auth"] == {"method": "pat", "token": f"env:{TOKEN_VAR}"}

    listed = cli.ok("platform", "list", "--json").json()
    assert [(p["name"], p["workspace_url"]) for p in listed] == [("demo", cli.url)]
    shown = cli.ok("platform", "show", "demo")
    assert "Personal Access Token" in shown.stdout
    assert f"env:{TOKEN_VAR}" in shown.stdout

    tested = cli.ok("platform", "test", "demo")
    assert "Connected" in tested.stdout
    assert "1234567890123456" in tested.stdout  # the workspace id the emulator answers with
    assert DEMO_TOKEN not in tested.output + shown.output + added.output


def test_a_wrong_token_is_a_platform_error_with_a_clear_message(cli: Cli) -> None:
    wrong = "dapi-wrong-token-99999999"
    cli.ok("platform", "add", "bad", "--url", cli.url, "--token", "env:WRONG_TOKEN")
    result = cli("platform", "test", "bad", WRONG_TOKEN=wrong)
    assert result.code == 3, result.output
    assert result.stdout == ""
    assert "refused the credentials" in result.stderr
    assert "polysync platform show" in result.stderr
    assert wrong not in result.output
    no_traceback(result)


def test_an_unset_secret_reference_is_a_usage_error(cli: Cli) -> None:
    cli.ok("platform", "add", "unset", "--url", cli.url, "--token", "env:POLYSYNC_NOT_SET")
    result = cli("platform", "test", "unset")
    assert result.code == 2, result.output
    assert "POLYSYNC_NOT_SET is not set" in result.stderr
    no_traceback(result)


def test_a_secret_given_as_a_value_is_refused_without_repeating_it(cli: Cli) -> None:
    secret = "dapi0123456789abcdef-literal"
    for auth_flags, secret_flag in (
        ((), "--token"),
        (
            ("--auth", "service-principal", "--tenant-id", "t", "--client-id", "c"),
            "--client-secret",
        ),
        (("--auth", "oauth-m2m", "--client-id", "c"), "--client-secret"),
    ):
        result = cli("platform", "add", "leaky", "--url", cli.url, *auth_flags, secret_flag, secret)
        assert result.code == 2, result.output
        assert secret not in result.output
        assert "env:NAME" in result.stderr
        assert secret_flag in result.stderr
        no_traceback(result)
    assert cli.ok("platform", "list", "--json").json() == []


def test_auth_flags_that_do_not_fit_the_method_are_usage_errors(cli: Cli) -> None:
    missing = cli("platform", "add", "sp", "--url", cli.url, "--auth", "service-principal")
    assert missing.code == 2
    assert "--client-id" in missing.stderr
    assert "--tenant-id" in missing.stderr
    extra = cli("platform", "add", "p", "--url", cli.url, "--token", "env:X", "--tenant-id", "t")
    assert extra.code == 2
    assert "--tenant-id does not apply to --auth pat" in extra.stderr
    unknown_auth = cli("platform", "add", "p", "--url", cli.url, "--auth", "kerberos")
    assert unknown_auth.code == 2


def test_other_auth_methods_are_stored_as_references(cli: Cli) -> None:
    cli.ok(
        "platform",
        "add",
        "sp",
        "--url",
        cli.url,
        "--auth",
        "service-principal",
        "--tenant-id",
        "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "--client-id",
        "5b2f1a1e-0c5d-4a4e-9c3a-7d1c1b2e3f40",
        "--client-secret",
        "file:/run/secrets/sp",
        "--authority-host",
        "https://login.microsoftonline.us",
        "--disable-instance-discovery",
        "--api-version-list",
        "2.1",
    )
    cli.ok("platform", "add", "mi", "--url", cli.url, "--auth", "managed-identity")
    cli.ok("platform", "add", "default", "--url", cli.url, "--auth", "azure-default")
    platforms = {p["name"]: p for p in cli.ok("platform", "list", "--json").json()}
    assert platforms["sp"]["auth"] == {
        "method": "entra_service_principal",
        "tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "client_id": "5b2f1a1e-0c5d-4a4e-9c3a-7d1c1b2e3f40",
        "client_secret": "file:/run/secrets/sp",
        "authority_host": "https://login.microsoftonline.us",
        "disable_instance_discovery": True,
    }
    assert platforms["sp"]["options"] == {"api_versions": {"jobs_list": "2.1"}}
    assert platforms["mi"]["auth"] == {"method": "managed_identity"}
    assert platforms["default"]["auth"] == {"method": "azure_default"}


# --------------------------------------------------------------------------- discover and import
def test_discover_classifies_workflows_and_jobs(cli: Cli) -> None:
    cli.add_demo_platform()
    found = {job["name"]: job for job in cli.ok("discover", "demo", "--json").json()}
    assert len(found) == 16  # 10 Jobs API jobs, 4 notebooks, 2 pipelines
    # The REST API's shape (polysync.shapes): `kind`, `imported_job_id`.
    assert found["nightly-sales-etl"]["kind"] == "Databricks Workflow"
    assert found["nightly-sales-etl"]["imported_job_id"] is None
    assert found["nightly-sales-etl"]["task_count"] == 4
    assert found["nightly-sales-etl"]["tags"] == {"team": "finance", "tier": "gold"}
    assert found["vacuum-delta-tables"]["kind"] == "Databricks Job"
    assert found["vacuum-delta-tables"]["task_count"] == 1
    assert sum(job["kind"] == "Databricks Workflow" for job in found.values()) == 7
    assert found["daily_sales_report"]["kind"] == "Databricks Notebook"
    assert found["daily_sales_report"]["external_id"] == "/Shared/polysync-demo/daily_sales_report"
    assert found["sales-medallion-dlt"]["kind"] == "Databricks Pipeline"

    table = cli.ok("discover", "demo").stdout
    assert re.search(r"914275016372845\s+nightly-sales-etl\s+Workflow\s+4\s+team=finance", table)
    assert "7 Databricks Workflows" in table


def test_import_all_creates_then_updates(cli: Cli) -> None:
    cli.add_demo_platform()
    first = cli.ok("import", "demo", "--all", "--json").json()
    assert len(first) == 16
    assert {r["outcome"] for r in first} == {"created"}
    again = cli.ok("import", "demo", "--all")
    assert "0 created, 16 updated, 0 failed." in again.stdout
    neither = cli("import", "demo")
    assert neither.code == 2
    assert "--all" in neither.stderr


def test_bad_external_ids_and_unknown_jobs_are_usage_errors(workspace: Cli) -> None:
    not_numeric = workspace("import", "demo", "--job-id", "12abc")
    assert not_numeric.code == 2, not_numeric.output
    assert "INVALID_PARAMETER_VALUE: job_id" in not_numeric.stdout
    assert "'12abc' is not a valid numeric Job Id" in not_numeric.stdout
    deleted = workspace("import", "demo", "--job-id", "4242")
    assert deleted.code == 2, deleted.output
    assert "Databricks job 4242 does not exist" in deleted.stdout
    unknown = workspace("run", "no-such-job", "--platform", "demo")
    assert unknown.code == 2
    assert "No job with id, External Id or name 'no-such-job'" in unknown.stderr
    no_platform = workspace("run", "nightly-sales-etl", "--platform", "nowhere")
    assert no_platform.code == 2
    assert "No platform with id or name 'nowhere'" in no_platform.stderr
    for result in (not_numeric, deleted, unknown, no_platform):
        no_traceback(result)


# --------------------------------------------------------------------------- jobs
def test_jobs_list_and_show(workspace: Cli) -> None:
    jobs = {j["name"]: j for j in workspace.ok("jobs", "list", "--json").json()}
    assert jobs["fraud-scoring"]["job_type"] == "Databricks Workflow"
    assert jobs["vacuum-delta-tables"]["job_type"] == "Databricks Job"

    sales = workspace.ok("jobs", "show", "nightly-sales-etl", "--platform", "demo", "--json")
    job = sales.json()
    assert (job["external_id"], job["platform"]) == (SALES, "demo")
    parameters = {(p["name"], p["task_key"]): p for p in job["parameters"]}
    assert parameters[("batch_size", None)]["data_type"] == "Int"
    assert parameters[("batch_size", None)]["default"] == "500"
    assert parameters[("full_refresh", None)]["data_type"] == "Bool"
    assert parameters[("source", "ingest")]["sent_at_run_time"] is False

    text = workspace.ok("jobs", "show", str(job["id"])).stdout  # by Polysync id
    for expected in ("General", "Databricks Workflow", SALES, "Parameters", "quality_threshold"):
        assert expected in text
    assert re.search(r"source\s+String\s+pos_landing\s+Input\s+task ingest, reference-only", text)


def test_sync_params_reports_what_changed_in_databricks(workspace: Cli) -> None:
    assert "nothing changed" in workspace.ok("jobs", "sync-params", CUSTOMER).stdout
    with emulator_api(workspace.url) as api:
        answer = api.post(
            "/jobs/update",
            json={
                "job_id": int(CUSTOMER),
                "new_settings": {
                    "parameters": [
                        {"name": "lookback_days", "default": "60"},
                        {"name": "segment", "default": "all"},
                        {"name": "region", "default": "emea"},
                    ]
                },
            },
        )
        answer.raise_for_status()
    synced = workspace.ok("jobs", "sync-params", "customer-360-refresh", "--platform", "demo")
    assert "Added parameter 'region' (job level) (String, default 'emea')." in synced.stdout
    assert "Removed parameter 'include_web_events' (job level)." in synced.stdout
    assert "default '30' -> '60'" in synced.stdout
    after = workspace.ok("jobs", "sync-params", CUSTOMER, "--json").json()
    assert after["changed"] is False
    assert "region" in {p["name"] for p in after["job"]["parameters"]}


# --------------------------------------------------------------------------- runs
def test_run_wait_with_overrides_succeeds_and_prints_json(workspace: Cli) -> None:
    result = workspace(
        "run",
        "nightly-sales-etl",
        "--platform",
        "demo",
        "-p",
        "env=dev",
        "-p",
        "run_date=2026-11-24",
        "-p",
        "batch_size=1000",
        "--json",
    )
    assert result.code == 0, result.output
    run = result.json()  # stdout holds the JSON and nothing else
    # The REST API's run shape (polysync.shapes), e.g. `databricks_run_id`, plus `job`.
    for field in ("id", "job", "databricks_run_id", "status", "message", "run_page_url", "tasks"):
        assert field in run
    for field in ("parameters_sent", "overrides", "created_at", "ended_at"):
        assert field in run
    assert run["status"] == "Success"
    assert run["job"]["name"] == "nightly-sales-etl"
    # The overrides as typed; the other parameters keep Databricks' defaults (D2 amended).
    assert run["parameters_sent"] == {"run_date": "2026-11-24", "env": "dev", "batch_size": "1000"}
    assert {t["task_key"]: t["status"] for t in run["tasks"]} == {
        "ingest": "Success",
        "clean": "Success",
        "enrich": "Success",
        "publish": "Success",
    }
    assert f"#job/{SALES}/run/{run['databricks_run_id']}" in run["run_page_url"]
    assert "run_id" not in run
    assert run["ended_at"] is not None
    assert run["lease_owner"] is None  # the CLI's engine released it on the way out


def test_run_by_external_id_shows_the_live_progress_as_text(workspace: Cli) -> None:
    result = workspace("run", "158820374466712")  # legacy-notebook-report, by External Id
    assert result.code == 0, result.output
    assert "legacy-notebook-report" in result.stdout
    assert re.search(r"extract\s+Success\s+1\s+\d+s", result.stdout)
    assert "Run page:" in result.stdout
    assert "✔ Success" in result.stdout


def test_a_failing_workflow_exits_1_with_the_task_and_the_error(workspace: Cli) -> None:
    result = workspace("run", "fraud-scoring", "--platform", "demo")
    assert result.code == 1, result.output
    assert "✘ Failed" in result.stdout
    assert "Task build_features failed (FAILED)" in result.stdout
    assert "A column `merchant_category` cannot be resolved" in result.stdout
    assert "Task score skipped (UPSTREAM_FAILED)" in result.stdout
    run_id = re.search(r"polysync runs show (\d+)", result.stdout)
    assert run_id is not None
    shown = workspace.ok("runs", "show", run_id.group(1), "--json").json()
    assert shown["status"] == "Failed"
    assert shown["events"][-1]["status"] == "Failed"
    assert "merchant_category" in shown["message"]


def run_now_calls(url: str) -> int:
    """How many jobs/run-now requests the emulator has answered (its control plane's stats)."""
    stats = httpx.get(f"{url}/emulator/stats").json()
    return int(stats["endpoints"].get("jobs/run-now", {}).get("total", 0))


def test_overriding_a_task_scoped_parameter_is_refused_before_any_run(workspace: Cli) -> None:
    before = run_now_calls(workspace.url)
    result = workspace("run", SALES, "--platform", "demo", "-p", "source=adls")
    assert result.code == 2, result.output
    assert "Parameter 'source' is defined on task 'ingest'" in result.stderr
    assert TROUBLESHOOTING in result.stderr
    assert "Sync Parameters" in result.stderr
    no_traceback(result)
    bad_value = workspace("run", SALES, "--platform", "demo", "-p", "batch_size=lots")
    assert bad_value.code == 2
    assert "Parameter 'batch_size' must be an Int" in bad_value.stderr
    malformed = workspace("run", SALES, "--platform", "demo", "-p", "env")
    assert malformed.code == 2
    assert "NAME=VALUE" in malformed.stderr
    assert run_now_calls(workspace.url) == before  # refused before any API call (D3)


def test_run_no_wait_then_cancel_until_cancelled(workspace: Cli, endless: str) -> None:
    started = workspace.ok("run", endless, "--platform", "demo", "--no-wait", "--json")
    run = started.json()
    assert run["databricks_run_id"] is not None
    assert run["status"] in ("Starting", "Running")
    cancelled = workspace.ok("runs", "cancel", str(run["id"]))
    assert "■ Cancelled" in cancelled.stdout  # the final status line, whatever the timing
    shown = workspace.ok("runs", "show", str(run["id"]), "--json").json()
    assert shown["status"] == "Cancelled"
    assert shown["cancel_requested_at"] is not None
    assert "cancel" in {event["source"] for event in shown["events"]}
    again = workspace.ok("runs", "cancel", str(run["id"]))
    assert "already Cancelled; nothing to cancel" in again.stdout


def test_runs_list_json(workspace: Cli) -> None:
    workspace.ok("run", "refresh-sales-dashboard", "--platform", "demo")
    runs = workspace.ok("runs", "list", "--json", "--limit", "3").json()
    assert 1 <= len(runs) <= 3
    newest = runs[0]
    assert newest["job"]["name"] == "refresh-sales-dashboard"
    assert newest["status"] == "Success"
    for field in ("id", "databricks_run_id", "message", "run_page_url", "tasks", "parameters_sent"):
        assert field in newest
    failed = workspace.ok("runs", "list", "--status", "Failed", "--json").json()
    assert all(run["status"] == "Failed" for run in failed)
    table = workspace.ok("runs", "list").stdout
    assert re.search(rf"{newest['id']}\s+refresh-sales-dashboard\s+Success", table)


def test_ctrl_c_leaves_the_run_running_and_says_how_to_cancel(workspace: Cli, endless: str) -> None:
    watcher = workspace.popen("run", endless, "--platform", "demo")
    try:
        active: list[dict[str, Any]] = []
        for _ in range(60):  # each look is a whole CLI call: no sleep needed
            active = workspace.ok("runs", "list", "--active", "--json").json()
            if active and active[0]["databricks_run_id"]:
                break
        assert active, "the run never appeared"
        watcher.send_signal(signal.SIGINT)
        stdout, stderr = watcher.communicate(timeout=COMMAND_TIMEOUT_S)
    finally:
        if watcher.poll() is None:
            watcher.kill()
    run_id = active[0]["id"]
    assert watcher.returncode == 130, stdout + stderr
    assert f"polysync runs cancel {run_id}" in stderr
    left = workspace.ok("runs", "show", str(run_id), "--json").json()
    assert left["status"] in ("Starting", "Running")
    assert left["lease_owner"] is None
    assert "Cancelled" in workspace.ok("runs", "cancel", str(run_id)).stdout


def test_engine_tracks_runs_and_stops_gracefully(workspace: Cli, endless: str) -> None:
    with running(workspace.popen("engine")) as engine:
        # A cancel requested without waiting is carried out by the engine.
        first = workspace.ok("run", endless, "--platform", "demo", "--no-wait", "--json").json()
        workspace.ok("runs", "cancel", str(first["id"]), "--no-wait")
        status = None
        for _ in range(60):
            status = workspace.ok("runs", "show", str(first["id"]), "--json").json()["status"]
            if status == "Cancelled":
                break
        assert status == "Cancelled"

        # A run the engine is watching when it stops keeps running in Databricks, released.
        second = workspace.ok("run", endless, "--platform", "demo", "--no-wait", "--json").json()
        for _ in range(60):
            seen = workspace.ok("runs", "show", str(second["id"]), "--json").json()
            if seen["status"] == "Running" and seen["lease_owner"]:
                break
        assert seen["status"] == "Running"
        stderr = stop(engine)
    assert "Engine stopped" in stderr
    after = workspace.ok("runs", "show", str(second["id"]), "--json").json()
    assert after["status"] == "Running"
    assert after["lease_owner"] is None
    with emulator_api(workspace.url) as api:
        databricks = api.get("/jobs/runs/get", params={"run_id": after["databricks_run_id"]}).json()
    assert databricks["state"]["life_cycle_state"] == "RUNNING"
    assert "Cancelled" in workspace.ok("runs", "cancel", str(second["id"])).stdout


# --------------------------------------------------------------------------- issue 8
def all_runs(cli: Cli) -> list[dict[str, Any]]:
    return list(cli.ok("runs", "list", "--json", "--limit", "1000").json())


def test_unsendable_text_on_the_command_line_exits_2_and_records_nothing(workspace: Cli) -> None:
    before, calls = len(all_runs(workspace)), run_now_calls(workspace.url)
    # A byte that is not UTF-8 reaches Python as a lone surrogate (surrogateescape); sent on,
    # it made the engine's every cycle fail with UnicodeEncodeError.
    result = workspace("run", SALES, "--platform", "demo", "-p", os.fsdecode(b"env=dev\xff"))
    assert result.code == 2, result.output
    # Refused before any command runs, naming the argument and how to fix it (issue 10).
    assert "Argument 6 (env=dev\\xff) is not valid UTF-8: byte 0xff at offset 7" in result.stderr
    assert "export LANG=C.UTF-8" in result.stderr
    no_traceback(result)
    control = workspace("run", SALES, "--platform", "demo", "-p", "env=a\x1bb")
    assert control.code == 2, control.output
    assert "a control character (U+001B at character 2)" in control.stderr
    assert len(all_runs(workspace)) == before
    assert run_now_calls(workspace.url) == calls


def test_an_unset_secret_reference_refuses_the_run_and_leaves_none_behind(workspace: Cli) -> None:
    before = len(all_runs(workspace))
    result = workspace("run", SALES, "--platform", "demo", unset=(TOKEN_VAR,))
    assert result.code == 2, result.output
    assert f"environment variable {TOKEN_VAR} is not set" in result.stderr
    no_traceback(result)
    # Nothing for a later command or an engine to start behind the user's back.
    assert len(all_runs(workspace)) == before


def test_watch_and_cancel_return_for_a_run_deleted_in_databricks(
    workspace: Cli, endless: str
) -> None:
    run = workspace.ok("run", endless, "--platform", "demo", "--no-wait", "--json").json()
    assert run["databricks_run_id"] is not None  # no engine runs: the command started its own run
    httpx.delete(f"{workspace.url}/emulator/runs/{run['databricks_run_id']}").raise_for_status()
    watched = workspace("runs", "watch", str(run["id"]))
    assert watched.code == 1, watched.output
    assert "✘ Failed" in watched.stdout
    assert "The Databricks run was deleted or its history expired." in watched.stdout
    again = workspace.ok("runs", "cancel", str(run["id"]))
    assert "already Failed; nothing to cancel" in again.stdout


def test_status_shows_whether_the_runs_are_tracked(cli: Cli, forever: str) -> None:
    cli.add_demo_platform()
    cli.ok("import", "demo", "--job-id", forever)
    run = cli.ok("run", forever, "--platform", "demo", "--no-wait", "--json").json()
    untracked = cli("status")
    assert untracked.code == 1, untracked.output
    assert "No engine is running: 1 active run(s) are not being tracked" in untracked.stdout
    with running(cli.popen("engine")) as engine:
        report: dict[str, Any] = {}
        for _ in range(60):  # each look is a whole CLI call: no sleep needed
            report = cli("status", "--json").json()
            if report["healthy"] and report["engines"][0]["state"] == "running":
                break
        assert report["healthy"], report
        (seen,) = report["engines"]
        assert (seen["state"], seen["alive"], seen["stalled"]) == ("running", True, False)
        assert report["active_runs"] == 1
        stderr = stop(engine)
    # Its status lines: at least the last one, when it stopped (a line per change of state).
    assert f"engine {seen['owner']}: stopped" in stderr
    stopped = cli("status")
    assert stopped.code == 1, stopped.output
    assert re.search(rf"{seen['owner']}\W+stopped", stopped.stdout), stopped.stdout
    assert cli("status", "--json").json()["engines"][0]["state"] == "stopped"
    assert "■ Cancelled" in cli.ok("runs", "cancel", str(run["id"])).stdout


# --------------------------------------------------------------------------- database and demo
def test_db_upgrade(cli: Cli, tmp_path: Path) -> None:
    result = cli.ok("db", "upgrade", "--db", f"sqlite:///{tmp_path / 'other.db'}")
    assert "schema is at revision" in result.stdout
    assert (tmp_path / "other.db").exists()
    assert not (cli.home / "polysync.db").exists()  # --db wins over POLYSYNC_HOME


@pytest.mark.demo
def test_demo_runs_the_whole_story(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLYSYNC_")}
    env.update(POLYSYNC_HOME=str(tmp_path), COLUMNS="200")
    done = subprocess.run(
        [POLYSYNC, "demo", "--speed", "120"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "Test connectivity ✔" in out
    assert (
        "16 jobs found: 7 Databricks Workflows, 4 Databricks Notebooks, 3 Databricks Jobs, "
        "2 Databricks Pipelines." in out
    )
    assert TROUBLESHOOTING in out
    assert "✔ Success" in out
    assert "A column `merchant_category` cannot be resolved" in out
    assert "■ Cancelled" in out
    # One run of each other job type: a Databricks Job, a Notebook, a Pipeline update.
    assert "vacuum-delta-tables  ·  run 4" in out
    assert "daily_sales_report  ·  run 5" in out
    assert "sales-medallion-dlt  ·  run 6" in out
    assert "Submitted to Databricks as run 6f1c2b7e-" in out  # RunId "{pipeline}:{update}"
    assert "runs 1 Success, 2 Failed, 3 Cancelled, 4 Success, 5 Success, 6 Success" in out
    # Two Tasks (issue 12): a schedule, a dependency with a mapped value, a retry by repair.
    assert "nightly-ingest runs nightly-sales-etl at 02:00 Europe/London" in out
    assert "of nightly-ingest (Manual): Succeeded - attempts: start run 7: Succeeded" in out
    assert (
        "of fraud-after-ingest (Dependency): Failed - attempts: start run 8: Failed, repair run "
        "8: Failed" in out
    )
    assert "polysync runs list" in out
    assert DEMO_TOKEN not in out + done.stderr
    assert (tmp_path / "polysync.db").exists()
    # D15: the platform's token came from the emulator's vault, and never reached the database.
    assert "the platform's token is now vault://demo-kv/databricks-token" in out
    assert "demo-entra-client-secret" not in out + done.stderr
    stored = b"".join(
        p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("polysync.db")
    )
    assert DEMO_TOKEN.encode() not in stored


# --------------------------------------------------------------------------- other job types
NOTEBOOK_PATH = "/Shared/polysync-demo/daily_sales_report"
R_NOTEBOOK_PATH = "/Shared/polysync-demo/forecast_demand"
SALES_PIPELINE = "6f1c2b7e-3a4d-4e5f-8a9b-0c1d2e3f4a5b"
IOT_PIPELINE = "0a9b8c7d-6e5f-4a3b-9c2d-1e0f9a8b7c6d"


@pytest.fixture(scope="module")
def endless_notebook(emulator_url: str) -> str:
    """A notebook whose runs never end on their own (seeded in the emulator)."""
    return seed_endless_notebook(emulator_url)


@pytest.fixture(scope="module")
def endless_pipeline(emulator_url: str) -> str:
    """A pipeline whose updates never end on their own (seeded in the emulator)."""
    return seed_endless_pipeline(emulator_url)


def test_notebook_job_type_from_discovery_to_success_failure_and_cancel(
    cli: Cli, endless_notebook: str
) -> None:
    cli.add_demo_platform()
    set_attributes = cli.ok(
        "platform", "attributes", "demo", "default_notebook_path=/Shared/polysync-demo"
    )
    assert "default_notebook_path = /Shared/polysync-demo" in set_attributes.stdout
    found = cli.ok("discover", "demo", "--json").json()
    notebooks = sorted(j["external_id"] for j in found if j["kind"] == "Databricks Notebook")
    assert len(notebooks) == 4
    assert NOTEBOOK_PATH in notebooks
    imported = cli.ok(
        "import", "demo", "--external-id", NOTEBOOK_PATH, "--external-id", R_NOTEBOOK_PATH
    )
    assert "2 created" in imported.stdout
    shown = cli.ok("jobs", "show", "daily_sales_report", "--platform", "demo", "--json").json()
    assert shown["job_type"] == "Databricks Notebook"
    assert [p["name"] for p in shown["parameters"]] == [
        "run_date",
        "region",
        "currency",
        "channels",
    ]
    # No compute yet: refused before any run is recorded, naming what to set (exit 2).
    refused = cli("run", "daily_sales_report", "--platform", "demo", "-p", "region=apac")
    assert refused.code == 2, refused.output
    assert "serverless=true" in refused.stderr
    assert cli.ok("runs", "list", "--json").json() == []
    cli.ok("platform", "attributes", "demo", "serverless=true")
    bad_choice = cli("run", "daily_sales_report", "--platform", "demo", "-p", "region=mars")
    assert bad_choice.code == 2
    assert "'emea', 'apac', 'amer'" in bad_choice.stderr
    done = cli("run", "daily_sales_report", "--platform", "demo", "-p", "region=apac", "--json")
    assert done.code == 0, done.output
    run = done.json()
    assert run["status"] == "Success"
    assert run["parameters_sent"] == {"region": "apac"}
    assert run["databricks_run_id"].isdigit()
    failed = cli("run", "forecast_demand", "--platform", "demo", "-p", "horizon_days=7")
    assert failed.code == 1, failed.output
    assert "there is no package called 'forecast'" in failed.stdout
    cli.ok("import", "demo", "--external-id", endless_notebook)
    started = cli.ok("run", endless_notebook, "--platform", "demo", "--no-wait", "--json")
    cancelled = cli.ok("runs", "cancel", str(started.json()["id"]))
    assert "■ Cancelled" in cancelled.stdout


def test_pipeline_job_type_from_discovery_to_success_failure_and_cancel(
    cli: Cli, endless_pipeline: str
) -> None:
    cli.add_demo_platform()
    found = cli.ok("discover", "demo").stdout
    assert re.search(rf"{SALES_PIPELINE}\s+sales-medallion-dlt\s+Pipeline", found)
    cli.ok("import", "demo", "--external-id", SALES_PIPELINE, "--external-id", IOT_PIPELINE)
    shown = cli.ok("jobs", "show", "sales-medallion-dlt", "--platform", "demo", "--json").json()
    parameters = {p["name"]: p for p in shown["parameters"]}
    assert parameters["full_refresh"]["data_type"] == "Bool"
    assert parameters["source_path"]["reference_only"] is True
    refused = cli("run", "sales-medallion-dlt", "--platform", "demo", "-p", "source_path=/x")
    assert refused.code == 2
    assert "reference only" in refused.stderr
    done = cli(
        "run", "sales-medallion-dlt", "--platform", "demo", "-p", "full_refresh=true", "--json"
    )
    assert done.code == 0, done.output
    run = done.json()
    assert run["status"] == "Success"
    assert run["databricks_run_id"].startswith(f"{SALES_PIPELINE}:")
    assert run["parameters_sent"] == {"full_refresh": "true"}
    failed = cli("run", "iot-telemetry-dlt", "--platform", "demo")
    assert failed.code == 1, failed.output
    assert "TABLE_OR_VIEW_NOT_FOUND" in failed.stdout
    cli.ok("import", "demo", "--external-id", endless_pipeline)
    started = cli.ok("run", endless_pipeline, "--platform", "demo", "--no-wait", "--json")
    cancelled = cli.ok("runs", "cancel", str(started.json()["id"]))
    assert "■ Cancelled" in cancelled.stdout
    assert "stops its active update" in cancelled.stdout + cancelled.stderr


def test_platform_attributes_at_add_and_after(cli: Cli) -> None:
    bad = cli(
        "platform", "add", "demo", "--url", cli.url, "--token", f"env:{TOKEN_VAR}",
        "--attribute", "serverless",
    )  # fmt: skip
    assert bad.code == 2
    assert "KEY=VALUE" in bad.stderr
    cli.ok(
        "platform", "add", "demo", "--url", cli.url, "--token", f"env:{TOKEN_VAR}",
        "--attribute", "serverless=true", "--attribute", "default_notebook_path=/Shared",
    )  # fmt: skip
    shown = cli.ok("platform", "attributes", "demo").stdout
    assert "default_notebook_path = /Shared" in shown
    assert "serverless = true" in shown
    after = cli.ok("platform", "attributes", "demo", "num_workers=2", "--unset", "serverless")
    assert "num_workers = 2" in after.stdout
    assert "serverless" not in after.stdout
    platform = cli.ok("platform", "show", "demo", "--json").json()
    assert platform["options"]["attributes"] == {
        "default_notebook_path": "/Shared",
        "num_workers": "2",
    }
