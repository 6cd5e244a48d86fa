"""Certificates as PEM: parsing, encoding, fingerprints and trust-bundle merging."""

from __future__ import annotations

import re
from collections.abc import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from mtls_operator.errors import PKIError

_BEGIN = b"-----BEGIN CERTIFICATE-----"
_PEM_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


def fingerprint(cert: x509.Certificate) -> str:
    """``sha256:`` and the lowercase hex SHA-256 of the DER certificate (as ``openssl x509 -fingerprint``)."""
    return "sha256:" + cert.fingerprint(hashes.SHA256()).hex()


def certs_to_pem(certs: Iterable[x509.Certificate]) -> bytes:
    """The certificates as concatenated PEM blocks, in the given order."""
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certs)


def parse_pem_certificates(data: bytes) -> list[x509.Certificate]:
    """Every ``CERTIFICATE`` PEM block in ``data``, in order; text between blocks is ignored.

    Raises PKIError when there is none, or when a block is truncated or not a valid certificate.
    """
    begins = data.count(_BEGIN)
    if not begins:
        raise PKIError("no PEM certificate found: expected '-----BEGIN CERTIFICATE-----' blocks")
    blocks = _PEM_BLOCK.findall(data)
    if len(blocks) != begins:
        raise PKIError("malformed PEM: a '-----BEGIN CERTIFICATE-----' line has no matching END line")
    certs = []
    for number, block in enumerate(blocks, start=1):
        try:
            cert = x509.load_pem_x509_certificate(block)
            # Extensions are parsed lazily; touch them so a broken one fails here, not later.
            _ = cert.extensions
        except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType):
            raise PKIError(
                f"certificate {number} of {len(blocks)} is malformed: not a valid X.509 certificate"
            ) from None
        certs.append(cert)
    return certs


def merge_bundles(*bundles: Iterable[x509.Certificate]) -> list[x509.Certificate]:
    """All certificates of all bundles, each once (by fingerprint), in first-seen order."""
    seen: set[str] = set()
    merged = []
    for bundle in bundles:
        for cert in bundle:
            key = fingerprint(cert)
            if key not in seen:
                seen.add(key)
                merged.append(cert)
    return merged
