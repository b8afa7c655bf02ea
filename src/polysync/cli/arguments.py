"""The command line as the operating system gave it: arguments that are not valid UTF-8.

Python decodes argv with `surrogateescape`: a byte that is not UTF-8 (a Latin-1 `é` typed in a
terminal set to another encoding, a file name from an old archive) arrives as a lone surrogate
U+DC80-U+DCFF. Such a value cannot be stored, sent to Databricks or printed, so it is refused
before any command runs, saying which argument and how to fix it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

EXIT_USAGE = 2  # polysync.cli.common.EXIT_USAGE; imported there, not here, to start fast


def undecodable(argument: str) -> bytes | None:
    """The bytes of `argument` when they are not valid UTF-8, else None."""
    try:
        argument.encode("utf-8")
    except UnicodeEncodeError:
        return argument.encode("utf-8", "surrogateescape")
    return None


def argv_error(arguments: Sequence[str]) -> str | None:
    """What is wrong with the first argument that is not valid UTF-8 (None: all are)."""
    for position, argument in enumerate(arguments, start=1):
        raw = undecodable(argument)
        if raw is None:
            continue
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            offset, byte = exc.start, raw[exc.start]
        else:  # pragma: no cover - undecodable() said it is not UTF-8
            offset, byte = 0, raw[0]
        shown = raw.decode("utf-8", "backslashreplace")
        return (
            f"Argument {position} ({shown}) is not valid UTF-8: byte 0x{byte:02x} at offset "
            f"{offset}. Polysync reads its arguments as UTF-8: set the terminal to UTF-8 (e.g. "
            f"`export LANG=C.UTF-8`) and type it again, or convert it (e.g. `iconv -f LATIN1 "
            f"-t UTF-8`)."
        )
    return None


def check_argv(arguments: Sequence[str]) -> None:
    """Exit 2 with a clear message (JSON with `--json`) when an argument is not UTF-8."""
    message = argv_error(arguments)
    if message is None:
        return
    if "--json" in arguments:
        print_json_error("invalid-argument", message, None)
    else:
        sys.stderr.write(f"Error: {message}\n")
    sys.exit(EXIT_USAGE)


def print_json_error(code: str, message: str, hint: str | None) -> None:
    """`{"error": {"code", "message", "hint"}}` on stdout, as `polysync.cli.common.fail`."""
    error = {"code": code, "message": message, "hint": hint}
    sys.stdout.write(json.dumps({"error": error}, indent=2, ensure_ascii=True) + "\n")
    sys.stdout.flush()
