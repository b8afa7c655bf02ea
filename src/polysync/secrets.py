"""Secret references (`env:NAME`, `file:PATH`): parsed from settings, resolved only when used."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from polysync.errors import SecretReferenceError

SCHEMES = ("env", "file")


@dataclass(frozen=True, slots=True)
class SecretReference:
    """Where a secret lives; the value itself is never held here, so this is safe to log."""

    scheme: str
    target: str

    @classmethod
    def parse(cls, text: str) -> SecretReference:
        scheme, sep, target = text.strip().partition(":")
        if not sep or scheme not in SCHEMES:
            raise SecretReferenceError(
                f"secret reference {_shown(text)} is not supported: write `env:NAME` to read "
                "environment variable NAME, or `file:PATH` to read the file at PATH"
            )
        if not target.strip():
            raise SecretReferenceError(
                f"secret reference `{scheme}:` names no {'variable' if scheme == 'env' else 'file'}"
            )
        return cls(scheme, target.strip())

    def __str__(self) -> str:
        return f"{self.scheme}:{self.target}"

    def resolve(self, environ: Mapping[str, str] | None = None) -> SecretStr:
        """Read the secret now (rotations are picked up on the next resolve)."""
        if self.scheme == "env":
            value = (os.environ if environ is None else environ).get(self.target)
            if value is None:
                raise SecretReferenceError(
                    f"secret reference {self}: environment variable {self.target} is not set"
                )
        else:
            path = Path(self.target).expanduser()
            try:
                value = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise SecretReferenceError(
                    f"secret reference {self}: cannot read {path} "
                    f"({exc.strerror or type(exc).__name__})"
                ) from exc
            except UnicodeDecodeError as exc:
                raise SecretReferenceError(
                    f"secret reference {self}: {path} is not UTF-8 text"
                ) from exc
        # Files and variables commonly end with a newline that is not part of the secret.
        value = value.strip()
        if not value:
            raise SecretReferenceError(f"secret reference {self} resolves to an empty value")
        return SecretStr(value)


def _shown(text: str) -> str:
    """How to name a bad reference: by its scheme only: a secret pasted by mistake stays hidden."""
    scheme, sep, _ = text.strip().partition(":")
    if sep and scheme.isalpha() and len(scheme) <= 10:
        return f"with scheme {scheme!r}"
    return "(value not shown)"


def resolve_secret(reference: str, environ: Mapping[str, str] | None = None) -> SecretStr:
    """Parse `reference` and read the secret it points to."""
    return SecretReference.parse(reference).resolve(environ)
