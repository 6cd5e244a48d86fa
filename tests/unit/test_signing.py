"""Where leaves are signed (controller/signing.py): on the loop when quick, in the pool for RSA."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from mtls_operator.controller.signing import quick, run_issuance
from mtls_operator.models import KeyAlgorithm, KeySpec, Usage
from mtls_operator.pki import CertificateAuthority, IssuedLeaf, LeafRequest, create_self_signed_ca, issue_leaf

NOW = datetime(2026, 11, 27, tzinfo=UTC)
EC_CA = create_self_signed_ca(NOW)
RSA_CA = create_self_signed_ca(NOW, key=KeySpec(KeyAlgorithm.RSA, 2048))


def request(key: KeySpec) -> LeafRequest:
    return LeafRequest("spiffe://cluster.local/ns/a/sa/b", (), frozenset(Usage), key, timedelta(hours=1))


@pytest.mark.parametrize(("ca", "key", "expected"), [
    (EC_CA, KeySpec(), True),
    (EC_CA, KeySpec(KeyAlgorithm.ECDSA, 384), True),
    (EC_CA, KeySpec(KeyAlgorithm.ED25519, None), True),
    (EC_CA, KeySpec(KeyAlgorithm.RSA, 2048), False),
    (RSA_CA, KeySpec(), False),
])
def test_quick_means_no_rsa_key_and_no_rsa_signature(ca: CertificateAuthority, key: KeySpec, expected: bool) -> None:
    assert quick(ca, request(key)) is expected


@pytest.mark.parametrize(("ca", "key", "on_loop"), [(EC_CA, KeySpec(), True), (RSA_CA, KeySpec(), False),
                                                    (EC_CA, KeySpec(KeyAlgorithm.RSA, 2048), False)])
async def test_issues_on_the_loop_only_when_quick(ca: CertificateAuthority, key: KeySpec, on_loop: bool) -> None:
    threads: list[threading.Thread] = []

    def recording(ca: CertificateAuthority, request: LeafRequest, now: datetime) -> IssuedLeaf:
        threads.append(threading.current_thread())
        return issue_leaf(ca, request, now)

    leaf = await run_issuance(recording, ca, request(key), NOW)
    assert leaf.not_after > NOW
    assert (threads == [threading.current_thread()]) is on_loop
    if not on_loop:
        assert threads[0].name.startswith("mtls-signing")
