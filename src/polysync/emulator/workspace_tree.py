"""The workspace file tree of the Workspace API: directories, notebooks (with their source) and files.

Shapes and errors follow sdk-py `service/workspace.py` (`ObjectInfo`, `ObjectType`, `Language`,
`ExportFormat`, `WorkspaceAPI.delete/export/get_status/import_/list/mkdirs` docstrings: errors
`RESOURCE_DOES_NOT_EXIST`, `RESOURCE_ALREADY_EXISTS`, `DIRECTORY_NOT_EMPTY`,
`MAX_NOTEBOOK_SIZE_EXCEEDED` over 10 MB). The message texts ("Path (/x) doesn't exist.") are those
workspaces answer with; the HTTP statuses are 404 for a missing path and 400 otherwise.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from polysync.emulator.errors import INVALID_PARAMETER_VALUE, ApiError
from polysync.emulator.spec import TaskScript

RESOURCE_DOES_NOT_EXIST = "RESOURCE_DOES_NOT_EXIST"
RESOURCE_ALREADY_EXISTS = "RESOURCE_ALREADY_EXISTS"
DIRECTORY_NOT_EMPTY = "DIRECTORY_NOT_EMPTY"
MAX_NOTEBOOK_SIZE_EXCEEDED = "MAX_NOTEBOOK_SIZE_EXCEEDED"
MAX_IMPORT_BYTES = 10 * 1024 * 1024  # import content limit (sdk-py `WorkspaceAPI.import_`)

LANGUAGES = ("PYTHON", "SQL", "SCALA", "R")
# First line of a notebook exported in SOURCE format, and the file_type of the export.
SOURCE_HEADER = {
    "PYTHON": "# Databricks notebook source",
    "SQL": "-- Databricks notebook source",
    "SCALA": "// Databricks notebook source",
    "R": "# Databricks notebook source",
}
FILE_TYPE = {"PYTHON": "py", "SQL": "sql", "SCALA": "scala", "R": "r"}
EXTENSION_LANGUAGE = {".py": "PYTHON", ".sql": "SQL", ".scala": "SCALA", ".r": "R"}


@dataclass(slots=True)
class WorkspaceObject:
    """One object of the tree. `content` is a notebook's source without its header line."""

    path: str
    object_type: str  # DIRECTORY | NOTEBOOK | FILE
    object_id: int
    created_at_ms: int
    modified_at_ms: int
    language: str | None = None
    content: bytes = b""
    script: TaskScript | None = None  # how a run of this notebook behaves

    def info(self) -> dict[str, object]:
        """`ObjectInfo` as workspace/list and workspace/get-status render it."""
        body: dict[str, object] = {
            "object_type": self.object_type,
            "path": self.path,
            "object_id": self.object_id,
            "resource_id": str(self.object_id),
        }
        if self.object_type != "DIRECTORY":
            body["created_at"] = self.created_at_ms
            body["modified_at"] = self.modified_at_ms
        if self.language is not None:
            body["language"] = self.language
        if self.object_type == "FILE":
            body["size"] = len(self.content)
        return body

    def source(self) -> bytes:
        """The SOURCE export: a notebook's header line, then its cells; a file's bytes as they are."""
        if self.object_type != "NOTEBOOK" or self.language is None:
            return self.content
        return SOURCE_HEADER[self.language].encode() + b"\n" + self.content


def normalize_path(path: object) -> str:
    """An absolute workspace path without a trailing slash; 400 for anything else."""
    if not isinstance(path, str) or not path:
        raise ApiError(400, INVALID_PARAMETER_VALUE, "Missing required field: path")
    if not path.startswith("/"):
        raise ApiError(400, INVALID_PARAMETER_VALUE, f"Path ({path}) doesn't start with '/'")
    parts = [p for p in path.split("/") if p]
    if any(p in (".", "..") for p in parts) or any(ord(c) < 32 for c in path):
        raise ApiError(400, INVALID_PARAMETER_VALUE, f"Invalid path: {path!r}")
    return "/" + "/".join(parts)


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"


def not_found(path: str) -> ApiError:
    return ApiError(404, RESOURCE_DOES_NOT_EXIST, f"Path ({path}) doesn't exist.")


def strip_header(language: str, text: bytes) -> bytes:
    """The source without a leading "Databricks notebook source" line, if it has one."""
    header = SOURCE_HEADER[language].encode()
    if text.startswith(header):
        return text[len(header) :].lstrip(b"\r\n")
    return text


