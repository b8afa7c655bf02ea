"""Contention profiles' one validation and admission rule (D14): pure, no database."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from polysync.domain.contention import (
    ExceedAction,
    ProfileScope,
    ProfileType,
    RateAlgorithm,
    Usage,
    admitted,
    check_profile,
    judge,
)
from polysync.errors import UsageError

NOW_S = 1_750_000_000.0


def profile(**fields: Any) -> Any:
    return check_profile({"name": "cap", "type": "concurrency", "max_concurrent": 2} | fields)


def rate(**fields: Any) -> Any:
    return check_profile({"name": "pace", "type": "rate", "limit": 3, "window_s": 60} | fields)


def verdict(settings: Any, usage: Usage, *, now_s: float = NOW_S, **kw: Any) -> Any:
    options = {"waiting_since_s": None, "waiting_here": False, "recheck_s": 5.0} | kw
    return judge(settings, usage, now_s, **options)


def test_defaults_and_spellings() -> None:
    s = check_profile(
        {
            "name": "p",
            "type": " Rate ",
            "limit": "10",
            "window_s": "60",
            "algorithm": "leaky-bucket",
            "scope": "Global",
            "exceed_action": "DEFER",
            "enabled": "no",
        }
    )
    assert (s.type, s.algorithm, s.scope, s.exceed_action, s.enabled) == (
        ProfileType.RATE,
        RateAlgorithm.LEAKY_BUCKET,
        ProfileScope.GLOBAL,
        ExceedAction.DEFER,
        False,
    )
    assert profile().scope is ProfileScope.PER_PLATFORM
    assert profile().exceed_action is ExceedAction.QUEUE


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        ({"max_concurrent": None}, "Max Concurrent is required"),
        ({"max_concurrent": True}, "Max Concurrent must be a whole number, not True"),
        ({"max_concurrent": 2.5}, "not a whole number"),
        ({"limit": 3}, "Limit belongs to rate profiles"),
        ({"queue_timeout_s": "inf"}, "Queue Timeout Seconds must be from 1"),
        ({"queue_size_limit": 0}, "Queue Size Limit must be from 1 to 100000, not 0"),
        ({"scope": "galaxy"}, "The scope 'galaxy' is not one of per_platform, global"),
        ({"enabled": "maybe"}, "Enabled must be true or false, not 'maybe'"),
        ({"name": "a\nb"}, "line break"),
        ({"name": "x" * 201}, "200"),
        ({"colour": "red"}, "Unknown contention profile field 'colour'"),
    ],
)
def test_bad_fields_are_refused_naming_the_field(fields: dict[str, Any], said: str) -> None:
    with pytest.raises(UsageError) as caught:
        profile(**fields)
    assert said in caught.value.message


def test_an_edit_keeps_the_type_and_clears_optional_fields() -> None:
    current = profile(queue_timeout_s=30)
    edited = check_profile({"queue_timeout_s": None, "max_concurrent": 4}, current=current)
    assert (edited.max_concurrent, edited.queue_timeout_s, edited.name) == (4, None, "cap")
    with pytest.raises(UsageError, match="cannot change after creation"):
        check_profile({"type": "rate"}, current=current)


@given(st.dictionaries(st.sampled_from(["name", "type", "max_concurrent", "limit", "window_s",
       "queue_timeout_s", "scope", "exceed_action", "enabled"]), st.one_of(
    st.none(), st.text(max_size=50), st.integers(), st.floats(), st.booleans())))  # fmt: skip
def test_any_input_is_a_profile_or_a_usage_error(fields: dict[str, Any]) -> None:
    try:
        settings = check_profile(fields)
    except UsageError as exc:
        message = exc.message
    else:
        message = ""
        assert settings.name == fields["name"]
        if settings.type is ProfileType.CONCURRENCY:
            assert settings.max_concurrent is not None
        else:
            assert settings.limit is not None
            assert settings.window_s is not None
        return
    assert 0 < len(message) < 2000


def test_concurrency_admits_under_the_cap_and_queues_at_it() -> None:
    assert verdict(profile(), Usage(active=1)) is None
    held = verdict(profile(), Usage(active=2))
    assert held.message == "Waiting for profile 'cap' (2 of 2 running)"
    assert (held.retry_at_s, held.queued) == (NOW_S + 5, True)


def test_token_bucket_returns_each_token_a_window_after_it_was_spent() -> None:
    starts = (NOW_S - 50, NOW_S - 30, NOW_S - 10)
    held = verdict(rate(), Usage(starts=starts))
    assert held.retry_at_s == NOW_S + 10
    assert verdict(rate(), Usage(starts=(NOW_S - 60, *starts[1:]))) is None


def test_leaky_bucket_spaces_starts_by_window_over_limit() -> None:
    leaky = rate(algorithm="leaky_bucket")
    assert verdict(leaky, Usage(starts=(NOW_S - 20,))) is None
    held = verdict(leaky, Usage(starts=(NOW_S - 5,)))
    assert (held.retry_at_s, held.message) == (
        NOW_S + 15,
        "Waiting for profile 'pace' (one start per 20 s)",
    )


def test_timeout_full_queue_reject_and_defer() -> None:
    full = Usage(active=2, queued=3)
    timed = verdict(profile(queue_timeout_s=60), full, waiting_since_s=NOW_S - 60)
    assert timed.retry_at_s is None
    assert timed.message.startswith("Timed out waiting for contention profile 'cap'")
    # A waiting run's next try is never later than its timeout.
    soon = verdict(profile(queue_timeout_s=60), full, waiting_since_s=NOW_S - 58)
    assert soon.retry_at_s == NOW_S + 2
    queue_full = verdict(profile(queue_size_limit=3), full)
    assert queue_full.retry_at_s is None
    assert "is full (3 waiting, Queue Size Limit 3" in queue_full.message
    assert verdict(profile(queue_size_limit=3), full, waiting_here=True).retry_at_s is not None
    rejected = verdict(profile(exceed_action="reject"), full)
    assert rejected.retry_at_s is None
    assert "its Exceed Action is Reject" in rejected.message
    deferred = verdict(profile(exceed_action="defer", window_s=120), full)
    assert (deferred.retry_at_s, deferred.queued) == (NOW_S + 120, False)


def test_admitted_counts_the_start() -> None:
    assert admitted(Usage(active=1, starts=(1.0,)), NOW_S) == Usage(2, (1.0, NOW_S), 0)


@given(
    limit=st.integers(1, 12),
    window_s=st.sampled_from([1.0, 7.5, 60.0, 3600.0]),
    leaky=st.booleans(),
    gaps_s=st.lists(st.floats(0, 120, allow_nan=False), min_size=1, max_size=80),
)
# Three spacings of 1/3 s add up to a hair under 1 s: a fourth start fell inside the window.
@example(limit=3, window_s=1.0, leaky=True, gaps_s=[0.0, 0.0, 0.0, 0.0])
def test_a_rate_profile_never_admits_more_than_its_limit_in_any_window(
    limit: int, window_s: float, leaky: bool, gaps_s: list[float]
) -> None:
    settings = rate(
        limit=limit, window_s=window_s, algorithm="leaky_bucket" if leaky else "token_bucket"
    )
    usage = Usage()
    now_s = NOW_S
    for gap_s in gaps_s:  # a run asks to start after each gap; one waiting retries when told
        now_s += gap_s
        held = verdict(settings, usage, now_s=now_s)
        while held is not None:
            assert held.retry_at_s is not None
            assert held.retry_at_s > now_s
            now_s = held.retry_at_s
            held = verdict(settings, usage, now_s=now_s)
        usage = admitted(usage, now_s)
    starts = list(usage.starts)
    for first in starts:
        assert sum(1 for s in starts if first <= s < first + window_s) <= limit
    if leaky:
        spacing_s = window_s / limit
        assert all(b - a >= spacing_s - 1e-6 for a, b in itertools.pairwise(starts))
