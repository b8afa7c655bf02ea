"""Every input limit in one place: text caps, allowed characters, id lists, 64-bit integers.

The API (pydantic types built on these functions), the web forms, the CLI and the services all
call the checks below, so a limit is defined once and says the same thing everywhere. Each check
raises `UsageError` with the field, the rule and the fix; a value is quoted only through
`shown()` (cut short), and never when the field may hold a secret. docs/security.md lists every
limit for users.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

from polysync.domain.text import shown
from polysync.errors import ParameterTextError, PolysyncError, UsageError

T = TypeVar("T")

# --- Caps (characters unless the name says otherwise) ------------------------------------------
MAX_NAME_CHARS = 200
"""Platform names, API key names."""
MAX_JOB_NAME_CHARS = 4096
"""Job names: Databricks allows 4096 bytes (reference §2 `JobSettings.name`)."""
MAX_DESCRIPTION_CHARS = 27_700
"""Descriptions: Databricks' job description limit (reference §2), used for platforms too."""
MAX_URL_CHARS = 2000
"""Workspace URLs, authority hosts."""
MAX_FIELD_CHARS = 200
"""Short identifiers: cluster id, tenant id, client id."""
MAX_PARAMETER_NAME_CHARS = 500
"""Parameter names and task keys."""
MAX_PARAMETER_VALUE_CHARS = 10_000
"""One parameter value (an override or a stored value); Databricks caps the legacy parameter
maps at 10,000 bytes of JSON (reference §3), the same order of size."""
MAX_PARAMETERS_PER_RUN = 1000
"""Overrides in one Execute Now, and parameter edits in one request."""
MAX_IMPORT_IDS = 1000
"""Distinct External Ids in one import request (`all` is bounded by the workspace instead)."""
MAX_EXTERNAL_ID_CHARS = 4096
"""An External Id as typed: a Job Id has at most 19 digits and a pipeline id 36 characters, but
a notebook's workspace path may be as long as a workspace path (4,096 characters)."""
MAX_ENV_NAME_CHARS = 256
"""The variable name of an `env:` secret reference."""
MAX_PATH_CHARS = 4096
"""A file path (PATH_MAX on Linux): `file:` references, tls_ca_bundle."""
MAX_BODY_BYTES = 1024 * 1024
"""One request body (API JSON or web form): refused with 413 before it is parsed."""
MIN_INT64 = -(2**63)
MAX_INT64 = 2**63 - 1

# C0 controls, DEL, C1 controls and lone surrogates (text that cannot be encoded as UTF-8).
# Single-line text refuses all of them; multi-line text allows tab, line feed and carriage return.
_SINGLE_LINE_REFUSED = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_MULTI_LINE_REFUSED = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASCII_DIGITS = re.compile(r"[0-9]+")
# What no encoder can carry: NUL (PostgreSQL text refuses it) and lone surrogates (no UTF-8 form).
_UNENCODABLE = re.compile("[\x00\ud800-\udfff]")
REPLACEMENT_CHARACTER = "\ufffd"
_INT_TEXT = re.compile(r"[-+]?[0-9]+")

_CHARACTER_NAMES = {
    "\x00": "a NUL character",
    "\t": "a tab",
    "\n": "a line break",
    "\r": "a carriage return",
    "\x1b": "an ESC character",
    "\x7f": "a DEL character",
}


def first_refused(value: str, *, multiline: bool = False) -> tuple[int, str] | None:
    """The index and the character of the first refused character of `value`, or None.

    Refused: C0 controls, DEL, C1 controls (U+0080-U+009F) and lone surrogates (text with no
    UTF-8 form, so no request could carry it); `multiline` allows tab, line feed and carriage
    return. This is the one character rule of every text field (docs/security.md "Limits").
    """
    pattern = _MULTI_LINE_REFUSED if multiline else _SINGLE_LINE_REFUSED
    match = pattern.search(value)
    return None if match is None else (match.start(), match.group())


