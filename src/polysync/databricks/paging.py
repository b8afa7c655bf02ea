"""Paging rules per API version: list pages (has_more/offset, next_page_token), 2.2 array pages."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from polysync.errors import DatabricksAnswerError

MAX_LIST_PAGES = 2_000
"""The most pages one listing reads: 200,000 jobs at 100 a page, 50,000 runs at 25 - far more
than a workspace holds (jobs are capped at 12,000 per workspace). Beyond it the workspace is
taken to page for ever."""
LIST_DEADLINE_S = 600.0
"""The longest one listing (all its pages, retries included) may take."""


@dataclass
class PageBudget:
    """How many pages, and how long, one listing may still take: a workspace that pages for
    ever (a new token each time, `has_more` always true) gets a clear error, not a hang.

    `now` is the client's clock (seconds); the deadline starts at the first page."""

    now: Callable[[], float]
    what: str
    max_pages: int = MAX_LIST_PAGES
    deadline_s: float = LIST_DEADLINE_S
    pages: int = 0
    started_s: float | None = None

    def next_page(self) -> None:
        """Count the page about to be fetched; DatabricksAnswerError past a limit."""
        now_s = self.now()
        if self.started_s is None:
            self.started_s = now_s
        if self.pages >= self.max_pages:
            raise DatabricksAnswerError(
                f"{self.what} did not end after {self.max_pages:,} pages: the workspace keeps "
                "announcing more (is it a Databricks workspace, or a proxy repeating itself?)"
            )
        if now_s - self.started_s > self.deadline_s:
            raise DatabricksAnswerError(
                f"{self.what} did not end within {self.deadline_s:g} s ({self.pages:,} pages "
                "read): the workspace is too slow or keeps announcing more; try again later"
            )
        self.pages += 1


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
    seen_tokens: set[str] = field(default_factory=set)

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
            if token in self.seen_tokens:
                raise DatabricksAnswerError(
                    f"jobs API paging did not advance: page token {token[:80]!r} repeated"
                )
            self.seen_tokens.add(token)
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
