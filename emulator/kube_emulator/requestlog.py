"""A cheap request log: counters per (verb, resource, subresource) plus a bounded recent-list."""

from __future__ import annotations

import collections
import threading
from typing import NamedTuple

READ_VERBS = frozenset({"get", "list", "watch"})
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


class LoggedRequest(NamedTuple):
    verb: str
    resource: str
    namespace: str | None
    name: str | None
    status: int
    # Who asked (a client that names itself, e.g. one operator replica of several).
    user_agent: str | None = None


class RequestLog:
    """Counts of the API requests served over HTTP (in-process helpers are not logged).

    Verbs are Kubernetes verbs: get, list, watch, create, update, patch, delete,
    deletecollection. Resources are plurals (``secrets``, ``mtlsidentities``); a group-qualified
    ``mtlsidentities.mtls.dev`` matches too. Discovery and other non-resource requests count in
    :attr:`other` only. Memory is bounded: counters, plus the last ``recent_size`` requests.
    """

    def __init__(self, recent_size: int = 1000) -> None:
        self._lock = threading.Lock()
        self._counts: collections.Counter[tuple[str, str, str, str]] = collections.Counter()
        self.recent: collections.deque[LoggedRequest] = collections.deque(maxlen=recent_size)
        self.reads = 0
        self.writes = 0
        self.other = 0

    def record(
        self,
        verb: str,
        group: str,
        resource: str,
        subresource: str | None,
        namespace: str | None,
        name: str | None,
        status: int,
        *,
        user_agent: str | None = None,
    ) -> None:
        with self._lock:
            self._counts[(verb, resource, group, subresource or "")] += 1
            if verb in READ_VERBS:
                self.reads += 1
            elif verb in WRITE_VERBS:
                self.writes += 1
            self.recent.append(LoggedRequest(verb, resource, namespace, name, status, user_agent))

    def record_other(self) -> None:
        with self._lock:
            self.other += 1

    def count(self, verb: str | None = None, resource: str | None = None, subresource: str | None = None) -> int:
        """How many requests matched; None matches anything, ``subresource=""`` the main resource."""
        with self._lock:
            items = list(self._counts.items())
        total = 0
        for (v, plural, group, sub), n in items:
            if verb is not None and v != verb:
                continue
            if resource is not None and resource not in (plural, f"{plural}.{group}"):
                continue
            if subresource is not None and sub != subresource:
                continue
            total += n
        return total

    def counts(self) -> dict[tuple[str, str, str], int]:
        """{(verb, resource, subresource): n} for reports."""
        with self._lock:
            result: dict[tuple[str, str, str], int] = {}
            for (v, plural, _group, sub), n in self._counts.items():
                result[(v, plural, sub)] = result.get((v, plural, sub), 0) + n
            return result

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self.recent.clear()
            self.reads = self.writes = self.other = 0