def describe_character(char: str) -> str:
    """How a message names a refused character ("a line break", "control character U+0007",
    "a lone surrogate U+D800 (...)"): never the text around it."""
    if char in _CHARACTER_NAMES:
        return _CHARACTER_NAMES[char]
    if "\ud800" <= char <= "\udfff":
        return f"a lone surrogate U+{ord(char):04X} (text that is not valid Unicode)"
    return f"control character U+{ord(char):04X}"


def refused_character(value: str, *, multiline: bool = False) -> str | None:
    """What the first refused character of `value` is (`describe_character`), or None when
    `value` is clean (`first_refused`)."""
    found = first_refused(value, multiline=multiline)
    return None if found is None else describe_character(found[1])


def replace_unencodable(text: str) -> str:
    """`text` with NUL and each lone surrogate replaced by U+FFFD: text no database column, JSON
    answer, page or log line could otherwise carry. Applied where text from outside enters (a
    Databricks answer) and again by every encoder, for rows written before that rule."""
    return _UNENCODABLE.sub(REPLACEMENT_CHARACTER, text)


def replace_unencodable_in(value: Any) -> Any:
    """`replace_unencodable` on every string of a JSON value (object keys included)."""
    if isinstance(value, str):
        return replace_unencodable(value)
    if isinstance(value, dict):
        return {replace_unencodable_in(k): replace_unencodable_in(v) for k, v in value.items()}
    if isinstance(value, list):
        return [replace_unencodable_in(item) for item in value]
    return value


def single_line(value: T) -> T:
    """`value` if it is not text, or text with no refused character (see `refused_character`);
    else ValueError. The validator pydantic models at the edges run *before* their str check
    (`BeforeValidator(single_line)`): pydantic cannot even read a lone surrogate, and would
    refuse it with a message that names no character."""
    if isinstance(value, str):
        refused = refused_character(value)
        if refused is not None:
            raise ValueError(f"contains {refused}; control characters are not allowed here")
    return value


def multi_line(value: T) -> T:
    """As `single_line`, with tabs and line breaks allowed."""
    if isinstance(value, str):
        refused = refused_character(value, multiline=True)
        if refused is not None:
            raise ValueError(f"contains {refused}; only tabs and line breaks are allowed here")
    return value


def check_text(
    value: str,
    *,
    field: str,
    max_chars: int,
    multiline: bool = False,
    required: bool = False,
    secret: bool = False,
) -> str:
    """`value` unchanged when it fits; else UsageError naming `field`, the rule and the fix.

    `max_chars`: the cap (characters). `multiline`: tab and line breaks allowed (descriptions,
    parameter values). `required`: empty or blank is refused. `secret`: the value may be a secret,
    so the message never quotes it. Control characters, DEL, C1 controls and lone surrogates are
    always refused (docs/security.md "Limits").
    """
    if not isinstance(value, str):
        raise UsageError(f"{field} must be text, not {type(value).__name__}.")
    if required and not value.strip():
        raise UsageError(f"{field} is required: give a value.")
    if len(value) > max_chars:
        raise UsageError(
            f"{field} is {len(value):,} characters long; the limit is {max_chars:,}. Shorten it."
        )
    refused = refused_character(value, multiline=multiline)
    if refused is not None:
        quoted = "" if secret else f" ({shown(value)})"
        allowed = "" if multiline else " or line breaks"
        raise UsageError(
            f"{field} contains {refused}{quoted}; control characters{allowed} are not allowed "
            f"here. Remove it."
        )
    return value


def check_optional_text(
    value: str | None, *, field: str, max_chars: int, multiline: bool = False
) -> str | None:
    """`check_text` for a value that may be absent (None passes)."""
    if value is None:
        return None
    return check_text(value, field=field, max_chars=max_chars, multiline=multiline)


def check_name(value: str, *, field: str = "The name", max_chars: int = MAX_NAME_CHARS) -> str:
    """A required single-line name (platform, API key, job) that shows as what it is
    (`display_unsafe`)."""
    check_text(value, field=field, max_chars=max_chars, required=True)
    unsafe = display_unsafe(value)
    if unsafe is not None:
        raise UsageError(
            f"{field} contains {unsafe} ({shown(value)}): a name must show as what it is, so "
            "invisible characters and text-direction controls are not allowed. Remove it."
        )
    return value


