"""The operator as the signer of pod certificates, end to end against the real API server (PCR.md's
contract): the test plays the kubelet of a node for pods that an identity with
``delivery: PodCertificate`` selects, and the API server judges every status the operator writes.

- The webhook injects the projected volume (``podCertificate`` + ``clusterTrustBundle`` sources at the
  Secret volume's name and mount path) and the reconciler writes no Secret for the pod.
- The node's request is Issued: the chain is the node's key's, leaf first, with the pod's SPIFFE ID and
  the identity's DNS names, verifies against the signer's ClusterTrustBundle, and two pods' files shake
  hands with mutual TLS; the times are the leaf's, the lifetime the identity's (capped by
  maxExpirationSeconds), the refresh time the project's renewal rule within the API's bounds.
- Refusals arrive as Denied conditions with a reason and a message: a pod no identity selects, a key of
  a type the identity does not use.
- A CA rotation moves the ClusterTrustBundle through the phases as the Secrets' ca.crt (old, old+new,
  new) while requests keep being issued; the old CA stays trusted while a pod still holds its leaf (only
  the kubelet can replace it, at beginRefreshAt), and goes once the kubelet has asked again.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from mtls_operator.demo.handshake import TLSFiles, mutual_tls_handshake
from mtls_operator.rules.renewal import JITTER_FRACTION, renewal_time
from tests.e2e.conftest import (
    NAMESPACE,
    Cluster,
    OperatorProcess,
    Release,
    assert_rotation_went_through,
    core_path,
    identities_path,
    identity_body,
    kubelet_for,
    managed_secrets,
    pod_certificate_api,
    pod_certificates_missing,
    wait_for,
)
from tests.e2e.kubelet import Kubelet, PodFiles, Request, condition, ctb_path, pod_certificate_volume

pytestmark = pytest.mark.e2e
NODE = "e2e-signer-node"
DURATION = datetime.timedelta(hours=2)
MOUNT_PATH = "/var/run/secrets/mtls.dev"
CA_SECRET = "mtls-operator-ca"


@dataclass
class Signer:
    cluster: Cluster
    version: str
    name: str  # the signer's name
    kubelet: Kubelet

    @property
    def bundle_name(self) -> str:
        return self.name.replace("/", ":") + ":bundle"

    def bundle(self) -> dict[str, Any]:
        answer = self.cluster.api.get(ctb_path(self.version, self.bundle_name))
        assert answer.ok, f"no ClusterTrustBundle {self.bundle_name}: {answer.status} {answer.body}"
        return answer.body

    def anchors(self) -> list[x509.Certificate]:
        return x509.load_pem_x509_certificates(self.bundle()["spec"]["trustBundle"].encode())

    def pod(self, namespace: str, name: str, app: str) -> dict[str, Any]:
        """A pod of ``app`` on the node, opted in: the webhook decides its volumes."""
        return self.kubelet.bind_pod(namespace, name, labels={"app": app, "mtls.dev/inject": "true"})

    def issue(self, pod: dict[str, Any]) -> tuple[PodFiles, dict[str, Any]]:
        request = self.kubelet.request(pod)
        issued = self.kubelet.wait(request, within=60)
        found = condition(issued)
        assert found is not None, issued
        assert found["type"] == "Issued", f"not issued: {issued.get('status')}"
        return self.kubelet.files(pod, request, issued), issued


@pytest.fixture(scope="module")
def signer(cluster: Cluster, release: Release, operator: OperatorProcess) -> Signer:
    missing = pod_certificates_missing()
    if missing:
        pytest.skip(missing)
    version = pod_certificate_api(cluster)
    assert release.pod_certificates, "the suite installs the chart with podCertificates.enabled where it can"
    kubelet = kubelet_for(cluster, NODE, version)
    found = Signer(cluster, version, release.signer_name, kubelet)
    wait_for(lambda: cluster.api.get(ctb_path(version, found.bundle_name)).ok, within=60,
             what=f"the operator's ClusterTrustBundle {found.bundle_name}")
    return found


@pytest.fixture(autouse=True)
def pods_finish(signer: Signer) -> Iterator[None]:
    """After each test the node's pods go, as a kubelet would see them go: none stays behind holding a
    certificate (a CA rotation waits for every live pod's)."""
    yield
    signer.kubelet.finish_pods()


@pytest.fixture
def web(signer: Signer, namespace: str) -> str:
    """An identity ``web`` delivered as pod certificates, in a namespace whose `default` account exists."""
    wait_for(lambda: signer.cluster.api.get(core_path("serviceaccounts", namespace, "default")).ok, within=30,
             what="the default ServiceAccount")
    body = identity_body("web", namespace, dnsNames=[f"web.{namespace}.svc"], duration="2h",
                         delivery="PodCertificate")
    created = signer.cluster.api.create(identities_path(namespace), body)
    assert created.status == 201, created.body
    return "web"


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _issued_by_one_of(leaf: x509.Certificate, anchors: list[x509.Certificate]) -> x509.Certificate:
    for anchor in anchors:
        try:
            leaf.verify_directly_issued_by(anchor)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return anchor
    raise AssertionError(f"the leaf ({leaf.issuer.rfc4514_string()}) is signed by none of the bundle's "
                         f"{len(anchors)} anchors")


def _tls(files: PodFiles) -> TLSFiles:
    return TLSFiles(files.chain_pem, files.key_pem, files.ca_pem)


def test_the_webhook_injects_the_projected_volume_and_no_secret_is_written(signer: Signer, web: str,
                                                                            namespace: str) -> None:
    pod = signer.pod(namespace, "web-0", "web")
    volumes = {volume["name"]: volume for volume in pod["spec"].get("volumes") or []}
    want = pod_certificate_volume(signer.name, "ECDSAP256", max_expiration_seconds=int(DURATION.total_seconds()))
    sources = volumes.get("mtls-identity", {}).get("projected", {}).get("sources") or []
    assert len(sources) == len(want["projected"]["sources"]), volumes.get("mtls-identity")
    for got, wanted in zip(sources, want["projected"]["sources"], strict=True):
        (kind, fields), = wanted.items()
        assert {key: got.get(kind, {}).get(key) for key in fields} == fields, (kind, got)
    for container in pod["spec"]["containers"]:
        mounts = {mount["name"]: mount for mount in container.get("volumeMounts") or []}
        assert mounts["mtls-identity"]["mountPath"] == MOUNT_PATH, container
        assert mounts["mtls-identity"].get("readOnly") is True, container
    files, _ = signer.issue(pod)
    assert files.chain
    # The reconciler leaves the pod to the kubelet: no Secret carries a key for it.
    time.sleep(2)
    assert not [name for name, secret in managed_secrets(signer.cluster, namespace).items()
                if secret["metadata"].get("labels", {}).get("mtls.dev/pod") == "web-0"]


def test_a_node_request_is_issued_as_the_api_server_requires(signer: Signer, web: str, namespace: str) -> None:
    server, client = signer.pod(namespace, "web-0", "web"), signer.pod(namespace, "web-1", "web")
    before = datetime.datetime.now(datetime.UTC)
    server_files, _ = signer.issue(server)
    client_files, _ = signer.issue(client)
    leaf = server_files.chain[0]

    # The node's key, leaf first, the pod's SPIFFE ID and the identity's names.
    assert leaf.public_key() == serialization.load_pem_private_key(server_files.key_pem, None).public_key()
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    spiffe_ids = signer.cluster.api.get(identities_path(namespace, web))["status"].get("spiffeIDs") or []
    assert names.get_values_for_type(x509.UniformResourceIdentifier) == [f"spiffe://{_trust_domain(spiffe_ids)}"
                                                                          f"/ns/{namespace}/sa/default"]
    assert sorted(names.get_values_for_type(x509.DNSName)) == [f"web.{namespace}.svc"]
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca

    # Times: the leaf's, the identity's lifetime within maxExpirationSeconds, the renewal rule's refresh.
    assert (files_times := (server_files.not_before, server_files.not_after)) == (
        leaf.not_valid_before_utc, leaf.not_valid_after_utc), files_times
    lifetime = server_files.not_after - server_files.not_before
    assert datetime.timedelta(hours=1) <= lifetime <= DURATION, lifetime
    assert abs(server_files.not_after - (before + DURATION)) < datetime.timedelta(minutes=6)
    latest = min(renewal_time(server_files.not_before, server_files.not_after, None),
                 server_files.not_after - datetime.timedelta(minutes=10))
    window = server_files.not_after - latest
    earliest = max(latest - window * JITTER_FRACTION - datetime.timedelta(seconds=1),
                   server_files.not_before + datetime.timedelta(minutes=10))
    assert earliest <= server_files.begin_refresh_at <= latest, (earliest, server_files.begin_refresh_at, latest)

    # Trust: the signer's ClusterTrustBundle, the same anchors as the namespace's trust bundle.
    bundle = signer.bundle()
    assert bundle["spec"]["signerName"] == signer.name
    assert bundle["metadata"]["labels"]["mtls.dev/trust-bundle"] == "true"
    anchors = signer.anchors()
    _issued_by_one_of(leaf, anchors)
    config_map = signer.cluster.api.get(core_path("configmaps", namespace, "mtls-trust-bundle"))["data"]["ca.crt"]
    assert {_der(cert) for cert in anchors} == {_der(cert) for cert in
                                                x509.load_pem_x509_certificates(config_map.encode())}
    assert {_der(cert) for cert in x509.load_pem_x509_certificates(server_files.ca_pem)} == {
        _der(cert) for cert in anchors}
    result = mutual_tls_handshake(_tls(server_files), _tls(client_files), server_hostname=f"web.{namespace}.svc")
    assert result.ok, result.error


def _trust_domain(spiffe_ids: list[str]) -> str:
    assert spiffe_ids, "the identity's status names no SPIFFE ID"
    return spiffe_ids[0].removeprefix("spiffe://").split("/", 1)[0]


def _denied(signer: Signer, pod: dict[str, Any], source: dict[str, Any]) -> dict[str, Any]:
    answer, key = signer.kubelet.try_request(pod, source)
    assert answer.status == 201, answer.body
    request = signer.kubelet.wait(Request(answer["metadata"]["namespace"], answer["metadata"]["name"], key,
                                          answer.body), within=60)
    found = condition(request)
    assert found is not None, request
    assert found["type"] == "Denied", request.get("status")
    assert found["reason"], found
    assert found["message"], found
    assert not {"certificateChain", "notBefore", "notAfter"} & set(request["status"]), request["status"]
    return found


def test_refusals_arrive_as_denied_conditions(signer: Signer, web: str, namespace: str) -> None:
    # A pod that no identity serves (not opted in), with the volume written by hand.
    stray = signer.kubelet.bind_pod(namespace, "stray-0", labels={"app": "web"},
                                    volumes=[pod_certificate_volume(signer.name, "ECDSAP256")])
    found = _denied(signer, stray, signer.kubelet.pod_sources(stray)[0])
    assert "stray-0" in found["message"] or "identity" in found["message"].lower(), found

    # A key of a type the identity does not use (it asks for ECDSA P-256).
    pod = signer.pod(namespace, "web-0", "web")
    source = {**signer.kubelet.pod_sources(pod)[0], "keyType": "ED25519"}
    found = _denied(signer, pod, source)
    assert "key" in found["message"].lower(), found


def test_a_request_for_a_signer_the_pod_does_not_mount_is_refused(signer: Signer, web: str, namespace: str) -> None:
    # A pod of `web` whose volume asks another signer: its node asks the operator's signer anyway.
    pod = signer.kubelet.bind_pod(namespace, "elsewhere-0", labels={"app": "web"},
                                  volumes=[pod_certificate_volume("e2e.mtls.dev/elsewhere", "ECDSAP256")])
    source = {**signer.kubelet.pod_sources(pod)[0], "signerName": signer.name}
    if signer.version == "v1":
        # 1.37's NodeRestriction refuses it before any signer sees it.
        answer, _ = signer.kubelet.try_request(pod, source)
        assert answer.status == 403, answer.body
        assert f'does not mount a podCertificate projected volume for signer "{signer.name}"' in answer.body["message"]
        return
    # 1.35/1.36's does not look at the volumes: the operator's signer must, and denies it.
    found = _denied(signer, pod, source)
    assert found["reason"] == "NoPodCertificateVolume", found
    assert "elsewhere-0" in found["message"], found


def test_v1beta1s_deprecated_key_and_proof_of_possession_are_issued(signer: Signer, web: str, namespace: str) -> None:
    if signer.version != "v1beta1":
        pytest.skip(f"certificates.k8s.io/{signer.version} has only stubPKCS10Request (pkixPublicKey and "
                    "proofOfPossession are v1beta1's, Kubernetes 1.35/1.36)")
    pod = signer.pod(namespace, "web-0", "web")
    request = signer.kubelet.request(pod, pkix=True)
    issued = signer.kubelet.wait(request, within=60)
    found = condition(issued)
    assert found is not None, issued
    assert found["type"] == "Issued", issued.get("status")
    files = signer.kubelet.files(pod, request, issued)
    assert files.chain[0].public_key() == request.key.public_key()
    _issued_by_one_of(files.chain[0], signer.anchors())


def _phase(cluster: Cluster) -> str:
    annotations = cluster.api.get(core_path("secrets", NAMESPACE, CA_SECRET))["metadata"].get("annotations") or {}
    return str(annotations.get("mtls.dev/rotation-phase", "Idle"))


def _fingerprint(cluster: Cluster) -> str:
    annotations = cluster.api.get(core_path("secrets", NAMESPACE, CA_SECRET))["metadata"].get("annotations") or {}
    return str(annotations.get("mtls.dev/ca-fingerprint", ""))


@pytest.mark.timeout(900)
def test_a_ca_rotation_moves_the_cluster_trust_bundle_and_waits_for_the_kubelet(signer: Signer, web: str,
                                                                                namespace: str) -> None:
    pod = signer.pod(namespace, "web-0", "web")
    first, _ = signer.issue(pod)
    old = {_der(cert) for cert in signer.anchors()}
    old_signer = _issued_by_one_of(first.chain[0], signer.anchors())
    fingerprint = _fingerprint(signer.cluster)
    marked = signer.cluster.api.patch(core_path("secrets", NAMESPACE, CA_SECRET),
                                      {"metadata": {"annotations": {"mtls.dev/rotate": "true"}}})
    assert marked.ok, marked.body

    phases: list[str] = []
    bundles: list[frozenset[bytes]] = [frozenset(old)]
    current = first  # what the pod's volume holds
    refreshed = False
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        phase = _phase(signer.cluster)
        if not phases or phases[-1] != phase:
            phases.append(phase)
        anchors = frozenset(_der(cert) for cert in signer.anchors())
        if anchors != bundles[-1]:
            bundles.append(anchors)
        if phase == "Reissuing" and not refreshed:
            # (No request in Distributing: with the propagation delay at 0s that phase ends as soon as its last
            # object carries the bundle, so a request sent then may be answered in Reissuing, by the new CA.)
            # The pod presents the old CA's leaf, which only its kubelet can replace (at beginRefreshAt):
            # the old CA must stay trusted until then, however long the propagation delay is past.
            assert current.begin_refresh_at > datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=10)
            held_until = time.monotonic() + 15
            while time.monotonic() < held_until:
                assert _phase(signer.cluster) == "Reissuing", "the old CA was retired while a pod still holds its leaf"
                assert _der(old_signer) in {_der(cert) for cert in signer.anchors()}
                time.sleep(1)
            # The kubelet asks again (early here, as after a restart; at beginRefreshAt otherwise): the new
            # CA answers, and the rotation goes on.
            current, _ = signer.issue(pod)
            assert _der(_issued_by_one_of(current.chain[0], signer.anchors())) != _der(old_signer)
            refreshed = True
        if phase == "Idle" and _fingerprint(signer.cluster) != fingerprint:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"the rotation did not finish within 600s; phases seen: {phases}")
    assert_rotation_went_through(signer.cluster, phases, CA_SECRET)
    assert refreshed

    # The bundle went old -> old+new -> new, as the Secrets' ca.crt does.
    new = bundles[-1]
    assert len(bundles) == 3, f"{len(bundles)} distinct bundles: want old, old+new, new"
    assert bundles[1] == frozenset(old) | new, "old and new during the rotation"
    assert not new & frozenset(old), "the new CA alone at the end"
    # What the pod holds verifies against the final bundle; the old CA's leaves no longer do.
    new_signer = _issued_by_one_of(current.chain[0], signer.anchors())
    assert _der(new_signer) in new
    after, _ = signer.issue(pod)
    assert _der(_issued_by_one_of(after.chain[0], signer.anchors())) == _der(new_signer)
    with pytest.raises(AssertionError):
        _issued_by_one_of(first.chain[0], signer.anchors())
