"""Contention profiles with engine processes killed with -9 (issue 13, D14), on PostgreSQL.

Bounded: 30 runs under a global concurrency profile of 5 and a global rate profile of 10 per 3 s,
two `polysync engine` processes, two SIGKILLs. `benchmarks/contention_chaos.py` runs 300 runs and
prints the figures. Every count that must be zero is asserted; the figures are only reported.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.acceptance.conftest import Emulator
from tests.acceptance.contention_chaos import ContentionChaos, ContentionChaosConfig, lines

CONFIG = ContentionChaosConfig(runs=30, window_s=3.0, kills=2, queue_size_limit=22)


@pytest.mark.postgres
async def test_profiles_hold_across_engines_killed_with_sigkill(
    emulator: Emulator, postgres_url: str, tmp_path: Path
) -> None:
    report = await ContentionChaos(emulator, postgres_url, tmp_path, CONFIG).run()
    summary = "\n".join(lines(report, CONFIG))
    print(f"\ncontention chaos figures\n{summary}")  # shown with -s
    assert report.runs == CONFIG.runs, summary
    assert report.kills == CONFIG.kills, summary
    # Each run ended Success or with the profile's own message (wrong_end below is 0), and the
    # queue of "cap" (22 places for 30 runs) leaves most of them room to succeed.
    assert report.succeeded + report.rejected + report.timed_out == CONFIG.runs, summary
    assert report.succeeded >= CONFIG.max_concurrent, summary
    assert report.max_active >= 1, summary
    for name, count in report.zero_counts().items():
        assert count == 0, f"{name}: {getattr(report, name)}\n{summary}"
