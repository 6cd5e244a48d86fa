"""Pure rules of the admission webhooks, and the serving certificate they present."""

from __future__ import annotations

import base64
import socket
import ssl
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from mtls_operator.controller.webhook_tls import load_key_pair
from mtls_operator.errors import CAError, ChainError, PKIError
from mtls_operator.pki import certs_to_pem, create_self_signed_ca, verify_leaf
from mtls_operator.pki.serving import issue_serving_certificate, placeholder_serving_certificate
from mtls_operator.rules.admission import (
    ServingState,
    ca_bundle_text,
    identity_refusal,
    serving_dns_names,
    serving_reissue_reason,
    webhooks_with_ca_bundle,
)
from mtls_operator.rules.policy import parse_admin_patterns

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
NAMES = serving_dns_names("mtls-operator-webhook", "mtls-system", "cluster.local")


def test_serving_dns_names_put_the_api_servers_name_first() -> None:
    assert NAMES == (
        "mtls-operator-webhook.mtls-system.svc",
        "mtls-operator-webhook",
        "mtls-operator-webhook.mtls-system",
        "mtls-operator-webhook.mtls-system.svc.cluster.local",
    )


# When the serving certificate is issued again -----------------------------------------------------------

ISSUED = ServingState(NAMES, NOW, NOW + timedelta(hours=24), "sha256:aa")


@pytest.mark.parametrize(
    ("state", "ca", "names", "now", "reason"),
    [
        (ISSUED, "sha256:aa", NAMES, NOW, None),
        (ISSUED, "sha256:aa", NAMES, NOW + timedelta(hours=15, minutes=59, seconds=59), None),
        (ISSUED, "sha256:aa", NAMES, NOW + timedelta(hours=16), "renewing: the certificate expires in 8h"),
        (ISSUED, "sha256:aa", NAMES, NOW + timedelta(hours=30), "renewing: the certificate expires in 0s"),
        (ISSUED, "sha256:bb", NAMES, NOW, "the signing CA changed to sha256:bb"),
        (ISSUED, "sha256:aa", NAMES[:1], NOW, "the Service's DNS names changed"),
        (ServingState(NAMES, NOW, NOW + timedelta(days=1), None), "sha256:aa", NAMES, NOW,
         "the CA is available: replacing the placeholder certificate"),
    ],
    ids=["fresh", "just before renewal", "renewal time (a third before expiry)", "expired", "CA changed",
         "names changed", "placeholder"],
)
def test_serving_reissue_reason(state: ServingState, ca: str, names: tuple[str, ...], now: datetime,
                                reason: str | None) -> None:
    assert serving_reissue_reason(state, ca_fingerprint=ca, names=names, now=now) == reason


# The configurations' caBundle -------------------------------------------------------------------------------

