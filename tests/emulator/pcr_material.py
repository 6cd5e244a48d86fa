"""Keys, requests and certificates for the certificates.k8s.io tests (what a kubelet and a signer make)."""

from __future__ import annotations

import base64
import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import NameOID

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
NOW = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
SIGNER = "mtls.dev/spiffe"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def stub_csr(key: PrivateKey) -> bytes:
    """An empty PKCS#10 request self-signed by ``key``, DER (what the kubelet sends)."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.DER)


def spki(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def proof_of_possession(key: PrivateKey, pod_uid: str) -> bytes:
    """The v1beta1 proof: the pod UID signed (Ed25519; ECDSA/RSA-PSS over its SHA-256)."""
    data = pod_uid.encode()
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    return key.sign(data, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())


def ca(name: str = "test CA", *, is_ca: bool = True, basic_constraints: bool = True) -> tuple[x509.Certificate,
                                                                                              PrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(NOW - datetime.timedelta(days=1))
               .not_valid_after(NOW + datetime.timedelta(days=365)))
    if basic_constraints:
        builder = builder.add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    return builder.sign(key, hashes.SHA256()), key


def leaf(issuer: tuple[x509.Certificate, PrivateKey], subject_key: PrivateKey | Any, *,
         not_before: datetime.datetime = NOW, lifetime: datetime.timedelta = datetime.timedelta(hours=24),
         dns_names: tuple[str, ...] = ()) -> x509.Certificate:
    """A leaf for ``subject_key`` (a private key, or a public key as a signer reads it from a request)."""
    issuer_cert, issuer_key = issuer
    public = subject_key.public_key() if hasattr(subject_key, "private_bytes") else subject_key
    builder = (x509.CertificateBuilder().subject_name(x509.Name([]))
               .issuer_name(issuer_cert.subject).public_key(public)
               .serial_number(x509.random_serial_number()).not_valid_before(not_before)
               .not_valid_after(not_before + lifetime)
               .add_extension(x509.SubjectAlternativeName(
                   [x509.UniformResourceIdentifier("spiffe://cluster.local/ns/default/sa/default"),
                    *(x509.DNSName(n) for n in dns_names)]), critical=True))
    return builder.sign(issuer_key, hashes.SHA256())  # type: ignore[arg-type]


def pem(*certs: x509.Certificate) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


def rfc3339(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(kind: str, reason: str = "Because", status: str = "True", **extra: Any) -> dict[str, Any]:
    return {"type": kind, "status": status, "reason": reason, "message": "a message",
            "lastTransitionTime": rfc3339(NOW), **extra}


def issued_status(cert: x509.Certificate, chain: str | None = None, **overrides: Any) -> dict[str, Any]:
    """A status as a correct signer writes it for ``cert`` (refresh half-way through)."""
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    status: dict[str, Any] = {
        "conditions": [condition("Issued", "Issued")],
        "certificateChain": chain if chain is not None else pem(cert),
        "notBefore": rfc3339(not_before),
        "notAfter": rfc3339(not_after),
        "beginRefreshAt": rfc3339(not_before + (not_after - not_before) / 2),
    }
    status.update(overrides)
    return {k: v for k, v in status.items() if v is not None}


def pcr(key: PrivateKey | None = None, *, name: str = "req", version: str = "v1", signer: str = SIGNER,
        **spec: Any) -> dict[str, Any]:
    """A PodCertificateRequest body with a valid spec (overridden by ``spec``; None drops a field)."""
    body_spec: dict[str, Any] = {
        "signerName": signer, "podName": "app", "podUID": "pod-uid", "serviceAccountName": "default",
        "serviceAccountUID": "sa-uid", "nodeName": "node-a", "nodeUID": "node-uid", "maxExpirationSeconds": 86400,
    }
    if key is not None:
        body_spec["stubPKCS10Request"] = b64(stub_csr(key))
    body_spec.update(spec)
    return {"apiVersion": f"certificates.k8s.io/{version}", "kind": "PodCertificateRequest",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {k: v for k, v in body_spec.items() if v is not None}}


def ctb(name: str, bundle: str, signer: str | None = SIGNER, version: str = "v1") -> dict[str, Any]:
    spec: dict[str, Any] = {"trustBundle": bundle}
    if signer is not None:
        spec["signerName"] = signer
    return {"apiVersion": f"certificates.k8s.io/{version}", "kind": "ClusterTrustBundle", "metadata": {"name": name},
            "spec": spec}
