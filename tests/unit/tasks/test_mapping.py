"""Parameter mapping: parsing, checking against upstreams, rendering, hostile text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polysync.domain.limits import MAX_PARAMETER_VALUE_CHARS
from polysync.errors import ParameterMappingError
from polysync.tasks.mapping import (
    Reference,
    UpstreamRunFacts,
    check_mapping,
    parse_references,
    render,
)

FACTS = {
    "ingest": UpstreamRunFacts(
        status="Succeeded",
        run_id="912345",
        run_page_url="https://adb-1.7.azuredatabricks.net/#job/42/run/912345",
        start_time=datetime(2026, 5, 1, 2, 0, 3, 500_000, tzinfo=UTC),
        end_time=datetime(2026, 5, 1, 4, 30, tzinfo=timezone(timedelta(hours=2))),
        scheduled_for=datetime(2026, 5, 1, 2, tzinfo=UTC),
        parameters={"run_date": "2026-05-01", "region": "eu"},
    )
}


def test_parse_finds_ours_and_leaves_databricks_references() -> None:
    value = "s3://lake/{{ upstream.ingest.parameters.run_date }}/{{job.start_time.iso_date}}"
    (reference,) = parse_references(value, parameter="path")
    assert reference == Reference(10, 51, "ingest", "parameters", "run_date")
    assert value[reference.start : reference.end] == "{{ upstream.ingest.parameters.run_date }}"
    assert parse_references("plain {text} and {{tasks.x.values.y}}", parameter="p") == ()


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("run_id", "912345"),
        ("run_page_url", "https://adb-1.7.azuredatabricks.net/#job/42/run/912345"),
        ("status", "Succeeded"),
        ("start_time", "2026-05-01T02:00:03Z"),
        ("end_time", "2026-05-01T02:30:00Z"),
        ("scheduled_for", "2026-05-01T02:00:00Z"),
        ("parameters.region", "eu"),
    ],
)
def test_render_each_field(field: str, expected: str) -> None:
    assert render(f"{{{{upstream.ingest.{field}}}}}", FACTS, parameter="p") == expected


def test_render_several_references_in_text() -> None:
    value = "{{upstream.ingest.run_id}}-{{upstream.ingest.parameters.run_date}}-{{job.id}}"
    assert render(value, FACTS, parameter="p") == "912345-2026-05-01-{{job.id}}"


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("{{upstream.clean.run_id}}", "'clean' has no run in this cycle"),
        ("{{upstream.ingest.parameters.other}}", "did not send parameter 'other'"),
    ],
)
def test_render_refuses_a_missing_fact(value: str, says: str) -> None:
    with pytest.raises(ParameterMappingError, match=says) as caught:
        render(value, FACTS, parameter="p")
    assert caught.value.field == "parameters.p"


def test_render_refuses_a_run_without_that_fact() -> None:
    facts = {"ingest": UpstreamRunFacts(status="Skipped")}
    with pytest.raises(
        ParameterMappingError, match=r"that run of 'ingest' \(Skipped\) has no run_id"
    ):
        render("{{upstream.ingest.run_id}}", facts, parameter="p")


def test_messages_stay_short_whatever_the_names() -> None:
    long_name = "t" * 5000
    with pytest.raises(ParameterMappingError) as caught:
        render(f"{{{{upstream.{long_name}.run_id}}}}", FACTS, parameter="p")
    assert len(str(caught.value)) < 500
    with pytest.raises(ParameterMappingError) as caught:
        parse_references(f"{{{{upstrem.{long_name}.run_id}}}}", parameter="p")
    assert len(str(caught.value)) < 500


def test_render_refuses_a_result_too_long() -> None:
    facts = {"ingest": UpstreamRunFacts(status="Succeeded", parameters={"big": "x" * 6000})}
    value = "{{upstream.ingest.parameters.big}}" * 2
    with pytest.raises(ParameterMappingError, match="characters long once mapped"):
        render(value, facts, parameter="p")


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("{{upstrem.ingest.run_id}}", "did you mean '{{upstream.ingest.run_id}}'?"),
        ("{{Upstream.ingest.run_id}}", "write 'upstream' in lower case"),
        ("{{upstream.ingest.runid}}", "(did you mean 'run_id'?)"),
        ("{{upstream.ingest}}", "name a field after the Task"),
        ("{{upstream..run_id}}", "name the upstream Task"),
        ("{{upstream.ingest.parameters}}", "name the parameter"),
        ("{{upstream.ingest.run_id.x}}", "is not a field of an upstream run"),
        ("a {{upstream.ingest.run_id", "not closed at character 3"),
        ("x" * (MAX_PARAMETER_VALUE_CHARS + 1), "the limit is 10,000"),
    ],
)
def test_malformed_references_are_refused(value: str, says: str) -> None:
    with pytest.raises(ParameterMappingError) as caught:
        parse_references(value, parameter="target")
    assert says in str(caught.value)
    assert str(caught.value).startswith("The value of parameter 'target'")


def test_check_mapping_against_the_upstreams() -> None:
    upstreams = ["ingest"]
    params = {"ingest": ["run_date", "region", "token"]}
    secrets = {"ingest": ["token"]}
    value = "{{upstream.ingest.parameters.run_date}}"
    assert len(check_mapping(value, parameter="d", upstreams=upstreams)) == 1
    with pytest.raises(
        ParameterMappingError,
        match=r"not an upstream Task of this Task \(its upstream Tasks: .ingest.\)",
    ):
        check_mapping("{{upstream.clean.run_id}}", parameter="d", upstreams=upstreams)
    with pytest.raises(ParameterMappingError, match="did you mean 'run_date'"):
        check_mapping(
            "{{upstream.ingest.parameters.rundate}}",
            parameter="d",
            upstreams=upstreams,
            upstream_parameters=params,
        )
    with pytest.raises(ParameterMappingError, match="secrets are not passed through mappings"):
        check_mapping(
            "{{upstream.ingest.parameters.token}}",
            parameter="d",
            upstreams=upstreams,
            secret_parameters=secrets,
        )


_PIECES = st.sampled_from(
    ["{{", "}}", "{", "}", "upstream", "Upstream", ".", "ingest", "run_id", "parameters", " ", "x"]
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=80), st.lists(_PIECES, max_size=16).map("".join)))
def test_hostile_values_parse_or_are_refused_never_crash(value: str) -> None:
    try:
        references = parse_references(value, parameter="p")
        rendered = render(value, FACTS, parameter="p")
    except ParameterMappingError as exc:
        message = str(exc)
    else:
        message = ""
        for reference in references:
            assert reference.upstream
            assert value[reference.start : reference.end].startswith("{{")
        if not references:
            assert rendered == value
    assert message == "" or message.startswith("The value of parameter 'p'")
    assert len(message) < 1000
