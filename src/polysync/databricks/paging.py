"""Paging rules per API version: list pages (has_more/offset, next_page_token), 2.2 array pages."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from polysync.errors import DatabricksError

# 2.2 caps these arrays at 100 per answer; later pages carry the rest (reference §2, §4).
JOB_PAGED_ARRAYS = ("tasks", "job_clusters", "parameters", "environments")
RUN_PAGED_ARRAYS = ("tasks", "job_clusters", "job_parameters", "repair_history", "iterations")


@dataclass
class ListPager:
    """Where the next jobs/list or runs/list page starts.

    Every version that sends `next_page_token` is followed by it (both SDKs do). Only 2.0 and 2.1
    fall back to `has_more` + `offset`; 2.2 dropped the root `has_more` (reference §1), so a 2.2
    answer without a token is the last page.
    """

    version: str
    page_size: int
    page_token: str | None = None
    offset: int = 0
    done: bool = False

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": self.page_size}
        if self.page_token is not None:
            params["page_token"] = self.page_token
        elif self.offset:
            params["offset"] = self.offset
        return params

    def advance(self, answer: Mapping[str, Any], items_on_page: int) -> None:
        token = answer.get("next_page_token")
        if isinstance(token, str) and token:
            if token == self.page_token:
                raise DatabricksError(
                    f"jobs API paging did not advance: page token {token!r} repeated"
                )
            self.page_token = token
            return
        if (
            self.version != "2.2"
            and self.page_token is None
            and answer.get("has_more") is True
            and items_on_page > 0
        ):
            self.offset += items_on_page
            return
        self.done = True


def next_page_token(answer: Mapping[str, Any]) -> str | None:
    token = answer.get("next_page_token")
    return token if isinstance(token, str) and token else None


def merge_array_page(
    merged: dict[str, Any], page: Mapping[str, Any], *, container: str | None, keys: tuple[str, ...]
) -> None:
    """Append the arrays of a later 2.2 page to `merged` (in place), as the SDK mixins do.

    `container` is "settings" for jobs/get, None for runs/get (arrays at the root).
    """
    target = merged.setdefault(container, {}) if container else merged
    source = page.get(container) if container else page
    if isinstance(target, dict) and isinstance(source, Mapping):
        for key in keys:
            more = source.get(key)
            if isinstance(more, list) and more:
                existing = target.get(key)
                target[key] = (existing if isinstance(existing, list) else []) + more
    token = next_page_token(page)
    if token is None:
        merged.pop("next_page_token", None)
        # Everything is here now; a lingering has_more would send callers to fetch again.
        if "has_more" in merged:
            merged["has_more"] = False
    else:
        merged["next_page_token"] = token
