"""The plug-in redesign's rules (issue 11), read from the source tree with `ast`:

- adapters (API routes, web pages, CLI) never write the store: every use case goes through
  `polysync.services`, so validation and conflicts live once;
- the engine, store and adapters never name a concrete job type (the registry builds them);
- the tolerant decoders are the only parsing layer on the product path: nothing outside the
  client calls a client method that reads an answer into a strict wire model.
"""

from __future__ import annotations

import ast
import inspect
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest

import polysync
from polysync.databricks.client import DatabricksClient
from polysync.databricks.models import WireModel
from polysync.store.sql_store import SqlStore

SRC = Path(polysync.__file__).parent
ADAPTERS = ("api", "web", "cli")
# The API-key use cases (draw, hash, revoke): called by services only (checked below).
KEY_USE_CASES = SRC / "api" / "keys.py"
READ_PREFIXES = ("get_", "list_", "find_", "count_", "events_", "last_", "job_", "run_", "poll_")
READS = {"ping", "write_problem", "aclose", "task_run_of_run"}
# Helpers that take the store to read it (lookups, key checks, metrics); a new helper handed the
# store must be added here, after checking that it only reads.
STORE_READERS = {
    "isinstance",
    "find_platform",
    "find_job",
    "verify_api_key",
    "render_metrics",
    "ApiContext",
    "api_key_admits",
    "Authenticator",
}


def store_writes() -> set[str]:
    """Every public store method that is not a read: a new write method is covered unasked."""
    return {
        name
        for name, member in inspect.getmembers(SqlStore, inspect.iscoroutinefunction)
        if not name.startswith("_") and not name.startswith(READ_PREFIXES) and name not in READS
    }


def modules(*packages: str) -> Iterator[tuple[Path, ast.Module]]:
    for package in packages:
        for path in sorted((SRC / package).rglob("*.py")):
            yield path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def names_store(node: ast.expr) -> bool:
    """`store`, `x.store`, `x.y.store`, `self._store`: an expression that is the store."""
    if isinstance(node, ast.Name):
        return node.id in {"store", "_store"}
    return isinstance(node, ast.Attribute) and node.attr in {"store", "_store"}


def test_the_write_list_knows_the_stores_writes() -> None:
    writes = store_writes()
    assert {"add_platform", "save_job", "create_run", "request_cancel", "add_api_key"} <= writes
    assert "get_run" not in writes
    assert "list_jobs" not in writes


def test_adapters_never_write_the_store() -> None:
    writes = store_writes()
    found = []
    for path, tree in modules(*ADAPTERS):
        if path == KEY_USE_CASES:
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in writes and names_store(func.value):
                found.append(f"{path.relative_to(SRC)}:{node.lineno} store.{func.attr}(...)")
            # Handing the store to a helper is a write in disguise (what the CLI's API-key
            # commands did); reads go through `services` or the store's read methods.
            for argument in [*node.args, *(k.value for k in node.keywords)]:
                callee = func.id if isinstance(func, ast.Name) else ast.unparse(func)
                if names_store(argument) and callee not in STORE_READERS:
                    found.append(f"{path.relative_to(SRC)}:{node.lineno} passes the store")
    assert not found, "adapters must call services, not write the store:\n" + "\n".join(found)


def test_the_api_key_use_cases_are_called_by_services_only() -> None:
    callers = []
    for path, tree in modules(*ADAPTERS, "engine", "store"):
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "polysync.api.keys":
                used = {alias.name for alias in node.names} & {"create_api_key", "revoke_api_key"}
                if used and path != SRC / "api" / "__init__.py":  # re-exported there
                    callers.append(f"{path.relative_to(SRC)}:{node.lineno} {sorted(used)}")
    assert not callers, "\n".join(callers)


def test_engine_store_and_adapters_name_no_concrete_job_type() -> None:
    concrete = {
        "Databricks Workflow",
        "Databricks Job",
        "Databricks Notebook",
        "Databricks Pipeline",
    }
    found = []
    for path, tree in modules("engine", "store", *ADAPTERS):
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                ("polysync.jobtypes.databricks", "polysync.jobtypes.registry")
            ):
                found.append(f"{path.relative_to(SRC)}:{node.lineno} imports {node.module}")
            if isinstance(node, ast.Constant) and node.value in concrete:
                found.append(f"{path.relative_to(SRC)}:{node.lineno} names {node.value!r}")
    assert not found, "\n".join(found)


def wire_model_methods() -> set[str]:
    """Client methods whose answer is read into a strict wire model (pydantic)."""
    strict = set()
    for name, member in inspect.getmembers(DatabricksClient, inspect.isfunction):
        if name.startswith("_"):
            continue
        hints = typing.get_type_hints(member)
        returned = hints.get("return")
        shapes = [returned, *typing.get_args(returned)]
        for shape in shapes:
            for part in [shape, *typing.get_args(shape)]:
                if isinstance(part, type) and issubclass(part, WireModel):
                    strict.add(name)
    return strict


def test_the_wire_model_methods_are_known() -> None:
    assert {
        "get_job",
        "get_run",
        "list_jobs",
        "list_runs",
        "get_run_output",
    } <= wire_model_methods()
    assert "get_run_json" not in wire_model_methods()


@pytest.mark.parametrize("package", ["jobtypes", "engine", "services.py", *ADAPTERS])
def test_the_product_path_reads_answers_with_the_tolerant_decoders(package: str) -> None:
    strict = wire_model_methods()
    paths = [SRC / package] if package.endswith(".py") else sorted((SRC / package).rglob("*.py"))
    found = []
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in strict
                and isinstance(node.func.value, ast.Attribute | ast.Name)
                and "client" in ast.unparse(node.func.value)
            ):
                found.append(f"{path.relative_to(SRC)}:{node.lineno} {ast.unparse(node.func)}")
            if isinstance(node, ast.ImportFrom) and node.module == "polysync.databricks.models":
                found.append(f"{path.relative_to(SRC)}:{node.lineno} imports the wire models")
    assert not found, "\n".join(found)
