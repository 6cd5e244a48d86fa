"""PEM bundles: fingerprints, encoding, parsing (and its refusals) and de-duplicating merges."""

from __future__ import annotations

import functools
import hashlib
import re
from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mtls_operator.errors import PKIError
from mtls_operator.pki import (
    certs_to_pem,
    create_self_signed_ca,
    fingerprint,
    merge_bundles,
    parse_pem_certificates,
    private_key_to_pem,
)

NOW = datetime(2026, 11, 27, tzinfo=UTC)


@functools.cache
def certs() -> tuple[x509.Certificate, x509.Certificate, x509.Certificate]:
    a, b, c = (create_self_signed_ca(NOW, common_name=name).cert for name in ("A", "B", "C"))
    return a, b, c


def test_fingerprint_format() -> None:
    cert = certs()[0]
    value = fingerprint(cert)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", value)
    der = cert.public_bytes(serialization.Encoding.DER)
    assert value == "sha256:" + hashlib.sha256(der).hexdigest()
    assert fingerprint(certs()[1]) != value


def test_pem_round_trip_keeps_order() -> None:
    a, b, c = certs()
    data = certs_to_pem([c, a, b])
    assert data.count(b"-----BEGIN CERTIFICATE-----") == 3
    assert parse_pem_certificates(data) == [c, a, b]
    assert certs_to_pem([]) == b""


def leaked_pem_lines(data: bytes, message: str) -> list[bytes]:
    """Lines of PEM body (base64) from ``data`` that show up in ``message``: there must be none."""
    body = [line for line in data.splitlines() if len(line) > 8 and not line.startswith(b"-----")]
    return [line for line in body if line.decode(errors="replace") in message]


@pytest.mark.parametrize(
    "decorate",
    [
        pytest.param(lambda blocks: b"".join(blocks), id="plain"),
        pytest.param(lambda blocks: b"# bundle\n" + b"\nsubject=CN=x\n".join(blocks) + b"\n\n", id="comments"),
        pytest.param(lambda blocks: b"".join(blocks).replace(b"\n", b"\r\n"), id="crlf"),
    ],
)
def test_parse_tolerates_text_around_blocks(decorate: object) -> None:
    assert callable(decorate)
    a, b, _ = certs()
    assert parse_pem_certificates(decorate([certs_to_pem([a]), certs_to_pem([b])])) == [a, b]


def _corrupt(pem: bytes) -> bytes:
    lines = pem.splitlines(keepends=True)
    lines[3] = b"A" * (len(lines[3]) - 1) + b"\n"
    return b"".join(lines)


@pytest.mark.parametrize(
    ("make_data", "message"),
    [
        pytest.param(lambda: b"", "no PEM certificate found", id="empty"),
        pytest.param(lambda: b"not a certificate", "no PEM certificate found", id="garbage"),
        pytest.param(lambda: certs()[0].public_bytes(serialization.Encoding.DER), "no PEM certificate found", id="der"),
        pytest.param(
            lambda: private_key_to_pem(create_self_signed_ca(NOW).key), "no PEM certificate found", id="a-key"
        ),
        pytest.param(
            lambda: certs_to_pem([certs()[0]]).split(b"-----END")[0],
            "has no matching END line",
            id="truncated",
        ),
        pytest.param(
            lambda: b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "certificate 1 of 1 is malformed",
            id="not-x509",
        ),
        pytest.param(
            lambda: certs_to_pem([certs()[0]]) + _corrupt(certs_to_pem([certs()[1]])),
            "certificate 2 of 2 is malformed",
            id="second-corrupt",
        ),
    ],
)
def test_parse_refuses(make_data: object, message: str) -> None:
    assert callable(make_data)
    data = make_data()
    with pytest.raises(PKIError, match=message) as caught:
        parse_pem_certificates(data)
    assert not leaked_pem_lines(data, str(caught.value))


@pytest.mark.parametrize(
    ("bundles", "expected"),
    [
        pytest.param([], [], id="nothing"),
        pytest.param([[]], [], id="one-empty"),
        pytest.param([[0, 1]], [0, 1], id="one"),
        pytest.param([[0, 1], [1, 2], [0]], [0, 1, 2], id="overlapping"),
        pytest.param([[2], [0, 2, 1], [1, 0]], [2, 0, 1], id="first-seen-order"),
        pytest.param([[0, 0, 0]], [0], id="duplicates-within-one"),
    ],
)
def test_merge_bundles(bundles: list[list[int]], expected: list[int]) -> None:
    pool = certs()
    merged = merge_bundles(*([pool[i] for i in bundle] for bundle in bundles))
    assert merged == [pool[i] for i in expected]


def test_merge_bundles_by_fingerprint_not_identity() -> None:
    a = certs()[0]
    copy = x509.load_pem_x509_certificate(certs_to_pem([a]))
    assert merge_bundles([a], [copy]) == [a]
