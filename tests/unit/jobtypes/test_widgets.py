"""The notebook widget parser: the four languages, named and positional arguments, and hostile
text that never crashes it (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polysync.jobtypes.databricks.widgets import (
    MAX_CANDIDATES,
    MAX_WIDGETS,
    Widget,
    WidgetKind,
    parse_widgets,
)

K = WidgetKind


def widgets(source: str) -> dict[str, tuple[WidgetKind, str | None, tuple[str, ...]]]:
    return {w.name: (w.kind, w.default, w.choices) for w in parse_widgets(source)}


def test_python_positional_and_named_arguments() -> None:
    source = (
        "# Databricks notebook source\n"
        'dbutils.widgets.text("run_date", "", "Run date")\n'
        "dbutils.widgets.dropdown('region', 'emea', ['emea', 'apac'], 'Region')\n"
        'dbutils.widgets.combobox(name="currency", defaultValue="EUR", choices=["EUR", "USD"])\n'
        'dbutils.widgets.multiselect("channels", "web", ("web", "store"))\n'
    )
    assert widgets(source) == {
        "run_date": (K.TEXT, "", ()),
        "region": (K.DROPDOWN, "emea", ("emea", "apac")),
        "currency": (K.COMBOBOX, "EUR", ("EUR", "USD")),
        "channels": (K.MULTISELECT, "web", ("web", "store")),
    }
    assert parse_widgets(source)[0].label == "Run date"


def test_scala_and_r_collections() -> None:
    scala = 'dbutils.widgets.dropdown("mode", "batch", Seq("batch", "incremental"), "Mode")'
    r_source = 'dbutils.widgets.combobox("store", "all", list("all", "sydney"))\n'
    r_vector = 'dbutils.widgets.multiselect("days", "mon", c("mon", "tue"))'
    assert widgets(scala) == {"mode": (K.DROPDOWN, "batch", ("batch", "incremental"))}
    assert widgets(r_source) == {"store": (K.COMBOBOX, "all", ("all", "sydney"))}
    assert widgets(r_vector) == {"days": (K.MULTISELECT, "mon", ("mon", "tue"))}


def test_sql_create_widget() -> None:
    source = (
        "CREATE WIDGET TEXT as_of DEFAULT '2026-11-30';\n"
        "create widget dropdown `gran ularity` DEFAULT 'day' CHOICES SELECT * FROM "
        "(VALUES ('day'), ('week'), ('it''s'));\n"
        "CREATE WIDGET COMBOBOX region DEFAULT 'x' CHOICES SELECT region FROM dim.regions;\n"
    )
    assert widgets(source) == {
        "as_of": (K.TEXT, "2026-11-30", ()),
        "gran ularity": (K.DROPDOWN, "day", ("day", "week", "it's")),
        "region": (K.COMBOBOX, "x", ()),  # selected from a table: known only at run time
    }


def test_magic_cells_of_another_language_are_read_comments_are_not() -> None:
    source = (
        "-- Databricks notebook source\n"
        "-- MAGIC %python\n"
        '-- MAGIC dbutils.widgets.text("from_python", "1")\n'
        '-- dbutils.widgets.text("commented", "")\n'
        '# dbutils.widgets.text("commented_too", "")\n'
        '// dbutils.widgets.text("scala_comment", "")\n'
    )
    assert widgets(source) == {"from_python": (K.TEXT, "1", ())}


def test_what_cannot_be_known_without_running_the_notebook() -> None:
    source = (
        "dbutils.widgets.text(name_var, 'x')\n"  # a name that is not a literal: skipped
        'dbutils.widgets.text("computed", "a" + suffix)\n'  # default unknown
        'dbutils.widgets.dropdown("dyn", "a", options)\n'  # choices unknown
        'dbutils.widgets.text(f"templ{x}", "")\n'  # an f-string is computed: skipped
    )
    assert widgets(source) == {
        "computed": (K.TEXT, None, ()),
        "dyn": (K.DROPDOWN, "a", ()),
    }


def test_escapes_raw_strings_and_first_declaration_wins() -> None:
    source = (
        'dbutils.widgets.text("path", "C:\\\\data\\n")\n'
        "dbutils.widgets.text('raw', r'\\d+')\n"
        'dbutils.widgets.text("path", "second")\n'
        'dbutils.widgets.text("""triple""", """a "quoted" b""")\n'
    )
    assert widgets(source) == {
        "path": (K.TEXT, "C:\\data\n", ()),
        "raw": (K.TEXT, "\\d+", ()),
        "triple": (K.TEXT, 'a "quoted" b', ()),
    }


@pytest.mark.parametrize(
    "source",
    [
        "dbutils.widgets.text(",
        'dbutils.widgets.text("unterminated',
        'dbutils.widgets.dropdown("a", "b", ["c", ',
        "CREATE WIDGET DROPDOWN x DEFAULT 'y' CHOICES",
        "CREATE WIDGET TEXT",
        "dbutils.widgets.text(" + "(" * 10_000,
        "\x00dbutils.widgets.text('\ud800', '\x00')",
    ],
)
def test_broken_declarations_are_skipped_or_read_as_far_as_they_go(source: str) -> None:
    for widget in parse_widgets(source):
        assert isinstance(widget, Widget)
        assert widget.name


def test_a_flood_of_declarations_stops_at_the_cap() -> None:
    source = "\n".join(f'dbutils.widgets.text("w{i}", "")' for i in range(MAX_WIDGETS + 50))
    assert len(parse_widgets(source)) == MAX_WIDGETS


_FRAGMENTS = st.sampled_from(
    [
        "dbutils.widgets.",
        "text(",
        "dropdown(",
        "multiselect(",
        "combobox(",
        "CREATE WIDGET ",
        "DROPDOWN ",
        "DEFAULT ",
        "CHOICES ",
        "VALUES ",
        "'",
        '"',
        '"""',
        "\\",
        "(",
        ")",
        "[",
        "]",
        ",",
        "=",
        "\n",
        "# MAGIC ",
        "-- ",
        "Seq(",
        "c(",
        "r'",
        "name=",
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(_FRAGMENTS, st.text(max_size=8)), max_size=60))
def test_hostile_text_never_crashes_the_parser(parts: list[str]) -> None:
    found = parse_widgets("".join(parts))
    names = [widget.name for widget in found]
    assert len(names) == len(set(names))
    assert all(isinstance(widget.kind, WidgetKind) for widget in found)
    assert all(name for name in names)


@settings(max_examples=200, deadline=None)
@given(
    name=st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters='"\\\n\r'),
        min_size=1,
        max_size=30,
    ),
    default=st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters='"\\\n\r'),
        max_size=30,
    ),
)
def test_a_literal_declaration_round_trips(name: str, default: str) -> None:
    source = f'dbutils.widgets.text("{name}", "{default}")'
    assert widgets(source) == {name: (K.TEXT, default, ())}


def test_a_text_of_endless_broken_calls_is_read_only_so_far() -> None:
    valid = 'dbutils.widgets.text("late", "")'
    broken = 'dbutils.widgets.text("' * (MAX_CANDIDATES + 1)
    assert widgets(valid) == {"late": (K.TEXT, "", ())}
    assert parse_widgets(broken + "\n" + valid) == ()  # past the bound: not read
    # Below the bound, what follows broken calls is still found.
    assert "late" in widgets("dbutils.widgets.text(\n" * 10 + valid)
