"""The guard that keeps secrets out of the database: secret-named auth fields hold references."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from polysync.errors import SecretReferenceError, UsageError
from polysync.secrets import SecretReference

SECRET_NAME_PARTS = ("secret", "token", "password")


def is_secret_field(name: str) -> bool:
    lowered = name.lower()
    return any(part in lowered for part in SECRET_NAME_PARTS)


def checked_auth(auth: Mapping[str, Any]) -> dict[str, Any]:
    """`auth` with every secret-named field (at any depth) as a normalised `env:`/`file:` reference.

    Raises UsageError naming the first field that holds anything else; the value is never shown,
    as it may be the secret itself.
    """
    return _checked(auth, prefix="")


def _checked(mapping: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in mapping.items():
        path = f"{prefix}{key}"
        if is_secret_field(str(key)):
            result[key] = None if value is None else _reference(path, value)
        else:
            result[key] = _checked_value(value, path)
    return result


def _checked_value(value: Any, path: str) -> Any:
    if isinstance(value, Mapping):
        return _checked(value, prefix=f"{path}.")
    if isinstance(value, list | tuple):
        return [_checked_value(item, f"{path}[{index}]") for index, item in enumerate(value)]
    return value


def _reference(path: str, value: Any) -> str:
    refused = UsageError(
        f"Auth field {path!r} must be a secret reference such as `env:NAME` (an environment "
        "variable) or `file:PATH` (a file holding the secret), never the secret value itself; "
        "Polysync does not store secrets. The value given is not shown."
    )
    if not isinstance(value, str):
        raise refused
    try:
        return str(SecretReference.parse(value))
    except SecretReferenceError as exc:
        raise refused from exc
