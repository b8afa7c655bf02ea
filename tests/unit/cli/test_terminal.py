"""Terminal safety (issue 9): what the CLI prints from a workspace never reaches the terminal as
a control sequence; line breaks are kept; links are only http(s)."""

from __future__ import annotations

import io
import logging
import re
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import RenderableType

from polysync.cli.common import load_settings, print_json
from polysync.cli.render import job_view, run_view, runs_table
from polysync.cli.terminal import SafeConsole, terminal_safe
from polysync.domain.models import Parameter, RunStatus, TaskRunState
from polysync.domain.records import Job, Run, RunEvent
from polysync.jobtypes.databricks.parameters import JobKind

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
CLEAR_AND_RETITLE = "\x1b[2J\x1b[H\x1b]0;pwned\x07"
HOSTILE = f"{CLEAR_AND_RETITLE}evil\rover\x9b31m\x00x\u202e"
HOSTILE_LINK = "\x1b]8;;https://attacker.example\x1b\\click\x1b]8;;\x1b\\"
# What the terminal must never receive: ESC sequences of the workspace's, BEL, CR, C1, NUL.
FORBIDDEN = re.compile("\x1b\\[2J|\x1b\\]0;|\x1b\\]8;;https://attacker|[\x00\x07\r\x9b]")


def hostile_job() -> Job:
    return Job(
        id=1,
        platform_id=1,
        job_type=JobKind.WORKFLOW,
        external_id="42",
        name=f"nightly{HOSTILE}",
        description=f"line one{HOSTILE}\nline two{HOSTILE_LINK}",
        tags={f"team{HOSTILE}": f"data{HOSTILE}"},
        task_count=2,
        task_keys=(f"ingest{HOSTILE}", "clean"),
        parameters=(
            Parameter(name=f"env{HOSTILE}", default=f"prod{HOSTILE}", stored_value=HOSTILE),
            Parameter(name="mode", default="full", task_key=f"ingest{HOSTILE}"),
        ),
        imported_at=NOW,
        synced_at=NOW,
    )


def hostile_run() -> Run:
    return Run(
        id=7,
        job_id=1,
        platform_id=1,
        key="k",
        idempotency_token="t",
        overrides={"env": HOSTILE},
        parameters_sent={"env": HOSTILE},
        run_id="99",
        status=RunStatus.FAILED,
        message=f"Task failed:{HOSTILE}\nsecond line{HOSTILE_LINK}",
        run_page_url=f"javascript:alert(1){CLEAR_AND_RETITLE}",
        life_cycle_state=f"TERMINATED{HOSTILE}",
        result_state=f"FAILED{HOSTILE}",
        tasks=(
            TaskRunState(
                task_key=f"ingest{HOSTILE}",
                status=RunStatus.FAILED,
                result_state=f"FAILED{HOSTILE}",
                state_message=HOSTILE,
                error=f"Traceback{HOSTILE}",
                start_time_ms=1,
                end_time_ms=2,
            ),
        ),
        created_at=NOW,
        submitted_at=NOW,
        ended_at=NOW,
        updated_at=NOW,
        cancel_requested_at=None,
        next_poll_at=None,
        lease_owner=None,
        lease_expires_at=None,
        submit_attempts=1,
        executed_by=f"api:bot{HOSTILE}",
    )


def printed(renderable: RenderableType, *, terminal: bool) -> str:
    buffer = io.StringIO()
    console = SafeConsole(
        file=buffer,
        force_terminal=terminal,
        color_system="truecolor" if terminal else None,
        width=200,
    )
    console.print(renderable)
    return buffer.getvalue()


def test_job_and_run_views_print_no_control_sequence() -> None:
    job, run = hostile_job(), hostile_run()
    event = RunEvent(
        1, 7, NOW, RunStatus.FAILED, f"failed{HOSTILE}", "TERMINATED", "FAILED", "poll"
    )
    for renderable in (
        job_view(job, f"prod{HOSTILE}"),
        run_view(run, job, [event]),
        runs_table([run], {1: job}),
    ):
        for terminal in (True, False):
            text = printed(renderable, terminal=terminal)
            assert FORBIDDEN.search(text) is None, repr(text)
            if not terminal:
                assert "\x1b" not in text
            assert "\\x1b" in text  # shown, not swallowed: the user sees something odd is there


def test_line_breaks_of_a_message_are_kept() -> None:
    text = printed(run_view(hostile_run(), hostile_job(), []), terminal=False)
    assert "second line" in text
    assert text.index("Task failed") < text.index("second line")


def test_a_non_http_run_page_never_becomes_a_hyperlink() -> None:
    text = printed(run_view(hostile_run(), hostile_job(), []), terminal=True)
    assert "\x1b]8;" not in text  # no OSC 8 at all: the URL is javascript:
    good = replace(hostile_run(), run_page_url="https://adb-1.2.azuredatabricks.net/#job/1/run/99")
    linked = printed(run_view(good, hostile_job(), []), terminal=True)
    assert "\x1b]8;id=" in linked
    assert "https://adb-1.2.azuredatabricks.net/#job/1/run/99" in linked


def test_the_console_makes_any_string_safe() -> None:
    text = printed(f"plain {HOSTILE}", terminal=True)
    assert FORBIDDEN.search(text) is None


def test_json_output_escapes_every_control_character(capsys: pytest.CaptureFixture[str]) -> None:
    print_json({"description": HOSTILE, "ok": "东京 ✓"})
    out = capsys.readouterr().out
    assert FORBIDDEN.search(out) is None
    assert "\x1b" not in out
    assert "东京 ✓" in out  # non-ASCII text stays readable


@given(st.text())
def test_terminal_safe_leaves_nothing_a_terminal_obeys(text: str) -> None:
    safe = terminal_safe(text)
    assert re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]", safe) is None
    assert safe.count("\n") == text.count("\n")


@given(st.text(alphabet=st.characters(exclude_categories=("Cc", "Cs"))))
def test_terminal_safe_keeps_ordinary_text(text: str) -> None:
    assert terminal_safe(text) == text


def test_log_lines_never_fail_on_text_no_encoder_can_carry() -> None:
    load_settings()  # the CLI's logging set-up
    buffer = io.BytesIO()
    stream = io.TextIOWrapper(buffer, encoding="utf-8", errors="strict")  # as a log file is
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("polysync.test_log_lines")
    logger.addHandler(handler)
    try:
        logger.warning("job %s: %s", "etl\ud800", "state\x00message")
    finally:
        logger.removeHandler(handler)
    stream.flush()
    assert buffer.getvalue().decode("utf-8") == "job etl\ufffd: state\ufffdmessage\n"
