"""Chaos (issue 8): engines killed with -9, API faults, database cuts, two workers on PostgreSQL.

Bounded (under a minute of chaos, then the runs settle); `benchmarks/chaos.py` runs it longer and
prints the figures. Every count that must be zero is asserted; the figures are only reported.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.acceptance.chaos import Chaos, ChaosConfig, lines
from tests.acceptance.conftest import Emulator


@pytest.mark.postgres
async def test_chaos_loses_no_run_starts_none_twice_and_leaves_none_stuck(
    emulator: Emulator, postgres_url: str, tmp_path: Path
) -> None:
    report = await Chaos(emulator, postgres_url, tmp_path, ChaosConfig()).run()
    summary = "\n".join(lines(report))
    print(f"\nchaos figures\n{summary}")  # shown with -s
    assert report.runs >= ChaosConfig().runs // 2, summary
    assert report.kills >= 1, summary
    assert report.cuts >= 1, summary
    assert report.faults_applied >= 1, summary
    for name, count in report.zero_counts().items():
        assert count == 0, f"{name}: {getattr(report, name)}\n{summary}"
