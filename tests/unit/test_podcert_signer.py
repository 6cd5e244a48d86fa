"""controller/podcert.py: which requests the signer queues, and how it keeps a flood bounded in memory."""

from __future__ import annotations

from typing import Any

import pytest

from mtls_operator.config import Settings
from mtls_operator.controller import podcert
from mtls_operator.controller.index import IdentityIndex
from mtls_operator.controller.podcert import PodCertificateSigner
from mtls_operator.controller.workqueue import RateLimiter
from mtls_operator.observability.metrics import Metrics
from tests.unit.parts import Clock
from tests.unit.pcr_cases import kubelet_key, pcr_body

KEY = kubelet_key()


def make_signer() -> PodCertificateSigner:
    settings = Settings(pod_certificates=True)
    # offer() does no I/O: no cluster or CA is needed to judge what is queued.
    return PodCertificateSigner(None, settings, None, IdentityIndex(settings),  # type: ignore[arg-type]
                                limiter=RateLimiter(1.0), metrics=Metrics(), clock=Clock())


def body(name: str = "req-1", **change: Any) -> dict[str, Any]:
    return pcr_body(KEY, name=name, **change)


def test_a_waiting_request_is_queued_once() -> None:
    signer = make_signer()
    assert signer.offer(body())
    assert signer.offer(body())  # a later event: the latest body replaces the queued one
    assert signer._queue.qsize() == 1


@pytest.mark.parametrize("status", [{"conditions": [{"type": kind, "status": "True"}]}
                                    for kind in ("Issued", "Denied", "Failed")])
def test_answered_requests_are_not_queued(status: dict[str, Any]) -> None:
    assert not make_signer().offer({**body(), "status": status})


def test_another_signers_requests_are_not_queued() -> None:
    assert not make_signer().offer(body(signer="example.com/other"))


def test_a_request_being_answered_is_not_queued_again() -> None:
    signer = make_signer()
    signer._active.add(("shop", "req-1"))
    assert not signer.offer(body())


def test_a_flood_keeps_names_not_bodies_past_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(podcert, "MAX_PENDING_BODIES", 3)
    signer = make_signer()
    for number in range(5):
        signer.offer(body(f"req-{number}"))
    kept = [key for key, held in signer._pending.items() if held is not None]
    assert len(signer._pending) == 5
    assert len(kept) == 3
