"""The Databricks Pipeline job type's decoding (D11): the update state table row by row, error
events into a message, RunIds and pipeline ids; and the job-type registry."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from polysync.domain.models import RunStatus
from polysync.domain.records import Platform, utc
from polysync.errors import InvalidExternalIdError, UsageError
from polysync.jobtypes.base import JobTypeRegistry
from polysync.jobtypes.databricks.pipeline import (
    UPDATE_STATES,
    check_pipeline_id,
    decode_update,
    decode_updates_page,
    error_message,
    split_run_id,
)
from polysync.jobtypes.registry import default_registry

WS = "https://adb-1.1.azuredatabricks.net"
PID = "6f1c2b7e-3a4d-4e5f-8a9b-0c1d2e3f4a5b"
RUN_ID = f"{PID}:1a2b3c"


@pytest.mark.parametrize(
    ("state", "status"),
    [
        ("QUEUED", RunStatus.STARTING),
        ("CREATED", RunStatus.STARTING),
        ("WAITING_FOR_RESOURCES", RunStatus.STARTING),
        ("INITIALIZING", RunStatus.STARTING),
        ("RESETTING", RunStatus.STARTING),
        ("SETTING_UP_TABLES", RunStatus.STARTING),
        ("RUNNING", RunStatus.RUNNING),
        ("STOPPING", RunStatus.RUNNING),
        ("COMPLETED", RunStatus.SUCCESS),
        ("FAILED", RunStatus.FAILED),
        ("CANCELED", RunStatus.CANCELLED),
    ],
)
def test_the_update_state_table(state: str, status: RunStatus) -> None:
    snapshot = decode_update({"update": {"state": state}}, RUN_ID, WS)
    assert snapshot.status is status
    assert snapshot.life_cycle_state == state
    assert snapshot.warnings == ()
    assert snapshot.run_page_url == f"{WS}/#joblist/pipelines/{PID}/updates/1a2b3c"


def test_the_table_covers_exactly_the_documented_states() -> None:
    assert len(UPDATE_STATES) == 11


@pytest.mark.parametrize(
    "answer",
    [{}, {"update": None}, {"update": {"state": "PAUSED"}}, {"update": {"state": 3}}, {"x": []}],
)
def test_anything_else_is_unknown_with_a_warning(answer: dict[str, Any]) -> None:
    snapshot = decode_update(answer, RUN_ID, WS)
    assert snapshot.status is RunStatus.UNKNOWN
    assert not snapshot.is_terminal
    assert len(snapshot.warnings) == 1
    assert "keeps polling" in snapshot.warnings[0]


@given(
    st.recursive(
        st.none() | st.integers() | st.text(), lambda c: st.lists(c) | st.dictionaries(st.text(), c)
    )
)
def test_decoding_never_raises(answer: object) -> None:
    snapshot = decode_update({"update": answer}, RUN_ID, WS)
    assert isinstance(snapshot.status, RunStatus)
    message = error_message([answer] if isinstance(answer, dict) else [], "1a2b3c")
    assert isinstance(message, str)


def test_error_events_oldest_first_with_their_exceptions_and_only_this_update() -> None:
    events = [  # newest first, as the API answers
        {
            "level": "ERROR",
            "message": "Update 1a2b3c is FAILED.",
            "origin": {"update_id": "1a2b3c"},
            "error": {
                "exceptions": [{"class_name": "org.x.AnalysisException", "message": "no table"}]
            },
        },
        {"level": "ERROR", "message": "Flow 'silver' failed.", "origin": {"update_id": "1a2b3c"}},
        {"level": "ERROR", "message": "An older update failed.", "origin": {"update_id": "zzz"}},
        {"level": "INFO", "message": "Update 1a2b3c is RUNNING."},
    ]
    assert error_message(events, "1a2b3c") == (
        "Flow 'silver' failed.\nUpdate 1a2b3c is FAILED. org.x.AnalysisException: no table"
    )


def test_run_ids_and_pipeline_ids() -> None:
    assert split_run_id(RUN_ID) == (PID, "1a2b3c")
    for bad in ("", PID, f"{PID}:", "not-a-pipeline:1", f"{PID}:a/b", f"{PID}:{'x' * 65}"):
        with pytest.raises(UsageError):
            split_run_id(bad)
    assert check_pipeline_id(f"  {PID.upper()} ") == PID
    for bad in ("", "123", PID + "0", "../" + PID[3:]):
        with pytest.raises(InvalidExternalIdError, match="pipeline_id"):
            check_pipeline_id(bad)


def platform(provider: str = "azure-databricks") -> Platform:
    return Platform(1, "p", provider, WS, {}, None, "", {}, utc(0), utc(0))


def test_the_registry_builds_each_type_and_asks_every_discovering_one() -> None:
    registry = default_registry()
    assert registry.names == (
        "Databricks Workflow",
        "Databricks Job",
        "Databricks Notebook",
        "Databricks Pipeline",
    )
    client = object()
    for name in registry.names:
        assert registry.create(name, platform(), client).name == name
    discovering = [t.name for t in registry.discoverers(platform(), client)]
    # Databricks Job is discovered by Databricks Workflow (one jobs/list classifies both, D5).
    assert discovering == ["Databricks Workflow", "Databricks Notebook", "Databricks Pipeline"]
    assert registry.discoverers(platform("another-cloud"), client) == []
    with pytest.raises(UsageError, match="not known"):
        registry.create("Databricks Dashboard", platform(), client)


def test_a_registry_refuses_duplicates_and_unknown_discoverers() -> None:
    registry = JobTypeRegistry()
    registry.register("A", "p", lambda platform, client: client)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("A", "p", lambda platform, client: client)
    with pytest.raises(ValueError, match="must be registered before"):
        registry.register("B", "p", lambda platform, client: client, discovered_by="C")


def test_a_page_of_updates_keeps_ours_only() -> None:
    ours = {f"{PID}:u2", f"{PID}:u9"}
    page = {
        "updates": [
            {"update_id": "u3", "state": "RUNNING"},
            {"update_id": "u2", "state": "COMPLETED", "creation_time": 5},
            {"update_id": 2, "state": "RUNNING"},
            "junk",
        ]
    }
    found = decode_updates_page(page, PID, ours, WS)
    assert set(found) == {f"{PID}:u2"}
    assert found[f"{PID}:u2"].status is RunStatus.SUCCESS
    assert decode_updates_page({"updates": "none"}, PID, ours, WS) == {}


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(
    st.dictionaries(
        st.sampled_from(["updates", "next_page_token", "x"]),
        JSON | st.lists(st.dictionaries(st.sampled_from(["update_id", "state"]), JSON)),
    )
)
def test_a_page_of_updates_never_raises(answer: dict[str, Any]) -> None:
    found = decode_updates_page(answer, PID, {f"{PID}:u1", f"{PID}:None"}, WS)
    assert set(found) <= {f"{PID}:u1"}
