"""What the CLI's watch prints (issue 8 §6): the final status line whatever the timing."""

from __future__ import annotations

import pytest
from rich.console import Console

from polysync.cli.watch import cancel_and_watch, print_outcome
from polysync.domain.access import Actor
from polysync.domain.models import RunStatus
from polysync.domain.records import Run
from polysync.services import Services
from tests.conftest import EmulatorHarness
from tests.integration.conftest import BACKFILL


async def test_cancel_prints_the_final_status_line_when_it_ends_before_the_watch_starts(
    harness: EmulatorHarness, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On a busy machine the cancel sometimes completed before `runs cancel` started watching,
    # and the command printed no status line at all.
    job = await services.get_job(BACKFILL, platform="demo")
    run = await services.execute(job, {})
    await services.engine.step()
    request_cancel = services.cancel

    async def cancel_confirmed_at_once(run_id: int, *, actor: Actor | None = None) -> Run:
        await request_cancel(run_id, actor=actor)
        for _ in range(100):  # a fast engine elsewhere confirms it before this command watches
            harness.advance(5)
            await services.engine.step()
            current = await services.store.get_run(run_id)
            if current.is_terminal:
                return current
        raise AssertionError("the cancel was never confirmed")

    monkeypatch.setattr(services, "cancel", cancel_confirmed_at_once)
    console = Console(record=True, width=200)
    final, _, requested = await cancel_and_watch(
        services, run.id, wait=True, interval_s=0.01, console=console
    )
    print_outcome(final, console)
    assert requested
    assert final.status is RunStatus.CANCELLED
    assert "■ Cancelled" in console.export_text()
