"""Secret references (`env:NAME`, `file:PATH`, `vault://VAULT/SECRET[/VERSION]`): parsed from
settings, resolved only when used.

What a reference may reach is bounded by a `SecretScope` (POLYSYNC_SECRET_ENV_PREFIX,
POLYSYNC_SECRETS_DIR; docs/security.md), and what it resolves to must look like a credential:
one line of printable ASCII without spaces, at most MAX_SECRET_CHARS. No message here ever
contains a secret value, nor an `env:` name that looks like a pasted secret. A `vault://`
reference is read by the scope's `VaultResolver` (polysync.vaults, D15): a registered Secret
Vault, on demand, through a short cache.
"""

from __future__ import annotations

import asyncio
import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pydantic import SecretStr

from polysync.domain.limits import MAX_PATH_CHARS, is_env_name, refused_character
from polysync.domain.models import DataType, Parameter
from polysync.domain.parameters import SECRET_REFERENCE_SCHEMES
from polysync.errors import SecretReferenceError

SCHEMES = SECRET_REFERENCE_SCHEMES

MAX_SECRET_CHARS = 16 * 1024
"""A resolved secret's cap: Entra access tokens and PATs are a few KB at most."""
MAX_SECRET_FILE_BYTES = 64 * 1024
"""How much of a `file:` reference is read; a larger file is refused unread."""

TOKEN_SHAPES = (
    r"\b(?:dapi|dose)[0-9a-f]{16,}(?:-\d+)?\b"  # noqa: S105 - Databricks PATs, OAuth secrets
    r"|\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"  # JWTs
    r"|\bpsk_[A-Za-z0-9_-]{20,}"  # Polysync API keys
)
"""Text shaped like a credential; also what `polysync.databricks.errors.redact` masks."""
_TOKEN_SHAPED = re.compile(TOKEN_SHAPES)
_CREDENTIAL_CHARS = re.compile(r"[\x21-\x7e]+")

VAULT_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
"""A Secret Vault's name in Polysync (the VAULT of `vault://VAULT/...`): 1-63 letters, digits
and dashes, not starting or ending with a dash."""
KEYVAULT_SECRET_NAME = re.compile(r"[0-9A-Za-z-]{1,127}")
"""An Azure Key Vault secret name (Key Vault's own rule)."""
KEYVAULT_VERSION = re.compile(r"[0-9A-Za-z]{1,64}")
"""A secret version (Key Vault's are 32 hexadecimal digits)."""
VAULT_FORMAT = "`vault://VAULT/SECRET` or `vault://VAULT/SECRET/VERSION`"


class VaultResolver(Protocol):
    """Reads `vault://` references (polysync.vaults.VaultSecrets): never on the event loop."""

    async def resolve(self, reference: SecretReference, *, fresh: bool = False) -> str:
        """The secret's value, from a short cache unless `fresh` (a rejected credential).
        SecretReferenceError naming the reference, never the value."""
        ...


