"""TLS server certificates for the operator's own admission webhooks (not SPIFFE SVIDs), and their CA.

The API server verifies the webhook by DNS name (``<service>.<namespace>.svc``) against the
configuration's ``caBundle``, so this certificate carries DNS names (and, for local set-ups, IP
addresses) and the serverAuth usage only; it has no SPIFFE ID because it names a Service, not a pod.
It is signed by a CA of its own (``create_webhook_ca``), never by the CA of pod certificates: a pod
certificate can then never serve the webhooks, and the caBundle never makes the API server trust it.
It is built with leaf.py's helpers (hence the same imports); only its profile (``_build``) differs.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mtls_operator.errors import CAError, PKIError
from mtls_operator.models import KeySpec
from mtls_operator.pki._util import (
    CLOCK_SKEW,
    ORGANIZATION,
    random_serial,
    require_utc,
    serial_hex,
    signature_hash,
    whole_seconds,
)
from mtls_operator.pki.bundle import certs_to_pem
from mtls_operator.pki.ca import CertificateAuthority, authority_key_identifier, create_self_signed_ca
from mtls_operator.pki.keys import PrivateKey, generate_private_key, private_key_to_pem
from mtls_operator.pki.leaf import IssuedLeaf, verified_leaf
from mtls_operator.times import format_time

# Placeholders are served only until the CA loads (seconds); a day outlasts any slow start.
PLACEHOLDER_VALIDITY = timedelta(days=1)


def create_webhook_ca(now: datetime, validity: timedelta) -> CertificateAuthority:
    """A new self-signed CA (ECDSA P-256) for the webhooks' serving certificates only.

    Its subject names its purpose (then, as every generated CA's, the day and its key identifier), so
    that it is never taken for the pods' CA, and the old and the new webhook CA of a rotation (both in
    the caBundle for a while) never share an issuer name.
    """
    return create_self_signed_ca(require_utc(now), validity=validity, common_name="mtls-operator webhook CA")


def issue_serving_certificate(
    ca: CertificateAuthority, names: Sequence[str], duration: timedelta, now: datetime
) -> IssuedLeaf:
    """A serverAuth certificate for ``names`` (DNS names or IP addresses) with a new ECDSA P-256 key,
    signed by ``ca`` and verified to chain to ``ca.trust``; notAfter never passes the CA's."""
    now = require_utc(now)
    if duration <= timedelta(0):
        raise PKIError(f"a serving certificate duration must be positive, not {duration}")
    if not ca.cert.not_valid_before_utc <= now <= ca.not_after:
        raise CAError(f"the CA is not valid at {format_time(now)}")
    key = generate_private_key(KeySpec())
    cert = _build(
        names,
        key,
        issuer=ca.cert.subject,
        aki=authority_key_identifier(ca),
        not_before=max(whole_seconds(now - CLOCK_SKEW), ca.cert.not_valid_before_utc),
        not_after=whole_seconds(min(now + duration, ca.not_after)),
        signing_key=ca.key,
    )
    return verified_leaf(ca, cert, key, now)


def placeholder_serving_certificate(names: Sequence[str], now: datetime) -> IssuedLeaf:
    """A self-signed certificate for ``names``, trusted by nobody.

    A TLS server needs some certificate to start; until the operator's CA is readable, this one makes
    every call fail verification, so the webhook's failurePolicy decides, as when it is down.
    """
    now = require_utc(now)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _subject(names)
    cert = _build(
        names,
        key,
        issuer=subject,
        aki=x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()),
        not_before=whole_seconds(now - CLOCK_SKEW),
        not_after=whole_seconds(now + PLACEHOLDER_VALIDITY),
        signing_key=key,
    )
    return IssuedLeaf(
        cert=cert,
        key=key,
        chain_pem=certs_to_pem((cert,)),
        key_pem=private_key_to_pem(key),
        serial_hex=serial_hex(cert),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
    )


def _general_names(names: Sequence[str]) -> list[x509.GeneralName]:
    if not names:
        raise PKIError("a serving certificate needs at least one DNS name or IP address")
    result: list[x509.GeneralName] = []
    for name in names:
        try:
            result.append(x509.IPAddress(ipaddress.ip_address(name)))
            continue
        except ValueError:
            pass
        try:
            result.append(x509.DNSName(name))
        except ValueError:
            raise PKIError(f"invalid DNS name {name[:300]!r}: it must be an ASCII (A-label) name") from None
    return result


def _subject(names: Sequence[str]) -> x509.Name:
    # Clients verify the SANs; the common name only makes the certificate readable (at most 64 chars).
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION)]
    if names and len(names[0]) <= 64:
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, names[0]))
    return x509.Name(attributes)


# The builder has the shape of ca._sign_ca_certificate and leaf._sign on purpose: each spells out
# every KeyUsage flag and extension of its kind of certificate (CA, SPIFFE leaf, serving), so a
# reviewer reads one certificate profile in one place; a shared builder would hide the differences.
def _build(
    names: Sequence[str],
    key: PrivateKey,
    *,
    issuer: x509.Name,
    aki: x509.AuthorityKeyIdentifier,
    not_before: datetime,
    not_after: datetime,
    signing_key: PrivateKey,
) -> x509.Certificate:
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(_subject(names))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(random_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(_general_names(names)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(aki, critical=False)
    )
    return builder.sign(signing_key, signature_hash(signing_key))
