"""Parsing what a tenant writes (issue 10, item 4): only the project's errors, and bounded, linear work.

Property tests (hypothesis) over arbitrary bytes and over PEM-ish text assembled from the pieces an
attacker would use. No timings here (speed is measured by bench/parsing_bench.py): the scanner
reports the bytes its searches covered, and that count, checked on every input, never exceeds twice
the input's length; the caps refuse oversized input before it is scanned or decoded.
"""

from __future__ import annotations

import base64
import functools
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtls_operator import constants as c
from mtls_operator.errors import CAError, PKIError
from mtls_operator.k8s.views import SecretView
from mtls_operator.models import KeySpec, Usage
from mtls_operator.pki import (
    BUNDLE_LIMITS,
    CHAIN_LIMITS,
    MAX_KEY_PEM_BYTES,
    CertificateAuthority,
    LeafRequest,
    PemLimits,
    certs_to_pem,
    create_self_signed_ca,
    issue_leaf,
    load_ca,
    load_private_key_pem,
    parse_pem_certificates,
    private_key_to_pem,
    scan_pem_blocks,
)
from mtls_operator.rules.plan import PodInfo, SecretContent, SecretReading, read_secret, secret_body
from mtls_operator.rules.reissue import ReissueInput, reissue_decision
from mtls_operator.rules.renewal import DesiredState, ReissueReason

NOW = datetime(2026, 11, 27, tzinfo=UTC)
SPIFFE_ID = "spiffe://cluster.local/ns/shop/sa/web"
BEGIN = b"-----BEGIN CERTIFICATE-----"
END = b"-----END CERTIFICATE-----"
# Deterministic (CI runs the same examples every time) and untimed (the house forbids timed assertions).
PROPERTIES = settings(deadline=None, derandomize=True, database=None, max_examples=300,
                      suppress_health_check=[HealthCheck.too_slow])
UNCAPPED = PemLimits("test input", 1 << 30, 1 << 30)
# Some inputs are certificates with a serial number that is not positive: cryptography warns (a later
# release will refuse them, as ValueError, which the parser turns into PKIError). The operator logs the
# warning; here warnings are errors, and what is checked is that no exception but PKIError escapes.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Parsed a serial number which wasn't positive:cryptography.utils.CryptographyDeprecationWarning"
)


@functools.cache
def ca() -> CertificateAuthority:
    return create_self_signed_ca(NOW, common_name="parsing")


@functools.cache
def leaf_secret() -> dict[str, Any]:
    """A pod Secret exactly as the operator writes it."""
    leaf = issue_leaf(ca(), LeafRequest(spiffe_id=SPIFFE_ID, dns_names=(),
                                        usages=frozenset(Usage), key=KeySpec(), duration=timedelta(hours=24)), NOW)
    content = SecretContent(chain_pem=leaf.chain_pem, key_pem=leaf.key_pem, bundle_pem=certs_to_pem(ca().trust),
                            spiffe_id=SPIFFE_ID, serial=leaf.serial_hex, not_after=leaf.not_after,
                            renew_at=leaf.not_after - timedelta(hours=8), ca_fingerprint=ca().fingerprint,
                            spec_hash="hash")
    pod = PodInfo(namespace="shop", name="web-0", uid="uid-web-0", labels={}, service_account="web",
                  secret_name_annotation=None, terminating=False, finished=False)
    return secret_body(name="web-web-0", identity="web", pod=pod, content=content, template_labels={},
                       template_annotations={})


def cert_pem() -> bytes:
    return certs_to_pem([ca().cert])


def corrupted_pem() -> bytes:
    lines = cert_pem().splitlines(keepends=True)
    lines[2] = b"A" * (len(lines[2]) - 1) + b"\n"
    return b"".join(lines)


# What an attacker assembles PEM-ish input from: the markers, their fragments, base64, line ends,
# bytes that are not text, valid and corrupted certificates.
PIECES = st.one_of(
    st.sampled_from([BEGIN, END, b"\n", b"\r\n", b" ", b"-----", b"-----BEGIN ", b"-----END ", b"CERTIFICATE-----",
                     b"MIIB", b"A" * 64, b"=", b"\x00", b"\xff\xfe"]),
    st.builds(cert_pem),
    st.builds(corrupted_pem),
    st.binary(max_size=40),
)
PEMISH = st.lists(PIECES, max_size=40).map(b"".join)
ANY_INPUT = st.one_of(st.binary(max_size=2048), PEMISH)


