"""Notebook widgets: the `dbutils.widgets` declarations of a notebook's source (D11).

Reads what `workspace/export` (SOURCE) returns for Python, SQL, Scala and R notebooks:
`dbutils.widgets.text|dropdown|combobox|multiselect(...)` calls with literal arguments, positional
or named (`name`, `defaultValue`, `choices`, `label`), and SQL's `CREATE WIDGET TEXT|DROPDOWN|
COMBOBOX|MULTISELECT name DEFAULT '...' [CHOICES ...]`. Cells of another language (`# MAGIC`,
`-- MAGIC`, `// MAGIC` lines) are read too; commented-out declarations are not. A declaration
whose name is not a literal is skipped (it cannot be known without running the notebook); a
choices list that is not all literals is "unknown" (empty). Never raises, whatever the text.
"""

from __future__ import annotations

import heapq
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

MAX_WIDGETS = 1000
"""More declarations than any notebook has: the rest of a hostile text is not read."""
MAX_ARGUMENT_CHARS = 10_000
"""A call's arguments are read this far at most (an unterminated call ends there)."""
MAX_CHOICES = 1000
"""Choices of one widget read at most (Databricks allows far fewer)."""
MAX_CANDIDATES = 10 * MAX_WIDGETS
"""Declarations examined at most: a text of endless broken calls is not read to its end."""
MAX_STEPS = 50_000
"""Scanner steps for one whole notebook (a widget call takes a handful): hostile text ends the
parse there instead of costing seconds."""


class WidgetKind(StrEnum):
    """The four widget types (Databricks `dbutils.widgets`)."""

    TEXT = "text"
    DROPDOWN = "dropdown"
    COMBOBOX = "combobox"
    MULTISELECT = "multiselect"


@dataclass(frozen=True, slots=True)
class Widget:
    """One declared widget: its name, default and (dropdown, combobox, multiselect) choices."""

    name: str
    kind: WidgetKind
    default: str | None
    choices: tuple[str, ...] = ()
    label: str | None = None


_MAGIC = re.compile(r"^[ \t]*(?:#|//|--)[ \t]*MAGIC(?:[ \t]|$)", re.MULTILINE)
_CALL = re.compile(r"\bdbutils\s*\.\s*widgets\s*\.\s*(text|dropdown|combobox|multiselect)\s*\(")
_SQL_WIDGET = re.compile(
    r"\bCREATE\s+WIDGET\s+(TEXT|DROPDOWN|COMBOBOX|MULTISELECT)\s+"
    r"(`[^`\n]{1,256}`|[A-Za-z_][A-Za-z0-9_]{0,255})",
    re.IGNORECASE,
)
_SQL_DEFAULT = re.compile(
    r"\s*DEFAULT\s+('(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.)*\")", re.IGNORECASE
)
_SQL_CHOICES = re.compile(r"\s*CHOICES\b", re.IGNORECASE)
_SQL_LITERAL = re.compile(r"'((?:[^'\\]|\\.|'')*)'")
_POSITIONS = ("name", "defaultValue", "choices", "label")
_TEXT_POSITIONS = ("name", "defaultValue", "label")
_COMMENT_STARTS = ("#", "//", "--")
_SPACE = re.compile(r"[ \t\r\n\\]+")
_SIGNIFICANT = re.compile(r"[\"'()\[\]{},]")
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_STRING_BODIES = {
    '"""': re.compile(r'((?:[^\\]|\\.)*?)"""', re.DOTALL),
    "'''": re.compile(r"((?:[^\\]|\\.)*?)'''", re.DOTALL),
    '"': re.compile(r'((?:[^"\\\n]|\\.)*)"'),
    "'": re.compile(r"((?:[^'\\\n]|\\.)*)'"),
}
_KEYWORD = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*=(?!=)")
_COLLECTION = re.compile(r"(?:Seq|List|Array|list|c)?\s*([\[(])")
_QUOTE = re.compile(r"([rRuUbB]{0,2})(\"\"\"|'''|\"|')")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0"}


