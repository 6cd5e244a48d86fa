"""The kubelet stand-in: pod certificates and trust bundles of projected volumes, as kubelet 1.37 makes them."""

from __future__ import annotations

import asyncio
import base64
import datetime
import random
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from kube_emulator import Emulator, Kubelet, VolumeNotReady, certificates

from .pcr_material import NOW, SIGNER, ca, condition, ctb, issued_status, leaf, pem, rfc3339

PCR_API = "certificates.k8s.io/v1"
ZERO = datetime.timedelta(0)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime.datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def emulator(clock: Clock) -> Emulator:
    emulator = Emulator(clock=clock)
    emulator.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-a"}})
    return emulator


def seeded(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 - the order of trust anchors, not a secret


@pytest.fixture(scope="module")
def issuer() -> Any:
    return ca("cluster CA")


@pytest.fixture
def kubelet(emulator: Emulator) -> Kubelet:
    return Kubelet(emulator, "node-a", jitter=lambda: ZERO, rng=seeded(7))


def mtls_volume(key_type: str = "ECDSAP256", *, selector: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """The volume the webhook injects for ``delivery: PodCertificate``."""
    bundle: dict[str, Any] = {"signerName": SIGNER, "path": "ca.crt",
                              "labelSelector": selector if selector is not None else
                              {"matchLabels": {"mtls.dev/trust-bundle": "true"}}}
    return {"name": "mtls", "projected": {"sources": [
        {"podCertificate": {"signerName": SIGNER, "keyType": key_type, "keyPath": "tls.key",
                            "certificateChainPath": "tls.crt", "credentialBundlePath": "bundle.pem", **extra}},
        {"clusterTrustBundle": bundle},
    ]}}


def make_pod(emulator: Emulator, name: str = "app", node: str | None = "node-a", volume: dict[str, Any] | None = None,
             annotations: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "i"}], "volumes": [volume or mtls_volume()]}
    if node is not None:
        spec["nodeName"] = node
    return emulator.create({"apiVersion": "v1", "kind": "Pod",
                            "metadata": {"name": name, "namespace": "default", "annotations": annotations or {}},
                            "spec": spec})


def publish_bundle(emulator: Emulator, *cas: x509.Certificate, name: str = "mtls.dev:spiffe:bundle",
                   labels: dict[str, str] | None = None, signer: str = SIGNER) -> None:
    body = ctb(name, pem(*cas), signer=signer)
    body["metadata"]["labels"] = labels if labels is not None else {"mtls.dev/trust-bundle": "true"}
    emulator.create(body)


def requests(emulator: Emulator) -> list[dict[str, Any]]:
    return emulator.list(PCR_API, "podcertificaterequests", "default")


def sign(emulator: Emulator, request: dict[str, Any], issuer: Any, now: datetime.datetime = NOW,
         lifetime: datetime.timedelta = datetime.timedelta(hours=24)) -> x509.Certificate:
    """What a signer does: a leaf for the request's key, written through /status."""
    csr = x509.load_der_x509_csr(base64.b64decode(request["spec"]["stubPKCS10Request"]))
    cert = leaf(issuer, csr.public_key(), not_before=now, lifetime=lifetime)
    chain = "junk before\n" + pem(cert, issuer[0])
    emulator.replace({**request, "status": issued_status(cert, chain=chain)}, subresource="status")
    return cert


def deny(emulator: Emulator, request: dict[str, Any]) -> None:
    status = {"conditions": [condition("Denied", "NoIdentity", message="no MTLSIdentity selects the pod")]}
    emulator.replace({**request, "status": status}, subresource="status")


