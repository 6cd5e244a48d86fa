"""Delivery by PodCertificate with the real operator on the emulator (which serves ClusterTrustBundles
with kube-apiserver's validation): the signer's bundle is published and follows the CA, a pod whose
own volume asks our signer gets no Secret, and pod certificates off say so on the identity."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from kube_emulator import Emulator, EmulatorServer
from mtls_operator import constants as c
from mtls_operator.rules.delivery import PodCertificateSource, projected_volume
from mtls_operator.rules.plan import secret_data

from .conftest import (
    NS,
    OPERATOR_NS,
    FakeClock,
    OperatorHandle,
    eventually,
    get_identity,
    identity,
    managed_secrets,
    operator_settings,
    pod,
    ready,
    settle,
)

SIGNER = "mtls.dev/spiffe"
BUNDLE = "mtls.dev:spiffe:bundle"


@pytest.fixture
async def pcr_operator(server: EmulatorServer, clock: FakeClock) -> AsyncIterator[OperatorHandle]:
    handle = OperatorHandle(server, clock, operator_settings(pod_certificates=True))
    await handle.start()
    try:
        yield handle
    finally:
        await handle.stop()


def ca_bundle(emulator: Emulator) -> str | None:
    secret = emulator.get("v1", "secrets", c.DEFAULT_CA_SECRET, OPERATOR_NS)
    data = secret_data(secret, c.CA_CRT) if secret else None
    return data.decode() if data else None


def trust_bundle(emulator: Emulator, version: str = "v1") -> dict[str, Any] | None:
    return emulator.get(f"certificates.k8s.io/{version}", "clustertrustbundles", BUNDLE)


def with_pod_certificate_volume(body: dict[str, Any]) -> dict[str, Any]:
    body["spec"]["volumes"] = [projected_volume(SIGNER, PodCertificateSource("ECDSAP256", 86400))]
    return body


async def test_the_bundle_is_published_and_follows_the_ca(emulator: Emulator, pcr_operator: OperatorHandle) -> None:
    published = await eventually(lambda: trust_bundle(emulator), what="the ClusterTrustBundle")
    assert published["spec"]["signerName"] == SIGNER
    assert published["metadata"]["labels"] == {c.MANAGED_BY_LABEL: c.MANAGER_NAME, "mtls.dev/trust-bundle": "true"}
    assert published["spec"]["trustBundle"] == ca_bundle(emulator)
    # Served at both versions by the emulator, as by kube-apiserver 1.37: one object.
    assert (trust_bundle(emulator, "v1beta1") or {}).get("spec") == published["spec"]
    # Edited by hand: repaired.
    emulator.patch("certificates.k8s.io/v1", "clustertrustbundles", BUNDLE, None,
                   {"metadata": {"labels": {"mtls.dev/trust-bundle": None}}})
    await eventually(lambda: (trust_bundle(emulator) or {}).get("metadata", {}).get("labels", {})
                     .get("mtls.dev/trust-bundle") == "true", what="the label restored")


async def test_a_pod_asking_our_signer_gets_no_secret(emulator: Emulator, pcr_operator: OperatorHandle) -> None:
    emulator.create(identity("web", delivery="PodCertificate"))
    emulator.create(with_pod_certificate_volume(pod("web-0", "web")))
    emulator.create(pod("web-1", "web"))  # no such volume: served by Secret, as ever
    await eventually(lambda: (ready(emulator, "web") or {}).get("status") == "True", what="web Ready")
    await settle(pcr_operator)
    assert sorted(managed_secrets(emulator, "web")) == ["web-web-1"]
    status = get_identity(emulator, "web")["status"]
    assert (status["pods"], status["issued"], status["podCertificatePods"]) == (2, 1, 1)
    # Both pods' SPIFFE IDs, the kubelet's pod's included.
    emulator.create(with_pod_certificate_volume(pod("web-2", "web", sa="api")))
    await eventually(lambda: get_identity(emulator, "web")["status"].get("podCertificatePods") == 2,
                     what="web-2 counted")
    assert get_identity(emulator, "web")["status"]["spiffeIDs"] == [
        f"spiffe://cluster.local/ns/{NS}/sa/api", f"spiffe://cluster.local/ns/{NS}/sa/default"]


async def test_pod_certificates_off_the_identity_says_so(emulator: Emulator, operator: OperatorHandle) -> None:
    emulator.create(identity("web", delivery="PodCertificate"))
    emulator.create(pod("web-0", "web"))
    condition = await eventually(lambda: ready(emulator, "web"), what="web's Ready condition")
    assert (condition["status"], condition["reason"]) == ("False", "PodCertificatesDisabled")
    await settle(operator)
    assert managed_secrets(emulator, "web") == {}
    assert trust_bundle(emulator) is None
