"""Issuing leaves: X.509-SVIDs (SPIFFE) for workloads, signed by the CA and verified before use."""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID, SignatureAlgorithmOID

from mtls_operator.errors import CAError, ChainError, PKIError
from mtls_operator.models import KeySpec, Usage
from mtls_operator.pki import der
from mtls_operator.pki._util import (
    CLOCK_SKEW,
    ORGANIZATION,
    describe,
    extension_value,
    is_directly_issued_by,
    random_serial,
    require_utc,
    serial_hex,
    signature_hash,
    whole_seconds,
)
from mtls_operator.pki.bundle import certs_to_pem
from mtls_operator.pki.ca import CertificateAuthority, authority_key_identifier
from mtls_operator.pki.keys import PrivateKey, generate_private_key, private_key_to_pem
from mtls_operator.pki.request import PublicKey
from mtls_operator.pki.verify import verify_leaf
from mtls_operator.times import format_time

# SPIFFE ID syntax (SPIFFE-ID.md, section 2): lowercase trust domain, then one or more path segments.
_SPIFFE_ID = re.compile(r"spiffe://(?P<trust_domain>[a-z0-9._-]+)(?P<path>(?:/[A-Za-z0-9._-]+)+)")
_MAX_SPIFFE_ID_LENGTH = 2048

_EXTENDED_KEY_USAGES = {
    Usage.SERVER: ExtendedKeyUsageOID.SERVER_AUTH,
    Usage.CLIENT: ExtendedKeyUsageOID.CLIENT_AUTH,
}


@dataclass(frozen=True)
class LeafRequest:
    """What to put in a leaf. Validated by ``issue_leaf``."""

    spiffe_id: str
    """The one URI SAN, e.g. ``spiffe://cluster.local/ns/shop/sa/payments``."""
    dns_names: tuple[str, ...]
    usages: frozenset[Usage]
    key: KeySpec
    duration: timedelta


@dataclass(frozen=True)
class IssuedLeaf:
    """A signed, verified leaf and its new private key. ``repr`` leaves the key out."""

    cert: x509.Certificate
    key: PrivateKey = field(repr=False)
    chain_pem: bytes = field(repr=False)
    """``tls.crt``: the leaf, then every CA certificate up to, excluding, the trust anchors."""
    key_pem: bytes = field(repr=False)
    """``tls.key``: PKCS#8 PEM."""
    serial_hex: str
    """Lowercase hex, no ``0x``."""
    not_before: datetime
    not_after: datetime
    """Never later than the CA's notAfter; whole seconds."""


def validate_spiffe_id(spiffe_id: str) -> None:
    """Raise PKIError unless ``spiffe_id`` is a workload SPIFFE ID: a trust domain and a path."""
    problem = _spiffe_id_problem(spiffe_id)
    if problem:
        raise PKIError(f"invalid SPIFFE ID {spiffe_id[:200]!r}: {problem}")


# One SPIFFE ID per service account, asked for every leaf of its pods: each checked once.
@functools.lru_cache(maxsize=4096)
def _spiffe_id_problem(spiffe_id: str) -> str | None:
    problem = None
    if len(spiffe_id) > _MAX_SPIFFE_ID_LENGTH:
        problem = f"longer than {_MAX_SPIFFE_ID_LENGTH} characters"
    elif not spiffe_id.startswith("spiffe://"):
        problem = "it must start with 'spiffe://'"
    elif not (match := _SPIFFE_ID.fullmatch(spiffe_id)):
        problem = (
            "expected spiffe://<trust domain>/<path>: a lowercase trust domain of letters, digits, "
            "'.', '-', '_' and a non-empty path of segments of letters, digits, '.', '-', '_'"
        )
    elif any(segment in {".", ".."} for segment in match["path"].split("/")):
        problem = "path segments may not be '.' or '..'"
    return problem


