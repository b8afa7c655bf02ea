"""Finding records from what a user typed (issue 10): tiers, ambiguity, close matches."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from polysync.errors import LIST_JOBS, NotFoundError, UsageError
from polysync.lookup import by_id, by_text, find_one, folded


@dataclass(frozen=True)
class Rec:
    id: int
    external_id: str
    name: str


TIERS = (
    by_id(lambda r: r.id),
    by_text("External Id", lambda r: r.external_id, fold=True),
    by_text("name", lambda r: r.name),
    by_text("name (ignoring case and spaces)", lambda r: r.name, fold=True),
)
RECORDS = [
    Rec(1, "914275016372845", "Nightly ETL "),
    Rec(2, "527703982144019", "nightly etl"),
    Rec(3, "2", "Weekly Report"),
    Rec(4, "4242", "twin"),
    Rec(5, "4343", "twin"),
]


def find(ref: str) -> Rec:
    return find_one(
        ref,
        RECORDS,
        TIERS,
        noun="job",
        keys="id, External Id or name",
        describe=lambda r: f"{r.name!r} (id {r.id})",
        names=lambda r: (r.name,),
        hint=LIST_JOBS,
    )


def test_the_first_tier_that_matches_decides() -> None:
    assert find("3").id == 3  # a Polysync id, though job 3's External Id is "2"...
    assert find("2").id == 2  # ...and "2" is job 2's id before it is job 3's External Id
    assert find(" 914275016372845 ").id == 1
    assert find("nightly etl").id == 2  # the exact name wins over the loose one
    assert find("Nightly ETL ").id == 1
    assert find("weekly  REPORT").id == 3  # loose: case and spaces


def test_two_matches_in_a_tier_are_listed() -> None:
    with pytest.raises(UsageError) as ambiguous:
        find("twin")
    assert not isinstance(ambiguous.value, NotFoundError)
    assert ambiguous.value.message == (
        "2 jobs match 'twin' by name: 'twin' (id 4); 'twin' (id 5). Name the job by its id."
    )
    with pytest.raises(UsageError, match="2 jobs match 'NIGHTLY ETL' by name \\(ignoring"):
        find("NIGHTLY ETL")


def test_no_match_suggests_the_closest_names() -> None:
    with pytest.raises(NotFoundError) as missing:
        find("Weekly Reprt")
    assert missing.value.message == (
        "No job with id, External Id or name 'Weekly Reprt'. Did you mean 'Weekly Report' (id 3)?"
    )
    assert missing.value.hint is LIST_JOBS
    with pytest.raises(NotFoundError) as far:
        find("zzz")
    assert "Did you mean" not in far.value.message


@given(st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=8, unique_by=folded))
def test_every_distinct_name_finds_its_record(names: list[str]) -> None:
    records = [Rec(1000 + i, f"x{i}", name) for i, name in enumerate(names)]
    for record in records:
        if (
            not folded(record.name)
            or record.name.strip().isdigit()
            or any(folded(record.name) == folded(r.external_id) for r in records)
        ):
            continue  # blank, or taken for an id or an External Id (earlier tiers)
        found = find_one(
            record.name,
            records,
            TIERS,
            noun="job",
            keys="id or name",
            describe=str,
            names=lambda r: (r.name,),
        )
        assert found == record
