"""A kubelet stand-in for the e2e suite: a Node with credentials of its own, and the requests a kubelet
makes for a pod's ``podCertificate`` projected volume sources.

What the real kubelet does (pkg/kubelet/podcertificate/podcertificatemanager.go of 1.37), and this
module does the same way, as the node (client certificate ``system:node:<name>`` in ``system:nodes``,
so that the Node authorizer and the NodeRestriction admission plugin judge it):
- reads the pod and its ServiceAccount (for the account's UID), again while the Node authorizer's graph
  (filled from informers after the pod is bound) has no edge to them yet, as the kubelet retries;
- generates the key in memory (RSA3072, RSA4096, ECDSAP256/384/521, ED25519) and a stub PKCS#10
  request, empty apart from the public key and its self-signature (Go's
  ``x509.CreateCertificateRequest`` with an empty template: the signature is the proof of possession);
- creates a PodCertificateRequest with ``generateName: req-``, an ownerReference to the pod (APIVersion,
  Kind, Name, UID; no controller flag), and the spec fields signerName, podName, podUID,
  serviceAccountName/UID, nodeName/UID, maxExpirationSeconds (the source's, which may be absent: the
  API server defaults it to 24h), stubPKCS10Request, unverifiedUserAnnotations;
- waits for a terminal condition (Issued, Denied, Failed), and once issued, hands the pod the key, the
  chain (``tls.crt`` leaf first) and the trust anchors of the ClusterTrustBundles its
  ``clusterTrustBundle`` sources select.
The key never leaves this process, as it never leaves the node.
"""

from __future__ import annotations

import base64
import datetime
import time
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from tests.e2e.client import Answer, Client

KEY_TYPES = ("RSA3072", "RSA4096", "ECDSAP256", "ECDSAP384", "ECDSAP521", "ED25519")
TERMINAL = ("Issued", "Denied", "Failed")
GROUP = "certificates.k8s.io"

# How long a node's read waits for the Node authorizer's graph to learn a new pod's edges.
GRAPH_LAG_SECONDS = 30.0

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def generate_key(key_type: str) -> PrivateKey:
    """A key of one of the ``keyType`` values of a podCertificate source."""
    if key_type in ("RSA3072", "RSA4096"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[3:]))
    curves: dict[str, ec.EllipticCurve] = {"ECDSAP256": ec.SECP256R1(), "ECDSAP384": ec.SECP384R1(),
                                           "ECDSAP521": ec.SECP521R1()}
    if key_type in curves:
        return ec.generate_private_key(curves[key_type])
    if key_type == "ED25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unknown key type {key_type!r}; the API knows {', '.join(KEY_TYPES)}")


def stub_pkcs10(key: PrivateKey) -> bytes:
    """The DER of an empty certificate request signed by ``key``, with the hash Go's x509 picks for it."""
    algorithm: hashes.SHA256 | hashes.SHA384 | hashes.SHA512 | None = hashes.SHA256()
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 256:
        algorithm = hashes.SHA384() if key.curve.key_size == 384 else hashes.SHA512()
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        algorithm = None
    request = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, algorithm)
    return request.public_bytes(serialization.Encoding.DER)


def proof_of_possession(key: PrivateKey, pod_uid: str) -> tuple[bytes, bytes]:
    """v1beta1's deprecated key form (1.35, and 1.36 beside stubPKCS10Request): the DER (PKIX) public key and
    its signature over the ASCII bytes of the pod's UID, as pkg/apis/certificates/validation verifies it
    (Ed25519; ECDSA ASN.1 over SHA-256; RSASSA-PSS with SHA-256, Go's salt length for nil options)."""
    message = pod_uid.encode()
    if isinstance(key, ed25519.Ed25519PrivateKey):
        proof = key.sign(message)
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        proof = key.sign(message, ec.ECDSA(hashes.SHA256()))
    else:
        proof = key.sign(message, padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                                              salt_length=padding.PSS.MAX_LENGTH), hashes.SHA256())
    pkix = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    return pkix, proof


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def serves(api: Client, version: str, resource: str = "podcertificaterequests") -> bool:
    """Whether certificates.k8s.io/``version`` serves ``resource``."""
    answer = api.get(f"/apis/{GROUP}/{version}")
    return answer.ok and any(item.get("name") == resource for item in answer.body.get("resources") or [])


