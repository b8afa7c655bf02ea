"""Any text a workspace can send is stored and read back clean, on SQLite and PostgreSQL alike
(H1): NUL and lone surrogates become U+FFFD, everything else is kept as it came."""

from __future__ import annotations

import asyncio
import itertools

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

from polysync.domain.limits import replace_unencodable
from polysync.domain.models import DataType, Parameter, RunStatus
from polysync.engine.ports import Observation
from polysync.store import open_store
from tests.contract.test_store import (
    T0,
    imported,
    new_platform,
    snapshot,
    start,
)

# Any code point, and the ones no encoder can carry, often.
HOSTILE_TEXT = st.lists(
    st.one_of(
        st.characters(),
        st.sampled_from(["\x00", "\ud800", "\udfff", "\ud83d", "\ude00", "\x1b", "\u202e"]),
    ),
    max_size=40,
).map("".join)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=HOSTILE_TEXT)
def test_any_workspace_text_is_stored_and_read_back_clean(database_url: str, text: str) -> None:
    asyncio.run(_round_trip(database_url, text))


_names = itertools.count()


async def _round_trip(url: str, text: str) -> None:
    clean = replace_unencodable(text)
    async with await open_store(url) as store:
        platform = await store.add_platform(new_platform(f"p{next(_names)}"), T0)
        job, _ = await store.upsert_job(
            platform.id,
            imported(
                name=text or "x",
                description=text,
                tags={text: text},
                task_keys=(text,),
                parameters=(Parameter(text or "p", DataType.STRING, default=text),),
            ),
            T0,
        )
        assert job.name == (clean or "x")
        assert job.description == clean
        assert job.tags == {clean: clean}
        assert job.parameters[0].default == clean
        run = await start(store, job)
        ((polled, _),) = await store.record_snapshots(
            [Observation(run.id, snapshot(RunStatus.RUNNING, message=text), T0, None, None)]
        )
        assert polled.message == clean
        failed = await store.record_failure(run.id, text, T0)
        assert failed.message == clean
        assert (await store.run_events(run.id))[-1].message == clean
