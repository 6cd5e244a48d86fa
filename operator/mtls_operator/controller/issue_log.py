"""The audit trail of issued certificates: one INFO line per certificate, or per batch in a burst.

A line per certificate cost about as much as a tenth of the rest of issuing it (a log record, its
formatting, a write to the stream). Certificates issued within ``DELAY`` seconds of each other for one
identity, with one reason, are logged together: a pod alone (the usual trickle) gets the line it always
had, with its ``pod`` field; a burst (a scale-up, a CA rotation) gets one line per ``BATCH`` pods, each
pod named with its serial, SPIFFE ID and expiry. The lines come at most ``DELAY`` seconds after the
writes; ``flush`` writes what is pending at once (the runtime calls it when it stops).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime

from mtls_operator.observability.logs import fields

# Seconds certificates issued for one identity are gathered before they are logged.
DELAY = 1.0
# Pods per line at most: a log line stays a few kilobytes (container runtimes split lines past 16 KiB).
BATCH = 40
# Characters of a batch's pods per line at most, whatever the names' lengths (a pod's and a service
# account's may be 253 characters each): with the JSON fields around it, a line stays under 16 KiB.
MAX_LINE = 12 * 1024


@dataclass(frozen=True)
class _Issued:
    pod: str
    serial: str
    spiffe_id: str
    not_after: datetime


class IssueLog:
    def __init__(self, logger: logging.Logger, delay: float = DELAY) -> None:
        self._logger = logger
        self._delay = delay
        # (namespace, identity, message, reason) -> the certificates issued since the last flush, in order.
        self._pending: dict[tuple[str, str, str, str], list[_Issued]] = {}
        self._timer: asyncio.TimerHandle | None = None

    def issued(self, message: str, *, namespace: str, identity: str, pod: str, serial: str, spiffe_id: str,
               not_after: datetime, reason: str) -> None:
        """One certificate written: logged within ``DELAY`` seconds (at once outside an event loop)."""
        self._pending.setdefault((namespace, identity, message, reason), []).append(
            _Issued(pod, serial, spiffe_id, not_after))
        if self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._timer = loop.call_later(self._delay, self.flush)

    def flush(self) -> None:
        """Log everything pending now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, {}
        if not self._logger.isEnabledFor(logging.INFO):
            return
        for (namespace, identity, message, reason), issued in pending.items():
            if len(issued) == 1:
                one = issued[0]
                self._logger.info("%s for pod %s/%s: serial %s, %s, expires %s", message, namespace, one.pod,
                                  one.serial, one.spiffe_id, one.not_after.isoformat(),
                                  extra=fields(identity=identity, namespace=namespace, pod=one.pod, reason=reason))
                continue
            for batch in _batches([f"{one.pod} (serial {one.serial}, {one.spiffe_id}, expires "
                                   f"{one.not_after.isoformat()})" for one in issued]):
                self._logger.info("%s for %d pods of identity %s/%s: %s", message, len(batch), namespace, identity,
                                  "; ".join(batch), extra=fields(identity=identity, namespace=namespace, reason=reason))


def _batches(entries: list[str]) -> list[list[str]]:
    """``entries`` in order, cut into lines of at most ``BATCH`` entries and ``MAX_LINE`` characters (an entry
    longer than that alone on its line)."""
    batches: list[list[str]] = []
    size = 0
    for entry in entries:
        if not batches or len(batches[-1]) >= BATCH or size + len(entry) > MAX_LINE:
            batches.append([])
            size = 0
        batches[-1].append(entry)
        size += len(entry) + 2
    return batches
