"""The shared input limits (issue 9): property tests of every check the API, web and CLI use."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from polysync.api.keys import create_api_key
from polysync.domain.limits import (
    MAX_INT64,
    MAX_PARAMETER_VALUE_CHARS,
    MAX_PARAMETERS_PER_RUN,
    MIN_INT64,
    check_description,
    check_int64,
    check_name,
    check_parameter_value,
    check_parameter_values,
    check_text,
    display_unsafe,
    fits_int64,
    http_url,
    is_env_name,
    multi_line,
    refused_character,
    same_host,
    single_line,
    unique_ids,
)
from polysync.errors import UsageError

REFUSED = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


@given(st.text(max_size=300))
def test_single_line_text_has_no_control_character(text: str) -> None:
    if REFUSED.search(text):
        with pytest.raises(UsageError, match="not allowed"):
            check_text(text, field="X", max_chars=1000)
        with pytest.raises(ValueError, match="not allowed"):
            single_line(text)
    else:
        assert check_text(text, field="X", max_chars=1000) == text
        assert single_line(text) == text


@given(st.text(max_size=300))
def test_multi_line_text_allows_only_tab_and_line_breaks(text: str) -> None:
    bad = re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]", text)
    if bad:
        with pytest.raises(UsageError):
            check_text(text, field="X", max_chars=1000, multiline=True)
        with pytest.raises(ValueError, match="only tabs and line breaks"):
            multi_line(text)
    else:
        assert check_text(text, field="X", max_chars=1000, multiline=True) == text
        assert multi_line(text) == text


@given(st.text(min_size=1, max_size=50), st.integers(min_value=0, max_value=60))
def test_the_cap_is_exact(text: str, max_chars: int) -> None:
    clean = REFUSED.sub("", text) or "x"
    if len(clean) <= max_chars:
        assert check_text(clean, field="X", max_chars=max_chars) == clean
    else:
        with pytest.raises(UsageError, match=f"limit is {max_chars:,}"):
            check_text(clean, field="X", max_chars=max_chars)


@given(st.text(min_size=1, max_size=40))
def test_a_secret_field_is_never_quoted(text: str) -> None:
    value = f"{text}\x1b{text}"
    with pytest.raises(UsageError) as caught:
        check_text(value, field="The token", max_chars=1000, secret=True)
    assert value not in caught.value.message
    with pytest.raises(UsageError) as parameter:
        check_parameter_value("password", value)
    assert value not in parameter.value.message


def test_the_refused_character_is_named() -> None:
    assert refused_character("a\x1bb") == "an ESC character"
    assert refused_character("a\nb") == "a line break"
    assert refused_character("a\nb", multiline=True) is None
    assert refused_character("\ud800") is not None
    assert refused_character("\x9b") == "control character U+009B"
    assert refused_character("naïve ✓ 東京 \u202e") is None  # text, not control characters


def test_names_and_descriptions() -> None:
    assert check_name("prod") == "prod"
    with pytest.raises(UsageError, match="required"):
        check_name("   ")
    with pytest.raises(UsageError, match="limit is 200"):
        check_name("p" * 201)
    assert check_description("a\nb\tc") == "a\nb\tc"


def test_parameter_values_are_bounded_in_size_and_count() -> None:
    assert check_parameter_values({"env": "line\nline"}) == {"env": "line\nline"}
    with pytest.raises(UsageError, match="10,000"):
        check_parameter_value("env", "x" * (MAX_PARAMETER_VALUE_CHARS + 1))
    with pytest.raises(UsageError, match="at most 1,000 parameters"):
        check_parameter_values({f"p{i}": "v" for i in range(MAX_PARAMETERS_PER_RUN + 1)})


@given(st.integers(min_value=-(10**30), max_value=10**30))
@example(MAX_INT64)
@example(MAX_INT64 + 1)
@example(MIN_INT64)
@example(MIN_INT64 - 1)
def test_int64_range(number: int) -> None:
    inside = MIN_INT64 <= number <= MAX_INT64
    assert fits_int64(str(number)) is inside
    assert fits_int64(f"+{number}" if number >= 0 else str(number)) is inside
    if inside:
        assert check_int64(f" {number} ", field="n") == number
    else:
        with pytest.raises(UsageError, match="64-bit"):
            check_int64(str(number), field="n")


def test_a_huge_int_costs_nothing_and_never_hits_the_conversion_limit() -> None:
    assert not fits_int64("9" * 100_000)
    assert fits_int64("0" * 100_000 + "7")
    with pytest.raises(UsageError, match="whole number"):
        check_int64("1e3", field="n")


@given(st.lists(st.sampled_from(["1", " 1", "2 ", "3", "42"]), max_size=200))
def test_ids_are_deduplicated_in_order(ids: list[str]) -> None:
    unique = unique_ids(ids)
    assert len(unique) == len(set(unique))
    assert set(unique) == {i.strip() for i in ids}
    first_seen = [x.strip() for x in ids]
    assert unique == sorted(unique, key=first_seen.index)


def test_ten_thousand_copies_are_one_id_and_too_many_distinct_are_refused() -> None:
    assert unique_ids(["914275016372845"] * 10_000) == ["914275016372845"]
    with pytest.raises(UsageError, match="more than 3 distinct"):
        unique_ids(["1", "2", "3", "4"], cap=3)
    with pytest.raises(UsageError, match="limit is 4,096"):
        unique_ids(["/" + "a" * 4096])  # a notebook path may be long, not longer than a path


@given(st.text(max_size=300))
@example("A" * 257)
def test_env_names(name: str) -> None:
    assert is_env_name(name) is bool(
        len(name) <= 256 and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name)
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://adb-1.2.azuredatabricks.net/#job/1/run/2", True),
        ("http://127.0.0.1:8765/x", True),
        ("javascript:alert(1)", False),
        ("JavaScript:alert(1)", False),
        ("data:text/html,<script>", False),
        ("//evil.example/x", False),
        ("/relative", False),
        ("https://", False),
        ("https://ok.example/\x1b]8;;", False),
        ("https://evil.example\\@ok.example", False),
        ("https://[::1", False),
    ],
)
def test_only_absolute_http_urls_become_links(url: str, expected: bool) -> None:
    assert (http_url(url) is not None) is expected


@given(st.text(max_size=100))
def test_http_url_never_fails_and_returns_only_http(text: str) -> None:
    url = http_url(text)
    if url is not None:
        assert url.lower().startswith(("http://", "https://"))
        assert REFUSED.search(url) is None


def test_same_host() -> None:
    assert same_host("https://WS.example/x", "https://ws.example")
    assert not same_host("https://ws.example.evil/x", "https://ws.example")
    assert not same_host("https://[::1", "https://ws.example")


async def test_api_key_names_are_checked() -> None:
    class NoStore:
        async def add_api_key(self, *args: object) -> None:
            raise AssertionError("never reached")

    for name in ("bot\x1b[2J", "", "n" * 201):
        with pytest.raises(UsageError):
            await create_api_key(NoStore(), name, "viewer")  # type: ignore[arg-type]


def test_import_ids_are_deduplicated_by_the_job_id_they_name() -> None:
    # The canonical form is the job type's (services passes the one whose rules accept the id).
    def canonical(text: str) -> str:
        if not text.isdigit() or int(text) == 0:
            raise UsageError(f"{text!r} is no Job Id")
        return str(int(text))

    ids = ["42", " 0042 ", "x", "x ", "7", "00007", "0"]
    assert unique_ids(ids, canonical=canonical) == ["42", "x", "7", "0"]
    assert unique_ids(ids) == ["42", "0042", "x", "7", "00007", "0"]  # as given, trimmed


@pytest.mark.parametrize(
    ("name", "what"),
    [
        ("prod\u202egnp.exe", "a text-direction control U+202E"),
        ("\u2066prod\u2069", "a text-direction control U+2066"),
        ("pr\u200bod", "an invisible character U+200B"),
        ("\ufeffprod", "an invisible character U+FEFF"),
        ("prod\u200f", "a text-direction mark U+200F"),
        ("pr\u200cod", "an invisible character U+200C"),
        ("\u200dprod", "an invisible character U+200D"),
    ],
)
def test_names_refuse_what_would_not_show_as_it_is(name: str, what: str) -> None:
    with pytest.raises(UsageError, match=re.escape(f"contains {what}")):
        check_name(name, field="The platform name")
    assert display_unsafe(name) == what


def test_names_in_any_script_are_welcome() -> None:
    # Joiners inside Persian words and emoji sequences are part of how they are written.
    for name in (
        "prod-eu",
        "生产",
        "производство",
        "إنتاج",
        "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",
        "\U0001f469\u200d\U0001f4bb team",
    ):
        assert check_name(name) == name
