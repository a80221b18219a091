"""The JSON nesting scan agrees with the parsed value's depth and refuses deep texts cheaply."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from server.json_limits import JsonTooDeep, check_json_depth, json_depth


def depth_of(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    return 0


def random_value(rng: random.Random, budget: int) -> Any:
    kind = rng.randrange(6) if budget > 0 else rng.randrange(3)
    if kind == 0:
        return rng.choice(['a"b', "[{", "}]\\", '\\\\"[', "x", "ñ[ü]", ""])
    if kind == 1:
        return rng.randrange(-5, 5)
    if kind == 2:
        return rng.choice([None, True, 1.5])
    if kind in (3, 4):
        return [random_value(rng, budget - 1) for _ in range(rng.randrange(4))]
    return {
        rng.choice(["k", "[", '"}', "\\"]) + str(i): random_value(rng, budget - 1)
        for i in range(rng.randrange(4))
    }


def test_the_scan_measures_what_json_parses() -> None:
    rng = random.Random(15)
    for _ in range(500):
        value = random_value(rng, rng.randrange(8))
        text = json.dumps(value, ensure_ascii=rng.random() < 0.5)
        assert json_depth(text) == depth_of(value), text
        assert json_depth(text.encode()) == depth_of(value), text


def test_brackets_inside_strings_and_escapes_do_not_count() -> None:
    assert json_depth('{"a": "[[[[[[", "b": "\\"[[[["}') == 1
    assert json_depth('["\\\\", ["x"]]') == 2
    check_json_depth('{"q": "' + "[" * 10_000 + '"}', 5)


def test_a_deep_text_is_refused_whatever_its_size() -> None:
    with pytest.raises(JsonTooDeep, match="deeper than 64"):
        check_json_depth(b"[" * 200_000 + b"]" * 200_000, 64)
    with pytest.raises(JsonTooDeep):
        check_json_depth('{"a":' * 65 + "1" + "}" * 65, 64)
    check_json_depth('{"a":' * 64 + "1" + "}" * 64, 64)
    check_json_depth(b"[1, 2, {}]" * 1000, 2)  # wide is fine


def test_invalid_json_is_left_to_the_parser() -> None:
    for text in ("", "{", "]]]]", "not json", '"unterminated ]]'):
        check_json_depth(text, 2)
    with pytest.raises(JsonTooDeep):  # an unterminated string's brackets count: refused either way
        check_json_depth('"unterminated ' + "[" * 10, 2)