# ----------------------------------------------------------------------------------- requests
def test_request_is_made_as_the_kubelet_makes_it(emulator: Emulator, kubelet: Kubelet) -> None:
    pod = make_pod(emulator, volume=mtls_volume(maxExpirationSeconds=7200, userAnnotations={"mtls.dev/x": "y"}))
    kubelet.sync()
    [request] = requests(emulator)
    meta, spec = request["metadata"], request["spec"]
    assert meta["name"].startswith("req-")
    owner = {"apiVersion": "v1", "kind": "Pod", "name": "app", "uid": pod["metadata"]["uid"]}
    assert meta["ownerReferences"] == [owner]
    sa = emulator.get("v1", "serviceaccounts", "default", "default")
    node = emulator.get("v1", "nodes", "node-a")
    assert sa is not None
    assert node is not None
    assert {k: v for k, v in spec.items() if k != "stubPKCS10Request"} == {
        "signerName": SIGNER, "podName": "app", "podUID": pod["metadata"]["uid"], "serviceAccountName": "default",
        "serviceAccountUID": sa["metadata"]["uid"], "nodeName": "node-a", "nodeUID": node["metadata"]["uid"],
        "maxExpirationSeconds": 7200, "unverifiedUserAnnotations": {"mtls.dev/x": "y"},
    }
    csr = x509.load_der_x509_csr(base64.b64decode(spec["stubPKCS10Request"]))
    assert csr.is_signature_valid
    assert len(csr.subject) == 0
    assert len(csr.extensions) == 0
    assert request["status"] == {}


def test_max_expiration_seconds_left_to_the_apiserver_default(emulator: Emulator, kubelet: Kubelet) -> None:
    make_pod(emulator)
    kubelet.sync()
    assert requests(emulator)[0]["spec"]["maxExpirationSeconds"] == 86400


@pytest.mark.parametrize(("key_type", "kind", "size"), [
    ("ECDSAP256", ec.EllipticCurvePublicKey, 256), ("ECDSAP384", ec.EllipticCurvePublicKey, 384),
    ("ECDSAP521", ec.EllipticCurvePublicKey, 521), ("ED25519", ed25519.Ed25519PublicKey, None),
    ("RSA3072", rsa.RSAPublicKey, 3072),
])
def test_key_type(emulator: Emulator, kubelet: Kubelet, key_type: str, kind: type, size: int | None) -> None:
    make_pod(emulator, volume=mtls_volume(key_type))
    kubelet.sync()
    key = x509.load_der_x509_csr(base64.b64decode(requests(emulator)[0]["spec"]["stubPKCS10Request"])).public_key()
    assert isinstance(key, kind)
    if size is not None:
        assert key.key_size == size  # type: ignore[union-attr]


def test_unknown_key_type_makes_no_request(emulator: Emulator, kubelet: Kubelet) -> None:
    make_pod(emulator, volume=mtls_volume("DSA1024"))
    kubelet.sync()
    assert requests(emulator) == []
    record = kubelet.projection("default", "app", "mtls", 0)
    assert record is not None
    assert record.last_error == 'unknown key type "DSA1024"'


def test_only_pods_bound_to_the_node_with_its_node_object(emulator: Emulator, clock: Clock) -> None:
    make_pod(emulator, "unbound", node=None)
    make_pod(emulator, "elsewhere", node="node-b")
    make_pod(emulator, "mirror", annotations={"kubernetes.io/config.mirror": "x"})
    kubelet_b = Kubelet(emulator, "node-b", jitter=lambda: ZERO)
    kubelet_b.sync()
    assert requests(emulator) == []
    record = kubelet_b.projection("default", "elsewhere", "mtls", 0)
    assert record is not None
    assert record.last_error.startswith("while getting node object from local cache")
    emulator.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-b"}})
    kubelet_b.sync()
    assert [r["spec"]["podName"] for r in requests(emulator)] == ["elsewhere"]
    Kubelet(emulator, "node-a").sync()
    assert sorted(r["spec"]["podName"] for r in requests(emulator)) == ["elsewhere"]


