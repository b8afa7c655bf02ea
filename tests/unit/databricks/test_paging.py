"""List paging per API version and 2.2 array-page merging (reference §1, §2, §4; D5)."""

from __future__ import annotations

from typing import Any

import pytest

from polysync.databricks.paging import (
    JOB_PAGED_ARRAYS,
    RUN_PAGED_ARRAYS,
    ListPager,
    merge_array_page,
    next_page_token,
)
from polysync.errors import DatabricksError


def test_2_0_pages_by_offset() -> None:
    pager = ListPager("2.0", 25)
    assert pager.params() == {"limit": 25}
    pager.advance({"jobs": [], "has_more": True}, 25)
    assert pager.params() == {"limit": 25, "offset": 25}
    pager.advance({"has_more": True}, 25)
    assert pager.params() == {"limit": 25, "offset": 50}
    pager.advance({"has_more": False}, 3)
    assert pager.done


def test_2_0_without_has_more_is_one_page() -> None:
    # Historically 2.0 jobs/list took no parameters and answered every job at once (reference §1).
    pager = ListPager("2.0", 25)
    pager.advance({"jobs": [{}] * 40}, 40)
    assert pager.done


def test_2_1_prefers_the_page_token() -> None:
    pager = ListPager("2.1", 20)
    pager.advance({"has_more": True, "next_page_token": "t1"}, 20)
    assert pager.params() == {"limit": 20, "page_token": "t1"}
    # Once on tokens, never back to offsets (they would restart from 0 past the 1000 cap).
    pager.advance({"has_more": True}, 20)
    assert pager.done


def test_2_2_stops_without_a_token_whatever_has_more_says() -> None:
    pager = ListPager("2.2", 100)
    pager.advance({"next_page_token": "a"}, 100)
    assert not pager.done
    pager.advance({"has_more": True}, 100)
    assert pager.done


def test_an_empty_page_with_has_more_ends_the_loop() -> None:
    pager = ListPager("2.1", 20)
    pager.advance({"has_more": True}, 0)
    assert pager.done


def test_a_repeated_token_is_an_error_not_a_loop() -> None:
    pager = ListPager("2.2", 100)
    pager.advance({"next_page_token": "same"}, 100)
    with pytest.raises(DatabricksError, match="did not advance"):
        pager.advance({"next_page_token": "same"}, 100)


@pytest.mark.parametrize(
    ("answer", "token"),
    [
        ({}, None),
        ({"next_page_token": ""}, None),
        ({"next_page_token": 5}, None),
        ({"next_page_token": "x"}, "x"),
    ],
)
def test_next_page_token(answer: dict[str, Any], token: str | None) -> None:
    assert next_page_token(answer) == token


def test_job_pages_are_concatenated_under_settings() -> None:
    merged: dict[str, Any] = {
        "job_id": 1,
        "has_more": True,
        "next_page_token": "p2",
        "settings": {
            "name": "big",
            "tasks": [{"task_key": f"t{i}"} for i in range(100)],
            "job_clusters": [{"job_cluster_key": "main"}],
            "parameters": [{"name": "a", "default": "1"}],
        },
    }
    page2 = {
        "job_id": 1,
        "has_more": True,
        "next_page_token": "p3",
        "settings": {
            "name": "big",
            "tasks": [{"task_key": f"t{i}"} for i in range(100, 200)],
            "job_clusters": [],
            "parameters": [],
        },
    }
    page3 = {"job_id": 1, "settings": {"tasks": [{"task_key": "t200"}], "environments": [{"e": 1}]}}
    merge_array_page(merged, page2, container="settings", keys=JOB_PAGED_ARRAYS)
    assert merged["next_page_token"] == "p3"
    merge_array_page(merged, page3, container="settings", keys=JOB_PAGED_ARRAYS)
    settings = merged["settings"]
    assert [t["task_key"] for t in settings["tasks"]] == [f"t{i}" for i in range(201)]
    assert settings["job_clusters"] == [{"job_cluster_key": "main"}]
    assert settings["parameters"] == [{"name": "a", "default": "1"}]
    assert settings["environments"] == [{"e": 1}]
    assert "next_page_token" not in merged
    assert merged["has_more"] is False


def test_run_pages_are_concatenated_at_the_root() -> None:
    merged: dict[str, Any] = {
        "run_id": 9,
        "tasks": [{"task_key": "a"}],
        "next_page_token": "x",
        "job_parameters": [{"name": "p"}],
    }
    merge_array_page(
        merged,
        {"run_id": 9, "tasks": [{"task_key": "b"}], "iterations": [{"run_id": 1}]},
        container=None,
        keys=RUN_PAGED_ARRAYS,
    )
    assert [t["task_key"] for t in merged["tasks"]] == ["a", "b"]
    assert merged["job_parameters"] == [{"name": "p"}]
    assert merged["iterations"] == [{"run_id": 1}]
    assert "next_page_token" not in merged
    assert "has_more" not in merged
