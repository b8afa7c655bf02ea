"""Presentation rules live once (issue 11): durations, status colours, labels and masking are the
same in the CLI and the web UI because both take them from `polysync.presentation`."""

from __future__ import annotations

import io
import re
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

import polysync
from polysync import presentation
from polysync.cli import render
from polysync.cli.terminal import make_console
from polysync.domain.models import DataType, Parameter, RunStatus
from polysync.presentation import (
    MASK,
    STATUS_COLOURS,
    duration_text,
    run_duration_ms,
    shown_values,
)
from polysync.web.context import template_environment
from tests.unit.cli.test_terminal import NOW, hostile_run

APP_CSS = Path(polysync.__file__).parent / "web" / "static" / "app.css"


def test_durations() -> None:
    assert duration_text(None) == "\u2013"
    assert duration_text(None, nothing="-") == "-"
    assert duration_text(900) == "1s"
    assert duration_text(125_000) == "2m 05s"
    assert duration_text(3_725_000) == "1h 02m 05s"
    assert duration_text(-5) == "0s"


@given(st.integers(min_value=0, max_value=10**12))
def test_a_duration_reads_back_to_the_second(ms: int) -> None:
    parts = dict((unit, int(n)) for n, unit in re.findall(r"(\d+)([hms])", duration_text(ms)))
    seconds = parts.get("h", 0) * 3600 + parts.get("m", 0) * 60 + parts.get("s", 0)
    assert seconds == max(0, round(ms / 1000))


def test_a_runs_duration_is_databricks_own_else_polysyncs() -> None:
    run = replace(hostile_run(), status=RunStatus.SUCCESS)
    # Its tasks have times: Databricks' span, first start to last end.
    assert run_duration_ms(run) == 1
    # A pipeline update has no tasks: from the start request to the end, by Polysync's clock.
    update = replace(run, tasks=(), submitted_at=NOW, ended_at=NOW + timedelta(seconds=95))
    assert run_duration_ms(update) == 95_000
    assert run_duration_ms(replace(update, status=RunStatus.RUNNING, ended_at=None)) is None


def test_the_cli_and_the_web_show_the_same_duration_and_labels() -> None:
    update = replace(
        hostile_run(),
        status=RunStatus.SUCCESS,
        tasks=(),
        ended_at=NOW + timedelta(seconds=3725),
    )
    env = template_environment()
    web = env.filters["duration"](run_duration_ms(update))
    assert web == "1h 02m 05s"
    buffer = io.StringIO()
    make_console(file=buffer, width=120).print(render.run_outcome(update))
    assert buffer.getvalue().strip() == f"✔ Success after {web}"
    assert env.globals["AUTH_LABELS"] is presentation.AUTH_LABELS is render.AUTH_LABELS
    assert env.filters["job_type_label"]("Databricks Pipeline") == "Pipeline"
    assert render.kind_label("Databricks Pipeline") == "Pipeline"


def test_every_status_has_one_colour_in_the_cli_and_the_web() -> None:
    css = APP_CSS.read_text(encoding="utf-8")
    assert set(STATUS_COLOURS) == set(RunStatus)
    for status, colour in STATUS_COLOURS.items():
        assert colour in render.STATUS_STYLES[status]
        assert f".status-{status.value.lower()} " in css
        assert f".bar.status-{status.value.lower()} " in css


def test_secret_values_are_masked_the_same_everywhere() -> None:
    secret = Parameter(name="token", data_type=DataType.SECRET, default="hunter2")
    shown = shown_values([secret], {"token": "hunter2", "env": "prod"})
    assert shown == {"token": MASK, "env": "prod"}
    assert shown_values([secret], {"token": "env:TOKEN"}) == {"token": "env:TOKEN"}