class WorkspaceTree:
    """All workspace objects by path; `/` always exists, as do `/Users`, `/Shared` and `/Repos`."""

    def __init__(self, now_ms: Callable[[], int], *, seed: int) -> None:
        self._now_ms = now_ms
        self._rng = random.Random(seed ^ 0x5EED)
        self._objects: dict[str, WorkspaceObject] = {}
        for path in ("/", "/Users", "/Shared", "/Repos"):
            self._add(path, "DIRECTORY")

    def _new_id(self) -> int:
        while True:
            object_id = self._rng.randrange(10**14, 10**16)
            if all(o.object_id != object_id for o in self._objects.values()):
                return object_id

    def _add(
        self, path: str, object_type: str, language: str | None = None, content: bytes = b""
    ) -> WorkspaceObject:
        now = self._now_ms()
        obj = WorkspaceObject(path, object_type, self._new_id(), now, now, language, content)
        self._objects[path] = obj
        return obj

    # ------------------------------------------------------------------ reads
    def get(self, path: object) -> WorkspaceObject:
        clean = normalize_path(path)
        obj = self._objects.get(clean)
        if obj is None:
            raise not_found(clean)
        return obj

    def children(self, path: object) -> list[WorkspaceObject]:
        """The objects directly inside a directory (a notebook or file lists as itself)."""
        obj = self.get(path)
        if obj.object_type != "DIRECTORY":
            return [obj]
        prefix = obj.path.rstrip("/") + "/"
        return sorted(
            (
                o
                for p, o in self._objects.items()
                if p.startswith(prefix) and p != obj.path and "/" not in p[len(prefix) :]
            ),
            key=lambda o: o.path,
        )

    def walk(self) -> Iterator[WorkspaceObject]:
        yield from sorted(self._objects.values(), key=lambda o: o.path)

    def script_for(self, path: str) -> TaskScript | None:
        """The script of the notebook at `path` (with or without a leading `/Workspace`)."""
        for candidate in (path, path.removeprefix("/Workspace")):
            obj = self._objects.get(candidate)
            if obj is not None and obj.script is not None:
                return obj.script
        return None

    # ------------------------------------------------------------------ writes
    def mkdirs(self, path: object) -> None:
        """Create a directory and its parents; an existing directory is fine; a non-directory on
        the way is 400 `RESOURCE_ALREADY_EXISTS`."""
        clean = normalize_path(path)
        current = ""
        for part in [p for p in clean.split("/") if p]:
            current += "/" + part
            existing = self._objects.get(current)
            if existing is None:
                self._add(current, "DIRECTORY")
            elif existing.object_type != "DIRECTORY":
                raise ApiError(400, RESOURCE_ALREADY_EXISTS, f"Path ({current}) already exists.")

    def put_notebook(
        self,
        path: object,
        language: str,
        source: str | bytes,
        *,
        overwrite: bool = True,
        script: TaskScript | None = None,
    ) -> WorkspaceObject:
        """Store a notebook (creating parent directories: used to seed workspaces)."""
        clean = normalize_path(path)
        self.mkdirs(_parent(clean))
        raw = source.encode("utf-8") if isinstance(source, str) else source
        obj = self._write(clean, "NOTEBOOK", language, strip_header(language, raw), overwrite)
        if script is not None:
            obj.script = script
        return obj

    def put_file(self, path: object, content: bytes, *, overwrite: bool = True) -> WorkspaceObject:
        clean = normalize_path(path)
        self.mkdirs(_parent(clean))
        return self._write(clean, "FILE", None, content, overwrite)

    def import_object(
        self,
        path: object,
        content: bytes,
        *,
        fmt: str,
        language: str | None,
        overwrite: bool,
    ) -> WorkspaceObject:
        """`workspace/import`: SOURCE needs a language (or AUTO with a known extension); RAW makes
        a file. The parent directory must exist (404 `RESOURCE_DOES_NOT_EXIST`)."""
        clean = normalize_path(path)
        if len(content) > MAX_IMPORT_BYTES:
            raise ApiError(
                400,
                MAX_NOTEBOOK_SIZE_EXCEEDED,
                f"The content of {clean} is {len(content)} bytes; at most {MAX_IMPORT_BYTES} may be imported.",
            )
        parent = self._objects.get(_parent(clean))
        if parent is None or parent.object_type != "DIRECTORY":
            raise ApiError(
                404,
                RESOURCE_DOES_NOT_EXIST,
                f"The parent folder ({_parent(clean)}) does not exist.",
            )
        if fmt == "RAW":
            return self._write(clean, "FILE", None, content, overwrite)
        if fmt == "AUTO":
            suffix = "." + clean.rsplit(".", 1)[1].lower() if "." in clean.rsplit("/", 1)[1] else ""
            guessed = EXTENSION_LANGUAGE.get(suffix)
            if guessed is None or not content.startswith(SOURCE_HEADER[guessed].encode()):
                return self._write(clean, "FILE", None, content, overwrite)
            clean = clean[: -len(suffix)]  # an AUTO-imported notebook drops its extension
            language = guessed
        elif fmt != "SOURCE":
            raise ApiError(
                400,
                INVALID_PARAMETER_VALUE,
                f"Import format {fmt} is not supported by this emulator; use SOURCE, AUTO or RAW.",
            )
        if language is None:
            raise ApiError(
                400,
                INVALID_PARAMETER_VALUE,
                "The language field is required when importing a notebook in SOURCE format.",
            )
        if language not in LANGUAGES:
            raise ApiError(
                400,
                INVALID_PARAMETER_VALUE,
                f"Invalid language {language!r}: expected one of {', '.join(LANGUAGES)}.",
            )
        return self._write(clean, "NOTEBOOK", language, strip_header(language, content), overwrite)

    def _write(
        self, path: str, object_type: str, language: str | None, content: bytes, overwrite: bool
    ) -> WorkspaceObject:
        existing = self._objects.get(path)
        if existing is not None:
            if not overwrite or existing.object_type == "DIRECTORY":
                raise ApiError(400, RESOURCE_ALREADY_EXISTS, f"Path ({path}) already exists.")
            existing.object_type, existing.language, existing.content = (
                object_type,
                language,
                content,
            )
            existing.modified_at_ms = self._now_ms()
            return existing
        return self._add(path, object_type, language, content)

    def delete(self, path: object, *, recursive: bool) -> None:
        """`workspace/delete`; a non-empty directory needs `recursive` (400 `DIRECTORY_NOT_EMPTY`)."""
        obj = self.get(path)
        if obj.path == "/":
            raise ApiError(400, INVALID_PARAMETER_VALUE, "The root folder cannot be deleted.")
        inside = [p for p in self._objects if p.startswith(obj.path + "/")]
        if inside and not recursive:
            raise ApiError(400, DIRECTORY_NOT_EMPTY, f"Folder ({obj.path}) is not empty.")
        for p in [*inside, obj.path]:
            del self._objects[p]
