"""Request and response bodies of /api/v1/contention-profiles (D14). The fields are checked by
the one validation of the use cases (`polysync.domain.contention.check_profile`); here only
their JSON types and sizes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from polysync.api.schemas import Description, Name, _In
from polysync.domain.contention import ContentionProfile
from polysync.profiles import MAX_LINKS
from polysync.shapes import profile_fields

Choice = Annotated[str, Field(max_length=40)]
Count = Annotated[int, Field(ge=1, le=100_000)]
Seconds = Annotated[float, Field(ge=1, le=7 * 24 * 3600)]
PlatformRef = Annotated[int | Annotated[str, Field(max_length=1000)], Field()]
TaskId = Annotated[int, Field(ge=1, le=2**63 - 1)]


class ProfileUpdate(_In):
    """The fields to change; null clears an optional one (Queue Size Limit, Queue Timeout)."""

    name: Name | None = None
    description: Description | None = None
    enabled: bool | None = None
    scope: Choice | None = Field(default=None, description="per_platform (default) or global.")
    max_concurrent: Count | None = Field(default=None, description="Concurrency: required.")
    limit: Count | None = Field(default=None, description="Rate: starts per window (required).")
    window_s: Seconds | None = Field(
        default=None, description="Rate: the window (required); concurrency: Defer's window."
    )
    algorithm: Choice | None = Field(default=None, description="token_bucket or leaky_bucket.")
    queue_size_limit: Count | None = None
    queue_timeout_s: Seconds | None = None
    exceed_action: Choice | None = Field(default=None, description="queue, reject or defer.")


class ProfileIn(ProfileUpdate):
    name: Name
    type: Choice = Field(description="concurrency or rate; fixed once created.")
    platforms: list[PlatformRef] = Field(
        default_factory=list, max_length=MAX_LINKS, description="Platform ids or names."
    )
    tasks: list[TaskId] = Field(default_factory=list, max_length=MAX_LINKS)


class ProfileLinks(_In):
    platforms: list[PlatformRef] = Field(default_factory=list, max_length=MAX_LINKS)
    tasks: list[TaskId] = Field(default_factory=list, max_length=MAX_LINKS)


class ProfileOut(BaseModel):
    id: int
    name: str
    type: str
    enabled: bool
    scope: str
    description: str
    max_concurrent: int | None
    limit: int | None
    window_s: float | None
    algorithm: str
    queue_size_limit: int | None
    queue_timeout_s: float | None
    exceed_action: str
    platform_ids: list[int]
    task_ids: list[int] = Field(description="Tasks it caps, once Tasks start runs (D14).")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, profile: ContentionProfile) -> ProfileOut:
        return cls(**profile_fields(profile))


class CounterOut(BaseModel):
    """One counter of a profile now: per linked platform, or one for a global profile
    (`platform_id` null)."""

    platform_id: int | None
    platform: str | None
    running: int | None = Field(description="Concurrency: admitted runs not ended.")
    started_in_window: int | None = Field(description="Rate: starts within the window.")
    waiting: int = Field(description="Runs Queued in this profile's queue.")
    text: str
