"""Chain verification: what verify_leaf accepts and refuses, for every key type, and openssl agrees."""

from __future__ import annotations

import dataclasses
import functools
import subprocess
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID, ObjectIdentifier

from mtls_operator.errors import ChainError
from mtls_operator.models import KeyAlgorithm, KeySpec
from mtls_operator.pki import (
    CertificateAuthority,
    IssuedLeaf,
    PrivateKey,
    certs_to_pem,
    create_intermediate_ca,
    create_self_signed_ca,
    generate_private_key,
    issue_leaf,
    verify_leaf,
)

from .pki_cases import ALL_SPECS, NOW, REQUEST

OPENSSL = "/usr/bin/openssl"


@functools.cache
def root(spec: KeySpec) -> CertificateAuthority:
    return create_self_signed_ca(NOW, key=spec, path_length=1, common_name=f"root {spec}", unique_name=False)


@functools.cache
def intermediate(spec: KeySpec) -> CertificateAuthority:
    return create_intermediate_ca(root(spec), NOW, key=spec, common_name=f"intermediate {spec}")


@functools.cache
def leaf_of(ca: CertificateAuthority, spec: KeySpec) -> IssuedLeaf:
    return issue_leaf(ca, dataclasses.replace(REQUEST, key=spec), NOW)


