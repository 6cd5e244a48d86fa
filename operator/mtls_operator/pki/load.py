"""Loading a user-supplied (or previously created) CA from its Secret's data, checked for use."""

from __future__ import annotations

from datetime import datetime, timedelta

from cryptography import x509

from mtls_operator.errors import CAError, ChainError, PKIError
from mtls_operator.models import KeySpec, Usage
from mtls_operator.pki._util import describe, extension_value, is_self_signed, require_utc
from mtls_operator.pki.bundle import (
    BUNDLE_LIMITS,
    CHAIN_LIMITS,
    PemLimits,
    fingerprint,
    merge_bundles,
    parse_pem_certificates,
)
from mtls_operator.pki.ca import CertificateAuthority
from mtls_operator.pki.keys import key_matches_certificate, load_private_key_pem
from mtls_operator.pki.leaf import LeafRequest, issue_leaf
from mtls_operator.times import format_time

# Signed (and thrown away) by every loaded CA: the one sure test that it can issue leaves peers accept.
_PROBE = LeafRequest(
    spiffe_id="spiffe://mtls-operator.invalid/ca-check",
    dns_names=(),
    usages=frozenset(Usage),
    key=KeySpec(),
    duration=timedelta(minutes=5),
)


def load_ca(tls_crt: bytes, tls_key: bytes, ca_crt: bytes | None, now: datetime) -> CertificateAuthority:
    """The CA in a Secret's ``tls.crt``, ``tls.key`` and optional ``ca.crt``, checked usable at ``now``.

    ``tls.crt`` holds the CA certificate first, optionally followed by its intermediates; ``ca.crt``
    the root(s). A self-signed root may come without ``ca.crt`` (it then trusts itself); an
    intermediate CA may not. Raises CAError naming the problem and what to fix; never PEM.
    """
    now = require_utc(now)
    certs = _parse("tls.crt", tls_crt, CHAIN_LIMITS)
    cert = certs[0]
    try:
        key = load_private_key_pem(tls_key)
    except PKIError as error:
        raise CAError(f"tls.key: {error}") from None
    anchors = _parse("ca.crt", ca_crt, BUNDLE_LIMITS) if ca_crt and ca_crt.strip() else []

    what = f"the CA certificate {describe(cert)}, the first in tls.crt,"
    constraints = extension_value(cert, x509.BasicConstraints)
    if constraints is None:
        raise CAError(f"{what} is not a CA certificate: it has no basicConstraints extension")
    if not constraints.ca:
        raise CAError(f"{what} is not a CA certificate: its basicConstraints say CA=false")
    usage = extension_value(cert, x509.KeyUsage)
    if usage is not None and not usage.key_cert_sign:
        raise CAError(f"{what} may not sign certificates: its keyUsage lacks keyCertSign")
    if not key_matches_certificate(key, cert):
        raise CAError(
            "tls.key does not match the CA certificate (the first in tls.crt): "
            "supply the private key of that certificate"
        )
    if now < cert.not_valid_before_utc:
        starts = format_time(cert.not_valid_before_utc)
        raise CAError(f"{what} is not yet valid: its validity starts {starts}")
    if now > cert.not_valid_after_utc:
        raise CAError(f"{what} expired at {format_time(cert.not_valid_after_utc)}: supply a renewed CA")

    if is_self_signed(cert):
        # A self-signed CA anchors its own leaves whatever else ca.crt lists.
        trust = merge_bundles(anchors, [cert])
    elif not anchors:
        raise CAError(
            f"{what} is an intermediate CA (issued by '{cert.issuer.rfc4514_string()}'), so ca.crt "
            f"must hold the root CA certificate(s) it chains to, but ca.crt is missing or empty"
        )
    else:
        trust = anchors
    trusted = {fingerprint(anchor) for anchor in trust}
    chain = tuple(c for c in certs[1:] if fingerprint(c) not in trusted and not is_self_signed(c))
    ca = CertificateAuthority(cert=cert, key=key, chain=chain, trust=tuple(trust))
    try:
        issue_leaf(ca, _PROBE, now)
    except ChainError as error:
        raise CAError(f"the CA chain does not verify up to a certificate in ca.crt: {error}") from None
    return ca


def _parse(name: str, data: bytes, limits: PemLimits) -> list[x509.Certificate]:
    try:
        return parse_pem_certificates(data, limits)
    except PKIError as error:
        raise CAError(f"{name}: {error}") from None