@dataclass(frozen=True, slots=True)
class SecretScope:
    """Which references may be resolved: every one by default (a trusted single user).

    `env_prefix`: only variables whose names start with it (POLYSYNC_SECRET_ENV_PREFIX; "" = any).
    `secrets_dir`: only files inside it, symlinks resolved (POLYSYNC_SECRETS_DIR; None = any file
    the process can read); a relative `file:` path is then taken inside it.
    """

    env_prefix: str = ""
    secrets_dir: Path | None = None
    # Who reads `vault://` references (the registered Secret Vaults); None: they cannot be read.
    vaults: VaultResolver | None = field(default=None, compare=False, repr=False)

    @property
    def unrestricted(self) -> bool:
        return not self.env_prefix and self.secrets_dir is None

    def file_path(self, target: str) -> Path:
        """The file a `file:` target names: `~` expanded; relative paths inside `secrets_dir`."""
        path = Path(target).expanduser()
        if self.secrets_dir is not None and not path.is_absolute():
            path = self.secrets_dir / path
        return path

    def check(self, reference: SecretReference, *, resolve_links: bool = False) -> None:
        """SecretReferenceError when `reference` is outside the scope. With `resolve_links`,
        a file's real path (symlinks followed) is checked, as just before it is read."""
        if reference.scheme == "vault":
            return  # bounded by which vaults are registered (polysync.vaults)
        if reference.scheme == "env":
            if self.env_prefix and not reference.target.startswith(self.env_prefix):
                raise SecretReferenceError(
                    f"secret reference {reference} is outside the allowed scope: this server "
                    f"resolves only environment variables starting with {self.env_prefix!r} "
                    "(POLYSYNC_SECRET_ENV_PREFIX)"
                )
            return
        if self.secrets_dir is None:
            return
        root = Path(os.path.realpath(self.secrets_dir))
        path = self.file_path(reference.target)
        real = Path(os.path.realpath(path) if resolve_links else os.path.normpath(path.absolute()))
        if real != root and root not in real.parents:
            raise SecretReferenceError(
                f"secret reference {reference} is outside the allowed scope: this server reads "
                f"secret files only inside {self.secrets_dir} (POLYSYNC_SECRETS_DIR)"
            )


UNRESTRICTED = SecretScope()


