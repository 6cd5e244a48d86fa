"""The PodCertificateRequest signer in the real operator, against the emulator's certificates.k8s.io (its
status validation ported from the API server): the kubelet's request is issued, a refusal arrives as a
condition, and what is not the signer's is left alone."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kube_emulator import Emulator, EmulatorServer
from kube_emulator.kubelet import Kubelet
from mtls_operator.pki import key_matches_certificate, parse_pem_certificates, verify_leaf
from mtls_operator.pki.bundle import BUNDLE_LIMITS
from mtls_operator.rules import podcert as pc
from tests.unit.pcr_cases import KubeletKey, certificate_volume, kubelet_key, pcr_body

from .conftest import NS, OPERATOR_NS, FakeClock, OperatorHandle, eventually, identity, operator_settings, ready

GROUP = "certificates.k8s.io"


@pytest.fixture
async def signer(server: EmulatorServer, clock: FakeClock) -> AsyncIterator[OperatorHandle]:
    handle = OperatorHandle(server, clock, operator_settings(pod_certificates=True))
    await handle.start()
    try:
        yield handle
    finally:
        await handle.stop()


def kubelet_world(emulator: Emulator, *, pod_name: str = "web-0", app: str = "web", account: str = "web",
                  volumes: list[dict[str, Any]] | None = None, namespace: str = NS) -> dict[str, str]:
    """A node, a service account and a pod bound to the node (with the podCertificate volume): the facts a
    kubelet puts in its request. Returns them by field name."""
    node = emulator.get("v1", "nodes", "node-1") or emulator.create(
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"}})
    sa = emulator.get("v1", "serviceaccounts", account, namespace) or emulator.create(
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account, "namespace": namespace}})
    pod = emulator.create({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod_name, "namespace": namespace, "labels": {"app": app, "mtls.dev/inject": "true"}},
        "spec": {"serviceAccountName": account, "nodeName": "node-1",
                 "containers": [{"name": "app", "image": "example/app:1"}],
                 "volumes": [certificate_volume()] if volumes is None else volumes},
        "status": {"phase": "Running"},
    })
    return {"pod": pod_name, "pod_uid": pod["metadata"]["uid"], "account": account,
            "account_uid": sa["metadata"]["uid"], "node": "node-1", "node_uid": node["metadata"]["uid"]}


def create_request(emulator: Emulator, key: KubeletKey, facts: dict[str, str], *, version: str = "v1",
                   name: str = "req-1", namespace: str = NS, **overrides: Any) -> None:
    body = pcr_body(key, name=name, namespace=namespace, version=version,
                    **{**facts, **overrides})
    body["metadata"] = {"name": name, "namespace": namespace}
    emulator.create(body)


def request_status(emulator: Emulator, name: str, namespace: str = NS) -> dict[str, Any]:
    body = emulator.get(f"{GROUP}/v1", "podcertificaterequests", name, namespace) or {}
    return body.get("status") or {}


async def answered(emulator: Emulator, name: str, namespace: str = NS) -> dict[str, Any]:
    def terminal() -> dict[str, Any] | None:
        status = request_status(emulator, name, namespace)
        conditions = status.get("conditions") or []
        return status if any(cond.get("type") in pc.TERMINAL_CONDITIONS for cond in conditions) else None

    return await eventually(terminal, within=15, what=f"an answer to PodCertificateRequest {name}")


def condition(status: dict[str, Any]) -> tuple[str, str]:
    (cond,) = status["conditions"]
    return cond["type"], cond["reason"]


def ca_bundle(emulator: Emulator) -> list[x509.Certificate]:
    secret = emulator.get("v1", "secrets", "mtls-operator-ca", OPERATOR_NS)
    assert secret is not None
    return parse_pem_certificates(base64.b64decode(secret["data"]["ca.crt"]), BUNDLE_LIMITS)


async def test_a_kubelets_request_is_issued(emulator: Emulator, signer: OperatorHandle, clock: FakeClock) -> None:
    emulator.create(identity("web", dnsNames=["web.shop.svc"]))
    facts = kubelet_world(emulator)
    key = kubelet_key("ECDSAP256")
    create_request(emulator, key, facts)
    status = await answered(emulator, "req-1")
    assert condition(status) == (pc.ISSUED, pc.ISSUED)
    chain = parse_pem_certificates(status["certificateChain"].encode())
    leaf = chain[0]
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert leaf.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki)
    verify_leaf(leaf, chain[1:], ca_bundle(emulator), clock())
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://cluster.local/ns/shop/sa/web"]
    assert names.get_values_for_type(x509.DNSName) == ["web.shop.svc"]
    events = await eventually(lambda: [e for e in emulator.list("v1", "events", NS)
                                       if e["involvedObject"]["name"] == "web" and e["reason"] == pc.ISSUED
                                       and "PodCertificateRequest req-1" in e["message"]],
                              what="the Issued event")
    assert f"serial {leaf.serial_number:x}" in events[0]["message"]


async def test_a_v1beta1_proof_of_possession_is_issued(emulator: Emulator, signer: OperatorHandle) -> None:
    emulator.create(identity("web", privateKey={"algorithm": "Ed25519"}))
    facts = kubelet_world(emulator)
    create_request(emulator, kubelet_key("ED25519"), facts, version="v1beta1", legacy_proof=True)
    status = await answered(emulator, "req-1")
    assert condition(status) == (pc.ISSUED, pc.ISSUED)


async def test_refusals_arrive_as_conditions(emulator: Emulator, signer: OperatorHandle) -> None:
    emulator.create(identity("web"))
    facts = kubelet_world(emulator)
    other = kubelet_world(emulator, pod_name="api-0", app="api")
    create_request(emulator, kubelet_key("ECDSAP384"), facts, name="wrong-key")
    create_request(emulator, kubelet_key(), other, name="no-identity")
    wrong_key = await answered(emulator, "wrong-key")
    assert condition(wrong_key) == (pc.DENIED, pc.UNSUPPORTED_KEY_TYPE)
    assert "keyType: ECDSAP256" in wrong_key["conditions"][0]["message"]
    assert set(wrong_key) == {"conditions"}
    assert condition(await answered(emulator, "no-identity")) == (pc.DENIED, pc.NO_IDENTITY)
    events = await eventually(lambda: [e for e in emulator.list("v1", "events", NS)
                                       if e["reason"] == pc.UNSUPPORTED_KEY_TYPE], what="the Warning event")
    assert events[0]["type"] == "Warning"
    assert events[0]["involvedObject"]["name"] == "web"


async def test_another_signers_requests_are_left_alone(emulator: Emulator, signer: OperatorHandle) -> None:
    emulator.create(identity("web"))
    facts = kubelet_world(emulator, volumes=[certificate_volume("example.com/other")])
    create_request(emulator, kubelet_key(), facts, name="theirs", signer="example.com/other")
    create_request(emulator, kubelet_key(), facts, name="ours")
    assert condition(await answered(emulator, "ours")) == (pc.DENIED, pc.NO_VOLUME)
    await asyncio.sleep(1.0)
    assert request_status(emulator, "theirs") == {}


async def test_the_signer_is_off_unless_asked(emulator: Emulator, operator: OperatorHandle) -> None:
    emulator.create(identity("web"))
    facts = kubelet_world(emulator)
    create_request(emulator, kubelet_key(), facts)
    await eventually(lambda: ready(emulator, "web"), what="a pass over the identity")
    await asyncio.sleep(1.0)
    assert request_status(emulator, "req-1") == {}
    assert operator.runtime.signer is None


async def test_no_ca_is_a_failure_the_operator_owns(server: EmulatorServer, clock: FakeClock) -> None:
    """A user-named CA Secret that does not exist: the operator never creates it, so it cannot sign."""
    emulator = server.emulator
    handle = OperatorHandle(server, clock, operator_settings(pod_certificates=True, ca_secret="corp-ca"))
    await handle.start()
    try:
        emulator.create(identity("web"))
        create_request(emulator, kubelet_key(), kubelet_world(emulator))
        status = await answered(emulator, "req-1")
        assert condition(status) == (pc.FAILED, pc.CA_UNAVAILABLE)
        assert "corp-ca" in status["conditions"][0]["message"]
    finally:
        await handle.stop()


async def test_answered_requests_are_never_answered_again(server: EmulatorServer, clock: FakeClock) -> None:
    """A restart (or a new leader) lists the request again: its status stays as first written."""
    emulator = server.emulator
    emulator.create(identity("web"))
    create_request(emulator, kubelet_key(), kubelet_world(emulator))
    seen = []
    for _ in range(2):
        handle = OperatorHandle(server, clock, operator_settings(pod_certificates=True))
        await handle.start()
        try:
            await answered(emulator, "req-1")
            await asyncio.sleep(1.0)
            seen.append(emulator.get(f"{GROUP}/v1", "podcertificaterequests", "req-1", NS))
        finally:
            await handle.stop()
    assert seen[0] == seen[1]


@pytest.mark.parametrize("api_version", [f"{GROUP}/v1", f"{GROUP}/v1beta1"])
async def test_the_kubelet_stand_in_mounts_the_signed_certificate(emulator: Emulator, signer: OperatorHandle,
                                                                  clock: FakeClock, api_version: str) -> None:
    """The kubelet (the emulator's stand-in, as 1.37 or as 1.35/1.36) makes the key, asks, and mounts."""
    emulator.create(identity("web", privateKey={"algorithm": "ECDSA", "size": 384}))
    kubelet_world(emulator, volumes=[certificate_volume(key_type="ECDSAP384")])
    files = await Kubelet(emulator, "node-1", api_version=api_version).wait_for_volume(NS, "web-0", "mtls-identity")
    key = serialization.load_pem_private_key(files["tls.key"], password=None)
    chain = parse_pem_certificates(files["tls.crt"])
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key_matches_certificate(key, chain[0])
    verify_leaf(chain[0], chain[1:], ca_bundle(emulator), clock())
    names = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://cluster.local/ns/shop/sa/web"]


def _rotation_phase(emulator: Emulator) -> str:
    secret = emulator.get("v1", "secrets", "mtls-operator-ca", OPERATOR_NS) or {}
    return str((secret.get("metadata", {}).get("annotations") or {}).get("mtls.dev/rotation-phase", "Idle"))


async def _advance_until(emulator: Emulator, clock: FakeClock, wanted: str, *, steps: int = 200) -> None:
    for _ in range(steps):
        if _rotation_phase(emulator) == wanted:
            return
        clock.advance(timedelta(seconds=2))
        await asyncio.sleep(0.05)
    raise AssertionError(f"the rotation never reached {wanted} (phase {_rotation_phase(emulator)})")


async def test_a_ca_rotation_keeps_the_old_ca_until_the_kubelets_have_refreshed(server: EmulatorServer,
                                                                               clock: FakeClock) -> None:
    """The operator cannot renew a certificate the kubelet holds: the old CA stays in the bundle (and the
    ClusterTrustBundle) until the pod's kubelet has asked again and the new CA answered."""
    emulator = server.emulator
    handle = OperatorHandle(server, clock, operator_settings(pod_certificates=True,
                                                             ca_propagation_delay=timedelta(seconds=20)))
    await handle.start()
    try:
        emulator.create(identity("web"))
        facts = kubelet_world(emulator)
        create_request(emulator, kubelet_key(), facts, name="req-1")
        first = parse_pem_certificates((await answered(emulator, "req-1"))["certificateChain"].encode())[0]
        old = ca_bundle(emulator)
        emulator.patch("v1", "secrets", "mtls-operator-ca", OPERATOR_NS,
                       {"metadata": {"annotations": {"mtls.dev/rotate": "true"}}})
        await _advance_until(emulator, clock, "Reissuing")
        # Well past the propagation delay: the pod still presents the old CA's leaf, so the old CA stays.
        for _ in range(60):
            clock.advance(timedelta(seconds=2))
            await asyncio.sleep(0.05)
        assert _rotation_phase(emulator) == "Reissuing"
        trusted = {cert.fingerprint(hashes.SHA256()) for cert in ca_bundle(emulator)}
        assert {cert.fingerprint(hashes.SHA256()) for cert in old} <= trusted
        assert any(first.issuer == cert.subject for cert in ca_bundle(emulator))

        # The kubelet asks again (at beginRefreshAt): the new CA answers, and the rotation goes on.
        create_request(emulator, kubelet_key(), facts, name="req-2")
        second = parse_pem_certificates((await answered(emulator, "req-2"))["certificateChain"].encode())[0]
        assert second.issuer != first.issuer
        await _advance_until(emulator, clock, "Idle")
        left = {cert.fingerprint(hashes.SHA256()) for cert in ca_bundle(emulator)}
        assert not {cert.fingerprint(hashes.SHA256()) for cert in old} & left
        assert any(second.issuer == cert.subject for cert in ca_bundle(emulator))
    finally:
        await handle.stop()
