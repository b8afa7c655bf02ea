"""Acceptance tests drive the installed `polysync` command in subprocesses, as a user would."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "demo: runs the whole `polysync demo` (a few seconds; deselect with -m 'not demo')",
    )
