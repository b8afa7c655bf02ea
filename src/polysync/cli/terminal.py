"""Text bound for a terminal: control characters from a workspace never reach it raw.

A job description, a parameter default or an error message from Databricks may hold ESC
sequences (clear the screen, rename the window, forge a hyperlink), a carriage return that
overwrites a line, or C1 controls. `terminal_safe` shows them as visible escapes (`\\x1b`) and
keeps line breaks and tabs; `SafeConsole` applies it to everything it prints, whatever the
caller forgot (docs/security.md "Terminal").
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import Any

from rich.console import Console, ConsoleOptions, RenderableType
from rich.markup import escape
from rich.segment import Segment
from rich.style import Style

from polysync.domain.limits import http_url

# C0 controls but tab and line feed, DEL, C1 controls; lone surrogates cannot be written at all.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_NAMED = {"\r": "\\r", "\x1b": "\\x1b", "\x00": "\\x00"}


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def terminal_safe(text: str) -> str:
    """`text` with every control character but line feed and tab written as a visible escape
    (`\\x1b`, `\\r`, `\\x9b`), so printing it cannot move the cursor, clear the screen, set the
    window title or start a hyperlink."""
    return _UNSAFE.sub(_visible, text)


def safe_markup(text: str) -> str:
    """A remote string for Rich markup: control characters made visible, `[` escaped."""
    return escape(terminal_safe(text))


def link_style(url: str | None, base: str = "") -> Style | str:
    """A hyperlink style for `url` when it is an http(s) URL, else just `base`: a hostile URL
    never becomes an OSC 8 escape sequence."""
    checked = http_url(url)
    if checked is None:
        return base
    return Style.parse(base) + Style(link=checked) if base else Style(link=checked)


class SafeConsole(Console):
    """A Rich console that makes control characters visible in all text it renders (cursor and
    screen control that Rich itself emits, e.g. for live displays, is left alone)."""

    # Rich renders tables and groups by calling render again for each cell: only the outermost
    # call (per thread: a live display refreshes from its own) makes the segments safe, once.
    _nesting = threading.local()

    def render(
        self, renderable: RenderableType, options: ConsoleOptions | None = None
    ) -> Iterable[Segment]:
        if getattr(self._nesting, "depth", 0):
            yield from super().render(renderable, options)
            return
        self._nesting.depth = 1
        try:
            for segment in super().render(renderable, options):
                text, style, control = segment
                if control or not _UNSAFE.search(text):
                    yield segment
                else:
                    yield Segment(terminal_safe(text), style, control)
        finally:
            self._nesting.depth = 0


def make_console(**options: Any) -> SafeConsole:
    """The CLI's consoles: no highlighting of numbers and URLs in what we print, and no emoji
    codes - a job named `:smile:` is printed as it is named."""
    return SafeConsole(highlight=False, emoji=False, **options)