@dataclass(frozen=True, slots=True)
class SecretReference:
    """Where a secret lives; the value itself is never held here, so this is safe to log."""

    scheme: str
    target: str
    scope: SecretScope = field(default=UNRESTRICTED, compare=False)

    @classmethod
    def parse(cls, text: str, scope: SecretScope = UNRESTRICTED) -> SecretReference:
        """`env:NAME`, `file:PATH` or `vault://VAULT/SECRET[/VERSION]` (whitespace around
        ignored), within `scope`.

        SecretReferenceError, never quoting `text` unless it is a well-formed reference: an
        unknown scheme, an empty target, an `env:` name that is not `[A-Za-z_][A-Za-z0-9_]*` (at
        most 256 characters) or that looks like a pasted token, a path over 4096 characters or
        with control characters, a vault, secret or version name outside Key Vault's rules, or
        a reference outside `scope`.
        """
        scheme, sep, target = text.strip().partition(":")
        if not sep or scheme not in SCHEMES:
            raise SecretReferenceError(
                f"secret reference {_shown(text)} is not supported: write `env:NAME` to read "
                "environment variable NAME, `file:PATH` to read the file at PATH, or "
                f"{VAULT_FORMAT} to read a secret of a registered Secret Vault"
            )
        target = target.strip()
        if scheme == "vault":
            reference = cls(scheme, _vault_target(target), scope)
            scope.check(reference)
            return reference
        if not target:
            raise SecretReferenceError(
                f"secret reference `{scheme}:` names no {'variable' if scheme == 'env' else 'file'}"
            )
        if scheme == "env" and (not is_env_name(target) or _TOKEN_SHAPED.search(target)):
            raise SecretReferenceError(
                "secret reference `env:...` does not name an environment variable: a name is "
                "letters, digits and underscores, not starting with a digit, at most 256 "
                "characters, and does not look like a token (a secret pasted after `env:` is "
                "refused; the name given is not shown)"
            )
        if scheme == "file" and (
            len(target) > MAX_PATH_CHARS or refused_character(target) is not None
        ):
            raise SecretReferenceError(
                f"secret reference `file:...` is not a usable path: at most {MAX_PATH_CHARS} "
                "characters and no control characters (the path given is not shown)"
            )
        reference = cls(scheme, target, scope)
        scope.check(reference)
        return reference

    def __str__(self) -> str:
        if self.scheme == "vault":
            return f"vault://{self.target}"
        return f"{self.scheme}:{self.target}"

    @property
    def vault_parts(self) -> tuple[str, str, str | None]:
        """(vault, secret, version or None) of a `vault://` reference."""
        vault, secret, *version = self.target.split("/")
        return vault, secret, (version[0] if version else None)

    def resolve(self, environ: Mapping[str, str] | None = None) -> SecretStr:
        """Read the secret now (rotations are picked up on the next resolve). Blocking for
        `file:` (a small regular file is read): async callers use `resolve_async`.

        SecretReferenceError when the variable is unset, the file is not a readable regular file
        of at most MAX_SECRET_FILE_BYTES, it is outside the scope, or the value is not one line
        of printable ASCII without spaces (1..MAX_SECRET_CHARS characters, whitespace around
        ignored). The value is never part of the message. A `vault://` reference is read only
        by `resolve_async` (a network call).
        """
        if self.scheme == "vault":
            raise SecretReferenceError(
                f"secret reference {self} is read from its vault only where Polysync awaits it "
                "(dispatch, Test connectivity); this caller cannot"
            )
        if self.scheme == "env":
            value = (os.environ if environ is None else environ).get(self.target)
            if value is None:
                raise SecretReferenceError(
                    f"secret reference {self}: environment variable {self.target} is not set"
                )
        else:
            value = self._read_file()
        return SecretStr(self._checked(value))

    async def resolve_async(
        self, environ: Mapping[str, str] | None = None, *, fresh: bool = False
    ) -> SecretStr:
        """`resolve` without blocking the event loop: a `file:` is read in a worker thread, a
        `vault://` by the scope's VaultResolver (from its short cache unless `fresh`)."""
        if self.scheme == "vault":
            resolver = self.scope.vaults
            if resolver is None:
                raise SecretReferenceError(
                    f"secret reference {self}: this process has no Secret Vaults to read it from "
                    "(vault:// references are read by the Polysync server, engine and CLI)"
                )
            return SecretStr(self._checked(await resolver.resolve(self, fresh=fresh)))
        if self.scheme == "env":
            return self.resolve(environ)
        return await asyncio.to_thread(self.resolve, environ)

    def _read_file(self) -> str:
        self.scope.check(self, resolve_links=True)
        path = self.scope.file_path(self.target)
        try:
            data = read_regular_file(path, max_bytes=MAX_SECRET_FILE_BYTES)
        except OSError as exc:
            raise SecretReferenceError(
                f"secret reference {self}: cannot read {path} "
                f"({exc.strerror or type(exc).__name__})"
            ) from exc
        except ValueError as exc:
            raise SecretReferenceError(f"secret reference {self}: {path} {exc}") from exc
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise SecretReferenceError(
                f"secret reference {self}: {path} is not UTF-8 text"
            ) from None

    def _checked(self, value: str) -> str:
        # Files and variables commonly end with a newline that is not part of the secret.
        value = value.strip()
        if not value:
            raise SecretReferenceError(f"secret reference {self} resolves to an empty value")
        if len(value) > MAX_SECRET_CHARS:
            raise SecretReferenceError(
                f"secret reference {self} resolves to {len(value):,} characters, more than a "
                f"credential has (at most {MAX_SECRET_CHARS:,}): does it name the right "
                f"{self._what()}? The value is not shown."
            )
        if _CREDENTIAL_CHARS.fullmatch(value) is None:
            raise SecretReferenceError(
                f"secret reference {self} resolves to something that is not a credential: "
                f"{_what_is_wrong(value)}, and a token or client secret is one line of printable "
                f"ASCII without spaces. Does it name the right {self._what()}? The value is not "
                "shown."
            )
        return value

    def _what(self) -> str:
        return {"env": "variable", "file": "file"}.get(self.scheme, "secret")


