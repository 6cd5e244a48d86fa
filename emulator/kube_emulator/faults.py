"""Fault injection: chosen API requests fail, slow down or drop their watch streams."""

from __future__ import annotations

import dataclasses
import threading


@dataclasses.dataclass(eq=False)
class Fault:
    """One injected fault; criteria left as None match anything.

    ``status`` answers with that HTTP status and a Status body (500 InternalError, 429
    TooManyRequests with ``Retry-After``, 409 Conflict, ...); ``delay`` waits that many seconds
    on the event loop's clock first (with no ``status``, the request then proceeds normally);
    ``drop_watch`` lets a watch start, send its initial events, then cuts the connection.
    ``count`` is how many times it fires before it removes itself (None: forever);
    ``fired`` how many times it has fired so far.
    """

    verb: str | None = None
    resource: str | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None
    status: int | None = None
    retry_after: float | None = None
    delay: float | None = None
    drop_watch: bool = False
    count: int | None = 1
    fired: int = 0
    message: str | None = None

    def matches(
        self, verb: str, group: str, resource: str, namespace: str | None, name: str | None, subresource: str | None
    ) -> bool:
        if self.verb is not None and self.verb != verb:
            return False
        if self.drop_watch and self.status is None and verb != "watch":
            return False
        if self.resource is not None and self.resource not in (resource, f"{resource}.{group}"):
            return False
        if self.namespace is not None and self.namespace != namespace:
            return False
        if self.name is not None and self.name != name:
            return False
        return self.subresource is None or self.subresource == (subresource or "")

    @property
    def exhausted(self) -> bool:
        return self.count is not None and self.fired >= self.count


class FaultInjector:
    """The faults checked first on every HTTP request, oldest first; the first match fires."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(
        self,
        verb: str | None = None,
        resource: str | None = None,
        status: int | None = None,
        count: int | None = 1,
        retry_after: float | None = None,
        delay: float | None = None,
        drop_watch: bool = False,
        namespace: str | None = None,
        name: str | None = None,
        subresource: str | None = None,
        message: str | None = None,
    ) -> Fault:
        if status is None and delay is None and not drop_watch:
            raise ValueError("a fault needs a status, a delay or drop_watch")
        fault = Fault(
            verb=verb, resource=resource, namespace=namespace, name=name, subresource=subresource,
            status=status, retry_after=retry_after, delay=delay, drop_watch=drop_watch, count=count,
            message=message,
        )
        with self._lock:
            self._faults = [*self._faults, fault]
        return fault

    def remove(self, fault: Fault) -> None:
        with self._lock:
            self._faults = [f for f in self._faults if f is not fault]

    def clear(self) -> None:
        with self._lock:
            self._faults = []

    @property
    def active(self) -> list[Fault]:
        return list(self._faults)

    def __bool__(self) -> bool:
        return bool(self._faults)

    def take(
        self, verb: str, group: str, resource: str, namespace: str | None, name: str | None, subresource: str | None
    ) -> Fault | None:
        """The first matching fault, counted as fired (and removed once exhausted)."""
        if not self._faults:
            return None
        with self._lock:
            for fault in self._faults:
                if fault.matches(verb, group, resource, namespace, name, subresource):
                    fault.fired += 1
                    if fault.exhausted:
                        self._faults = [f for f in self._faults if f is not fault]
                    return fault
        return None