def issue_leaf(ca: CertificateAuthority, request: LeafRequest, now: datetime) -> IssuedLeaf:
    """Sign a new X.509-SVID with a new private key, verify it chains to ``ca.trust``, return it.

    Raises PKIError for a bad request, CAError when the CA is not valid at ``now`` and ChainError
    when the signed leaf does not verify (it must then never be written anywhere).
    """
    now = require_utc(now)
    _check_request(ca, request, now)
    key = generate_private_key(request.key)
    public_key = key.public_key()
    assembled = _assemble(ca, request, public_key, now)
    cert = assembled.cert
    intermediates = check_own_leaf(ca, request, cert, public_key, now, assembled=assembled)
    return IssuedLeaf(
        cert=cert,
        key=key,
        chain_pem=certs_to_pem((cert, *intermediates)),
        key_pem=private_key_to_pem(key),
        serial_hex=serial_hex(cert),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
    )


@dataclass(frozen=True)
class SignedLeaf:
    """A signed, verified leaf for a key the signer never sees (a PodCertificateRequest's)."""

    cert: x509.Certificate
    chain_pem: bytes = field(repr=False)
    """The leaf first, then every CA certificate up to, excluding, the trust anchors."""
    serial_hex: str
    not_before: datetime
    not_after: datetime


def sign_public_key(ca: CertificateAuthority, request: LeafRequest, public_key: PublicKey,
                    now: datetime) -> SignedLeaf:
    """An X.509-SVID for ``public_key``, as ``issue_leaf`` makes one but without generating a key.

    Its lifetime, notAfter minus notBefore, is exactly ``request.duration`` (the backdated notBefore
    included: a PodCertificateRequest's ``maxExpirationSeconds`` bounds that difference), cut only by the
    CA's own notAfter. Raises as ``issue_leaf`` does; the leaf is verified to chain to ``ca.trust``.
    """
    now = require_utc(now)
    _check_request(ca, request, now)
    assembled = _assemble(ca, request, public_key, now, lifetime_from_not_before=True)
    cert = assembled.cert
    intermediates = check_own_leaf(ca, request, cert, public_key, now, assembled=assembled)
    return SignedLeaf(cert=cert, chain_pem=certs_to_pem((cert, *intermediates)), serial_hex=serial_hex(cert),
                      not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc)


def _check_request(ca: CertificateAuthority, request: LeafRequest, now: datetime) -> None:
    validate_spiffe_id(request.spiffe_id)
    if not request.usages:
        raise PKIError("a leaf needs at least one usage (server, client)")
    if request.duration <= timedelta(0):
        raise PKIError(f"a leaf duration must be positive, not {request.duration}")
    if now < ca.cert.not_valid_before_utc:
        raise CAError(f"the CA is not valid before {format_time(ca.cert.not_valid_before_utc)}")
    if now > ca.not_after:
        raise CAError(f"the CA expired at {format_time(ca.not_after)}")


# CA paths checked in full (``verify_leaf``) with the first leaf each CA signed for one kind of leaf key, by
# the CA's certificate, its issuing chain, its trust anchors and the leaf key's kind: when every certificate
# of the path is valid (the latest notBefore, the earliest notAfter). A process meets a handful of CAs.
_PathKey = tuple[str, ...]
_checked_paths: dict[_PathKey, tuple[datetime, datetime]] = {}
_MAX_CHECKED_PATHS = 64
_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


# Per checked CA path (as above), the leaf parts whose facts were read back from a leaf and found as asked: the
# request's SPIFFE ID, DNS names and usages, with the DER of the keyUsage, extKeyUsage, subjectAltName and AKI
# extensions that ``_assemble`` made for them.
_Parts = tuple[object, ...]
_checked_parts: set[tuple[_PathKey, _Parts]] = set()
_MAX_CHECKED_PARTS = 4096