def parse_outcome(data: bytes, limits: PemLimits) -> list[x509.Certificate] | None:
    """The certificates, or None when the parser refused with the project's error (and nothing else)."""
    try:
        return parse_pem_certificates(data, limits)
    except PKIError:
        return None


# Only the project's errors ------------------------------------------------------------------------------


@PROPERTIES
@given(ANY_INPUT)
def test_parsing_any_input_raises_only_pki_errors(data: bytes) -> None:
    for limits in (CHAIN_LIMITS, BUNDLE_LIMITS):
        certs = parse_outcome(data, limits)
        assert certs is None or all(isinstance(cert, x509.Certificate) for cert in certs)


@PROPERTIES
@given(ANY_INPUT)
def test_loading_any_key_raises_only_pki_errors(data: bytes) -> None:
    with pytest.raises(PKIError):
        load_private_key_pem(data)


@PROPERTIES
@given(tls_crt=ANY_INPUT, ca_crt=st.one_of(st.none(), ANY_INPUT), good_key=st.booleans())
def test_loading_any_ca_raises_only_ca_errors(tls_crt: bytes, ca_crt: bytes | None, good_key: bool) -> None:
    key = private_key_to_pem(ca().key) if good_key else tls_crt
    try:
        loaded = load_ca(tls_crt, key, ca_crt, NOW)
    except CAError:
        return
    assert loaded.fingerprint == ca().fingerprint, "only the real CA and its key load"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


SECRET_VALUES = st.one_of(
    PEMISH.map(b64),
    st.binary(max_size=512).map(b64),
    st.text(max_size=64),  # not base64 at all
    st.sampled_from([b64(BEGIN + b"\n") * 3000, "A" * (2 * BUNDLE_LIMITS.max_bytes), b64(b"\0" * 70_000)]),
)


@PROPERTIES
@given(st.dictionaries(st.sampled_from([c.TLS_CRT, c.TLS_KEY, c.CA_CRT, "extra"]), SECRET_VALUES, min_size=1))
def test_reading_a_tampered_secret_never_raises_and_asks_for_a_repair(data: dict[str, str]) -> None:
    body = {**leaf_secret(), "data": {**leaf_secret()["data"], **data}}
    reading = read_secret(SecretView.of(body))
    assert isinstance(reading, SecretReading)
    assert reading.state is not None, "the annotations are intact"
    if reading.problems:
        desired = DesiredState(spiffe_id=reading.state.spiffe_id, spec_hash="hash",
                               ca_fingerprint=ca().fingerprint, trusted_ca_fingerprints=frozenset({ca().fingerprint}))
        decision = reissue_decision(ReissueInput(desired, NOW, pod_uid="p", secret_exists=True, owner_pod_uid="p",
                                                 state=reading.state, problems=reading.problems))
        assert decision is not None
        assert decision.reason is ReissueReason.REPAIR


# Bounded, linear work --------------------------------------------------------------------------------------


@PROPERTIES
@given(ANY_INPUT)
def test_the_scan_examines_each_byte_at_most_twice(data: bytes) -> None:
    for limits in (CHAIN_LIMITS, BUNDLE_LIMITS, UNCAPPED):
        assert scan_pem_blocks(data, limits).examined <= 2 * len(data)