BUNDLE = ca_bundle_text(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")


def hook(name: str, **client: Any) -> dict[str, Any]:
    return {"name": name, "clientConfig": {"service": {"name": "svc", "namespace": "ns", "path": "/p"}, **client},
            "failurePolicy": "Fail"}


@pytest.mark.parametrize(
    ("webhooks", "expected"),
    [
        ([hook("a")], [hook("a", caBundle=BUNDLE)]),
        ([hook("a", caBundle="b2xk"), hook("b", caBundle=BUNDLE)],
         [hook("a", caBundle=BUNDLE), hook("b", caBundle=BUNDLE)]),
        ([hook("a", caBundle=BUNDLE), hook("b", caBundle=BUNDLE)], None),
        ([{"name": "bare"}], [{"name": "bare", "clientConfig": {"caBundle": BUNDLE}}]),
        ([], None),
    ],
    ids=["chart's, without caBundle", "one stale", "current: nothing to write", "no clientConfig", "no webhooks"],
)
def test_webhooks_with_ca_bundle(webhooks: list[dict[str, Any]], expected: list[dict[str, Any]] | None) -> None:
    configuration = {"metadata": {"name": "mtls-operator"}, "webhooks": webhooks}
    before = repr(configuration)
    assert webhooks_with_ca_bundle(configuration, BUNDLE) == expected
    assert repr(configuration) == before, "the configuration read is not modified"


def test_ca_bundle_is_base64_of_the_pem() -> None:
    assert base64.b64decode(BUNDLE).startswith(b"-----BEGIN CERTIFICATE-----")


# Identities refused at apply time ----------------------------------------------------------------------------

GOOD = {"selector": {"matchLabels": {"app": "payments"}}, "dnsNames": ["payments", "payments.shop.svc"]}


def refusal(operation: str = "CREATE", *, name: str = "payments", spec: object = GOOD, old_spec: object = None,
            deleting: bool = False, allowed: str = "", max_duration: timedelta = timedelta(hours=8760),
            short_names: bool = True) -> str | None:
    return identity_refusal(operation=operation, name=name, namespace="shop", spec=spec, old_spec=old_spec,
                            deleting=deleting, cluster_domain="cluster.local",
                            allowed_dns_patterns=parse_admin_patterns(allowed, cluster_domain="cluster.local"),
                            default_duration=timedelta(hours=24), max_duration=max_duration,
                            allow_short_dns_names=short_names)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (None, "spec.selector: required"),
        ({}, "spec.selector: required"),
        ("text", "spec: must be an object"),
        ({**GOOD, "color": "blue"}, "spec.color: unknown field"),
        ({**GOOD, "selector": {"matchLabels": {"app": "a b"}}}, "spec.selector.matchLabels[app]:"),
        ({**GOOD, "duration": "30m"}, "spec.duration: '30m' is out of range; allowed: 1h..8760h"),
        ({**GOOD, "duration": "1d"}, "spec.duration: invalid duration '1d'"),
        ({**GOOD, "renewBefore": "24h"}, "spec.renewBefore: '24h' must be shorter than the duration (24h)"),
        ({**GOOD, "privateKey": {"algorithm": "RSA", "size": 1024}},
         "spec.privateKey.size: RSA does not support size 1024"),
        ({**GOOD, "usages": ["server", "signing"]}, "spec.usages[1]: unknown usage 'signing'"),
        ({**GOOD, "dnsNames": ["payments.other.svc"]}, "spec.dnsNames[0]: 'payments.other.svc'"),
        ({**GOOD, "dnsNames": ["localhost"]},
         "spec.dnsNames[0]: 'localhost' is not allowed for an identity in namespace 'shop': 'localhost' is a "
         "special-use domain name"),
        ({**GOOD, "dnsNames": ["*.shop"]},
         "spec.dnsNames[0]: '*.shop' is not allowed for an identity in namespace 'shop': 'shop' is a public suffix"),
        ({**GOOD, "serviceAccountName": "Bad_Name"}, "spec.serviceAccountName: 'Bad_Name' is not a valid"),
        ({**GOOD, "secretTemplate": {"labels": {"mtls.dev/identity": "x"}}},
         "spec.secretTemplate.labels[mtls.dev/identity]: 'mtls.dev/identity' is reserved"),
    ],
)
def test_a_bad_spec_is_refused_with_the_field_and_the_rule(spec: object, message: str) -> None:
    for operation in ("CREATE", "UPDATE"):
        refused = refusal(operation, spec=spec, old_spec=GOOD)
        assert refused is not None
        assert refused.startswith(message), refused


def test_a_good_spec_is_admitted() -> None:
    assert refusal() is None
    assert refusal("UPDATE", spec={**GOOD, "duration": "48h"}, old_spec=GOOD) is None


def test_the_name_length_rule_is_the_reconcilers() -> None:
    assert refusal(name="x" * 63) is None
    assert refusal(name="x" * 64) == (
        "metadata.name: must be at most 63 characters (it is the mtls.dev/identity label of every Secret), not 64"
    )


def test_allowed_dns_patterns_widen_the_policy() -> None:
    spec = {**GOOD, "dnsNames": ["api.example.com"]}
    assert refusal(spec=spec) is not None
    assert refusal(spec=spec, allowed="shop:*.example.com") is None
    assert refusal(spec=spec, allowed="web:*.example.com") is not None


def test_the_refusal_says_what_is_allowed_headless_names_included() -> None:
    refused = refusal(spec={**GOOD, "dnsNames": ["db-0.db.other.svc"]})
    assert refused is not None
    assert "it names namespace 'other'" in refused
    assert "the headless pod names <host>.<service>.shop.svc[.cluster.local]" in refused
    assert refusal(spec={**GOOD, "dnsNames": ["db-0.db.shop.svc", "*.db.shop.svc.cluster.local"]}) is None


def test_short_names_and_the_maximum_duration_are_the_admins() -> None:
    refused = refusal(short_names=False)
    assert refused is not None
    assert refused.startswith("spec.dnsNames[0]: 'payments' is not allowed")
    assert "MTLS_ALLOW_SHORT_DNS_NAMES=false" in refused
    refused = refusal(spec={**GOOD, "duration": "48h"}, max_duration=timedelta(hours=24))
    assert refused == (
        "spec.duration: 48h is longer than the maximum the cluster admin allows (24h, MTLS_MAX_DURATION)"
    )
    assert refusal(spec={**GOOD, "duration": "24h"}, max_duration=timedelta(hours=24)) is None