def check_own_leaf(ca: CertificateAuthority, request: LeafRequest, cert: x509.Certificate, public_key: PublicKey,
                   now: datetime, *, assembled: Assembled | None = None) -> tuple[x509.Certificate, ...]:
    """Raise ChainError unless ``cert``, just signed with ``ca.key`` for ``request`` and ``public_key``, chains
    to ``ca.trust`` at ``now`` and says what the request asked; return the issuing chain that follows it.

    The first leaf a CA signs for each kind of leaf key goes through ``verify_leaf`` in full (names,
    signatures, validity, CA flags, path length, the Web PKI profile), which checks the CA's own path to
    its anchors; that path's part is the same for every later leaf, bar its validity. So every later leaf
    of that CA and kind costs one signature check against the CA's public key, the validity of the leaf
    and of the path at ``now``, and the facts ``_sign`` set (names, usages, key). Anything not signed by
    this process (a Secret read from the cluster) is checked by ``verify_leaf`` in full, always.

    The facts are read back from the leaf (its extensions parsed) for the first leaf of each set of parts
    ``_assemble`` put together (``assembled``: the request's names and usages, and their DER); a later leaf of
    the same CA path and parts is checked to be, byte for byte, the to-be-signed part that was assembled (so
    exactly those already-checked parts, its own key and the serial and validity ``_assemble`` checked) instead
    of parsing the same extensions again.
    """
    intermediates = ca.issuing_chain
    path_key = (*ca.chain_id, _key_kind(public_key))
    window = _checked_paths.get(path_key)
    if window is None:
        path = verify_leaf(cert, intermediates, ca.trust, now)
        if len(path) >= 2 and path[1] == ca.cert:  # the path went through the signing CA (it always should)
            if len(_checked_paths) >= _MAX_CHECKED_PATHS:
                _checked_paths.clear()
            _checked_paths[path_key] = (max(c.not_valid_before_utc for c in path[1:]),
                                        min(c.not_valid_after_utc for c in path[1:]))
    else:
        if not window[0] <= now <= window[1]:
            raise ChainError(f"the chain of CA {describe(ca.cert)} to its trust anchors is not valid at "
                             f"{format_time(now)}")
        # Byte for byte what was assembled: the CA's subject as issuer, the request's parts, the key.
        as_assembled = (assembled is not None and assembled.tbs is not None
                        and cert.tbs_certificate_bytes == assembled.tbs)
        if not _signed_by(ca, cert, issuer_known=as_assembled):
            raise ChainError(f"certificate {describe(cert)} does not verify with the key of CA {describe(ca.cert)}")
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise ChainError(f"certificate {describe(cert)} is not valid at {format_time(now)}")
        if as_assembled and assembled is not None and (path_key, assembled.parts) in _checked_parts:
            return intermediates
    _check_facts(cert, request, public_key)
    if assembled is not None and assembled.parts is not None and path_key in _checked_paths:
        if len(_checked_parts) >= _MAX_CHECKED_PARTS:
            _checked_parts.clear()
        _checked_parts.add((path_key, assembled.parts))
    return intermediates


# The ECDSA signature algorithms a leaf may carry, with their digests (RFC 5758, section 3.2).
_ECDSA_HASHES: dict[x509.ObjectIdentifier, type[hashes.HashAlgorithm]] = {
    SignatureAlgorithmOID.ECDSA_WITH_SHA256: hashes.SHA256,
    SignatureAlgorithmOID.ECDSA_WITH_SHA384: hashes.SHA384,
    SignatureAlgorithmOID.ECDSA_WITH_SHA512: hashes.SHA512,
}


def _signed_by(ca: CertificateAuthority, cert: x509.Certificate, *, issuer_known: bool = False) -> bool:
    """Whether ``cert`` names ``ca.cert``'s subject as its issuer and its signature verifies with ``ca.cert``'s key.

    An ECDSA signature is verified with the CA certificate's key as parsed once per CA (``verify_directly_issued_by``
    parses it again for every leaf); any other, as ``is_directly_issued_by`` does. ``issuer_known``: the leaf's
    issuer is already known to be the CA's subject, byte for byte (no need to parse both names)."""
    if not issuer_known and cert.issuer != ca.cert.subject:
        return False
    public_key = ca.public_key
    digest = _ECDSA_HASHES.get(cert.signature_algorithm_oid)
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or digest is None:
        return is_directly_issued_by(cert, ca.cert)
    try:
        public_key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(digest()))
    except InvalidSignature:
        return False
    return True


