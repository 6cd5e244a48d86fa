"""Chain verification: does a leaf chain to one of the trust anchors at a given moment?

Two layers. An explicit path walk (names, signatures, validity, CA flags, keyCertSign, path
length) runs for every chain and produces messages a person can act on. Where the chain uses only
the algorithms of the Web PKI profile (RSA, ECDSA), cryptography's own RFC 5280 verifier then
checks the same path again and also covers what the walk does not (name constraints, critical
extensions, encoding rules). That verifier refuses Ed25519 outright, so for Ed25519 chains the walk
is the whole check, and it refuses any critical extension it does not understand (RFC 5280 6.1.3).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtensionOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from mtls_operator.errors import ChainError
from mtls_operator.pki._util import describe, extension_value, is_directly_issued_by, require_utc
from mtls_operator.pki.bundle import fingerprint, merge_bundles
from mtls_operator.pki.keys import MIN_RSA_BITS
from mtls_operator.times import format_time

_E = TypeVar("_E", bound=x509.ExtensionType)

# CA certificates above the leaf, the trust anchor included (the same bound as cryptography's).
MAX_CHAIN_DEPTH = 8

_WEBPKI_CURVES = frozenset({"secp256r1", "secp384r1", "secp521r1"})
_UNDERSTOOD_EXTENSIONS = frozenset(
    {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
    }
)


def verify_leaf(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    trust: Sequence[x509.Certificate],
    now: datetime,
) -> list[x509.Certificate]:
    """Raise ChainError, saying why, unless ``leaf`` chains to a certificate in ``trust`` at ``now``;
    return the path checked: the leaf, the CAs above it, the trust anchor last.

    ``intermediates`` may hold more (or fewer) certificates than the path needs, in any order.
    Extended key usages are not checked here: which one a peer needs depends on its role.
    """
    now = require_utc(now)
    path = _build_path(leaf, intermediates, trust, now)
    if all(_webpki_can_check(cert) for cert in path):
        _webpki_verify(path, now)
    else:
        _refuse_unhandled_critical_extensions(path)
    return path


def _build_path(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    trust: Sequence[x509.Certificate],
    now: datetime,
) -> list[x509.Certificate]:
    """The path leaf, CA..., trust anchor; ChainError naming the first link that fails."""
    anchors = merge_bundles(trust)
    if not anchors:
        raise ChainError("the trust bundle is empty: there is no CA to verify against")
    anchor_fingerprints = {fingerprint(anchor) for anchor in anchors}
    # Anchors first: when an intermediate copy of a trusted certificate is sent along, the anchor wins.
    pool = anchors + [c for c in merge_bundles(intermediates) if fingerprint(c) not in anchor_fingerprints]

    _check_validity(leaf, now)
    leaf_constraints = _basic_constraints(leaf)
    if leaf_constraints is not None and leaf_constraints.ca:
        raise ChainError(f"certificate {describe(leaf)} is a CA certificate, not a leaf")

    path = [leaf]
    current = leaf
    while True:
        if len(path) > MAX_CHAIN_DEPTH:
            raise ChainError(f"the chain is longer than {MAX_CHAIN_DEPTH} CA certificates")
        named = [c for c in pool if c.subject == current.issuer and c not in path]
        issuers = [c for c in named if is_directly_issued_by(current, c)]
        if not issuers:
            raise ChainError(_no_issuer_message(current, named, anchors))
        problems = [_issuer_problem(issuer, cas_below=len(path) - 1, now=now) for issuer in issuers]
        usable = [issuer for issuer, problem in zip(issuers, problems, strict=True) if problem is None]
        if not usable:
            raise ChainError("; ".join(p for p in problems if p is not None))
        path.append(usable[0])
        if fingerprint(usable[0]) in anchor_fingerprints:
            return path
        current = usable[0]


def _no_issuer_message(cert: x509.Certificate, named: list[x509.Certificate], anchors: list[x509.Certificate]) -> str:
    issuer = cert.issuer.rfc4514_string() or "<empty>"
    if named:
        # Typical after a CA was replaced: same name, different key.
        return (
            f"certificate {describe(cert)} names issuer '{issuer}', but its signature does not verify "
            f"with the key of any CA of that name: it was signed by a different CA (a foreign or "
            f"replaced CA)"
        )
    trusted = ", ".join(f"'{a.subject.rfc4514_string()}'" for a in anchors)
    return (
        f"certificate {describe(cert)} was issued by '{issuer}', which is neither a trusted CA "
        f"(trusted: {trusted}) nor among the given intermediates"
    )


def _check_validity(cert: x509.Certificate, now: datetime) -> None:
    if now < cert.not_valid_before_utc:
        raise ChainError(
            f"certificate {describe(cert)} is not yet valid at {format_time(now)}: "
            f"its validity starts {format_time(cert.not_valid_before_utc)}"
        )
    if now > cert.not_valid_after_utc:
        raise ChainError(
            f"certificate {describe(cert)} expired at {format_time(cert.not_valid_after_utc)} "
            f"(checked at {format_time(now)})"
        )


def _issuer_problem(ca: x509.Certificate, *, cas_below: int, now: datetime) -> str | None:
    """Why ``ca`` may not have issued the certificate below it, or None."""
    try:
        _check_validity(ca, now)
    except ChainError as error:
        return str(error)
    constraints = _basic_constraints(ca)
    if constraints is None or not constraints.ca:
        return f"certificate {describe(ca)} signed another certificate but is not a CA (basicConstraints)"
    usage = _extension(ca, x509.KeyUsage)
    if usage is not None and not usage.key_cert_sign:
        return f"CA certificate {describe(ca)} may not sign certificates (keyUsage lacks keyCertSign)"
    if constraints.path_length is not None and cas_below > constraints.path_length:
        return (
            f"CA certificate {describe(ca)} allows {constraints.path_length} intermediate CA(s) below "
            f"it (pathLenConstraint), but the chain has {cas_below}"
        )
    return None


def _basic_constraints(cert: x509.Certificate) -> x509.BasicConstraints | None:
    return _extension(cert, x509.BasicConstraints)


def _extension(cert: x509.Certificate, kind: type[_E]) -> _E | None:
    try:
        return extension_value(cert, kind)
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType):
        raise ChainError(f"certificate {describe(cert)} has malformed extensions") from None


def _webpki_can_check(cert: x509.Certificate) -> bool:
    try:
        public_key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return False
    if isinstance(public_key, rsa.RSAPublicKey):
        return public_key.key_size >= MIN_RSA_BITS
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return public_key.curve.name in _WEBPKI_CURVES
    return False


def _ca_key_usage(_policy: Policy, cert: x509.Certificate, usage: x509.KeyUsage | None) -> None:
    if usage is not None and not usage.key_cert_sign:
        raise ValueError("keyUsage lacks keyCertSign")


@functools.cache
def _extension_policies() -> tuple[ExtensionPolicy, ExtensionPolicy]:
    # The Web PKI profile with two relaxations: a CA may omit keyUsage (RFC 5280 allows it; if
    # present it must allow keyCertSign), and any extended key usage is fine at this level.
    ca_policy = ExtensionPolicy.webpki_defaults_ca().may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _ca_key_usage)
    ee_policy = ExtensionPolicy.webpki_defaults_ee().may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, None)
    return ca_policy, ee_policy


def _webpki_verify(path: list[x509.Certificate], now: datetime) -> None:
    ca_policy, ee_policy = _extension_policies()
    verifier = (
        PolicyBuilder()
        .store(Store([path[-1]]))
        .time(now)
        .max_chain_depth(MAX_CHAIN_DEPTH)
        .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
        .build_client_verifier()
    )
    try:
        verifier.verify(path[0], path[1:-1])
    except VerificationError as error:
        raise ChainError(f"X.509 path validation rejected the chain: {error}") from None


def _refuse_unhandled_critical_extensions(path: list[x509.Certificate]) -> None:
    for cert in path:
        try:
            extensions = list(cert.extensions)
        except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType):
            raise ChainError(f"certificate {describe(cert)} has malformed extensions") from None
        for extension in extensions:
            if extension.critical and extension.oid not in _UNDERSTOOD_EXTENSIONS:
                raise ChainError(
                    f"certificate {describe(cert)} carries the critical extension "
                    f"{type(extension.value).__name__} "
                    f"({extension.oid.dotted_string}), which cannot be checked in an Ed25519 chain"
                )
