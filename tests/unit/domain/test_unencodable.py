"""Text no encoder can carry (NUL, lone surrogates) becomes U+FFFD, and nothing else changes
(H1): the rule of the client's decoding, the store's columns and the API's JSON."""

from __future__ import annotations

import json

import hypothesis.strategies as st
from hypothesis import given

from polysync.api.problems import JSONResponse
from polysync.domain.limits import replace_unencodable, replace_unencodable_in

ANY_TEXT = st.lists(
    st.one_of(st.characters(), st.sampled_from(["\x00", "\ud800", "\udbff", "\udc00", "\udfff"])),
    max_size=50,
).map("".join)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=20,
)


@given(ANY_TEXT)
def test_the_result_always_encodes_and_holds_no_nul(text: str) -> None:
    cleaned = replace_unencodable(text)
    cleaned.encode("utf-8")  # raises on a lone surrogate
    assert "\x00" not in cleaned
    assert len(cleaned) == len(text)  # one U+FFFD per character replaced
    assert replace_unencodable(cleaned) == cleaned


@given(st.text())  # hypothesis' text() is valid Unicode without surrogates
def test_encodable_text_other_than_nul_is_kept_as_it_is(text: str) -> None:
    assert replace_unencodable(text) == text.replace("\x00", "\ufffd")


@given(JSON_VALUES)
def test_every_string_of_a_json_value_is_cleaned_keys_too(value: object) -> None:
    cleaned = replace_unencodable_in(value)
    json.dumps(cleaned, ensure_ascii=False).encode("utf-8")
    assert "\\u0000" not in json.dumps(cleaned)


@given(JSON_VALUES)
def test_the_api_renders_any_json_value(value: object) -> None:
    body = JSONResponse({"value": value}).body
    decoded = json.loads(body.decode("utf-8"))["value"]  # NUL travels escaped, as \u0000
    assert replace_unencodable_in(decoded) == replace_unencodable_in(value)
