"""What a new user meets at an 80-column terminal and in pipes (issue 10): the installed
`polysync` in subprocesses, with COLUMNS=80 and stdout piped, against a served emulator."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.acceptance.test_cli import (
    COMMAND_TIMEOUT_S,
    POLYSYNC,
    SALES,
    TOKEN_VAR,
    Cli,
    emulator_url,
    no_traceback,
    running,
)
from tests.unit.cli.test_output import column

__all__ = ["emulator_url"]  # the module's own emulator (its faults are cleared per test)

NARROW = {"COLUMNS": "80"}
SPINNER = re.compile("[\u2800-\u28ff]")  # Rich's "dots" spinner frames


def seed(url: str, *jobs: dict[str, Any]) -> list[str]:
    """Create jobs in the emulator; their External Ids."""
    answer = httpx.post(f"{url}/emulator/jobs", json={"jobs": list(jobs)}, timeout=30)
    answer.raise_for_status()
    return [str(job_id) for job_id in answer.json()["job_ids"]]


def task(key: str, duration_s: float = 1) -> dict[str, Any]:
    return {"task_key": key, "emulator": {"duration_s": duration_s}}


@pytest.fixture
def cli(emulator_url: str, tmp_path: Path) -> Cli:
    httpx.delete(f"{emulator_url}/emulator/faults", timeout=10).raise_for_status()
    home = Cli(tmp_path / "home", emulator_url)
    home.add_demo_platform()
    return home


def narrow(cli: Cli, *args: str, **env: str) -> Any:
    return cli(*args, **(NARROW | env))


def fits_80(text: str) -> None:
    too_wide = [line for line in text.splitlines() if len(line) > 80]
    assert not too_wide, "\n".join(too_wide)


# --------------------------------------------------------------------------- runs in pipes
def test_a_piped_run_has_no_live_display_a_whole_url_and_one_status_line(cli: Cli) -> None:
    cli.ok("import", "demo", "--job-id", SALES)
    result = narrow(cli, "run", SALES, "--platform", "demo")
    assert result.code == 0, result.output
    assert not SPINNER.search(result.output)
    assert "\r" not in result.output
    assert "\x1b[" not in result.stdout  # no cursor movement, no colour in a pipe
    urls = [line for line in result.stdout.splitlines() if "#job/" in line]
    # Each URL alone on its line, whole, though longer than the 80 columns (printed again
    # when the run page known changes: the fallback, then Databricks' own).
    assert urls
    assert all(re.fullmatch(r"https?://\S+", url) for url in urls), urls
    assert re.fullmatch(rf"https?://\S+#job/{SALES}/run/\d+", urls[-1])
    assert result.stdout.count("✔ Success") == 1
    assert re.search(r"ingest\s+Success\s+1\s+\d+s", result.stdout)


def test_a_start_databricks_refuses_exits_3_with_one_status_line(cli: Cli) -> None:
    [gone] = seed(cli.url, {"name": "soon-deleted", "tasks": [task("only")]})
    cli.ok("import", "demo", "--job-id", gone)
    api = httpx.post(
        f"{cli.url}/api/2.1/jobs/delete",
        json={"job_id": int(gone)},
        headers={"Authorization": "Bearer dapi-demo-token-0000000000000000"},
    )
    api.raise_for_status()
    deleted = narrow(cli, "run", gone, "--platform", "demo")
    assert deleted.code == 3, deleted.output  # `run --help`, README and docs/cli.md say 3
    assert deleted.stdout.count("✘ Failed: Databricks did not start run") == 1
    assert f"Job {gone} does not exist" in deleted.stdout or "does not exist" in deleted.stdout
    no_traceback(deleted)

    # A credential Databricks refuses: the same exit status and status line.
    cli.ok("import", "demo", "--job-id", SALES)
    refused = narrow(cli, "run", SALES, "--platform", "demo", **{TOKEN_VAR: "dapi-wrong"})
    assert refused.code == 3, refused.output
    assert refused.stdout.count("✘ Failed: Databricks did not start run") == 1
    as_json = cli("run", SALES, "--platform", "demo", "--json", **{TOKEN_VAR: "dapi-wrong"})
    assert as_json.code == 3
    assert as_json.json()["databricks_run_id"] is None


def test_errors_under_json_are_json_on_stdout_with_the_same_exit_status(cli: Cli) -> None:
    cases = [
        (("runs", "show", "999", "--json"), 2, "not-found", "polysync runs list"),
        (("jobs", "show", "nope", "--json"), 2, "not-found", "polysync jobs list"),
        (("runs", "show", "--json"), 2, "usage", "polysync runs show --help"),
        (("run", "x", "--platform", "nowhere", "--json"), 2, "not-found", "platform list"),
        (("jobs", "show", os.fsdecode(b"caf\xe9"), "--json"), 2, "invalid-argument", None),
    ]
    for args, code, kind, hint in cases:
        result = cli(*args)
        assert result.code == code, (args, result.output)
        error = result.json()["error"]  # stdout is JSON and nothing else
        assert set(error) == {"code", "message", "hint"}
        assert error["code"] == kind, error
        assert hint is None or hint in error["hint"], error
        assert result.stderr == "", result.stderr
    plain = cli("runs", "show", "999")
    assert (plain.code, plain.stdout) == (2, "")
    assert "No run with id 999. `polysync runs list` shows the runs." in plain.stderr


def test_argv_that_is_not_utf8_names_the_argument_and_the_fix(cli: Cli) -> None:
    result = cli("jobs", "show", os.fsdecode(b"caf\xe9"))
    assert result.code == 2
    assert "Argument 3 (caf\\xe9) is not valid UTF-8: byte 0xe9 at offset 3" in result.stderr
    assert "LANG=C.UTF-8" in result.stderr
    no_traceback(result)


# --------------------------------------------------------------------------- narrow tables
def test_tables_fit_80_columns_without_cutting_ids_and_remote_text_is_literal(cli: Cli) -> None:
    long_name = "customer-lifetime-value-recompute-with-a-very-long-descriptive-name-v2"
    hostile = ":smile: [bold]not bold[/bold]"
    ids = seed(
        cli.url,
        {"name": long_name, "tasks": [task("a"), task("b")]},
        {"name": hostile, "tasks": [task("only")]},
    )
    cli.ok("import", "demo", "--all")
    jobs = narrow(cli, "jobs", "list")
    assert jobs.code == 0
    fits_80(jobs.stdout)
    for external_id in (*ids, SALES):
        assert re.search(rf"(^|\s){external_id}(\s|$)", jobs.stdout, re.MULTILINE)
    names = "".join(column(jobs.stdout, "Name", "Type").split())
    assert long_name in names  # folded onto several lines, never cut
    assert "".join(hostile.split()) in names  # no emoji, no markup taken from a job's name

    narrow(cli, "run", ids[1], "--platform", "demo", "--no-wait")
    runs = narrow(cli, "runs", "list")
    fits_80(runs.stdout)
    assert "".join(hostile.split()) in "".join(column(runs.stdout, "Job", "Status").split())
    for command in (("discover", "demo"), ("status",), ("platform", "list"), ("--help",)):
        shown = narrow(cli, *command)
        assert shown.code in (0, 1), shown.output
        fits_80(shown.stdout)
    discovered = narrow(cli, "discover", "demo").stdout
    assert all(external_id in discovered for external_id in ids)


def test_help_paragraphs_wrap_at_80_columns_not_mid_sentence(cli: Cli) -> None:
    text = narrow(cli, "run", "--help").stdout
    lines = [line.strip() for line in text.splitlines()]
    start = next(i for i, line in enumerate(lines) if line.startswith("Exit status:"))
    paragraph = lines[start : lines.index("", start)]
    assert " ".join(paragraph).startswith(
        "Exit status: 0 success (or started, with --no-wait), 1 the run failed or was "
        "cancelled, 2 bad input, 3 Databricks refused"
    )
    assert all(len(line) > 60 for line in paragraph[:-1]), paragraph  # filled, no hard breaks


# --------------------------------------------------------------------------- finding things
def test_jobs_are_found_by_id_external_id_name_and_loose_name(cli: Cli) -> None:
    trailing, twin_a, twin_b = seed(
        cli.url,
        {"name": "Quarterly Close ", "tasks": [task("only")]},
        {"name": "twin", "tasks": [task("only")]},
        {"name": "twin", "tasks": [task("only")]},
    )
    cli.ok("import", "demo", "--job-id", trailing, "--job-id", twin_a, "--job-id", twin_b)
    found = cli.ok("jobs", "show", "quarterly close", "--platform", "demo", "--json").json()
    assert found["external_id"] == trailing
    by_id = cli("run", str(found["id"]), "--platform", "demo", "--no-wait", "--json")
    assert by_id.code == 0, by_id.output  # a Polysync job id, as `run --help` says
    assert by_id.json()["job_id"] == found["id"]

    close = cli("jobs", "show", "Quartely Close")
    assert close.code == 2
    assert "No job with id, External Id or name 'Quartely Close'" in close.stderr
    assert "Did you mean 'Quarterly Close '" in close.stderr
    twins = cli("jobs", "show", "twin")
    assert twins.code == 2
    assert "2 jobs match 'twin' by name" in twins.stderr
    assert f"External Id {twin_a}" in twins.stderr
    assert f"External Id {twin_b}" in twins.stderr


def test_platform_errors_say_what_is_true_first(cli: Cli) -> None:
    missing = cli("platform", "remove", "nosuch")  # stdin is not a terminal, no --yes
    assert missing.code == 2
    assert "No platform with id or name 'nosuch'" in missing.stderr
    assert "--yes" not in missing.stderr
    again = cli("platform", "add", "demo", "--url", cli.url, "--token", f"env:{TOKEN_VAR}")
    assert again.code == 2
    assert "A platform named 'demo' already exists" in again.stderr
    assert "after removing" not in again.output
    confirm = cli("platform", "remove", "demo")
    assert confirm.code == 2
    assert "add --yes to confirm" in confirm.stderr
    removed = cli("platform", "remove", "DEMO", "--yes")
    assert removed.code == 0, removed.output
    assert "Removed platform 'demo'" in removed.stdout


def test_parameter_errors_name_the_cli_command_not_a_button(cli: Cli) -> None:
    cli.ok("import", "demo", "--job-id", SALES)
    for value in ("source=adls", "added_since_import=1"):
        result = cli("run", SALES, "--platform", "demo", "-p", value)
        assert result.code == 2, result.output
        assert re.search(r"`polysync jobs sync-params \d+`", result.stderr), result.stderr
        assert "click" not in result.stderr.lower()


def test_api_keys_are_revoked_by_name(cli: Cli) -> None:
    cli.ok("apikey", "create", "alice", "--role", "viewer")
    revoked = cli("apikey", "revoke", "Alice")
    assert revoked.code == 0, revoked.output
    assert "Revoked the API key alice" in revoked.stdout
    keys = cli.ok("apikey", "list", "--json").json()
    assert [k["revoked_at"] is not None for k in keys if k["name"] == "alice"] == [True]
    unknown = cli("apikey", "revoke", "bob")
    assert unknown.code == 2
    assert "No API key with id, prefix or name 'bob'" in unknown.stderr


# --------------------------------------------------------------------------- engine, discover
def test_the_engine_prints_one_line_per_run_event(cli: Cli) -> None:
    cli.ok("import", "demo", "--job-id", SALES)
    for mode in ((), ("--json",)):
        engine = subprocess.Popen(
            [POLYSYNC, "engine", *mode],
            env=cli.env(**NARROW),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        with running(engine):
            assert engine.stderr is not None
            started = engine.stderr.readline()  # the engine is up before the run is recorded
            assert "Polysync engine" in started, started
            watched = cli("run", SALES, "--platform", "demo")
            assert watched.code == 0, watched.output
            engine.send_signal(signal.SIGTERM)
            stdout, _ = engine.communicate(timeout=COMMAND_TIMEOUT_S)
        run_id = re.search(r"run (\d+)", watched.stdout)
        assert run_id is not None
        if mode:
            events = [json.loads(line) for line in stdout.splitlines()]
            ours = [e for e in events if e["run_id"] == int(run_id.group(1))]
            assert [e["status"] for e in ours][-1] == "Success"
            assert {"at", "status", "message", "source", "databricks_run_id"} <= set(ours[0])
        else:
            lines = [line for line in stdout.splitlines() if f"run {run_id.group(1)} " in line]
            assert "'nightly-sales-etl': Starting" in lines[0], stdout
            assert any("(Databricks run " in line for line in lines), stdout
            assert "'nightly-sales-etl': Success" in lines[-1], stdout


def test_discover_on_api_2_2_shows_the_true_task_count_of_a_job_over_100_tasks(cli: Cli) -> None:
    [big] = seed(cli.url, {"name": "wide", "tasks": [task(f"t{i:03}") for i in range(130)]})
    cli.ok(
        "platform", "add", "v22", "--url", cli.url, "--token", f"env:{TOKEN_VAR}",
        "--api-version-list", "2.2",
    )  # fmt: skip
    found = {j["external_id"]: j for j in cli.ok("discover", "v22", "--json").json()}
    assert (found[big]["task_count"], found[big]["tasks_truncated"]) == (130, False)
    assert re.search(rf"{big}\s+wide\s+Workflow\s+130\s", narrow(cli, "discover", "v22").stdout)


# --------------------------------------------------------------------------- the emulator
def test_the_emulator_prints_its_demo_token_and_takes_another(tmp_path: Path) -> None:
    for args, expected in (
        ((), "DATABRICKS_TOKEN=dapi-demo-token-0000000000000000"),
        (("--token", "my-own-token"), "DATABRICKS_TOKEN=<the --token you gave>"),
    ):
        process = subprocess.Popen(
            [POLYSYNC, "emulator", "serve", "--port", "0", *args],
            env={**os.environ, **NARROW},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        with running(process):
            assert process.stderr is not None
            lines = [process.stderr.readline() for _ in range(4)]
            url = re.search(r"at (http://\S+)", lines[0])
            assert url is not None, lines
            assert "--speed" in lines[1]  # the tour's runs take minutes at x1
            assert any(expected in line for line in lines), lines
            if args:
                jobs = f"{url.group(1)}/api/2.1/jobs/list"
                mine = httpx.get(jobs, headers={"Authorization": "Bearer my-own-token"})
                demo = httpx.get(
                    jobs, headers={"Authorization": "Bearer dapi-demo-token-0000000000000000"}
                )
                assert mine.status_code == 200
                assert demo.status_code in (401, 403)
            process.terminate()
            process.wait(timeout=COMMAND_TIMEOUT_S)


# --------------------------------------------------------------------------- start-up
def imported_by(*argv: str, env: dict[str, str]) -> set[str]:
    """The top-level packages and polysync modules a command imports."""
    code = (
        "import sys\n"
        f"sys.argv = ['polysync', *{list(argv)!r}]\n"
        "from polysync.cli.main import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "sys.stderr.write(repr(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    modules: list[str] = eval(done.stderr.strip().splitlines()[-1])  # noqa: S307 - our repr
    return {m for m in modules if "." not in m or m.startswith("polysync.")}


def test_help_and_reads_import_only_what_they_use(cli: Cli) -> None:
    heavy = {"sqlalchemy", "alembic", "httpx", "pydantic_settings", "uvicorn", "fastapi"}
    on_help = imported_by("--help", env=cli.env())
    assert not heavy & on_help
    assert not {m for m in on_help if m.startswith("polysync.cli.") and m.endswith("_cmd")}
    cli.ok("runs", "list")  # the database exists, at the head revision
    on_list = imported_by("runs", "list", env=cli.env())
    assert "sqlalchemy" in on_list  # it did read the database...
    assert not {"alembic", "httpx", "polysync.engine.engine", "polysync.services"} & on_list
    assert "polysync.cli.demo_cmd" not in on_list


def test_ctrl_c_before_databricks_accepted_the_run_says_so(cli: Cli) -> None:
    cli.ok("import", "demo", "--job-id", SALES)
    refusing = {"method": "POST", "path": "jobs/run-now$", "kind": "status", "status": 503}
    httpx.post(f"{cli.url}/emulator/faults", json=refusing, timeout=10).raise_for_status()
    watcher = cli.popen("run", SALES, "--platform", "demo")
    with running(watcher):
        active: list[dict[str, Any]] = []
        for _ in range(120):  # each look is a whole CLI call: no sleep needed
            active = cli.ok("runs", "list", "--active", "--json").json()
            if active and active[0]["message"] != "Submitting to Databricks":
                break  # a run-now was tried and refused for now: it will be tried again
        assert active, "the run never appeared"
        watcher.send_signal(signal.SIGINT)
        stdout, stderr = watcher.communicate(timeout=COMMAND_TIMEOUT_S)
    assert watcher.returncode == 130, stdout + stderr
    run_id = active[0]["id"]
    assert active[0]["databricks_run_id"] is None
    assert "Left run" not in stderr
    assert f"Run {run_id} is recorded in Polysync but Databricks has not accepted it yet" in stderr
    assert f"polysync runs cancel {run_id}" in stderr
