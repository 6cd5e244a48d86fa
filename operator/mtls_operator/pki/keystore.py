"""PKCS#12 keystores for the JVM: ``keystore.p12`` (the key and its chain) and ``truststore.p12``
(the trust bundle), written with ``cryptography``'s PKCS#12 support.

Profiles carry cert-manager's names, so users know them:

- ``Modern2023``: PBES2 with PBKDF2-HMAC-SHA-256 and AES-256-CBC for the key and the
  certificates, HMAC-SHA-256 for the MAC. Java 8u301+/11.0.12+/17, OpenSSL 1.1+/3 read it.
- ``LegacyDES``: PBES1 with SHA-1 and 3-key triple DES, HMAC-SHA-1 MAC, for older readers
  (OpenSSL 3 without the legacy provider still reads it; RC2 is not offered at all).

The truststore's certificates carry Java's trusted-certificate attribute
(``serialize_java_truststore``): without it, ``KeyStore.getInstance("PKCS12")`` loads them as
mere chain certificates and a TrustManager built from the store trusts nothing.

Every keystore is encrypted: an empty password is refused, never written. JKS is not offered:
no well-kept Python library writes it (pyjks, the one that does, last released in 2020), and every
JVM since Java 9 reads PKCS#12 as its default keystore type.
"""

from __future__ import annotations

import enum
from typing import Final

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from mtls_operator.errors import PKIError
from mtls_operator.pki.bundle import CHAIN_LIMITS, fingerprint, parse_pem_certificates
from mtls_operator.pki.keys import key_matches_certificate, load_private_key_pem

KEYSTORE_ALIAS: Final = "certificate"
# Bounded work on a tenant-written value: PBKDF2 runs over it once per keystore.
MAX_PASSWORD_BYTES: Final = 1024
# cert-manager's (go-pkcs12's) iteration count for Modern2023, and OpenSSL's default for the legacy profile.
_MODERN_ROUNDS: Final = 2048
_LEGACY_ROUNDS: Final = 2048


class Pkcs12Profile(enum.StrEnum):
    MODERN_2023 = "Modern2023"
    LEGACY_DES = "LegacyDES"


def password_problem(password: bytes) -> str | None:
    """Why ``password`` cannot protect a keystore, or ``None``."""
    if not password:
        return "the password is empty (a keystore is never written unencrypted)"
    if len(password) > MAX_PASSWORD_BYTES:
        return f"the password is longer than {MAX_PASSWORD_BYTES} bytes"
    return None


def _encryption(password: bytes, profile: Pkcs12Profile) -> serialization.KeySerializationEncryption:
    problem = password_problem(password)
    if problem is not None:
        raise PKIError(problem)
    builder = serialization.PrivateFormat.PKCS12.encryption_builder()
    if profile is Pkcs12Profile.MODERN_2023:
        builder = (builder.kdf_rounds(_MODERN_ROUNDS).key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
                   .hmac_hash(hashes.SHA256()))
    elif profile is Pkcs12Profile.LEGACY_DES:
        # SHA-1 and 3DES are the profile's point: readers too old for PBES2.
        legacy_mac = hashes.SHA1()  # noqa: S303
        builder = (builder.kdf_rounds(_LEGACY_ROUNDS)
                   .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC).hmac_hash(legacy_mac))
    else:
        raise PKIError(f"unknown PKCS#12 profile {profile!r}")
    return builder.build(password)


def keystore_p12(chain_pem: bytes, key_pem: bytes, password: bytes, profile: Pkcs12Profile) -> bytes:
    """``keystore.p12``: the private key and its certificate chain (leaf first) under one alias."""
    chain = parse_pem_certificates(chain_pem, CHAIN_LIMITS)
    # Only packaged here, and compared with the leaf: OpenSSL's RSA consistency check (0.5 s of GIL
    # for RSA-4096) is for keys that sign, and this one was checked when it was generated.
    key = load_private_key_pem(key_pem, check_rsa_key=False)
    if not key_matches_certificate(key, chain[0]):
        raise PKIError("the private key does not belong to the first certificate of the chain")
    return pkcs12.serialize_key_and_certificates(
        KEYSTORE_ALIAS.encode(), key, chain[0], chain[1:] or None, _encryption(password, profile)
    )


def truststore_p12(bundle_pem: bytes, password: bytes, profile: Pkcs12Profile) -> bytes:
    """``truststore.p12``: every CA certificate of the bundle as a trusted entry, aliased ``ca-<fingerprint>``
    (the first 12 hex digits of its SHA-256), so an alias names the same CA across rotations."""
    anchors = parse_pem_certificates(bundle_pem)
    entries = [pkcs12.PKCS12Certificate(cert, f"ca-{fingerprint(cert).removeprefix('sha256:')[:12]}".encode())
               for cert in anchors]
    return pkcs12.serialize_java_truststore(entries, _encryption(password, profile))
