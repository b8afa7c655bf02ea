"""How the domain quotes a value in a message: its repr, cut short so it cannot flood one."""

from __future__ import annotations

MAX_SHOWN_CHARS = 80


def shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= MAX_SHOWN_CHARS else text[: MAX_SHOWN_CHARS - 3] + "..."