# Bidi embeddings/overrides/isolates and marks (Trojan Source, CVE-2021-42574), zero-width
# characters and the BOM: they make a name show as another one, or as nothing.
_DISPLAY_UNSAFE = {
    **{
        chr(c): "a text-direction control" for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))
    },
    **{c: "a text-direction mark" for c in ("\u200e", "\u200f", "\u061c")},
    **{c: "an invisible character" for c in ("\u200b", "\u2060", "\ufeff")},
}
# Zero-width (non-)joiners shape Persian, Indic scripts and emoji sequences: allowed between two
# characters that are not ASCII, refused anywhere else (`pr\u200cod` would show as "prod").
_JOINERS = ("\u200c", "\u200d")


def display_unsafe(value: str) -> str | None:
    """What of `value` would not show as what it is - "a text-direction control U+202E", "an
    invisible character U+200B" - or None. The one rule of every user-given name (docs/security.md
    "Limits"); text from a workspace is shown as it came, never refused."""
    for index, char in enumerate(value):
        kind = _DISPLAY_UNSAFE.get(char)
        if kind is None and char in _JOINERS:
            before = value[index - 1] if index > 0 else " "
            after = value[index + 1] if index + 1 < len(value) else " "
            if before.isascii() or after.isascii():
                kind = "an invisible character"
        if kind is not None:
            return f"{kind} U+{ord(char):04X}"
    return None


def check_description(value: str, *, field: str = "The description") -> str:
    """An optional multi-line description, up to MAX_DESCRIPTION_CHARS."""
    return check_text(value, field=field, max_chars=MAX_DESCRIPTION_CHARS, multiline=True)


def check_parameter_value(name: str, value: str) -> str:
    """A parameter value (override or stored value): multi-line text up to
    MAX_PARAMETER_VALUE_CHARS that a request can carry (`check_parameter_text`). `name` only
    labels the message (it may come from a workspace); the value is never quoted (it may be a
    Secret)."""
    if len(value) > MAX_PARAMETER_VALUE_CHARS:
        raise UsageError(
            f"The value of parameter {shown(name)} is {len(value):,} characters long; the limit "
            f"is {MAX_PARAMETER_VALUE_CHARS:,}. Shorten it."
        )
    return check_parameter_text(value, name=name)


def check_parameter_text(text: str, *, name: str | None = None, what: str = "value") -> str:
    """`text` unchanged if a run may send it, else ParameterTextError naming the parameter and
    the offending character's code point and position (D2; the rule is `first_refused`, with
    tab and line breaks allowed). `what` is "value" or "name"; a value's text is never quoted
    (it may be a secret)."""
    found = first_refused(text, multiline=True)
    if found is None:
        return text
    index, char = found
    kind = (
        "a lone surrogate, which is not valid Unicode text"
        if "\ud800" <= char <= "\udfff"
        else "a control character"
    )
    if what == "name":
        subject = f"The parameter name {shown(text)} holds"
        fix = "Use the parameter's name as the Job defines it."
    else:
        subject = f"Parameter {name!r} has a value that holds" if name else "The value holds"
        fix = (
            "Give the value as plain text (tab and newline are allowed, other control "
            "characters are not)."
        )
    raise ParameterTextError(
        f"{subject} {kind} (U+{ord(char):04X} at character {index + 1}), so it cannot be sent "
        f"to Databricks. {fix}"
    )


def check_parameter_values(values: Mapping[str, str], *, what: str = "run") -> dict[str, str]:
    """An override map as a user gave it: at most MAX_PARAMETERS_PER_RUN entries, each name
    1..MAX_PARAMETER_NAME_CHARS characters (it must then match one of the Job's), each value as
    `check_parameter_value`."""
    if len(values) > MAX_PARAMETERS_PER_RUN:
        raise UsageError(
            f"A {what} may set at most {MAX_PARAMETERS_PER_RUN:,} parameters; "
            f"{len(values):,} were given."
        )
    for name in values:
        # A name only refers to a parameter of the Job (imported from Databricks, so any text):
        # bounded here, matched against the Job's parameters when the run is resolved (D3).
        if not name or len(name) > MAX_PARAMETER_NAME_CHARS:
            raise UsageError(
                f"A parameter name must be 1 to {MAX_PARAMETER_NAME_CHARS} characters; "
                f"got {len(name):,}."
            )
    return {name: check_parameter_value(name, value) for name, value in values.items()}