@pytest.mark.parametrize("size", [4_000, 40_000, 400_000, 4_000_000])
def test_the_work_on_the_attack_grows_linearly(size: int) -> None:
    """BEGIN lines and nothing else: quadratic for a lazy regex, one look per byte for the scan."""
    attack = (BEGIN + b"\n") * (size // (len(BEGIN) + 1))
    scan = scan_pem_blocks(attack, UNCAPPED)
    assert scan.problem is not None
    assert "no matching END line" in scan.problem
    assert scan.examined == len(attack)
    # With a valid certificate first, and BEGIN lines after it: still each byte at most twice.
    scan = scan_pem_blocks(cert_pem() + attack, UNCAPPED)
    assert len(scan.blocks) == 1
    assert scan.problem is not None
    assert scan.examined <= 2 * len(cert_pem()) + len(attack)


_OLD_PEM_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


def parse_before(data: bytes) -> list[x509.Certificate] | None:
    """The regex parser this replaced (see bench/parsing_bench.py), as an oracle on small inputs."""
    blocks = _OLD_PEM_BLOCK.findall(data)
    if not blocks or len(blocks) != data.count(BEGIN):
        return None
    try:
        certs = [x509.load_pem_x509_certificate(block) for block in blocks]
        for cert in certs:
            _ = cert.extensions
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType):
        return None
    return certs


@PROPERTIES
@given(PEMISH)
def test_the_scan_accepts_and_refuses_what_the_regex_did(data: bytes) -> None:
    assert parse_outcome(data, UNCAPPED) == parse_before(data)


# Caps, before any work ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("limits", "field"), [(CHAIN_LIMITS, "tls.crt"), (BUNDLE_LIMITS, "ca.crt")])
def test_over_the_byte_cap_is_refused_before_scanning(limits: PemLimits, field: str) -> None:
    # Valid certificates, so only the size can be the reason.
    data = cert_pem() * (limits.max_bytes // len(cert_pem()) + 1)
    scan = scan_pem_blocks(data, limits)
    assert scan.examined == 0
    assert scan.blocks == ()
    assert scan.problem == f"PEM data of {len(data)} bytes is over the {limits.max_bytes}-byte limit of a {limits.what}"
    tls_crt, ca_crt = (data, None) if field == "tls.crt" else (cert_pem(), data)
    with pytest.raises(CAError, match=f"^{field}: PEM data of {len(data)} bytes is over the"):
        load_ca(tls_crt, private_key_to_pem(ca().key), ca_crt, NOW)


@pytest.mark.parametrize("limits", [CHAIN_LIMITS, BUNDLE_LIMITS])
def test_one_certificate_over_the_count_cap_stops_the_scan(limits: PemLimits) -> None:
    at_cap = cert_pem() * limits.max_certificates
    assert len(parse_pem_certificates(at_cap, limits)) == limits.max_certificates
    scan = scan_pem_blocks(at_cap + cert_pem() * 5, limits)
    assert scan.problem == f"more than {limits.max_certificates} certificates: over the limit of a {limits.what}"
    # It stopped at the first certificate too many: the rest was never looked at.
    assert scan.examined < len(at_cap) * 2 + len(BEGIN)


def test_an_over_long_key_is_refused_before_openssl_sees_it() -> None:
    data = private_key_to_pem(ca().key) + b"\n" * MAX_KEY_PEM_BYTES
    with pytest.raises(PKIError, match=f"^the private key PEM is {len(data)} bytes, over the {MAX_KEY_PEM_BYTES}"):
        load_private_key_pem(data)


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        (c.TLS_CRT, b64((BEGIN + b"\n") * 15_000), "tls.crt is over the 65536-byte limit"),
        (c.TLS_CRT, "A" * 1_400_000, "tls.crt is over the 65536-byte limit (1400000 characters of base64)"),
        (c.TLS_CRT, b64((BEGIN + b"\n") * 2_000), "tls.crt is not a readable certificate: malformed PEM"),
        (c.TLS_CRT, b64(cert_pem() * 11), "tls.crt is not a readable certificate: more than 10 certificates"),
        (c.TLS_CRT, "not base64!", "tls.crt is not valid base64"),
        (c.TLS_KEY, b64(b"k" * 20_000), "tls.key is over the 16384-byte limit"),
    ],
    ids=["400KB-of-BEGIN", "1MB-of-garbage", "56KB-of-BEGIN", "11-certificates", "not-base64", "20KB-key"],
)
def test_a_stuffed_secret_is_unreadable_and_says_why(field: str, value: str, problem: str) -> None:
    body = {**leaf_secret(), "data": {**leaf_secret()["data"], field: value}}
    reading = read_secret(SecretView.of(body))
    assert any(text.startswith(problem) for text in reading.problems), reading.problems
