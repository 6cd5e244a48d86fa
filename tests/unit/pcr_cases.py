"""What PodCertificateRequest tests share: the kubelet's side (keys, the stub PKCS#10, the deprecated
proof of possession) and the objects a request is judged against (pod, service account, node, identity)."""

from __future__ import annotations

import base64
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from mtls_operator import constants as c

SIGNER = "mtls.dev/spiffe"
NAMESPACE = "shop"
POD_UID = "0b6c2a1e-7f3d-4b8a-9c1d-5e6f7a8b9c0d"
SA_UID = "5a1f0c3e-2b4d-4e6f-8a9b-0c1d2e3f4a5b"
NODE_UID = "9e8d7c6b-5a4f-4e3d-2c1b-0a9f8e7d6c5b"

KubeletKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def kubelet_key(key_type: str = "ECDSAP256") -> KubeletKey:
    """A key as the kubelet generates it for ``keyType``."""
    curves = {"ECDSAP256": ec.SECP256R1(), "ECDSAP384": ec.SECP384R1(), "ECDSAP521": ec.SECP521R1()}
    if key_type in curves:
        return ec.generate_private_key(curves[key_type])
    if key_type.startswith("RSA"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type.removeprefix("RSA")))
    assert key_type == "ED25519"
    return ed25519.Ed25519PrivateKey.generate()


def _hash(key: KubeletKey) -> hashes.HashAlgorithm | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def stub_pkcs10(key: KubeletKey) -> bytes:
    """The kubelet's empty PKCS#10 request, signed by ``key`` (DER)."""
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, _hash(key))
    return csr.public_bytes(serialization.Encoding.DER)


def pkix(key: KubeletKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def proof_of_possession(key: KubeletKey, pod_uid: str) -> bytes:
    """v1beta1's proof: the key's signature over the pod UID's bytes, as the API defines it."""
    message = pod_uid.encode()
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(message)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(message, ec.ECDSA(hashes.SHA256()))
    return key.sign(message, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def pcr_body(key: KubeletKey | None = None, *, name: str = "req-abc12", namespace: str = NAMESPACE,
             pod: str = "web-0", pod_uid: str = POD_UID, account: str = "web", account_uid: str = SA_UID,
             node: str = "node-1", node_uid: str = NODE_UID, signer: str = SIGNER, max_expiration: int | None = 86400,
             version: str = "v1", legacy_proof: bool = False, **spec: Any) -> dict[str, Any]:
    """A PodCertificateRequest as the kubelet creates it (``legacy_proof``: v1beta1's pkixPublicKey form)."""
    key = key or kubelet_key()
    body_spec: dict[str, Any] = {
        "signerName": signer, "podName": pod, "podUID": pod_uid, "serviceAccountName": account,
        "serviceAccountUID": account_uid, "nodeName": node, "nodeUID": node_uid,
    }
    if max_expiration is not None:
        body_spec["maxExpirationSeconds"] = max_expiration
    if legacy_proof:
        body_spec.update(pkixPublicKey=b64(pkix(key)), proofOfPossession=b64(proof_of_possession(key, pod_uid)))
    else:
        body_spec["stubPKCS10Request"] = b64(stub_pkcs10(key))
    body_spec.update(spec)
    return {
        "apiVersion": f"certificates.k8s.io/{version}", "kind": "PodCertificateRequest",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}", "resourceVersion": "1"},
        "spec": body_spec,
    }


def certificate_volume(signer: str = SIGNER, key_type: str = "ECDSAP256") -> dict[str, Any]:
    return {"name": c.IDENTITY_VOLUME, "projected": {"sources": [
        {"podCertificate": {"signerName": signer, "keyType": key_type, "keyPath": c.TLS_KEY,
                            "certificateChainPath": c.TLS_CRT}},
    ]}}


def pod_body(name: str = "web-0", *, uid: str = POD_UID, account: str = "web", node: str | None = "node-1",
             labels: dict[str, str] | None = None, volumes: list[dict[str, Any]] | None = None,
             namespace: str = NAMESPACE, **spec: Any) -> dict[str, Any]:
    body_spec: dict[str, Any] = {
        "serviceAccountName": account, "containers": [{"name": "app", "image": "app"}],
        "volumes": [certificate_volume()] if volumes is None else volumes, **spec,
    }
    if node is not None:
        body_spec["nodeName"] = node
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "uid": uid,
                     "labels": {c.INJECT_LABEL: c.INJECT_VALUE, "app": "web"} if labels is None else labels},
        "spec": body_spec,
    }


def service_account_body(name: str = "web", uid: str = SA_UID) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": NAMESPACE,
                                                                         "uid": uid}}


def node_body(name: str = "node-1", uid: str = NODE_UID) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "uid": uid}}


def identity_body(name: str = "web", *, created: str = "2026-01-01T00:00:00Z", uid: str | None = None,
                  **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{c.GROUP}/{c.VERSION}", "kind": c.KIND,
        "metadata": {"name": name, "namespace": NAMESPACE, "uid": uid or f"uid-{name}",
                     "creationTimestamp": created, "generation": 1},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, **spec},
    }