def served_version(api: Client, resource: str = "podcertificaterequests") -> str | None:
    """The newest version of certificates.k8s.io that serves ``resource`` (the operator picks the same
    way), or None."""
    return next((version for version in ("v1", "v1beta1") if serves(api, version, resource)), None)


def pcr_path(version: str, namespace: str, name: str = "") -> str:
    return f"/apis/{GROUP}/{version}/namespaces/{namespace}/podcertificaterequests" + (f"/{name}" if name else "")


def ctb_path(version: str, name: str = "") -> str:
    return f"/apis/{GROUP}/{version}/clustertrustbundles" + (f"/{name}" if name else "")


def pod_certificate_volume(signer: str, key_type: str, *, max_expiration_seconds: int | None = None,
                           name: str = "mtls-identity") -> dict[str, Any]:
    """A projected volume as the operator's webhook injects it for ``delivery: PodCertificate`` (PCR.md):
    the key at tls.key, the chain at tls.crt, the signer's ClusterTrustBundles at ca.crt."""
    source: dict[str, Any] = {"signerName": signer, "keyType": key_type, "keyPath": "tls.key",
                              "certificateChainPath": "tls.crt"}
    if max_expiration_seconds is not None:
        source["maxExpirationSeconds"] = max_expiration_seconds
    return {"name": name, "projected": {"sources": [
        {"podCertificate": source},
        {"clusterTrustBundle": {"signerName": signer, "path": "ca.crt",
                                "labelSelector": {"matchLabels": {"mtls.dev/trust-bundle": "true"}}}},
    ]}}


def condition(pcr: dict[str, Any]) -> dict[str, Any] | None:
    """The terminal condition of a PodCertificateRequest, None while it is pending."""
    for item in (pcr.get("status") or {}).get("conditions") or []:
        if item.get("type") in TERMINAL and item.get("status") == "True":
            found: dict[str, Any] = item
            return found
    return None


def graph_lag(answer: Answer, node_name: str) -> bool:
    """The Node authorizer's refusal of an object it has no edge to yet: its graph is filled from
    informers after the pod is bound, so a read right after may meet it; the kubelet retries then."""
    return answer.status == 403 and (
        f"no relationship found between node '{node_name}' and this object" in str(answer.body.get("message", "")))


