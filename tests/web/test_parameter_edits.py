"""One rule for parameter edits: the API, the web form and the CLI store the same value for the
same input and refuse the same things (services -> `checked_parameter`); Execute Now's form sends
only what was edited. In process (httpx) plus the installed CLI on the same SQLite file."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from polysync.domain.models import DataType, Parameter
from polysync.domain.records import Job, RunFilter
from polysync.web.job_pages import run_overrides
from tests.web.test_security import App, app  # noqa: F401 - `app` is the fixture

POLYSYNC = str(Path(sys.executable).with_name("polysync"))
MULTI_LINE = "SELECT *\nFROM sales"


def form_of(job: Job, csrf: str, **changes: dict[str, str]) -> dict[str, str]:
    """The Parameters form as the page fills it, with `changes` per parameter name."""
    data = {"csrf_token": csrf}
    for index, p in enumerate(job.parameters):
        data[f"name-{index}"] = p.name
        if not p.is_job_level:
            continue
        data[f"direction-{index}"] = p.direction.value if p.direction else ""
        data[f"type-{index}"] = p.data_type.value
        data[f"value-{index}"] = p.stored_value or ""
        for field, value in changes.get(p.name, {}).items():
            data[f"{field}-{index}"] = value
    return data


def stored(job: Job, name: str) -> Parameter:
    return next(p for p in job.parameters if p.name == name and p.is_job_level)


async def set_by_api(ui: App, name: str, **fields: Any) -> tuple[int, str]:
    answer = await ui.client.patch(
        f"/api/v1/jobs/{ui.job_id}",
        headers={"Authorization": f"Bearer {ui.keys['admin']}"},
        json={"parameters": [{"name": name, **fields}]},
    )
    return answer.status_code, answer.text


async def set_by_web(ui: App, name: str, **fields: str) -> tuple[int, str]:
    csrf = await ui.csrf()  # signed in as an admin
    job = await ui.services.store.get_job(ui.job_id)
    answer = await ui.client.post(
        f"/jobs/{ui.job_id}/parameters", data=form_of(job, csrf, **{name: fields})
    )
    saved = "Parameters saved." in answer.text
    return (200 if saved else 400), answer.text


def set_by_cli(ui: App, tmp_path: Path, name: str, *args: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLYSYNC_")}
    env.update(POLYSYNC_HOME=str(tmp_path), COLUMNS="80")
    done = subprocess.run(
        [POLYSYNC, "jobs", "set-param", str(ui.job_id), name, *args, "--db", database(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return (200 if done.returncode == 0 else 400), done.stdout + done.stderr


def database(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'web.db'}"


async def clear(ui: App, name: str) -> None:
    job = await ui.services.store.get_job(ui.job_id)
    parameters = tuple(
        replace(p, stored_value=None) if p.name == name else p for p in job.parameters
    )
    await ui.services.store.save_job(replace(job, parameters=parameters), ui.services.now())


async def test_the_api_the_web_form_and_the_cli_keep_the_same_value_and_refuse_the_same(
    app: App,  # noqa: F811
    tmp_path: Path,
) -> None:
    await app.sign_in("admin")
    kept: dict[str, str | None] = {}
    for adapter in ("api", "web", "cli"):
        await clear(app, "batch_size")
        if adapter == "api":
            code, _ = await set_by_api(app, "batch_size", stored_value=" 0042 ")
        elif adapter == "web":
            code, _ = await set_by_web(app, "batch_size", value=" 0042 ")
        else:
            code, _ = set_by_cli(app, tmp_path, "batch_size", "--value", " 0042 ")
        assert code == 200, adapter
        job = await app.services.store.get_job(app.job_id)
        kept[adapter] = stored(job, "batch_size").stored_value
    assert kept == {"api": "0042", "web": "0042", "cli": "0042"}  # as typed, trimmed (D2)

    secret = "hunter2-Clear-Text"
    for adapter in ("api", "web", "cli"):
        if adapter == "api":
            code, text = await set_by_api(app, "env", data_type="Secret", stored_value=secret)
        elif adapter == "web":
            code, text = await set_by_web(app, "env", type="Secret", value=secret)
        else:
            code, text = set_by_cli(
                app, tmp_path, "env", "--data-type", "Secret", "--value", secret
            )
        assert code == 400, adapter
        assert "env:NAME" in text, adapter
        assert secret not in text, adapter
        job = await app.services.store.get_job(app.job_id)
        assert stored(job, "env").data_type is DataType.STRING, adapter  # nothing saved


async def test_an_operator_may_not_choose_a_secret_reference_in_the_web_form(
    app: App,  # noqa: F811
) -> None:
    csrf = await app.sign_in("operator")
    job = await app.services.store.get_job(app.job_id)
    answer = await app.client.post(
        f"/jobs/{app.job_id}/parameters",
        data=form_of(job, csrf, env={"type": "Secret", "value": "env:HOME"}),
    )
    assert "admin role" in answer.text
    job = await app.services.store.get_job(app.job_id)
    assert stored(job, "env").data_type is DataType.STRING
    # Without a value, an operator may mark it Secret: an admin chooses the reference later.
    answer = await app.client.post(
        f"/jobs/{app.job_id}/parameters",
        data=form_of(job, csrf, env={"type": "Secret"}),
    )
    assert "Parameters saved." in answer.text
    page = await app.client.get(f"/jobs/{app.job_id}")
    assert "an admin sets a Secret" in page.text


async def test_the_web_shows_no_default_and_an_empty_default_differently(
    app: App,  # noqa: F811
) -> None:
    job = await app.services.store.get_job(app.job_id)
    parameters = (
        *job.parameters,
        Parameter("no_default", default=None),
        Parameter("empty_default", default=""),
    )
    await app.services.store.save_job(replace(job, parameters=parameters), app.services.now())
    await app.sign_in("viewer")
    page = (await app.client.get(f"/jobs/{app.job_id}")).text
    rows = {
        name: page[page.index(f">{name}<") :].split("</tr>")[0]
        for name in ("no_default", "empty_default")
    }
    assert ">no default<" in rows["no_default"]
    assert "empty text" not in rows["no_default"]
    assert "(empty text)" in rows["empty_default"]
    assert ">no default<" not in rows["empty_default"]


@pytest.mark.parametrize(
    ("submitted", "expected"),
    [
        (MULTI_LINE, {}),  # as shown: no override
        (MULTI_LINE.replace("\n", "\r\n"), {}),  # a textarea submits CRLF: still as shown
        ("SELECT 1", {"query": "SELECT 1"}),
        ("SELECT 1\r\nFROM t", {"query": "SELECT 1\nFROM t"}),
        ("", {"query": ""}),  # emptied on purpose: an override
    ],
)
def test_only_edited_fields_are_overrides(submitted: str, expected: dict[str, str]) -> None:
    parameters = [
        Parameter("query", default=MULTI_LINE),
        Parameter("env", default="prod", stored_value="dev"),
        Parameter("token", DataType.SECRET, default="clear", stored_value="env:TOKEN"),
        Parameter("source", default="x", task_key="ingest"),
    ]
    form = {"p:query": submitted, "p:env": "dev", "p:token": "env:TOKEN", "p:source": "y"}
    assert run_overrides(parameters, form) == expected


async def test_execute_now_with_a_multi_line_default_records_no_override(
    app: App,  # noqa: F811
) -> None:
    job = await app.services.store.get_job(app.job_id)
    parameters = (*job.parameters, Parameter("query", default=MULTI_LINE))
    await app.services.store.save_job(replace(job, parameters=parameters), app.services.now())
    csrf = await app.sign_in("operator")
    page = (await app.client.get(f"/jobs/{app.job_id}")).text
    assert '<textarea id="override-' in page  # a multi-line value gets a textarea
    answer = await app.client.post(
        f"/jobs/{app.job_id}/execute",
        data={
            "csrf_token": csrf,
            "p:query": MULTI_LINE.replace("\n", "\r\n"),
            "p:batch_size": "1000",
        },
    )
    assert answer.status_code == 303, answer.text
    (run,) = await app.services.list_runs(RunFilter(job_id=app.job_id))
    assert dict(run.overrides) == {"batch_size": "1000"}


async def test_a_multi_line_stored_value_survives_a_save_of_the_form(
    app: App,  # noqa: F811
) -> None:
    job = await app.services.store.get_job(app.job_id)
    parameters = tuple(
        replace(p, stored_value=MULTI_LINE) if p.name == "env" and p.is_job_level else p
        for p in job.parameters
    )
    job = await app.services.store.save_job(replace(job, parameters=parameters), app.services.now())
    csrf = await app.sign_in("operator")
    page = (await app.client.get(f"/jobs/{app.job_id}")).text
    assert f">{MULTI_LINE}</textarea>" in page  # whole, in a text area
    form = form_of(job, csrf, env={"value": MULTI_LINE.replace("\n", "\r\n")})
    answer = await app.client.post(f"/jobs/{app.job_id}/parameters", data=form)
    assert "Parameters saved." in answer.text
    assert stored(await app.services.store.get_job(app.job_id), "env").stored_value == MULTI_LINE