def parse_widgets(source: str) -> tuple[Widget, ...]:
    """Every widget `source` declares, in order of appearance; a name declared twice keeps its
    first declaration. Never raises."""
    if not isinstance(source, str):
        return ()
    text = _MAGIC.sub("", source)
    found: dict[str, Widget] = {}
    for widget in _declarations(text):
        found.setdefault(widget.name, widget)
        if len(found) >= MAX_WIDGETS:
            break
    return tuple(found.values())


def _declarations(text: str) -> Iterator[Widget]:
    # Both scans are lazy and merged in text order: a text of endless broken calls costs the
    # first MAX_CANDIDATES of them, never a list of them all.
    calls = ((m.start(), True, m) for m in _CALL.finditer(text))
    sql = ((m.start(), False, m) for m in _SQL_WIDGET.finditer(text))
    candidates = heapq.merge(calls, sql, key=lambda item: item[0])
    budget = _Budget(MAX_STEPS)
    for start, is_call, match in itertools.islice(candidates, MAX_CANDIDATES):
        if budget.spent:
            return
        if _commented_out(text, start):
            continue
        widget = _from_call(text, match, budget) if is_call else _from_sql(text, match)
        if widget is not None:
            yield widget


def _commented_out(text: str, start: int) -> bool:
    # The line's start is looked for within the last 4 KiB only: a text with no line breaks
    # must not cost a scan back to its beginning for every candidate.
    window = max(0, start - 4096)
    line = text[text.rfind("\n", window, start) + 1 or window : start].lstrip()
    return line.startswith(_COMMENT_STARTS)


# --- dbutils.widgets.<kind>(...) in Python, Scala, R ------------------------------------------


class _Budget:
    """Steps left for the whole parse."""

    def __init__(self, steps: int) -> None:
        self.left = steps

    @property
    def spent(self) -> bool:
        return self.left <= 0

    def take(self) -> bool:
        """One step; False once the budget is spent."""
        self.left -= 1
        return self.left > 0


def _from_call(text: str, match: re.Match[str], budget: _Budget) -> Widget | None:
    kind = WidgetKind(match.group(1))
    arguments = _Arguments(text, match.end(), budget).read()
    positions = _TEXT_POSITIONS if kind is WidgetKind.TEXT else _POSITIONS
    values: dict[str, _Value] = {}
    for index, (keyword, value) in enumerate(arguments):
        if keyword is None:
            if index < len(positions):
                values.setdefault(positions[index], value)
        else:
            values[keyword] = value
    name = values.get("name")
    if not isinstance(name, str) or not name:
        return None
    default = values.get("defaultValue")
    choices = values.get("choices")
    label = values.get("label")
    return Widget(
        name=name,
        kind=kind,
        default=default if isinstance(default, str) else None,
        choices=tuple(choices) if isinstance(choices, list) and kind is not WidgetKind.TEXT else (),
        label=label if isinstance(label, str) else None,
    )


_Value = str | list[str] | None
"""A literal string, a list of literal strings, or None: anything else (not knowable)."""