@pytest.mark.parametrize(
    ("operation", "spec", "old_spec", "deleting"),
    [
        ("UPDATE", {"duration": "1d"}, {"duration": "1d"}, False),
        ("UPDATE", {"duration": "2d"}, {"duration": "1d"}, True),
        ("DELETE", None, {"duration": "1d"}, False),
        ("CONNECT", None, None, False),
    ],
    ids=["spec unchanged (finalizer, labels)", "being deleted", "delete", "other operations"],
)
def test_writes_that_do_not_set_a_new_spec_are_admitted(operation: str, spec: object, old_spec: object,
                                                         deleting: bool) -> None:
    assert refusal(operation, spec=spec, old_spec=old_spec, deleting=deleting) is None


def test_an_unchanged_long_name_does_not_block_updates() -> None:
    assert refusal("UPDATE", name="x" * 80, spec=GOOD, old_spec={"selector": {}}) is None


# The serving certificate ---------------------------------------------------------------------------------------


def test_serving_certificate_is_a_server_leaf_of_the_ca_for_the_service_names() -> None:
    ca = create_self_signed_ca(NOW)
    leaf = issue_serving_certificate(ca, [*NAMES, "127.0.0.1"], timedelta(hours=24), NOW)
    cert = leaf.cert
    verify_leaf(cert, (), ca.trust, NOW)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == list(NAMES)
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert not sans.get_values_for_type(x509.UniformResourceIdentifier), "a Service, not a SPIFFE workload"
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    assert leaf.not_after == NOW + timedelta(hours=24)
    assert b"PRIVATE KEY" not in repr(leaf).encode()


def test_serving_certificate_never_outlives_the_ca() -> None:
    ca = create_self_signed_ca(NOW, validity=timedelta(hours=2))
    assert issue_serving_certificate(ca, NAMES, timedelta(hours=24), NOW).not_after == ca.not_after


@pytest.mark.parametrize(
    ("names", "duration", "now", "error"),
    [
        ((), timedelta(hours=1), NOW, PKIError),
        (("bücher.example",), timedelta(hours=1), NOW, PKIError),
        (NAMES, timedelta(0), NOW, PKIError),
        (NAMES, timedelta(hours=1), NOW + timedelta(days=400), CAError),
    ],
    ids=["no names", "not ASCII", "no lifetime", "CA expired"],
)
def test_serving_certificate_refusals(names: tuple[str, ...], duration: timedelta, now: datetime,
                                      error: type[Exception]) -> None:
    with pytest.raises(error):
        issue_serving_certificate(create_self_signed_ca(NOW), names, duration, now)


def test_the_placeholder_is_trusted_by_nobody() -> None:
    ca = create_self_signed_ca(NOW)
    placeholder = placeholder_serving_certificate(NAMES, NOW)
    with pytest.raises(ChainError):
        verify_leaf(placeholder.cert, (), ca.trust, NOW)


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext, hostname: str) -> str | None:
    """A TLS handshake over a socket pair; the client's error, or None when it succeeded."""
    left, right = socket.socketpair()
    errors: list[str] = []

    def serve() -> None:
        try:
            with server.wrap_socket(right, server_side=True) as tls:
                tls.recv(1)
        except (ssl.SSLError, OSError):
            pass

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client.wrap_socket(left, server_hostname=hostname) as tls:
            tls.sendall(b"x")
    except ssl.SSLError as exc:
        errors.append(exc.reason or str(exc))
    finally:
        left.close()
        thread.join(5)
        right.close()
    return errors[0] if errors else None


def test_load_key_pair_serves_the_new_certificate_on_new_handshakes() -> None:
    # What the API server does: verify against caBundle, by the Service's DNS name.
    now = datetime.now(UTC)  # the handshake checks validity on the real clock
    ca = create_self_signed_ca(now)
    client = ssl.create_default_context(cadata=certs_to_pem(ca.trust).decode())
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    load_key_pair(server, placeholder_serving_certificate(NAMES, now))
    assert _handshake(server, client, NAMES[0]) == "CERTIFICATE_VERIFY_FAILED"
    load_key_pair(server, issue_serving_certificate(ca, NAMES, timedelta(hours=1), now))
    assert _handshake(server, client, NAMES[0]) is None
    assert _handshake(server, client, "other.mtls-system.svc") == "CERTIFICATE_VERIFY_FAILED"