def check_int64(text: str, *, field: str) -> int:
    """A whole number (optional sign, ASCII digits, whitespace around) within the signed 64-bit
    range MIN_INT64..MAX_INT64; else UsageError. Lengths are compared before int(), so a
    4,000-digit number costs nothing and never hits CPython's int/str conversion limit."""
    digits = text.strip()
    if _INT_TEXT.fullmatch(digits) is None:
        raise UsageError(f"{field} must be a whole number such as 42 or -7; got {shown(text)}.")
    if not fits_int64(digits):
        raise UsageError(
            f"{field} must be between {MIN_INT64} and {MAX_INT64} (a signed 64-bit integer); "
            f"got {shown(text)}."
        )
    return int(digits)


def record_id(text: str) -> int | None:
    """The record id (a Task, a TaskRun, a vault, ...) that `text` spells - ASCII digits,
    whitespace around ignored, from 1 to MAX_INT64 - or None: then `text` is a name. Unicode
    digits ('²', U+0661) and numbers past 64 bits are names too, never a database error."""
    digits = text.strip()
    if _ASCII_DIGITS.fullmatch(digits) is None or not fits_int64(digits):
        return None
    value = int(digits)
    return value if value >= 1 else None


def fits_int64(digits: str) -> bool:
    """Whether `digits` (an optional sign and ASCII digits) is within the signed 64-bit range."""
    sign = -1 if digits.startswith("-") else 1
    magnitude = digits.lstrip("+-").lstrip("0") or "0"
    if len(magnitude) > len(str(MAX_INT64)):
        return False
    return MIN_INT64 <= sign * int(magnitude) <= MAX_INT64


def unique_ids(
    ids: Iterable[str],
    *,
    field: str = "external_ids",
    cap: int = MAX_IMPORT_IDS,
    canonical: Callable[[str], str] | None = None,
) -> list[str]:
    """The ids in first-seen order (trimmed) without repeats, at most `cap` of them, each
    single-line and at most MAX_EXTERNAL_ID_CHARS; else UsageError. Repeats are compared as the
    Job Id they name ("42", " 0042 "), or as text when they name none (each is then refused
    once, by the import). A request that names one job 10,000 times costs one `jobs/get`."""
    seen: dict[object, str] = {}
    for raw in ids:
        text = check_text(raw, field=f"An id in {field}", max_chars=MAX_EXTERNAL_ID_CHARS).strip()
        try:
            identity = canonical(text) if canonical is not None else text
        except PolysyncError:  # not an id any job type accepts: the import says why
            identity = text
        seen.setdefault(identity, text)
        if len(seen) > cap:
            raise UsageError(
                f"{field} names more than {cap:,} distinct jobs; import at most {cap:,} per "
                f"request (or use `all`)."
            )
    return list(seen.values())


def is_env_name(name: str) -> bool:
    """Whether `name` can be an environment variable name for an `env:` reference:
    `[A-Za-z_][A-Za-z0-9_]*`, at most MAX_ENV_NAME_CHARS."""
    return len(name) <= MAX_ENV_NAME_CHARS and _ENV_NAME.fullmatch(name) is not None


def http_url(value: object) -> str | None:
    """`value` trimmed if it is an absolute http(s) URL with a host, no control characters and
    at most MAX_URL_CHARS; else None. What may become a link (`href`, a terminal hyperlink):
    `javascript:`, `data:` and relative URLs never do."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text or len(text) > MAX_URL_CHARS or refused_character(text) is not None:
        return None
    if "\\" in text:
        return None  # browsers read it as "/": the host seen here would not be the one visited
    try:
        parts = urlsplit(text)
        host = parts.hostname
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not host:
        return None
    return text


def same_host(url: str, other: str) -> bool:
    """Whether two http(s) URLs name the same host (case-insensitive, ports ignored)."""
    try:
        return (urlsplit(url).hostname or "") == (urlsplit(other).hostname or "").lower() != ""
    except ValueError:
        return False
