"""The signing CA: its value type, and creating a self-signed root or an intermediate below a CA."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import NameOID

from mtls_operator.constants import CA_CRT, TLS_CRT, TLS_KEY
from mtls_operator.errors import CAError, PKIError
from mtls_operator.models import KeySpec
from mtls_operator.pki._util import (
    CLOCK_SKEW,
    ORGANIZATION,
    is_self_signed,
    random_serial,
    require_utc,
    signature_hash,
    whole_seconds,
)
from mtls_operator.pki.bundle import certs_to_pem, fingerprint
from mtls_operator.pki.keys import PrivateKey, generate_private_key, private_key_to_pem
from mtls_operator.times import format_time

DEFAULT_CA_VALIDITY = timedelta(days=365)


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA the operator signs leaves with, and what peers must trust to accept those leaves."""

    cert: x509.Certificate
    """The signing CA certificate."""
    key: PrivateKey = field(repr=False)
    chain: tuple[x509.Certificate, ...]
    """Intermediates above ``cert`` up to, excluding, the root; ``()`` for a root CA."""
    trust: tuple[x509.Certificate, ...]
    """Trust anchors peers should trust (``ca.crt``): the root(s); ``(cert,)`` for a self-signed CA."""

    @functools.cached_property
    def fingerprint(self) -> str:
        return fingerprint(self.cert)

    @functools.cached_property
    def chain_id(self) -> tuple[str, ...]:
        """Which chain its leaves get: the fingerprints of its certificate and issuing chain, then of its trust
        anchors (once per CA; a certificate's fingerprint is looked up by hashing its DER)."""
        return (self.fingerprint, *map(fingerprint, self.issuing_chain), "|", *map(fingerprint, self.trust))

    @functools.cached_property
    def authority_key_id(self) -> x509.AuthorityKeyIdentifier:
        """The AKI for certificates it signs: its own SKI when it has one, else derived from its key."""
        try:
            ski = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        except x509.ExtensionNotFound:
            return x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key())
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)

    @functools.cached_property
    def public_key(self) -> CertificatePublicKeyTypes:
        """The key of ``cert``, which verifies what the CA signs (parsed once: asked for every leaf)."""
        return self.cert.public_key()

    @property
    def not_after(self) -> datetime:
        return self.cert.not_valid_after_utc

    @functools.cached_property
    def issuing_chain(self) -> tuple[x509.Certificate, ...]:
        """What follows a leaf in its ``tls.crt``: every certificate up to, excluding, the trust anchors
        (worked out once per CA: it is asked for every leaf signed)."""
        trusted = {fingerprint(anchor) for anchor in self.trust}
        head = () if self.fingerprint in trusted else (self.cert,)
        return head + tuple(c for c in self.chain if fingerprint(c) not in trusted)

    @property
    def own_anchors(self) -> tuple[x509.Certificate, ...]:
        """The anchors this CA's own chain ends at: itself when self-signed, else the root(s) in
        ``trust`` that issued the top of its chain. ``trust`` may hold more (another CA's, during a
        rotation); these are what must stay trusted for this CA's leaves."""
        if is_self_signed(self.cert):
            return (self.cert,)
        top = self.chain[-1] if self.chain else self.cert
        return tuple(anchor for anchor in self.trust if anchor.subject == top.issuer)

    def secret_data(self) -> dict[str, bytes]:
        """The CA Secret's data: ``tls.crt`` (cert and chain), ``tls.key`` (PKCS#8), ``ca.crt`` (trust)."""
        return {
            TLS_CRT: certs_to_pem((self.cert, *self.chain)),
            TLS_KEY: private_key_to_pem(self.key),
            CA_CRT: certs_to_pem(self.trust),
        }


# X.520's upper bound for a common name.
MAX_COMMON_NAME = 64
# Hex digits of the key identifier in a generated CA's common name (32 bits: unique among a cluster's CAs).
CA_NAME_KEY_ID_LENGTH = 8