def _key_kind(public_key: PublicKey) -> str:
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"RSA-{public_key.key_size}"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return f"EC-{public_key.curve.name}"
    return type(public_key).__name__


def _check_facts(cert: x509.Certificate, request: LeafRequest, public_key: PublicKey) -> None:
    """Raise ChainError unless the leaf carries what ``_sign`` put in for ``request``: a leaf, not a CA; the
    key it was signed for; the SPIFFE ID and DNS names; the usages."""
    try:
        constraints = extension_value(cert, x509.BasicConstraints)
        usage = extension_value(cert, x509.KeyUsage)
        extended = extension_value(cert, x509.ExtendedKeyUsage)
        names = extension_value(cert, x509.SubjectAlternativeName)
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType):
        raise ChainError(f"certificate {describe(cert)} has malformed extensions") from None
    problem = None
    if constraints is None or constraints.ca:
        problem = "is not marked as a leaf (basicConstraints)"
    elif usage is None or usage.key_cert_sign or not usage.digital_signature:
        problem = "has the wrong key usage"
    elif extended is None or set(extended) != {_EXTENDED_KEY_USAGES[u] for u in request.usages}:
        problem = "has the wrong extended key usages"
    elif names is None or (names.get_values_for_type(x509.UniformResourceIdentifier) != [request.spiffe_id]
                           or names.get_values_for_type(x509.DNSName) != list(request.dns_names)):
        problem = "does not name what was asked (subjectAltName)"
    elif cert.public_key().public_bytes(*_SPKI) != public_key.public_bytes(*_SPKI):
        problem = "does not carry the key it was signed for"
    if problem is not None:
        raise ChainError(f"certificate {describe(cert)} {problem}")


def verified_leaf(ca: CertificateAuthority, cert: x509.Certificate, key: PrivateKey, now: datetime) -> IssuedLeaf:
    """``cert``, checked to chain to ``ca``'s trust anchors at ``now`` (ChainError if not), with the
    chain and key as a Secret holds them: nothing is handed out unverified."""
    intermediates = ca.issuing_chain
    verify_leaf(cert, intermediates, ca.trust, now)
    return IssuedLeaf(
        cert=cert,
        key=key,
        chain_pem=certs_to_pem((cert, *intermediates)),
        key_pem=private_key_to_pem(key),
        serial_hex=serial_hex(cert),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
    )


# What every leaf carries alike, made once: the subject, the basic constraints, the key usages (RSA keys add
# keyEncipherment), the extended key usages per set of usages and the subjectAltName per SPIFFE ID and DNS names.
_SUBJECT = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION)])
_LEAF_CONSTRAINTS = x509.BasicConstraints(ca=False, path_length=None)


