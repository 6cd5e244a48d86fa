"""retry.py: what an error means for retry and backoff, and the one backoff."""

from __future__ import annotations

import pytest

from mtls_operator.controller.retry import Backoff, Retry, Verdict, issuance_error, verdict
from mtls_operator.errors import (
    CAError,
    ChainError,
    ConflictError,
    KubernetesAPIError,
    MTLSError,
    NotFoundError,
    PKIError,
    PolicyError,
    SpecError,
)
from mtls_operator.observability.metrics import IssuanceError


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        pytest.param(SpecError("spec.duration", "bad"), Verdict(Retry.ON_CHANGE, IssuanceError.INVALID_SPEC),
                     id="spec"),
        pytest.param(PolicyError("spec.dnsNames", "foreign"), Verdict(Retry.ON_CHANGE, IssuanceError.INVALID_SPEC),
                     id="policy"),
        pytest.param(CAError("no CA"), Verdict(Retry.SOON, IssuanceError.CA_UNAVAILABLE), id="ca-before-pki"),
        pytest.param(ChainError("does not verify"), Verdict(Retry.BACKOFF, IssuanceError.PKI), id="chain"),
        pytest.param(PKIError("signing failed"), Verdict(Retry.BACKOFF, IssuanceError.PKI), id="pki"),
        pytest.param(KubernetesAPIError("503", status=503), Verdict(Retry.BACKOFF, IssuanceError.API), id="api"),
        pytest.param(KubernetesAPIError("403", status=403, retryable=False), Verdict(Retry.BACKOFF, IssuanceError.API),
                     id="api-forbidden-waits-for-a-person"),
        pytest.param(ConflictError("409"), Verdict(Retry.BACKOFF, IssuanceError.API), id="conflict"),
        pytest.param(NotFoundError("404"), Verdict(Retry.BACKOFF, IssuanceError.API), id="not-found"),
        pytest.param(RuntimeError("a bug"), Verdict(Retry.BACKOFF, None), id="anything-else"),
    ],
)
def test_verdict(error: Exception, expected: Verdict) -> None:
    assert verdict(error) == expected


def test_backoff_doubles_from_the_base_up_to_the_cap_and_resets() -> None:
    backoff: Backoff[str] = Backoff(cap=100.0)
    assert [backoff.next_delay("k", 15.0) for _ in range(5)] == [15.0, 30.0, 60.0, 100.0, 100.0]
    assert backoff.streak("k") == 5
    assert backoff.next_delay("other", 1.0) == 1.0  # per key
    backoff.reset("k")
    assert backoff.next_delay("k", 15.0) == 15.0


def test_failures_and_standing_problems_share_one_streak() -> None:
    backoff: Backoff[str] = Backoff()
    assert backoff.next_delay("k", 1.0) == 1.0  # the reconcile raised
    assert backoff.next_delay("k", 15.0) == 30.0  # then a standing problem: the streak goes on


def test_a_failed_issuance_always_counts_as_some_reason() -> None:
    assert issuance_error(ChainError("does not verify")) is IssuanceError.PKI
    assert issuance_error(ConflictError("409")) is IssuanceError.API
    assert issuance_error(MTLSError("anything else of ours")) is IssuanceError.API
