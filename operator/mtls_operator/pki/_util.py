"""Small helpers shared by the PKI modules: time, serials, signature hashes, descriptions."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from mtls_operator.pki.keys import PrivateKey

_E = TypeVar("_E", bound=x509.ExtensionType)

# notBefore is backdated by this much so that peers whose clocks lag a little accept a fresh cert.
CLOCK_SKEW = timedelta(minutes=1)
ORGANIZATION = "mtls-operator"


def require_utc(now: datetime) -> datetime:
    """``now`` in UTC; a naive datetime is a programming error (its zone would be a guess)."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime (UTC)")
    return now.astimezone(UTC)


def whole_seconds(moment: datetime) -> datetime:
    """``moment`` truncated to the second: X.509 times have no fraction, and neither does status."""
    return moment.replace(microsecond=0)


def random_serial() -> int:
    """A positive serial of 128 random bits (RFC 5280: positive, at most 20 octets; this is 17 at most).

    ``x509.random_serial_number()`` gives 159 bits; 128 random bits is the usual choice and twice
    the 64 bits of entropy the CA/Browser Forum asks for. Zero is not a valid serial: draw again.
    """
    while True:
        serial = secrets.randbits(128)
        if serial:
            return serial


def signature_hash(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512 | None:
    """The digest to sign with ``key``: matched to the curve size for ECDSA, none for Ed25519."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.key_size >= 521:
            return hashes.SHA512()
        if key.curve.key_size >= 384:
            return hashes.SHA384()
        return hashes.SHA256()
    if isinstance(key, rsa.RSAPrivateKey):
        return hashes.SHA256()
    return None


def serial_hex(cert: x509.Certificate) -> str:
    return format(cert.serial_number, "x")


def describe(cert: x509.Certificate) -> str:
    """How a certificate is named in error messages: its subject and serial, never its PEM."""
    subject = cert.subject.rfc4514_string() or "<empty subject>"
    return f"'{subject}' (serial {serial_hex(cert)})"


def is_directly_issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``issuer``'s subject is ``cert``'s issuer and its key verifies ``cert``'s signature."""
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def is_self_signed(cert: x509.Certificate) -> bool:
    return is_directly_issued_by(cert, cert)


def extension_value(cert: x509.Certificate, kind: type[_E]) -> _E | None:
    """The value of the ``kind`` extension of ``cert``, None when absent (malformed ones raise)."""
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None