def _vault_target(target: str) -> str:
    """`//VAULT/SECRET[/VERSION]` -> `VAULT/SECRET[/VERSION]` (SecretReferenceError otherwise,
    naming which part is wrong; the text is not quoted, as it may be a pasted secret)."""
    if not target.startswith("//"):
        raise SecretReferenceError(
            f"secret reference `vault:...` is not {VAULT_FORMAT} (the text given is not shown)"
        )
    parts = target[2:].split("/")
    if len(parts) not in (2, 3):
        raise SecretReferenceError(
            f"secret reference `vault:...` is not {VAULT_FORMAT}: it has {len(parts)} part(s) "
            "after `vault://` (the text given is not shown)"
        )
    vault, secret, *version = parts
    if any(_TOKEN_SHAPED.search(part) for part in parts):
        raise SecretReferenceError(
            "secret reference `vault://...` holds something shaped like a token: a secret pasted "
            "into a reference is refused (the text given is not shown)"
        )
    if VAULT_NAME.fullmatch(vault) is None:
        raise SecretReferenceError(
            "secret reference `vault://...`: the vault name is not a Secret Vault's name (1-63 "
            "letters, digits and dashes, not starting or ending with a dash; the text given is "
            "not shown)"
        )
    if KEYVAULT_SECRET_NAME.fullmatch(secret) is None:
        raise SecretReferenceError(
            f"secret reference `vault://{vault}/...`: the secret name is not a Key Vault secret "
            "name (1-127 letters, digits and dashes; the text given is not shown)"
        )
    if version and KEYVAULT_VERSION.fullmatch(version[0]) is None:
        raise SecretReferenceError(
            f"secret reference `vault://{vault}/{secret}/...`: the version is not a secret "
            "version (1-64 letters and digits, e.g. Key Vault's 32 hexadecimal digits; the text "
            "given is not shown)"
        )
    return "/".join(parts)


def _what_is_wrong(value: str) -> str:
    refused = refused_character(value)
    if refused is not None:
        return f"it contains {refused}"
    if " " in value:
        return "it contains a space"
    return "it contains a character outside printable ASCII"


def read_regular_file(path: Path, *, max_bytes: int) -> bytes:
    """The bytes of the regular file at `path`, if it holds at most `max_bytes`.

    Opened non-blocking, so a FIFO or a device never blocks: anything that is not a regular file
    (FIFO, socket, /dev/zero, a directory) raises ValueError, as does a file over `max_bytes`
    (read only that far, so /proc files with no size are bounded too). OSError when it cannot be
    opened. Blocking I/O on a regular file: call it off the event loop.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    descriptor = os.open(path, flags)
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise ValueError("is not a regular file")
        chunks: list[bytes] = []
        size = 0
        while size <= max_bytes:
            chunk = os.read(descriptor, max_bytes + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(descriptor)
    if size > max_bytes:
        raise ValueError(f"is larger than {max_bytes:,} bytes")
    return b"".join(chunks)


def _shown(text: str) -> str:
    """How to name a bad reference: by its scheme only: a secret pasted by mistake stays hidden."""
    scheme, sep, _ = text.strip().partition(":")
    if sep and scheme.isalpha() and len(scheme) <= 10:
        return f"with scheme {scheme!r}"
    return "(value not shown)"


def resolve_secret(
    reference: str, environ: Mapping[str, str] | None = None, scope: SecretScope = UNRESTRICTED
) -> SecretStr:
    """Parse `reference` and read the secret it points to (blocking for `file:`)."""
    return SecretReference.parse(reference, scope).resolve(environ)


async def reveal_parameters(
    parameters: Sequence[Parameter],
    values: Mapping[str, str],
    scope: SecretScope = UNRESTRICTED,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """`values` (a run's `job_parameters`) with each Secret parameter's reference replaced by the
    secret it names, read now: only when run-now is sent, never stored (D2; docs/security.md).
    SecretReferenceError naming the parameter when a reference cannot be read or is outside
    `scope`; the secret is never part of a message."""
    secret = {p.name for p in parameters if p.is_job_level and p.data_type is DataType.SECRET}
    revealed = dict(values)
    for name in sorted(secret & values.keys()):
        try:
            value = await SecretReference.parse(values[name], scope).resolve_async(environ)
        except SecretReferenceError as exc:
            raise SecretReferenceError(f"Secret parameter {name!r}: {exc.message}") from None
        revealed[name] = value.get_secret_value()
    return revealed