@functools.lru_cache(maxsize=2)
def _key_usage(rsa_key: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        # RSA key exchange (TLS 1.2 without ECDHE) encrypts to the key; harmless otherwise.
        key_encipherment=rsa_key,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


@functools.lru_cache(maxsize=8)
def _extended_usage(usages: frozenset[Usage]) -> x509.ExtendedKeyUsage:
    return x509.ExtendedKeyUsage([_EXTENDED_KEY_USAGES[u] for u in Usage if u in usages])


@functools.lru_cache(maxsize=4096)
def _subject_alt_name(spiffe_id: str, dns_names: tuple[str, ...]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(spiffe_id)]
    for name in dns_names:
        try:
            names.append(x509.DNSName(name))
        except ValueError:
            raise PKIError(f"invalid DNS name {name[:300]!r}: it must be an ASCII (A-label) name") from None
    return x509.SubjectAlternativeName(names)


def _subject_key_identifier(key: PublicKey) -> x509.SubjectKeyIdentifier:
    """RFC 5280 (4.2.1.2, method 1): the SHA-1 of the subjectPublicKey bits; for an EC key its encoded point,
    hashed here directly (``from_public_key`` gets there through the DER of the whole key)."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        point = key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        return x509.SubjectKeyIdentifier(hashlib.sha1(point, usedforsecurity=False).digest())
    return x509.SubjectKeyIdentifier.from_public_key(key)


# The signature algorithms of ECDSA CA keys by digest (RFC 5758, 3.2): no parameters.
_ECDSA_ALGORITHMS = {
    "sha256": SignatureAlgorithmOID.ECDSA_WITH_SHA256,
    "sha384": SignatureAlgorithmOID.ECDSA_WITH_SHA384,
    "sha512": SignatureAlgorithmOID.ECDSA_WITH_SHA512,
}


@dataclass(frozen=True)
class _Signer:
    """What every leaf of one ECDSA CA repeats, encoded once: the signature algorithm, the issuer, the AKI."""

    digest: hashes.HashAlgorithm
    algorithm: bytes
    issuer: bytes
    authority_key_id: bytes


_signers: dict[tuple[str, str], _Signer] = {}


def _signer(ca: CertificateAuthority) -> _Signer | None:
    """The CA's parts of every leaf it signs, for an ECDSA CA (the leaves of any other are built by
    ``CertificateBuilder``)."""
    key = ca.key
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return None
    cache_key = (ca.fingerprint, key.curve.name)
    signer = _signers.get(cache_key)
    if signer is None:
        digest = signature_hash(key)
        assert digest is not None  # ECDSA always signs a digest
        if len(_signers) >= _MAX_CHECKED_PATHS:
            _signers.clear()
        signer = _signers[cache_key] = _Signer(
            digest=digest,
            algorithm=der.tlv(der.SEQUENCE, der.oid(_ECDSA_ALGORITHMS[digest.name].dotted_string)),
            issuer=ca.cert.subject.public_bytes(),
            authority_key_id=der.extension(ExtensionOID.AUTHORITY_KEY_IDENTIFIER.dotted_string,
                                           authority_key_identifier(ca).public_bytes(), critical=False),
        )
    return signer


_VERSION_3 = b"\xa0\x03\x02\x01\x02"  # [0] EXPLICIT INTEGER 2
_SUBJECT_DER = _SUBJECT.public_bytes()
_CONSTRAINTS_DER = der.extension(ExtensionOID.BASIC_CONSTRAINTS.dotted_string, _LEAF_CONSTRAINTS.public_bytes(),
                                 critical=True)


@functools.lru_cache(maxsize=2)
def _key_usage_der(rsa_key: bool) -> bytes:
    return der.extension(ExtensionOID.KEY_USAGE.dotted_string, _key_usage(rsa_key).public_bytes(), critical=True)


@functools.lru_cache(maxsize=8)
def _extended_usage_der(usages: frozenset[Usage]) -> bytes:
    return der.extension(ExtensionOID.EXTENDED_KEY_USAGE.dotted_string, _extended_usage(usages).public_bytes(),
                         critical=False)


@functools.lru_cache(maxsize=4096)
def _subject_alt_name_der(spiffe_id: str, dns_names: tuple[str, ...]) -> bytes:
    return der.extension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME.dotted_string,
                         _subject_alt_name(spiffe_id, dns_names).public_bytes(), critical=False)


def _validity(ca: CertificateAuthority, request: LeafRequest, now: datetime,
              lifetime_from_not_before: bool) -> tuple[datetime, datetime]:
    not_before = max(whole_seconds(now - CLOCK_SKEW), ca.cert.not_valid_before_utc)
    end = not_before + request.duration if lifetime_from_not_before else now + request.duration
    return not_before, whole_seconds(min(end, ca.not_after))


class Assembled(NamedTuple):
    """A leaf just signed; for one put together from parts, its to-be-signed DER and which parts it holds."""

    cert: x509.Certificate
    tbs: bytes | None = None
    parts: _Parts | None = None


def _sign(ca: CertificateAuthority, request: LeafRequest, key: PublicKey, now: datetime, *,
          lifetime_from_not_before: bool = False) -> x509.Certificate:
    return _assemble(ca, request, key, now, lifetime_from_not_before=lifetime_from_not_before).cert


def _assemble(ca: CertificateAuthority, request: LeafRequest, key: PublicKey, now: datetime, *,
              lifetime_from_not_before: bool = False) -> Assembled:
    """The leaf for ``request`` and ``key``, signed by ``ca``: the subject says who made it, the URI SAN (not
    critical) is the SVID's identity; extensions in the order basicConstraints, keyUsage, extKeyUsage,
    subjectAltName, SKI, AKI."""
    ca_key, signer = ca.key, _signer(ca)
    if signer is None or not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        return Assembled(_build(ca, request, key, now, lifetime_from_not_before))
    not_before, not_after = _validity(ca, request, now, lifetime_from_not_before)
    serial = random_serial()
    spki = key.public_bytes(*_SPKI)
    key_id = hashlib.sha1(der.public_key_bits(spki), usedforsecurity=False).digest()  # as _subject_key_identifier
    key_usage = _key_usage_der(isinstance(key, rsa.RSAPublicKey))
    extended_usage = _extended_usage_der(request.usages)
    names = _subject_alt_name_der(request.spiffe_id, request.dns_names)
    extensions = b"".join((
        _CONSTRAINTS_DER, key_usage, extended_usage, names,
        der.extension(ExtensionOID.SUBJECT_KEY_IDENTIFIER.dotted_string, der.tlv(der.OCTET_STRING, key_id),
                      critical=False),
        signer.authority_key_id,
    ))
    tbs = der.tlv(der.SEQUENCE, b"".join((
        _VERSION_3, der.integer(serial), signer.algorithm, signer.issuer,
        der.tlv(der.SEQUENCE, der.time(not_before) + der.time(not_after)), _SUBJECT_DER, spki,
        der.tlv(0xA3, der.tlv(der.SEQUENCE, extensions)),
    )))
    signature = ca_key.sign(tbs, ec.ECDSA(signer.digest))
    try:
        cert = x509.load_der_x509_certificate(
            der.tlv(der.SEQUENCE, tbs + signer.algorithm + der.tlv(der.BIT_STRING, b"\x00" + signature)))
    except ValueError as exc:
        raise ChainError(f"a leaf for {request.spiffe_id} was not well-formed: {exc}") from None
    if (cert.serial_number, cert.not_valid_before_utc, cert.not_valid_after_utc) != (serial, not_before, not_after):
        raise ChainError(f"certificate {describe(cert)} does not carry the serial or validity it was signed with")
    parts = (request.spiffe_id, request.dns_names, request.usages, key_usage, extended_usage, names,
             signer.authority_key_id)
    return Assembled(cert, tbs, parts)


def _build(ca: CertificateAuthority, request: LeafRequest, key: PublicKey, now: datetime,
           lifetime_from_not_before: bool) -> x509.Certificate:
    """``_sign`` by ``CertificateBuilder``: the leaves of RSA and Ed25519 CAs."""
    not_before, not_after = _validity(ca, request, now, lifetime_from_not_before)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_SUBJECT)
        .issuer_name(ca.cert.subject)
        .public_key(key)
        .serial_number(random_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(_LEAF_CONSTRAINTS, critical=True)
        .add_extension(_key_usage(isinstance(key, rsa.RSAPublicKey)), critical=True)
        .add_extension(_extended_usage(request.usages), critical=False)
        .add_extension(_subject_alt_name(request.spiffe_id, request.dns_names), critical=False)
        .add_extension(_subject_key_identifier(key), critical=False)
        .add_extension(authority_key_identifier(ca), critical=False)
    )
    return builder.sign(ca.key, signature_hash(ca.key))
