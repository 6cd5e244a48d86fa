"""Certificates as PEM: parsing, encoding, fingerprints and trust-bundle merging.

PEM text comes from Secrets and ConfigMaps that tenants may write, so parsing is bounded work: the
input's size and certificate count are capped before anything is decoded, and the blocks are found
by one forward scan that looks at each byte a bounded number of times (never a backtracking regex).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from mtls_operator.errors import PKIError

_BEGIN = b"-----BEGIN CERTIFICATE-----"
_END = b"-----END CERTIFICATE-----"


@dataclass(frozen=True)
class PemLimits:
    """The most one field may hold; checked before any decoding."""

    what: str
    max_bytes: int
    max_certificates: int


# tls.crt: a leaf and the intermediates above it. A leaf with the most DNS names a spec allows (100
# names of up to 253 characters) is about 35 KB of PEM, a CA certificate 1-2 KB, and a path has at
# most 8 CAs above its leaf (verify.MAX_CHAIN_DEPTH): 10 certificates in 64 KiB hold any chain we
# issue or accept, with room to spare.
CHAIN_LIMITS = PemLimits("certificate chain", 64 * 1024, 10)
# ca.crt and trust bundles: the operator's anchors (two during a rotation) or the roots a user's CA
# chains to. 100 certificates is fifty times what a rotation needs; 1 MiB is also the most a
# Kubernetes Secret or ConfigMap can hold.
BUNDLE_LIMITS = PemLimits("trust bundle", 1024 * 1024, 100)


@dataclass(frozen=True)
class PemScan:
    """The ``CERTIFICATE`` blocks of some PEM text, what is wrong with it, and the work the scan took.

    ``examined`` counts the bytes the scan's searches covered: at most twice the input's length
    whatever the input holds, so the work is linear (the property tests check it, on every input,
    refused ones included). ``problem`` is None when the blocks are all there is to know.
    """

    blocks: tuple[bytes, ...]
    examined: int
    problem: str | None = None


# The same few CA certificates are fingerprinted several times for every leaf signed and every chain
# checked: remembered (a certificate hashes and compares by its DER bytes).
@functools.lru_cache(maxsize=256)
def fingerprint(cert: x509.Certificate) -> str:
    """``sha256:`` and the lowercase hex SHA-256 of the DER certificate (as ``openssl x509 -fingerprint``)."""
    return "sha256:" + cert.fingerprint(hashes.SHA256()).hex()


def certs_to_pem(certs: Iterable[x509.Certificate]) -> bytes:
    """The certificates as concatenated PEM blocks, in the given order."""
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certs)


def scan_pem_blocks(data: bytes, limits: PemLimits = BUNDLE_LIMITS) -> PemScan:
    """Every ``BEGIN CERTIFICATE`` ... ``END CERTIFICATE`` block of ``data``, in order, undecoded.

    One pass from a moving offset: each search starts where the last one stopped, and the check for
    a BEGIN line inside a block re-reads only that block. The scan stops at the first problem: data
    over the limits (found before scanning, or at the first certificate too many), no block at all,
    or a BEGIN line without its END line.
    """
    if len(data) > limits.max_bytes:
        problem = f"PEM data of {len(data)} bytes is over the {limits.max_bytes}-byte limit of a {limits.what}"
        return PemScan(blocks=(), examined=0, problem=problem)
    unmatched = "malformed PEM: a '-----BEGIN CERTIFICATE-----' line has no matching END line"
    blocks: list[bytes] = []
    examined = 0
    offset = 0
    size = len(data)
    while True:
        begin = data.find(_BEGIN, offset)
        if begin < 0:
            examined += size - offset
            break
        body = begin + len(_BEGIN)
        examined += body - offset
        if len(blocks) == limits.max_certificates:
            problem = f"more than {limits.max_certificates} certificates: over the limit of a {limits.what}"
            return PemScan(blocks=tuple(blocks), examined=examined, problem=problem)
        end = data.find(_END, body)
        if end < 0:
            return PemScan(blocks=tuple(blocks), examined=examined + size - body, problem=unmatched)
        # The block once more, for a BEGIN line whose END is missing (the next block's END closed it).
        examined += 2 * (end - body) + len(_END)
        if data.find(_BEGIN, body, end) >= 0:
            return PemScan(blocks=tuple(blocks), examined=examined, problem=unmatched)
        offset = end + len(_END)
        blocks.append(data[begin:offset])
    if not blocks:
        return PemScan(blocks=(), examined=examined,
                       problem="no PEM certificate found: expected '-----BEGIN CERTIFICATE-----' blocks")
    return PemScan(blocks=tuple(blocks), examined=examined)


def parse_pem_certificates(data: bytes, limits: PemLimits = BUNDLE_LIMITS) -> list[x509.Certificate]:
    """Every ``CERTIFICATE`` PEM block in ``data``, in order; text between blocks is ignored.

    Raises PKIError when ``data`` is over ``limits`` (bytes or certificates), holds no block, or
    when a block is truncated or not a valid certificate.
    """
    scan = scan_pem_blocks(data, limits)
    if scan.problem is not None:
        raise PKIError(scan.problem)
    blocks = scan.blocks
    certs = []
    for number, block in enumerate(blocks, start=1):
        try:
            cert = x509.load_pem_x509_certificate(block)
            # Names and extensions are parsed lazily: touch them so a broken one fails here, as a
            # PKIError, not later wherever the certificate is described or verified.
            _ = (cert.subject, cert.issuer, cert.extensions, cert.not_valid_before_utc, cert.not_valid_after_utc)
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
