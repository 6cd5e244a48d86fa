"""rules/delivery.py: the projection parameters from an identity, a pod's delivery from its own
volumes, the ClusterTrustBundle's name and body."""

from __future__ import annotations

from typing import Any

import pytest

from mtls_operator import constants as c
from mtls_operator.rules.delivery import (
    MAX_MAX_EXPIRATION_SECONDS,
    PodCertificateSource,
    cluster_trust_bundle_body,
    cluster_trust_bundle_name,
    delivered_by_pod_certificate,
    pod_certificate_signers,
    pod_certificate_source,
    projected_volume,
)
from mtls_operator.rules.plan import pod_info
from mtls_operator.rules.spec import parse_identity_spec

SIGNER = "mtls.dev/spiffe"


def source(**spec: Any) -> PodCertificateSource | None:
    return pod_certificate_source(parse_identity_spec({"selector": {"matchLabels": {"app": "a"}}, **spec},
                                                      namespace="shop"))


@pytest.mark.parametrize(
    ("key", "key_type"),
    [
        ({}, "ECDSAP256"),
        ({"algorithm": "ECDSA", "size": 384}, "ECDSAP384"),
        ({"algorithm": "Ed25519"}, "ED25519"),
        ({"algorithm": "RSA", "size": 3072}, "RSA3072"),
        ({"algorithm": "RSA", "size": 4096}, "RSA4096"),
    ],
)
def test_key_type_follows_the_identitys_key(key: dict[str, Any], key_type: str) -> None:
    found = source(delivery="PodCertificate", privateKey=key)
    assert found is not None
    assert found.key_type == key_type


@pytest.mark.parametrize(
    ("duration", "seconds", "capped"),
    [("1h", 3600, False), ("24h", 86400, False), ("1h30m", 5400, False), ("2184h", 7862400, False),
     ("2184h1s", 7862400, True), ("8760h", MAX_MAX_EXPIRATION_SECONDS, True)],
)
def test_max_expiration_is_the_duration_within_the_apis_bounds(duration: str, seconds: int, capped: bool) -> None:
    assert source(delivery="PodCertificate", duration=duration) == PodCertificateSource("ECDSAP256", seconds, capped)


def test_secret_delivery_has_no_source() -> None:
    assert source() is None
    assert source(delivery="Secret") is None


def _pod(volumes: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "shop"}, "spec": {"volumes": volumes}}


PROJECTED = projected_volume(SIGNER, PodCertificateSource("ED25519", 3600))


@pytest.mark.parametrize(
    ("volumes", "signers"),
    [
        ([PROJECTED], {SIGNER}),
        ([{"name": "other", "emptyDir": {}}, PROJECTED], {SIGNER}),
        ([projected_volume("example.com/x", PodCertificateSource("ED25519", 3600))], {"example.com/x"}),
        # Only the mtls-identity volume counts: the same source under another name delivers nothing of ours.
        ([{**PROJECTED, "name": "mine"}], set()),
        ([{"name": c.IDENTITY_VOLUME, "secret": {"secretName": "s"}}], set()),
        ([{"name": c.IDENTITY_VOLUME, "projected": {"sources": [{"clusterTrustBundle": {"path": "ca.crt"}}]}}], set()),
        # Whatever shape a pod has, never an exception.
        (None, set()), ("x", set()), ([{"name": c.IDENTITY_VOLUME, "projected": "x"}], set()),
        ([{"name": c.IDENTITY_VOLUME, "projected": {"sources": ["x", {"podCertificate": 1}]}}], set()),
    ],
)
def test_a_pods_delivery_is_read_from_its_own_mtls_volume(volumes: Any, signers: set[str]) -> None:
    info = pod_info(_pod(volumes))
    assert info.pod_certificate_signers == frozenset(signers) == pod_certificate_signers(volumes)
    assert delivered_by_pod_certificate(info.pod_certificate_signers, SIGNER) is (SIGNER in signers)


def test_an_annotation_never_decides_the_delivery() -> None:
    body = _pod(None)
    body["metadata"]["annotations"] = {"mtls.dev/delivery": "PodCertificate"}
    assert not delivered_by_pod_certificate(pod_info(body).pod_certificate_signers, SIGNER)


def test_cluster_trust_bundle_name_and_body() -> None:
    assert cluster_trust_bundle_name(SIGNER) == "mtls.dev:spiffe:bundle"
    assert cluster_trust_bundle_name("example.com/a.b") == "example.com:a.b:bundle"
    body = cluster_trust_bundle_body(SIGNER, b"PEM", "v1beta1")
    assert body == {
        "apiVersion": "certificates.k8s.io/v1beta1",
        "kind": "ClusterTrustBundle",
        "metadata": {"name": "mtls.dev:spiffe:bundle",
                     "labels": {c.MANAGED_BY_LABEL: c.MANAGER_NAME, "mtls.dev/trust-bundle": "true"}},
        "spec": {"signerName": SIGNER, "trustBundle": "PEM"},
    }