class _Arguments:
    """A tolerant reader of one call's argument list: literals kept, anything else None. Reads
    `text` in place between `start` and at most MAX_ARGUMENT_CHARS after it; every scan is a
    regular expression (C speed), so hostile text costs at most a bounded, linear pass."""

    def __init__(self, text: str, start: int, budget: _Budget) -> None:
        self.text = text
        self.i = start
        self.end = min(len(text), start + MAX_ARGUMENT_CHARS)
        self.budget = budget

    def _at(self, chars: str) -> bool:
        return self.i < self.end and self.text[self.i] in chars

    def read(self) -> list[tuple[str | None, _Value]]:
        arguments: list[tuple[str | None, _Value]] = []
        while len(arguments) <= 16 and self.budget.take():  # no widget call has more
            self._skip_space()
            if self.i >= self.end or self._at(")"):
                break
            keyword = self._keyword()
            arguments.append((keyword, self._value()))
            self._skip_space()
            if not self._at(","):
                if self.i >= self.end or self._at(")"):
                    break
                self._skip_expression()  # junk after a value: skip to the next argument
            if self._at(","):
                self.i += 1
        return arguments

    def _skip_space(self) -> None:
        match = _SPACE.match(self.text, self.i, self.end)
        if match is not None:
            self.i = match.end()

    def _keyword(self) -> str | None:
        match = _KEYWORD.match(self.text, self.i, self.end)
        if match is None:
            return None
        self.i = match.end()
        self._skip_space()
        return match.group(1)

    def _value(self) -> _Value:
        start = self.i
        literal = self._string()
        if literal is not None:
            self._skip_space()
            if self.i >= self.end or self._at(",)"):
                return literal
            self.i = start  # "a" + b: an expression, not a literal
            self._skip_expression()
            return None
        collection = _COLLECTION.match(self.text, self.i, self.end)
        if collection is not None:
            self.i = collection.end()
            items = self._items("]" if collection.group(1) == "[" else ")")
            self._skip_space()
            if items is not None and self._at(",)"):
                return items
        self.i = start
        self._skip_expression()
        return None

    def _items(self, closing: str) -> list[str] | None:
        items: list[str] = []
        while len(items) < MAX_CHOICES and self.budget.take():
            self._skip_space()
            if self.i >= self.end:
                return None
            if self._at(closing):
                self.i += 1
                return items
            item = self._string()
            if item is None:
                return None
            items.append(item)
            self._skip_space()
            if self._at(","):
                self.i += 1
            elif not self._at(closing):
                return None
        return None

    def _string(self) -> str | None:
        """A literal string at the cursor (quotes of Python, Scala and R; r/u/b prefixes; no
        interpolation), the cursor moved past it; None (cursor unmoved) otherwise."""
        match = _QUOTE.match(self.text, self.i, self.end)
        if match is None:
            return None
        raw = "r" in match.group(1).lower()
        body = _STRING_BODIES[match.group(2)].match(self.text, match.end(), self.end)
        if body is None:
            return None  # unterminated (on its line, for a one-line quote)
        self.i = body.end()
        text = body.group(1)
        return text if raw else _unescape(text)

    def _skip_expression(self) -> None:
        """Past one argument's expression: to the next top-level ',' or the closing ')'."""
        depth = 0
        while self.budget.take():
            match = _SIGNIFICANT.search(self.text, self.i, self.end)
            if match is None:
                self.i = self.end
                return
            self.i = match.start()
            char = match.group()
            if char in "\"'":
                if self._string() is None:
                    self.i += 1
                continue
            if char in "([{":
                depth += 1
            elif char in ")]}":
                if depth == 0:
                    return
                depth -= 1
            elif depth == 0:  # a comma
                return
            self.i += 1
        self.i = self.end


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    return _ESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(1)), text)


# --- SQL: CREATE WIDGET ------------------------------------------------------------------------


def _from_sql(text: str, match: re.Match[str]) -> Widget | None:
    kind = WidgetKind(match.group(1).lower())
    name = match.group(2).strip("`")
    rest = text[match.end() : match.end() + MAX_ARGUMENT_CHARS]
    statement = rest.split(";", 1)[0]
    default: str | None = None
    default_match = _SQL_DEFAULT.match(statement)
    position = 0
    if default_match is not None:
        default = _sql_string(default_match.group(1))
        position = default_match.end()
    choices: tuple[str, ...] = ()
    choices_match = _SQL_CHOICES.match(statement, position)
    if choices_match is not None and kind is not WidgetKind.TEXT:
        tail = statement[choices_match.end() :]
        # Literal choices (`SELECT * FROM (VALUES ('a'), ('b'))`) are known; choices selected
        # from a table are only known when the notebook runs.
        if re.search(r"\bVALUES\b", tail, re.IGNORECASE):
            choices = tuple(_sql_string(f"'{m.group(1)}'") for m in _SQL_LITERAL.finditer(tail))
    return Widget(name=name, kind=kind, default=default, choices=choices)


def _sql_string(literal: str) -> str:
    quote, body = literal[0], literal[1:-1]
    if quote == "'":
        body = body.replace("''", "'")
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body, flags=re.DOTALL)