# ------------------------------------------------------------------------------------ volumes
def test_files_once_issued(emulator: Emulator, kubelet: Kubelet, issuer: Any) -> None:
    make_pod(emulator)
    publish_bundle(emulator, issuer[0])
    kubelet.sync()
    with pytest.raises(VolumeNotReady, match="credential bundle is not issued yet") as caught:
        kubelet.volume("default", "app", "mtls")
    assert not caught.value.permanent
    cert = sign(emulator, requests(emulator)[0], issuer)
    kubelet.sync()
    files = kubelet.volume("default", "app", "mtls")
    assert set(files) == {"tls.key", "tls.crt", "bundle.pem", "ca.crt"}
    assert files["tls.crt"] == pem(cert, issuer[0]).encode()  # cleaned: the text before the blocks is gone
    key = serialization.load_pem_private_key(files["tls.key"], None)
    assert files["tls.key"].startswith(b"-----BEGIN PRIVATE KEY-----\n")
    assert key.public_key() == cert.public_key()
    assert files["bundle.pem"] == files["tls.key"] + files["tls.crt"]
    assert files["ca.crt"] == pem(issuer[0]).encode()


def test_the_key_never_reaches_the_api(emulator: Emulator, kubelet: Kubelet, issuer: Any) -> None:
    make_pod(emulator)
    publish_bundle(emulator, issuer[0])
    kubelet.sync()
    sign(emulator, requests(emulator)[0], issuer)
    kubelet.sync()
    key_body = kubelet.volume("default", "app", "mtls")["tls.key"].split(b"\n")[1]
    for resource in ("secrets", "configmaps"):
        assert emulator.list("v1", resource, "default") == []
    assert key_body.decode() not in str(requests(emulator))


def test_denied_is_permanent(emulator: Emulator, kubelet: Kubelet, issuer: Any) -> None:
    make_pod(emulator)
    publish_bundle(emulator, issuer[0])
    kubelet.sync()
    deny(emulator, requests(emulator)[0])
    kubelet.sync()
    with pytest.raises(VolumeNotReady) as caught:
        kubelet.volume("default", "app", "mtls")
    assert caught.value.permanent
    assert caught.value.problems == ['PodCertificateRequest was permanently denied: reason="NoIdentity" '
                                     'message="no MTLSIdentity selects the pod"']
    kubelet.sync()
    assert len(requests(emulator)) == 1


def test_failed_is_permanent(emulator: Emulator, kubelet: Kubelet) -> None:
    make_pod(emulator)
    kubelet.sync()
    request = requests(emulator)[0]
    emulator.replace({**request, "status": {"conditions": [condition("Failed", "SignerDown")]}},
                     subresource="status")
    kubelet.sync()
    with pytest.raises(VolumeNotReady, match='permanently failed: reason="SignerDown"'):
        kubelet.volume("default", "app", "mtls")


def test_refresh_at_begin_refresh_at(emulator: Emulator, kubelet: Kubelet, issuer: Any, clock: Clock) -> None:
    make_pod(emulator)
    publish_bundle(emulator, issuer[0])
    kubelet.sync()
    first = sign(emulator, requests(emulator)[0], issuer)
    kubelet.sync()
    before = kubelet.volume("default", "app", "mtls")
    clock.now = NOW + datetime.timedelta(hours=12) - datetime.timedelta(seconds=1)
    kubelet.sync()
    assert len(requests(emulator)) == 1
    clock.now = NOW + datetime.timedelta(hours=12)
    kubelet.sync()
    pending = [r for r in requests(emulator) if r["status"] == {}]
    assert len(pending) == 1
    assert kubelet.volume("default", "app", "mtls") == before  # the old credentials, until the new ones arrive
    second = sign(emulator, pending[0], issuer, now=clock.now)
    kubelet.sync()
    after = kubelet.volume("default", "app", "mtls")
    assert after["tls.key"] != before["tls.key"]
    assert x509.load_pem_x509_certificate(after["tls.crt"]).serial_number == second.serial_number != first.serial_number


