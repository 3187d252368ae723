"""portal.json_input: the nesting of caller JSON, measured without recursion."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portal.json_input import JsonTooDeepError, json_depth_exceeds, load_json


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    ("text", "depth", "exceeds"),
    [
        (nested(32), 32, False),
        (nested(33), 32, True),
        ('{"a": {"b": [1, {"c": []}]}}', 5, False),
        ('{"a": {"b": [1, {"c": []}]}}', 4, True),
        # Brackets inside strings, escaped quotes included, do not nest.
        (json.dumps({"text": "[" * 100 + '\\"' + "{" * 100}), 1, False),
        (json.dumps(["]" * 40, ["[" * 40]]), 2, False),
        ('"unterminated [[[[', 1, False),
    ],
)
def test_depth_is_measured_as_the_parser_sees_it(
    text: str, depth: int, exceeds: bool
) -> None:
    assert json_depth_exceeds(text, depth) is exceeds


def test_load_json_refuses_deep_documents_with_a_reason() -> None:
    with pytest.raises(JsonTooDeepError, match="^the body nests .* deeper than 32"):
        load_json(nested(1_000_000), source="the body")
    assert load_json('{"a": [1]}', source="x") == {"a": [1]}
    with pytest.raises(json.JSONDecodeError):
        load_json("{not json", source="x")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=20,
)


def depth_of(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    return 0


@given(json_values)
def test_the_measured_depth_is_the_real_one(value: object) -> None:
    text = json.dumps(value)
    real = depth_of(value)
    assert not json_depth_exceeds(text, real)
    assert json_depth_exceeds(text, real - 1) is (real >= 1)
