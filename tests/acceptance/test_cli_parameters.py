"""`polysync jobs set-param` and how `jobs show` / `runs show` display parameters, in subprocesses
(COLUMNS=80 and stdout piped): Data Types, Secret references read only at run-now, empty defaults."""

from __future__ import annotations

import json
from pathlib import Path

from tests.acceptance.test_cli import (  # noqa: F401 - fixtures
    SALES,
    Cli,
    cli,
    emulator_api,
    emulator_url,
)

SECRET_VARIABLE = "POLYSYNC_ACCEPTANCE_PARAMETER_SECRET"
SECRET = "s3cr3t-Value-0f-the-run"


def params(home: Cli, job: str = SALES) -> dict[str, dict[str, object]]:
    shown = home.ok("jobs", "show", job, "--platform", "demo", "--json").json()
    return {p["name"]: p for p in shown["parameters"] if p["task_key"] is None}


def imported(home: Cli) -> Cli:
    home.add_demo_platform()
    home.ok("import", "demo", "--job-id", SALES)
    return home


def test_a_secret_is_set_as_a_reference_kept_by_sync_and_never_stored_or_shown(
    cli: Cli,  # noqa: F811
) -> None:
    imported(cli)
    set_param = ("jobs", "set-param", SALES, "env", "--platform", "demo")
    clear = cli(*set_param, "--data-type", "Secret", "--value", SECRET, COLUMNS="80")
    assert clear.code == 2, clear.output
    assert "env:NAME" in clear.stderr
    assert SECRET not in clear.output
    assert params(cli)["env"]["data_type"] == "String"  # nothing half-saved

    reference = f"env:{SECRET_VARIABLE}"
    saved = cli.ok(*set_param, "--data-type", "secret", "--value", reference, COLUMNS="80")
    assert "saved" in saved.stdout
    env = params(cli)["env"]
    assert (env["data_type"], env["stored_value"], env["default"]) == (
        "Secret",
        reference,
        "********",  # a Secret's Databricks default is masked too
    )
    text = cli.ok("jobs", "show", SALES, "--platform", "demo", COLUMNS="80").stdout
    assert reference in "".join(text.split())  # a narrow table folds the value

    cli.ok("jobs", "sync-params", SALES, "--platform", "demo")
    assert params(cli)["env"]["data_type"] == "Secret"  # D9 keeps it

    as_text = cli("run", SALES, "--platform", "demo", "-p", f"env={SECRET}", COLUMNS="80")
    assert as_text.code == 2, as_text.output  # a run's Secret value is a reference too
    assert "env:NAME" in as_text.stderr
    assert SECRET not in as_text.output
    ran = cli("run", SALES, "--platform", "demo", "--wait", "--json", **{SECRET_VARIABLE: SECRET})
    listed = cli.ok("runs", "list", "--json").json()
    assert [r["id"] for r in listed] == [ran.json()["id"]]  # the refused one left no run
    assert ran.code == 0, ran.output
    run = ran.json()
    assert run["parameters_sent"]["env"] == reference
    assert SECRET not in ran.output
    with emulator_api(cli.url) as api:
        got = api.get("/jobs/runs/get", params={"run_id": run["databricks_run_id"]}).json()
    assert {p["name"]: p["value"] for p in got["job_parameters"]}["env"] == SECRET
    shown = cli.ok("runs", "show", str(run["id"]), COLUMNS="80")
    assert reference in "".join(shown.stdout.split())
    assert SECRET not in shown.output
    for database in Path(cli.home).rglob("*.db*"):
        assert SECRET.encode() not in database.read_bytes(), database


def test_set_param_sets_direction_and_values_as_typed_and_explains_refusals(
    cli: Cli,  # noqa: F811
) -> None:
    imported(cli)
    base = ("jobs", "set-param", SALES)
    cli.ok(*base, "batch_size", "--platform", "demo", "--value", " 0042 ")
    assert params(cli)["batch_size"]["stored_value"] == "0042"  # as typed, trimmed (D2)
    cli.ok(*base, "env", "--platform", "demo", "--direction", "output")
    assert params(cli)["env"]["direction"] == "Output"
    as_json = cli.ok(*base, "env", "--platform", "demo", "--direction", "unset", "--json")
    assert json.loads(as_json.stdout)["parameter"]["direction"] is None
    cli.ok(*base, "batch_size", "--platform", "demo", "--clear-value")
    assert params(cli)["batch_size"]["stored_value"] is None

    refusals = {
        ("env", "--data-type", "Int"): "Databricks default",
        ("env", "--data-type", "Text"): "not a Data Type",
        ("env", "--direction", "Sideways"): "not a Direction",
        ("env",): "Say what to set",
        ("nope", "--value", "1"): "batch_size",  # lists the parameters there are
        ("source", "--task", "ingest", "--value", "x"): "reference only",
        ("batch_size", "--value", "lots"): "set-param",  # how to change the Data Type
    }
    for args, expected in refusals.items():
        result = cli(*base, *(args[:1]), "--platform", "demo", *args[1:])
        assert result.code == 2, (args, result.output)
        assert expected in result.stderr, (args, result.stderr)


def test_jobs_show_tells_an_empty_default_from_no_default(cli: Cli) -> None:  # noqa: F811
    imported(cli)
    with emulator_api(cli.url) as api:
        settings = api.get("/jobs/get", params={"job_id": int(SALES)}).json()["settings"]
        parameters = [
            *settings["parameters"],
            {"name": "suffix", "default": ""},
        ]
        api.post(
            "/jobs/update",
            json={"job_id": int(SALES), "new_settings": {"parameters": parameters}},
        ).raise_for_status()
        job_parameters = [{"name": "note"}]
        api.post(
            "/jobs/update",
            json={"job_id": int(SALES), "new_settings": {"job_parameters": job_parameters}},
        )
    cli.ok("jobs", "sync-params", SALES, "--platform", "demo")
    shown = params(cli)
    assert shown["suffix"]["default"] == ""
    text = cli.ok("jobs", "show", SALES, "--platform", "demo", COLUMNS="80").stdout
    suffix = next(line for line in text.splitlines() if "suffix" in line)
    assert '"" (empty text)' in suffix
    if "note" in shown:  # the emulator keeps job_parameters (the specification's shape)
        assert shown["note"]["default"] is None
        note = next(line for line in text.splitlines() if " note " in f" {line} ")
        assert "(no default)" in note
