"""A signer of the tests' own, to write PodCertificateRequest statuses by hand: the API server's status
validation is judged on statuses that are right in every way but one.

Times are whole seconds: the API's timestamps (``metav1.Time``) are RFC 3339 seconds, and the API server
requires ``status.notBefore``/``notAfter`` to equal the leaf's.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.e2e.kubelet import PrivateKey

PublicKey = Any  # any public key a PodCertificateRequest may carry


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def stamp(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@dataclass(frozen=True)
class SigningCA:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(cls, name: str = "e2e test signer") -> SigningCA:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        start = now() - datetime.timedelta(hours=1)
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=2))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(key, hashes.SHA256()))
        return cls(cert, key)

    @property
    def pem(self) -> str:
        return pem(self.cert)

    def leaf(self, public_key: PublicKey, not_before: datetime.datetime, lifetime: datetime.timedelta,
             *, uri: str = "spiffe://cluster.local/ns/e2e/sa/default") -> x509.Certificate:
        return (x509.CertificateBuilder().subject_name(x509.Name([]))
                .issuer_name(self.cert.subject).public_key(public_key)
                .serial_number(x509.random_serial_number())
                .not_valid_before(not_before).not_valid_after(not_before + lifetime)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=True)
                .sign(self.key, hashes.SHA256()))


def leaf_cert(ca: SigningCA, key: PrivateKey, lifetime: datetime.timedelta = datetime.timedelta(hours=2),
              not_before: datetime.datetime | None = None) -> x509.Certificate:
    return ca.leaf(key.public_key(), not_before or now(), lifetime)


def condition(kind: str, reason: str, message: str) -> dict[str, Any]:
    return {"type": kind, "status": "True", "reason": reason, "message": message,
            "lastTransitionTime": stamp(now())}


def issued_status(chain: list[x509.Certificate], *, not_before: datetime.datetime | None = None,
                  not_after: datetime.datetime | None = None,
                  begin_refresh_at: datetime.datetime | None = None) -> dict[str, Any]:
    """An ``Issued`` status for ``chain`` (leaf first); each time defaults to what validation wants:
    the leaf's notBefore/notAfter, and a refresh at half the lifetime."""
    leaf = chain[0]
    start, end = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    return {"conditions": [condition("Issued", "Issued", "issued by the e2e test signer")],
            "certificateChain": "".join(pem(cert) for cert in chain),
            "notBefore": stamp(not_before or start), "notAfter": stamp(not_after or end),
            "beginRefreshAt": stamp(begin_refresh_at or start + (end - start) / 2)}
