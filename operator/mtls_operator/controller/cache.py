"""One bounded-cache type for the controller's memories of objects by version.

Every cache the controller keeps (parsed Secrets, chain checks, spec validity, its own writes,
deleted Secrets, first-issue claims) is keyed by something that changes with the object, so an
entry is either still right or never asked for again. Emptying a full cache at once is the whole
eviction policy: no per-entry bookkeeping on the hot path, memory bounded by ``size`` entries, and
a cleared entry costs one re-parse (or, for the memories of events, one pass doing what a fresh
operator would do).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# Entries per cache: about the pods one operator serves, with room to spare.
DEFAULT_SIZE = 50_000


class BoundedCache(Generic[K, V]):
    """A dict of at most ``size`` entries, emptied whole when a new key would not fit."""

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.size = size
        self._entries: dict[K, V] = {}

    def get(self, key: K) -> V | None:
        return self._entries.get(key)

    def put(self, key: K, value: V) -> None:
        if key not in self._entries and len(self._entries) >= self.size:
            self._entries.clear()
        self._entries[key] = value

    def pop(self, key: K) -> V | None:
        return self._entries.pop(key, None)

    def values(self) -> Iterable[V]:
        return self._entries.values()

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)
