"""What the CLI prints for people and scripts (issue 10): status lines, whole URLs, tables at
80 columns, workspace text taken literally, and the API's JSON shapes."""

from __future__ import annotations

import io
from dataclasses import replace

from rich.console import RenderableType

from polysync.api.schemas import DiscoveredJobOut, JobOut, PlatformOut, RunOut
from polysync.cli.as_json import discovered_json, job_json, platform_json, run_json
from polysync.cli.common import CLI_HINTS, hint_text, shell_word
from polysync.cli.render import (
    discover_table,
    jobs_table,
    print_view,
    refused,
    run_outcome,
    run_view,
    runs_table,
    task_count_text,
)
from polysync.cli.terminal import make_console
from polysync.domain.models import DataType, Parameter, RunStatus
from polysync.domain.records import Platform, RunEvent
from polysync.errors import LIST_JOBS, Hint, NotFoundError, sync_parameters_hint
from polysync.jobtypes.base import DiscoveredJob
from polysync.jobtypes.databricks.parameters import JobKind
from tests.unit.cli.test_terminal import NOW, hostile_job, hostile_run

URL = "https://adb-1234567890123456.7.azuredatabricks.net/?o=1234567890123456#job/914275016372845/run/709863189092739"


def printed(renderable: RenderableType, width: int = 80) -> str:
    buffer = io.StringIO()
    make_console(file=buffer, width=width).print(renderable)
    return buffer.getvalue()


def column(text: str, header: str, next_header: str) -> str:
    """The values of a table's column, its folded lines joined."""
    lines = text.splitlines()
    start, end = lines[0].index(header), lines[0].index(next_header)
    return "".join(line[start:end].strip() for line in lines[2:])


def test_a_refused_start_has_its_own_status_line() -> None:
    never_started = replace(hostile_run(), run_id=None, status=RunStatus.FAILED)
    assert refused(never_started)
    assert run_outcome(never_started).plain == "✘ Failed: Databricks did not start run 7"
    ran = replace(hostile_run(), status=RunStatus.FAILED)
    assert not refused(ran)
    assert run_outcome(ran).plain.startswith("✘ Failed after")
    cancelled_early = replace(never_started, status=RunStatus.CANCELLED)
    assert run_outcome(cancelled_early).plain.endswith("run 7 was never started in Databricks")


def test_the_run_page_is_whole_on_its_own_line_at_80_columns() -> None:
    job = replace(hostile_job(), name="nightly")
    run = replace(hostile_run(), run_page_url=URL, message="m", tasks=())
    buffer = io.StringIO()
    print_view(make_console(file=buffer, width=80), run_view(run, job, []))
    assert URL in buffer.getvalue().splitlines()  # alone on its line, longer than 80 columns


def test_tables_keep_ids_whole_and_fit_80_columns() -> None:
    long_name = "a-very-long-job-name-that-does-not-fit-in-the-column-of-an-80-column-table"
    job = replace(hostile_job(), name=long_name, external_id="914275016372845", id=12345)
    run = replace(hostile_run(), id=98765, message="x" * 300)
    jobs = printed(jobs_table([job], {1: "prod"}))
    runs = printed(runs_table([run], {run.job_id: job}))
    for text in (jobs, runs):
        assert all(len(line) <= 80 for line in text.splitlines()), text
        assert "…" not in column(text, "Id", "Status" if text is runs else "Name")
    assert column(jobs, "Name", "Type") == long_name  # folded, not cut
    assert column(runs, "Job", "Status") == long_name
    assert "12345" in jobs
    assert "914275016372845" in jobs
    assert "98765" in runs


def test_emoji_codes_and_markup_in_workspace_text_are_printed_as_they_are() -> None:
    job = replace(hostile_job(), name=":smile: [bold]x[/bold] :thumbs_up:")
    text = printed(jobs_table([job], {1: "prod"}), width=200)
    assert ":smile: [bold]x[/bold] :thumbs_up:" in text


def test_a_truncated_task_list_shows_at_least_100() -> None:
    listed = DiscoveredJob("1", "wide", JobKind.WORKFLOW, 100, {}, None, None, True)
    assert task_count_text(listed) == "100+"
    assert task_count_text(replace(listed, tasks_truncated=False, task_count=130)) == "130"
    assert "100+" in printed(discover_table([listed], set()))
    assert discovered_json(listed, None)["tasks_truncated"] is True


def test_hints_are_rendered_as_commands_by_the_cli_and_in_words_otherwise() -> None:
    assert hint_text(NotFoundError("No job 'x'.", hint=LIST_JOBS)) == CLI_HINTS["list_jobs"]
    sync = NotFoundError("m", hint=replace(sync_parameters_hint(), subject="Nightly ETL "))
    assert hint_text(sync) == (
        "Re-read the job's parameters: `polysync jobs sync-params 'Nightly ETL '`."
    )
    unknown = NotFoundError("m", hint=Hint("new_action", "Do the new thing."))
    assert hint_text(unknown) == "Do the new thing."
    assert hint_text(NotFoundError("m")) is None
    assert shell_word("it's") == "'it'\\''s'"


def test_the_cli_json_of_each_record_is_the_api_shape() -> None:
    job = replace(
        hostile_job(),
        parameters=(Parameter(name="pw", data_type=DataType.SECRET, stored_value="hunter2"),),
    )
    run = replace(hostile_run(), parameters_sent={"pw": "hunter2"}, overrides={"pw": "hunter2"})
    event = RunEvent(1, 7, NOW, RunStatus.FAILED, "failed", "TERMINATED", "FAILED", "poll")
    platform = Platform(
        1, "prod", "azure-databricks", "https://x", {"method": "pat"}, None, "", {}, NOW, NOW
    )
    listed = DiscoveredJob("1", "wide", JobKind.WORKFLOW, 2, {}, None, None)
    pairs = [
        (run_json(run, job, [event]), RunOut.of_details(run, job, [event])),
        (job_json(job, "prod"), JobOut.of(job)),
        (platform_json(platform), PlatformOut.of(platform)),
        (discovered_json(listed, 3), DiscoveredJobOut.of(listed, {"1": 3})),
    ]
    for cli, api in pairs:
        shared = api.model_dump(mode="json")
        assert {k: cli[k] for k in shared} == shared  # same names, same values
    cli_run = run_json(run, job, [event])
    assert "run_id" not in cli_run
    assert cli_run["databricks_run_id"] == "99"
    assert cli_run["parameters_sent"] == {"pw": "********"}
    assert "hunter2" not in str(job_json(job))
