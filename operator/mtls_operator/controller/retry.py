"""What an error means for retry and backoff: the one place that decides it.

The reconciler handles what it can (a bad spec waits for the user, a missing CA is looked at again
soon, a failed write fails that pod only) and lets the rest reach the work queue, which backs the
key off. Both ask ``verdict`` what an exception means, and both back off through the queue's one
``Backoff``: a failing key and a key with a standing problem share one streak.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from mtls_operator.errors import CAError, KubernetesAPIError, MTLSError, PKIError, SpecError
from mtls_operator.observability.metrics import IssuanceError

K = TypeVar("K", bound=Hashable)

# The longest wait between two tries of a key, whatever its streak.
MAX_BACKOFF = 300.0
# The first retry of a key whose processing raised.
FAILURE_BASE = 1.0


class Retry(enum.Enum):
    """How to try again (a commented enum, alike in shape to the rotation phases: nothing shared)."""

    # Transient (the API server, a race, a bug): try again, waiting longer each time.
    BACKOFF = "backoff"
    # Outside our control but fixable any moment (the CA Secret): look again soon, at a fixed delay.
    SOON = "soon"
    # The user must change something (the spec): nothing until an event says they did.
    ON_CHANGE = "on-change"


@dataclass(frozen=True)
class Verdict:
    retry: Retry
    # The ``reason`` label of mtls_issuance_errors_total; None for errors that are no issuance's.
    metric: IssuanceError | None


def verdict(exc: BaseException) -> Verdict:
    """What ``exc`` means: how to retry, and which issuance error it counts as."""
    if isinstance(exc, SpecError):
        return Verdict(Retry.ON_CHANGE, IssuanceError.INVALID_SPEC)
    if isinstance(exc, CAError):
        return Verdict(Retry.SOON, IssuanceError.CA_UNAVAILABLE)
    if isinstance(exc, PKIError):  # ChainError included: a leaf that does not verify is never written
        return Verdict(Retry.BACKOFF, IssuanceError.PKI)
    if isinstance(exc, KubernetesAPIError):
        # Even the ones a retry cannot fix alone (403, 422): RBAC or an admission policy gets fixed
        # by a person, and the backoff keeps the cost of waiting for it low.
        return Verdict(Retry.BACKOFF, IssuanceError.API)
    return Verdict(Retry.BACKOFF, None)


def issuance_error(exc: MTLSError) -> IssuanceError:
    """The ``reason`` a failed issuance counts as: ``verdict``'s, else an API error."""
    return verdict(exc).metric or IssuanceError.API


@dataclass(frozen=True)
class BackOff:
    """A processor's answer for a standing problem (a clash, a missing password Secret): look again
    after the key's backoff, starting from ``base`` seconds."""

    base: float


class Backoff(Generic[K]):
    """Per-key exponential backoff: ``base * 2**streak`` up to ``cap``; a success resets the streak."""

    def __init__(self, cap: float = MAX_BACKOFF) -> None:
        self.cap = cap
        self._streaks: dict[K, int] = {}

    def next_delay(self, key: K, base: float) -> float:
        streak = self._streaks.get(key, 0)
        self._streaks[key] = streak + 1
        return min(self.cap, base * 2.0**streak)

    def streak(self, key: K) -> int:
        return self._streaks.get(key, 0)

    def reset(self, key: K) -> None:
        self._streaks.pop(key, None)
