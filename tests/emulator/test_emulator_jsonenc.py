"""Responses and watch lines encoded with orjson mean what the standard library's encoding meant."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kube_emulator.jsonenc import dumps, dumps_line
from kube_emulator.store import encode_event

_json = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


def _same(a: Any, b: Any) -> bool:
    """Equal, with NaN equal to NaN (json.loads reads the standard library's NaN back as a float NaN)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@settings(max_examples=300, deadline=None)
@given(_json)
def test_what_is_encoded_reads_back_as_the_standard_librarys_encoding(value: Any) -> None:
    standard = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    assert _same(json.loads(dumps(value)), json.loads(standard))
    line = dumps_line(value)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert _same(json.loads(line), json.loads(standard))


@pytest.mark.parametrize("value", [
    {"a": float("nan")}, {"a": [float("inf"), None]}, {"a": 2**64}, {"a": -(2**63) - 1}, {1: "x"},
])
def test_what_orjson_would_write_otherwise_is_the_standard_librarys(value: Any) -> None:
    assert dumps(value) == json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    assert dumps_line(value) == (json.dumps(value, separators=(",", ":")) + "\n").encode()


def test_a_watch_event_is_one_compact_line() -> None:
    line = encode_event("ADDED", {"kind": "Secret", "metadata": {"name": "é"}})
    assert line == '{"type":"ADDED","object":{"kind":"Secret","metadata":{"name":"é"}}}\n'.encode()
