"""Reading an existing certificate back: the facts renewal decisions are made from."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from mtls_operator.errors import PKIError
from mtls_operator.pki._util import is_directly_issued_by, serial_hex
from mtls_operator.pki.bundle import fingerprint


@dataclass(frozen=True)
class CertificateFacts:
    """What the operator reads back from a certificate in an existing Secret."""

    serial_hex: str
    not_before: datetime
    not_after: datetime
    spiffe_ids: tuple[str, ...]
    """Every URI SAN; an SVID has exactly one, its SPIFFE ID."""
    dns_names: tuple[str, ...]
    issuer_fingerprint: str | None
    """Fingerprint of the certificate among ``issuers`` that signed it; None if none did."""


def certificate_facts(cert: x509.Certificate, issuers: Iterable[x509.Certificate] = ()) -> CertificateFacts:
    """The facts of ``cert``; ``issuers`` (the known CA certificates, say) identify who signed it.

    Raises PKIError when its subjectAltName extension is malformed.
    """
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        uris: list[str] = []
        dns_names: list[str] = []
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType):
        raise PKIError(f"certificate with serial {serial_hex(cert)} has malformed extensions") from None
    else:
        uris = names.get_values_for_type(x509.UniformResourceIdentifier)
        dns_names = names.get_values_for_type(x509.DNSName)
    issuer = next((i for i in issuers if is_directly_issued_by(cert, i)), None)
    return CertificateFacts(
        serial_hex=serial_hex(cert),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        spiffe_ids=tuple(uris),
        dns_names=tuple(dns_names),
        issuer_fingerprint=None if issuer is None else fingerprint(issuer),
    )