def test_refresh_waits_for_the_jitter(emulator: Emulator, issuer: Any, clock: Clock) -> None:
    kubelet = Kubelet(emulator, "node-a", jitter=lambda: datetime.timedelta(minutes=3))
    make_pod(emulator)
    kubelet.sync()
    sign(emulator, requests(emulator)[0], issuer)
    kubelet.sync()
    clock.now = NOW + datetime.timedelta(hours=12, minutes=2)
    kubelet.sync()
    assert len(requests(emulator)) == 1
    clock.now = NOW + datetime.timedelta(hours=12, minutes=3)
    kubelet.sync()
    assert len(requests(emulator)) == 2


def test_a_deleted_request_is_made_again_after_10_minutes(emulator: Emulator, kubelet: Kubelet,
                                                          clock: Clock) -> None:
    make_pod(emulator)
    kubelet.sync()
    first = requests(emulator)[0]["metadata"]["name"]
    emulator.delete(PCR_API, "podcertificaterequests", first, "default")
    clock.now = NOW + datetime.timedelta(minutes=10)
    kubelet.sync()
    assert requests(emulator) == []
    clock.now = NOW + datetime.timedelta(minutes=10, seconds=1)
    kubelet.sync()  # gives up on it
    kubelet.sync()  # and makes a new one
    [second] = requests(emulator)
    assert second["metadata"]["name"] != first


def test_a_deleted_pod_is_forgotten(emulator: Emulator, kubelet: Kubelet) -> None:
    make_pod(emulator)
    kubelet.sync()
    assert len(kubelet.projections) == 1
    emulator.delete("v1", "pods", "app", "default")
    kubelet.sync()
    assert kubelet.projections == {}


def test_a_refused_request_is_reported_and_retried(emulator: Emulator, kubelet: Kubelet) -> None:
    volume = mtls_volume()
    volume["projected"]["sources"][0]["podCertificate"]["maxExpirationSeconds"] = 1000  # refused by validation
    make_pod(emulator, volume=volume)
    kubelet.sync()
    record = kubelet.projection("default", "app", "mtls", 0)
    assert record is not None
    assert "spec.maxExpirationSeconds: Invalid value: 1000" in record.last_error
    assert record.state == "initial"
    assert requests(emulator) == []


def test_requests_at_v1beta1(emulator: Emulator, issuer: Any) -> None:
    kubelet = Kubelet(emulator, "node-a", jitter=lambda: ZERO, api_version="certificates.k8s.io/v1beta1")
    make_pod(emulator)
    publish_bundle(emulator, issuer[0])
    kubelet.sync()
    [request] = emulator.list("certificates.k8s.io/v1beta1", "podcertificaterequests", "default")
    sign(emulator, request, issuer)
    kubelet.sync()
    assert "tls.crt" in kubelet.volume("default", "app", "mtls")


# ------------------------------------------------------------------------------- trust bundles
def test_trust_anchors_selected_by_signer_and_labels_deduplicated(emulator: Emulator, kubelet: Kubelet,
                                                                  issuer: Any) -> None:
    next_ca, _ = ca("next CA")
    other_signer, _ = ca("other signer's CA")
    unlabelled, _ = ca("unlabelled")
    publish_bundle(emulator, issuer[0], name="mtls.dev:spiffe:bundle")
    publish_bundle(emulator, next_ca, issuer[0], name="mtls.dev:spiffe:next")
    publish_bundle(emulator, unlabelled, name="mtls.dev:spiffe:other", labels={})
    publish_bundle(emulator, other_signer, name="example.com:signer:b", signer="example.com/signer")
    selector = {"matchLabels": {"mtls.dev/trust-bundle": "true"}}
    found = kubelet.trust_anchors({"signerName": SIGNER, "labelSelector": selector})
    assert sorted(c.serial_number for c in x509.load_pem_x509_certificates(found)) == sorted(
        [issuer[0].serial_number, next_ca.serial_number])
    everything = kubelet.trust_anchors({"signerName": SIGNER, "labelSelector": {}})
    assert len(x509.load_pem_x509_certificates(everything)) == 3