def parse_time(value: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass(frozen=True)
class Request:
    """A PodCertificateRequest the node created, with the key only the node holds."""

    namespace: str
    name: str
    key: PrivateKey
    body: dict[str, Any]


@dataclass(frozen=True)
class PodFiles:
    """What the pod's projected volume holds once the request is issued."""

    key_pem: bytes
    chain_pem: bytes
    ca_pem: bytes
    chain: tuple[x509.Certificate, ...]
    not_before: datetime.datetime
    not_after: datetime.datetime
    begin_refresh_at: datetime.datetime


class Kubelet:
    """One node: its Node object and its credentials (``client`` speaks as the node)."""

    def __init__(self, admin: Client, client: Client, node_name: str, version: str) -> None:
        self.admin = admin
        self.client = client
        self.node_name = node_name
        self.version = version
        self.node_uid = ""
        # The pods bound here and not yet confirmed gone (namespace, name).
        self.pods: list[tuple[str, str]] = []

    def read(self, path: str, *, within: float = GRAPH_LAG_SECONDS) -> Answer:
        """GET ``path`` as the node, again while the Node authorizer's graph has no edge from this node
        to the object yet (for ``within`` seconds); any other answer, 403s included, is returned as is."""
        deadline = time.monotonic() + within
        while True:
            answer = self.client.get(path)
            if not graph_lag(answer, self.node_name):
                return answer
            if time.monotonic() > deadline:
                raise AssertionError(f"the Node authorizer still relates node {self.node_name} to nothing at "
                                     f"{path} after {within:.0f}s (is the pod bound to the node?): "
                                     f"{answer.body.get('message')}")
            time.sleep(0.25)

    def register(self) -> str:
        """Create the node's own Node object as the kubelet does (NodeRestriction lets a node create
        only itself); its UID goes into every request."""
        body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.node_name, "labels": {
            "kubernetes.io/hostname": self.node_name, "mtls.dev/e2e": "true"}}}
        answer = self.client.create("/api/v1/nodes", body)
        if answer.status == 409:
            answer = self.client.get(f"/api/v1/nodes/{self.node_name}")
        assert answer.ok, f"node {self.node_name} could not register: {answer.status} {answer.body}"
        self.node_uid = answer["metadata"]["uid"]
        return self.node_uid

    def bind_pod(self, namespace: str, name: str, *, volumes: list[dict[str, Any]] | None = None,
                 labels: dict[str, str] | None = None, service_account: str = "default") -> dict[str, Any]:
        """A pod bound to this node from the start (there is no scheduler), created by the admin."""
        body = {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": namespace, "labels": labels or {"app": name}},
                "spec": {"nodeName": self.node_name, "serviceAccountName": service_account,
                         "containers": [{"name": "app", "image": "example/app:1"}], "volumes": volumes or []}}
        answer = self.admin.create(f"/api/v1/namespaces/{namespace}/pods", body)
        assert answer.status == 201, f"pod {namespace}/{name}: {answer.status} {answer.body}"
        self.pods.append((namespace, name))
        return answer.body

    def finish_pods(self) -> None:
        """Confirm that the pods bound here are gone, as the kubelet does once their containers stopped (a
        deletion with grace period 0). Without a kubelet, a bound pod being deleted (its namespace deleted)
        stays Terminating for ever, and still counts as live: e.g. a CA rotation waits for its certificate."""
        for namespace, name in self.pods:
            answer = self.admin.delete(f"/api/v1/namespaces/{namespace}/pods/{name}", {"gracePeriodSeconds": 0})
            assert answer.ok or answer.status == 404, f"pod {namespace}/{name}: {answer.status} {answer.body}"
        self.pods.clear()

    def pod_sources(self, pod: dict[str, Any]) -> list[dict[str, Any]]:
        """The pod's podCertificate sources, in volume order (the kubelet keys a credential by volume and
        source index)."""
        return [source["podCertificate"] for volume in pod["spec"].get("volumes") or []
                for source in (volume.get("projected") or {}).get("sources") or [] if "podCertificate" in source]

    def request_body(self, pod: dict[str, Any], service_account_uid: str, source: dict[str, Any],
                     key: PrivateKey, *, node_name: str | None = None, pkix: bool = False) -> dict[str, Any]:
        """The request's body; ``pkix``: the key as v1beta1's deprecated pkixPublicKey + proofOfPossession
        (what a 1.35 kubelet sends) instead of a stub PKCS#10 request."""
        meta, spec = pod["metadata"], pod["spec"]
        pcr_spec: dict[str, Any] = {
            "signerName": source["signerName"], "podName": meta["name"], "podUID": meta["uid"],
            "serviceAccountName": spec.get("serviceAccountName") or "default",
            "serviceAccountUID": service_account_uid,
            "nodeName": node_name or self.node_name, "nodeUID": self.node_uid,
        }
        if pkix:
            public, proof = proof_of_possession(key, meta["uid"])
            pcr_spec["pkixPublicKey"] = base64.b64encode(public).decode()
            pcr_spec["proofOfPossession"] = base64.b64encode(proof).decode()
        else:
            pcr_spec["stubPKCS10Request"] = base64.b64encode(stub_pkcs10(key)).decode()
        if source.get("maxExpirationSeconds") is not None:
            pcr_spec["maxExpirationSeconds"] = source["maxExpirationSeconds"]
        if source.get("userAnnotations"):
            pcr_spec["unverifiedUserAnnotations"] = source["userAnnotations"]
        return {"apiVersion": f"{GROUP}/{self.version}", "kind": "PodCertificateRequest",
                "metadata": {"generateName": "req-", "namespace": meta["namespace"], "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]}]},
                "spec": pcr_spec}

    def try_request(self, pod: dict[str, Any], source: dict[str, Any], *, node_name: str | None = None,
                    service_account_uid: str | None = None, within: float = 20.0,
                    pkix: bool = False) -> tuple[Answer, PrivateKey]:
        """Create the request as the node; the API server's answer and the key. NodeRestriction reads
        pods, nodes and ServiceAccounts from its informers: an answer other than 403 may be their lag,
        and the kubelet retries then, as this does for ``within`` seconds."""
        namespace = pod["metadata"]["namespace"]
        if service_account_uid is None:
            account = self.read(
                f"/api/v1/namespaces/{namespace}/serviceaccounts/{pod['spec'].get('serviceAccountName') or 'default'}")
            assert account.ok, f"the node cannot read the pod's ServiceAccount: {account.status} {account.body}"
            service_account_uid = account["metadata"]["uid"]
        key = generate_key(source["keyType"])
        body = self.request_body(pod, service_account_uid, source, key, node_name=node_name, pkix=pkix)
        deadline = time.monotonic() + within
        while True:
            answer = self.client.create(pcr_path(self.version, namespace), body)
            if answer.ok or answer.status in (403, 422) or time.monotonic() > deadline:
                return answer, key
            time.sleep(0.25)

    def request(self, pod: dict[str, Any], source: dict[str, Any] | None = None, *, pkix: bool = False) -> Request:
        """The request for one of the pod's podCertificate sources (the first by default), which the API
        server must accept."""
        source = source or self.pod_sources(pod)[0]
        answer, key = self.try_request(pod, source, pkix=pkix)
        assert answer.status == 201, f"the API server refused the node's request: {answer.status} {answer.body}"
        return Request(answer["metadata"]["namespace"], answer["metadata"]["name"], key, answer.body)

    def wait(self, request: Request, within: float = 60.0) -> dict[str, Any]:
        """The request once it has a terminal condition (read as the node: the Node authorizer lets a
        node get the requests of its pods)."""
        deadline = time.monotonic() + within
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            answer = self.read(pcr_path(self.version, request.namespace, request.name),
                               within=max(0.0, deadline - time.monotonic()))
            assert answer.ok, f"the node cannot read its request: {answer.status} {answer.body}"
            last = answer.body
            if condition(last):
                return last
            time.sleep(0.25)
        raise AssertionError(f"no Issued/Denied/Failed condition on {request.namespace}/{request.name} within "
                             f"{within:.0f}s; status: {last.get('status')!r}")

    def trust_anchors(self, pod: dict[str, Any]) -> bytes:
        """The ca.crt of the pod's clusterTrustBundle sources: the trust anchors of every bundle of the
        signer that the label selector picks, concatenated (as the kubelet writes them)."""
        anchors: list[bytes] = []
        for volume in pod["spec"].get("volumes") or []:
            for source in (volume.get("projected") or {}).get("sources") or []:
                selected = source.get("clusterTrustBundle")
                if not selected:
                    continue
                labels = (selected.get("labelSelector") or {}).get("matchLabels") or {}
                selector = ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
                answer = self.client.get(ctb_path(self.version), **({"labelSelector": selector} if selector else {}))
                assert answer.ok, f"the node cannot list ClusterTrustBundles: {answer.status} {answer.body}"
                for bundle in answer["items"]:
                    if bundle["spec"].get("signerName") == selected.get("signerName"):
                        for cert in x509.load_pem_x509_certificates(bundle["spec"]["trustBundle"].encode()):
                            pem = cert.public_bytes(serialization.Encoding.PEM)
                            if pem not in anchors:
                                anchors.append(pem)
        return b"".join(anchors)

    def files(self, pod: dict[str, Any], request: Request, issued: dict[str, Any]) -> PodFiles:
        status = issued["status"]
        chain_pem = status["certificateChain"].encode()
        return PodFiles(
            key_pem=key_pem(request.key), chain_pem=chain_pem, ca_pem=self.trust_anchors(pod),
            chain=tuple(x509.load_pem_x509_certificates(chain_pem)),
            not_before=parse_time(status["notBefore"]), not_after=parse_time(status["notAfter"]),
            begin_refresh_at=parse_time(status["beginRefreshAt"]))