def forge(
    issuer: tuple[x509.Certificate, PrivateKey],
    *,
    is_ca: bool = False,
    extra: Sequence[tuple[x509.ExtensionType, bool]] = (),
    not_after: datetime = NOW + timedelta(days=2),
    dns_name: str = "payments.shop.svc",
) -> tuple[x509.Certificate, PrivateKey]:
    """A certificate signed by ``issuer`` that ``issue_leaf`` would never make (extra extensions...)."""
    key = generate_private_key(KeySpec())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "forged CA" if is_ca else "forged")]))
        .issuer_name(issuer[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not is_ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=is_ca,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()), critical=False)
    )
    if not is_ca:
        names = [x509.UniformResourceIdentifier(REQUEST.spiffe_id), x509.DNSName(dns_name)]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    for extension, critical in extra:
        builder = builder.add_extension(extension, critical=critical)
    digest = None if isinstance(issuer[1], ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(issuer[1], digest), key


def pair(ca: CertificateAuthority) -> tuple[x509.Certificate, PrivateKey]:
    return ca.cert, ca.key


# --- what passes -------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ALL_SPECS, ids=str)
def test_verifies_root_and_intermediate_chains(spec: KeySpec) -> None:
    verify_leaf(leaf_of(root(spec), spec).cert, [], [root(spec).cert], NOW)
    verify_leaf(leaf_of(intermediate(spec), spec).cert, [intermediate(spec).cert], [root(spec).cert], NOW)


@pytest.mark.parametrize("spec", ALL_SPECS, ids=str)
def test_verifies_at_both_ends_of_the_validity_window(spec: KeySpec) -> None:
    leaf = leaf_of(root(spec), spec)
    verify_leaf(leaf.cert, [], root(spec).trust, leaf.not_before)
    verify_leaf(leaf.cert, [], root(spec).trust, leaf.not_after)


def test_extra_and_unordered_intermediates_and_several_anchors() -> None:
    top = create_self_signed_ca(NOW, path_length=2, common_name="top", unique_name=False)
    first = create_intermediate_ca(top, NOW, path_length=1, common_name="first")
    second = create_intermediate_ca(first, NOW, common_name="second")
    leaf = issue_leaf(second, REQUEST, NOW)
    unrelated = create_self_signed_ca(NOW, common_name="unrelated", unique_name=False).cert
    verify_leaf(leaf.cert, [first.cert, unrelated, second.cert, top.cert], [unrelated, top.cert], NOW)


def test_both_cas_of_a_rotation_verify_against_the_merged_bundle() -> None:
    old, new = create_self_signed_ca(NOW), create_self_signed_ca(NOW)  # same name, different keys
    bundle = [old.cert, new.cert]
    verify_leaf(issue_leaf(old, REQUEST, NOW).cert, [], bundle, NOW)
    verify_leaf(issue_leaf(new, REQUEST, NOW).cert, [], bundle, NOW)


def test_name_constraints_that_permit_the_leaf() -> None:
    spec = KeySpec()
    constraints = x509.NameConstraints(permitted_subtrees=[x509.DNSName("shop.svc")], excluded_subtrees=None)
    inter = forge(pair(root(spec)), is_ca=True, extra=[(constraints, True)])
    leaf, _ = forge(inter)
    verify_leaf(leaf, [inter[0]], [root(spec).cert], NOW)


# --- what fails, for every key type ---------------------------------------------------------------

# What verify_leaf is given: leaf, intermediates, trust, now.
Inputs = tuple[x509.Certificate, list[x509.Certificate], list[x509.Certificate], datetime]


def _foreign_same_name(spec: KeySpec) -> Inputs:
    impostor = create_self_signed_ca(NOW, key=spec, common_name=f"root {spec}", unique_name=False)
    return leaf_of(root(spec), spec).cert, [], [impostor.cert], NOW


def _foreign(spec: KeySpec) -> Inputs:
    foreign = create_self_signed_ca(NOW, common_name="foreign", unique_name=False)
    return leaf_of(root(spec), spec).cert, [], [foreign.cert], NOW


def _expired(spec: KeySpec) -> Inputs:
    leaf = leaf_of(root(spec), spec)
    return leaf.cert, [], [root(spec).cert], leaf.not_after + timedelta(seconds=1)


def _early(spec: KeySpec) -> Inputs:
    leaf = leaf_of(root(spec), spec)
    return leaf.cert, [], [root(spec).cert], leaf.not_before - timedelta(seconds=1)


def _missing_intermediate(spec: KeySpec) -> Inputs:
    return leaf_of(intermediate(spec), spec).cert, [], [root(spec).cert], NOW


def _intermediate_expired(spec: KeySpec) -> Inputs:
    short = create_intermediate_ca(root(spec), NOW, key=spec, validity=timedelta(days=1))
    leaf, _ = forge(pair(short), not_after=NOW + timedelta(days=30))
    return leaf, [short.cert], [root(spec).cert], NOW + timedelta(days=2)


def _no_trust(spec: KeySpec) -> Inputs:
    return leaf_of(root(spec), spec).cert, [], [], NOW


def _ca_as_leaf(spec: KeySpec) -> Inputs:
    return intermediate(spec).cert, [], [root(spec).cert], NOW


def _path_length(spec: KeySpec) -> Inputs:
    top = create_self_signed_ca(NOW, key=spec)  # pathLenConstraint 0: leaves only
    inter = forge(pair(top), is_ca=True)
    leaf, _ = forge(inter)
    return leaf, [inter[0]], [top.cert], NOW


def _leaf_signs(spec: KeySpec) -> Inputs:
    leaf = leaf_of(root(spec), spec)
    below, _ = forge((leaf.cert, leaf.key))
    return below, [leaf.cert], [root(spec).cert], NOW


@pytest.mark.parametrize("spec", ALL_SPECS, ids=str)
@pytest.mark.parametrize(
    ("case", "message"),
    [
        pytest.param(
            _foreign_same_name, r"signature does not verify .*signed by a different CA", id="foreign-same-name"
        ),
        pytest.param(
            _foreign, r"which is neither a trusted CA \(trusted: 'CN=foreign,O=mtls-operator'\)", id="foreign"
        ),
        pytest.param(_expired, r"^certificate 'O=mtls-operator' \(serial [0-9a-f]+\) expired at ", id="expired"),
        pytest.param(_early, r"^certificate 'O=mtls-operator' .* is not yet valid at ", id="not-yet-valid"),
        pytest.param(_missing_intermediate, r"nor among the given intermediates", id="missing-intermediate"),
        pytest.param(
            _intermediate_expired, r"'CN=mtls-operator intermediate CA,O=mtls-operator' .*expired at", id="ca-expired"
        ),
        pytest.param(_no_trust, r"the trust bundle is empty", id="empty-trust"),
        pytest.param(_ca_as_leaf, r"is a CA certificate, not a leaf", id="ca-as-leaf"),
        pytest.param(_path_length, r"allows 0 intermediate CA\(s\) below it \(pathLenConstraint\)", id="path-length"),
        pytest.param(_leaf_signs, r"signed another certificate but is not a CA", id="leaf-as-issuer"),
    ],
)
def test_refuses(case: Callable[[KeySpec], Inputs], message: str, spec: KeySpec) -> None:
    leaf, intermediates, trust, now = case(spec)
    with pytest.raises(ChainError, match=message):
        verify_leaf(leaf, intermediates, trust, now)


def _is_ed25519(spec: KeySpec) -> bool:
    return spec.algorithm is KeyAlgorithm.ED25519


@pytest.mark.parametrize(
    "spec", [KeySpec(), KeySpec(KeyAlgorithm.RSA, 2048), KeySpec(KeyAlgorithm.ED25519, None)], ids=str
)
def test_refuses_an_unknown_critical_extension(spec: KeySpec) -> None:
    unknown = x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00")
    leaf, _ = forge(pair(root(spec)), extra=[(unknown, True)])
    message = "cannot be checked in an Ed25519 chain" if _is_ed25519(spec) else "X.509 path validation rejected"
    with pytest.raises(ChainError, match=message):
        verify_leaf(leaf, [], [root(spec).cert], NOW)


@pytest.mark.parametrize("spec", [KeySpec(), KeySpec(KeyAlgorithm.ED25519, None)], ids=str)
def test_refuses_a_leaf_outside_the_name_constraints(spec: KeySpec) -> None:
    constraints = x509.NameConstraints(permitted_subtrees=[x509.DNSName("other.svc")], excluded_subtrees=None)
    inter = forge(pair(root(spec)), is_ca=True, extra=[(constraints, True)])
    leaf, _ = forge(inter)
    message = "critical extension NameConstraints" if _is_ed25519(spec) else "X.509 path validation rejected"
    with pytest.raises(ChainError, match=message):
        verify_leaf(leaf, [inter[0]], [root(spec).cert], NOW)


def test_naive_now_is_a_programming_error() -> None:
    spec = KeySpec()
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_leaf(leaf_of(root(spec), spec).cert, [], [root(spec).cert], datetime(2026, 11, 27))


# --- openssl agrees ------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ALL_SPECS, ids=str)
@pytest.mark.parametrize("through", ["root", "intermediate"])
@pytest.mark.parametrize("purpose", ["sslclient", "sslserver"])
def test_openssl_verifies_issued_chains(spec: KeySpec, through: str, purpose: str, tmp_path: Path) -> None:
    ca = root(spec) if through == "root" else intermediate(spec)
    leaf = leaf_of(ca, spec)
    (tmp_path / "ca.pem").write_bytes(certs_to_pem(ca.trust))
    (tmp_path / "leaf.pem").write_bytes(certs_to_pem([leaf.cert]))
    command = [OPENSSL, "verify", "-x509_strict", "-purpose", purpose, "-attime", str(int(NOW.timestamp()))]
    command += ["-CAfile", str(tmp_path / "ca.pem")]
    if ca.issuing_chain:
        (tmp_path / "intermediates.pem").write_bytes(certs_to_pem(ca.issuing_chain))
        command += ["-untrusted", str(tmp_path / "intermediates.pem")]
    result = subprocess.run([*command, str(tmp_path / "leaf.pem")], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith(": OK")


def test_openssl_refuses_a_foreign_chain(tmp_path: Path) -> None:
    spec = KeySpec()
    (tmp_path / "ca.pem").write_bytes(certs_to_pem([create_self_signed_ca(NOW).cert]))
    (tmp_path / "leaf.pem").write_bytes(certs_to_pem([leaf_of(root(spec), spec).cert]))
    result = subprocess.run(
        [
            OPENSSL,
            "verify",
            "-attime",
            str(int(NOW.timestamp())),
            "-CAfile",
            str(tmp_path / "ca.pem"),
            str(tmp_path / "leaf.pem"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