def test_trust_anchor_order_is_fixed_per_kubelet(emulator: Emulator, issuer: Any) -> None:
    publish_bundle(emulator, issuer[0], *(ca(f"CA {i}")[0] for i in range(5)))
    source = {"signerName": SIGNER, "labelSelector": {}}
    orders = {Kubelet(emulator, "node-a", rng=seeded(seed)).trust_anchors(source) for seed in range(6)}
    assert len(orders) > 1
    same = Kubelet(emulator, "node-a", rng=seeded(1))
    assert same.trust_anchors(source) == Kubelet(emulator, "node-a", rng=seeded(1)).trust_anchors(source)


def test_no_selector_matches_nothing(emulator: Emulator, kubelet: Kubelet, issuer: Any) -> None:
    publish_bundle(emulator, issuer[0])
    with pytest.raises(VolumeNotReady, match="matched zero ClusterTrustBundles"):
        kubelet.trust_anchors({"signerName": SIGNER})
    assert kubelet.trust_anchors({"signerName": SIGNER, "optional": True}) == b""


def test_trust_bundle_by_name(emulator: Emulator, kubelet: Kubelet, issuer: Any) -> None:
    publish_bundle(emulator, issuer[0])
    assert kubelet.trust_anchors({"name": "mtls.dev:spiffe:bundle"}) == pem(issuer[0]).encode()
    with pytest.raises(VolumeNotReady, match="not found"):
        kubelet.trust_anchors({"name": "absent"})
    assert kubelet.trust_anchors({"name": "absent", "optional": True}) == b""


def test_volume_waits_for_the_trust_bundle(emulator: Emulator, kubelet: Kubelet, issuer: Any) -> None:
    make_pod(emulator)
    kubelet.sync()
    sign(emulator, requests(emulator)[0], issuer)
    kubelet.sync()
    with pytest.raises(VolumeNotReady, match="matched zero ClusterTrustBundles") as caught:
        kubelet.volume("default", "app", "mtls")
    assert not caught.value.permanent
    publish_bundle(emulator, issuer[0])
    assert kubelet.volume("default", "app", "mtls")["ca.crt"] == pem(issuer[0]).encode()


# ------------------------------------------------------------------------------------- waiting
async def test_wait_for_volume_while_a_signer_works(emulator: Emulator, kubelet: Kubelet, issuer: Any) -> None:
    make_pod(emulator)
    publish_bundle(emulator, issuer[0])

    async def signer() -> None:
        for _ in range(500):  # polls like a slow informer; the kubelet waits meanwhile
            if requests(emulator):
                sign(emulator, requests(emulator)[0], issuer)
                return
            await asyncio.sleep(0.01)

    task = asyncio.create_task(signer())
    files = await kubelet.wait_for_volume("default", "app", "mtls", within=5)
    await task
    assert x509.load_pem_x509_certificates(files["tls.crt"])[1] == issuer[0]


async def test_wait_for_volume_stops_at_a_denial(emulator: Emulator, kubelet: Kubelet) -> None:
    make_pod(emulator)
    kubelet.sync()
    deny(emulator, requests(emulator)[0])
    with pytest.raises(VolumeNotReady, match="permanently denied"):
        await kubelet.wait_for_volume("default", "app", "mtls", within=5)


async def test_wait_for_volume_times_out(emulator: Emulator, kubelet: Kubelet) -> None:
    make_pod(emulator)
    with pytest.raises(VolumeNotReady, match="not issued yet"):
        await kubelet.wait_for_volume("default", "app", "mtls", within=0.1, interval=0.02)


def test_issued_status_times_round_trip(emulator: Emulator, kubelet: Kubelet, issuer: Any) -> None:
    make_pod(emulator)
    kubelet.sync()
    cert = sign(emulator, requests(emulator)[0], issuer)
    kubelet.sync()
    record = kubelet.projection("default", "app", "mtls", 0)
    assert record is not None
    assert record.not_after == cert.not_valid_after_utc
    assert record.begin_refresh_at is not None
    assert rfc3339(record.begin_refresh_at) == rfc3339(NOW + datetime.timedelta(hours=12))
    assert certificates.is_issued(requests(emulator)[0])
