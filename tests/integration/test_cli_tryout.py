"""Hostile ids found by trying the CLI as a new user: a number past 64 bits or a Unicode digit
names nothing (exit 2, a clear message), never a database OverflowError or a ValueError
traceback. On a real SQLite file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from polysync.cli.main import app
from polysync.domain.limits import MAX_INT64, record_id

PAST_64_BITS = "99999999999999999999999"


@pytest.fixture
def polysync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("POLYSYNC_HOME", str(tmp_path))
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(app, list(args), terminal_width=200)

    return invoke


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("tasks", "show", PAST_64_BITS), f"No Task named '{PAST_64_BITS}'"),
        (("tasks", "show", "²"), "No Task named '²'"),
        (("tasks", "delete", PAST_64_BITS, "--yes"), f"No Task named '{PAST_64_BITS}'"),
        (("tasks", "pause", PAST_64_BITS), f"No Task named '{PAST_64_BITS}'"),
        (("taskruns", "list", "--task", PAST_64_BITS), f"No Task named '{PAST_64_BITS}'"),
        (("vaults", "show", PAST_64_BITS), f"No Secret Vault named '{PAST_64_BITS}'"),
        (("vaults", "show", "²"), "No Secret Vault named '²'"),
        (("runs", "show", PAST_64_BITS), "less than or equal to 9223372036854775807"),
        (("runs", "repair", PAST_64_BITS), "less than or equal to 9223372036854775807"),
        (("runs", "cancel", PAST_64_BITS), "less than or equal to 9223372036854775807"),
        (("taskruns", "show", PAST_64_BITS), "less than or equal to 9223372036854775807"),
        (("taskruns", "cancel", "0"), "greater than or equal to 1"),
    ],
)
def test_an_id_past_64_bits_or_a_unicode_digit_names_nothing(
    polysync: Any, args: tuple[str, ...], says: str
) -> None:
    result = polysync(*args)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert says in " ".join(result.output.replace("│", " ").split())
    assert "Traceback" not in result.output
    assert "OverflowError" not in result.output


def test_record_id_reads_ascii_digits_within_64_bits() -> None:
    assert record_id(" 42 ") == 42
    assert record_id(str(MAX_INT64)) == MAX_INT64
    assert [record_id(t) for t in ("0", str(MAX_INT64 + 1), "²", "\u0661", "-1", "4 2", "")] == [
        None
    ] * 7


@given(st.text(max_size=30))
def test_record_id_is_a_positive_int64_or_none(text: str) -> None:
    found = record_id(text)
    assert found is None or (1 <= found <= MAX_INT64 and str(found) == text.strip().lstrip("0"))


def test_an_unregistered_vault_is_not_given_the_env_advice(polysync: Any) -> None:
    result = polysync(
        "platform", "add", "p", "--url", "https://adb-1.1.azuredatabricks.net",
        "--token", "vault://nope/sec",
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "no Secret Vault named 'nope' is registered" in text
    assert "polysync vaults add" in text
    assert "export NAME" not in text
