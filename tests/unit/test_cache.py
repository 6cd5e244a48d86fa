"""cache.py: the one bounded-cache type."""

from __future__ import annotations

import pytest

from mtls_operator.controller.cache import BoundedCache


def test_keeps_what_fits() -> None:
    cache: BoundedCache[str, int] = BoundedCache(3)
    for i, key in enumerate("abc"):
        cache.put(key, i)
    assert [cache.get(key) for key in "abc"] == [0, 1, 2]
    assert len(cache) == 3
    assert "a" in cache
    assert "z" not in cache


def test_a_new_key_that_does_not_fit_empties_it() -> None:
    cache: BoundedCache[str, int] = BoundedCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("c", 3)
    assert len(cache) == 1
    assert cache.get("a") is None
    assert cache.get("c") == 3


def test_overwriting_a_key_never_empties_it() -> None:
    cache: BoundedCache[str, int] = BoundedCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("b", 3)
    assert (cache.get("a"), cache.get("b")) == (1, 3)


def test_pop_takes_once() -> None:
    cache: BoundedCache[str, str] = BoundedCache()
    cache.put("slot", "uid")
    assert cache.pop("slot") == "uid"
    assert cache.pop("slot") is None


def test_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        BoundedCache(0)