def create_self_signed_ca(
    now: datetime,
    *,
    validity: timedelta = DEFAULT_CA_VALIDITY,
    common_name: str = "mtls-operator CA",
    key: KeySpec = KeySpec(),  # noqa: B008 - KeySpec is frozen, sharing the default is safe
    path_length: int | None = 0,
    unique_name: bool = True,
) -> CertificateAuthority:
    """A new self-signed root CA, valid from ``now`` (less a minute of clock skew) for ``validity``.

    Its common name is ``common_name`` followed by the day it was made and the start of its key
    identifier, so that no two CAs share a subject: TLS stacks that pick an issuer by name (and
    clients that send "acceptable CAs" lists) never confuse the old and the new CA of a rotation.

    ``path_length`` 0 (the default) lets it sign leaves only; pass ``None`` or more to let it sign
    intermediate CAs (see ``create_intermediate_ca``). ``unique_name=False`` keeps ``common_name`` as
    it is (a CA as a person may make one, for tests of same-named CAs).
    """
    now = require_utc(now)
    _check_validity_period(validity)
    private_key = generate_private_key(key)
    ski = x509.SubjectKeyIdentifier.from_public_key(private_key.public_key())
    suffix = f" {now:%Y-%m-%d} {ski.digest.hex()[:CA_NAME_KEY_ID_LENGTH]}" if unique_name else ""
    if not 1 <= len(common_name) <= MAX_COMMON_NAME - len(suffix):
        raise PKIError(f"a generated CA's common name must be 1 to {MAX_COMMON_NAME - len(suffix)} characters long "
                       "(the day and key identifier that make it unique follow it)")
    subject = _ca_subject(common_name + suffix)
    cert = _sign_ca_certificate(
        subject=subject,
        issuer=subject,
        ski=ski,
        aki=x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
        public_key=private_key,
        signing_key=private_key,
        not_before=whole_seconds(now - CLOCK_SKEW),
        not_after=whole_seconds(now + validity),
        path_length=path_length,
    )
    return CertificateAuthority(cert=cert, key=private_key, chain=(), trust=(cert,))


# The keyword arguments of create_self_signed_ca, on purpose: a root and an intermediate are asked
# for alike. The parent signs, and the validity stays inside the parent's.
def create_intermediate_ca(
    parent: CertificateAuthority,
    now: datetime,
    *,
    validity: timedelta = DEFAULT_CA_VALIDITY,
    common_name: str = "mtls-operator intermediate CA",
    key: KeySpec = KeySpec(),  # noqa: B008 - KeySpec is frozen, sharing the default is safe
    path_length: int | None = 0,
) -> CertificateAuthority:
    """A new intermediate CA signed by ``parent``; its notAfter never passes the parent's.

    The result trusts what ``parent`` trusts, and its chain carries ``parent`` unless that is an anchor.
    """
    now = require_utc(now)
    _check_validity_period(validity)
    if not parent.cert.not_valid_before_utc <= now <= parent.not_after:
        raise CAError(f"the parent CA is not valid at {format_time(now)}")
    parent_length = parent.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length
    if parent_length is not None and (path_length is None or path_length >= parent_length):
        raise CAError(
            f"the parent CA allows {parent_length} intermediate CA(s) below it (pathLenConstraint), "
            f"so it cannot sign an intermediate CA with pathLenConstraint {path_length}"
        )
    private_key = generate_private_key(key)
    cert = _sign_ca_certificate(
        subject=_ca_subject(common_name),
        issuer=parent.cert.subject,
        ski=x509.SubjectKeyIdentifier.from_public_key(private_key.public_key()),
        aki=authority_key_identifier(parent),
        public_key=private_key,
        signing_key=parent.key,
        not_before=max(whole_seconds(now - CLOCK_SKEW), parent.cert.not_valid_before_utc),
        not_after=whole_seconds(min(now + validity, parent.not_after)),
        path_length=path_length,
    )
    return CertificateAuthority(cert=cert, key=private_key, chain=parent.issuing_chain, trust=parent.trust)


def authority_key_identifier(ca: CertificateAuthority) -> x509.AuthorityKeyIdentifier:
    """The AKI for certificates ``ca`` signs: its own SKI when it has one, else derived from its key."""
    return ca.authority_key_id


def _check_validity_period(validity: timedelta) -> None:
    if validity <= timedelta(0):
        raise PKIError(f"a CA validity must be positive, not {validity}")


def _ca_subject(common_name: str) -> x509.Name:
    if not 1 <= len(common_name) <= MAX_COMMON_NAME:
        raise PKIError(f"a CA common name must be 1 to {MAX_COMMON_NAME} characters long")
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _sign_ca_certificate(
    *,
    subject: x509.Name,
    issuer: x509.Name,
    ski: x509.SubjectKeyIdentifier,
    aki: x509.AuthorityKeyIdentifier,
    public_key: PrivateKey,
    signing_key: PrivateKey,
    not_before: datetime,
    not_after: datetime,
    path_length: int | None,
) -> x509.Certificate:
    usage = x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key.public_key())
        .serial_number(random_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(ski, critical=False)
        .add_extension(aki, critical=False)
    )
    return builder.sign(signing_key, signature_hash(signing_key))
