"""DNS policy and duration cap on the running operator: what the policy refuses is never issued, and a
tightened policy re-issues the certificates that carry it; StatefulSet pods get their headless names."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from cryptography import x509

from kube_emulator import Emulator, EmulatorServer
from mtls_operator import constants as c
from mtls_operator.config import settings_from_env
from mtls_operator.rules.plan import secret_data
from mtls_operator.rules.spec import parse_identity_spec

from .conftest import (
    API,
    NS,
    FakeClock,
    OperatorHandle,
    eventually,
    identity,
    managed_secrets,
    operator_settings,
    pod,
    ready,
    settle,
)


def _leaf(secret: dict[str, Any]) -> x509.Certificate:
    return x509.load_pem_x509_certificate(secret_data(secret, c.TLS_CRT) or b"")


def _dns_names(secret: dict[str, Any]) -> list[str]:
    san = _leaf(secret).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return list(san.get_values_for_type(x509.DNSName))


def _serial(secret: dict[str, Any]) -> str:
    return str(secret["metadata"]["annotations"][c.SERIAL_ANNOTATION])


def _reason(emulator: Emulator, name: str) -> str | None:
    return (ready(emulator, name) or {}).get("reason")


def _warnings(emulator: Emulator, reason: str) -> list[dict[str, Any]]:
    return [e for e in emulator.list("v1", "events", NS) if e["type"] == "Warning" and e["reason"] == reason]


async def test_a_tightened_policy_reissues_without_the_names_it_no_longer_allows(
    server: EmulatorServer, clock: FakeClock
) -> None:
    emulator = server.emulator
    # The admin first allows shop its own public domain and short names (settings read as at start-up).
    lenient = settings_from_env({"MTLS_ALLOWED_DNS_PATTERNS": "shop:*.shop.example.com"})
    handle = OperatorHandle(server, clock, operator_settings(allowed_dns_patterns=lenient.allowed_dns_patterns))
    await handle.start()
    try:
        emulator.create(identity("payments", dnsNames=["payments", "payments.shop.svc", "api.shop.example.com"]))
        emulator.create(pod("payments-0", "payments"))
        await eventually(lambda: _reason(emulator, "payments") == "Issued", what="Issued")
        first = managed_secrets(emulator)["payments-payments-0"]
        assert _dns_names(first) == ["payments", "payments.shop.svc", "api.shop.example.com"]
    finally:
        await handle.stop()

    # Then tightens it: the pattern is gone and short names are turned off.
    handle = OperatorHandle(server, clock, operator_settings(allow_short_dns_names=False))
    await handle.start()
    try:
        def reissued() -> dict[str, Any] | None:
            secret = managed_secrets(emulator).get("payments-payments-0")
            return secret if secret and _serial(secret) != _serial(first) else None

        second = await eventually(reissued, what="a certificate without the refused names")
        assert _dns_names(second) == ["payments.shop.svc"]
        condition = await eventually(lambda: _reason(emulator, "payments") == "PolicyViolation"
                                     and ready(emulator, "payments"), what="PolicyViolation")
        assert condition["status"] == "False"
        message = condition["message"]
        assert message.startswith("certificates are issued without 'payments', 'api.shop.example.com'; "
                                  "1/1 pods have valid certificates; spec.dnsNames[0]: 'payments' is not allowed for "
                                  "an identity in namespace 'shop': short names (single labels and "
                                  "<service>.<namespace>) are turned off")
        assert "spec.dnsNames[2]: 'api.shop.example.com' is not allowed" in message
        await eventually(lambda: any("'api.shop.example.com'" in e["message"]
                                     for e in _warnings(emulator, "PolicyViolation")), what="a Warning Event")
        await settle(handle)
        # Re-issued once, then left alone: the allowed spec is stable.
        assert _serial(managed_secrets(emulator)["payments-payments-0"]) == _serial(second)

        # The user drops the refused names: Ready again, and nothing to re-issue (same certificate).
        emulator.patch(API, c.PLURAL, "payments", NS, {"spec": {"dnsNames": ["payments.shop.svc"]}})
        await eventually(lambda: _reason(emulator, "payments") == "Issued", what="Issued again")
        await settle(handle)
        assert _serial(managed_secrets(emulator)["payments-payments-0"]) == _serial(second)
    finally:
        await handle.stop()


async def test_a_refused_name_added_to_the_spec_is_never_issued(emulator: Emulator, operator: OperatorHandle) -> None:
    emulator.create(identity("payments", dnsNames=["payments.shop.svc"]))
    emulator.create(pod("payments-0", "payments"))
    await eventually(lambda: _reason(emulator, "payments") == "Issued", what="Issued")
    emulator.patch(API, c.PLURAL, "payments", NS, {"spec": {"dnsNames": [
        "payments.shop.svc", "localhost", "mtls-operator-webhook.mtls-system.svc", "*.shop"]}})
    condition = await eventually(lambda: _reason(emulator, "payments") == "PolicyViolation"
                                 and ready(emulator, "payments"), what="PolicyViolation")
    for phrase in ("'localhost' is a special-use domain name", "it names namespace 'mtls-system'",
                   "'*.shop' is not allowed", "'shop' is a public suffix"):
        assert phrase in condition["message"]
    await settle(operator)
    for secret in managed_secrets(emulator).values():
        assert _dns_names(secret) == ["payments.shop.svc"]


async def test_a_duration_above_the_maximum_is_issued_at_the_maximum(
    server: EmulatorServer, clock: FakeClock
) -> None:
    emulator = server.emulator
    handle = OperatorHandle(server, clock, operator_settings(max_duration=timedelta(hours=48)))
    await handle.start()
    try:
        emulator.create(identity("payments", duration="8760h"))
        emulator.create(pod("payments-0", "payments"))
        condition = await eventually(lambda: _reason(emulator, "payments") == "PolicyViolation"
                                     and managed_secrets(emulator) and ready(emulator, "payments"),
                                     what="PolicyViolation with a certificate")
        assert condition["message"] == (
            "certificates are issued for 48h; 1/1 pods have valid certificates; "
            "spec.duration: 8760h is longer than the maximum the cluster admin allows (48h, MTLS_MAX_DURATION)"
        )
        leaf = _leaf(managed_secrets(emulator)["payments-payments-0"])
        lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
        # Issued for the maximum (the notBefore is backdated a little for clock skew).
        assert timedelta(hours=48) <= lifetime <= timedelta(hours=48, minutes=10)
        assert leaf.not_valid_after_utc == clock.now.replace(microsecond=0) + timedelta(hours=48)
    finally:
        await handle.stop()


def _statefulset_pod(name: str, hostname: Any, subdomain: Any) -> dict[str, Any]:
    body = pod(name, "db")
    body["spec"].update({"hostname": hostname, "subdomain": subdomain})
    return body


async def test_a_statefulset_pod_gets_its_headless_names(emulator: Emulator, operator: OperatorHandle) -> None:
    emulator.create(identity("db", dnsNames=["db.shop.svc", "*.db.shop.svc"]))
    emulator.create(_statefulset_pod("db-0", "db-0", "db"))
    emulator.create(_statefulset_pod("db-1", "db-1", "db"))
    emulator.create(pod("db-client", "db"))  # no hostname/subdomain: the identity's names only
    emulator.create(_statefulset_pod("db-bad", "DB_BAD", "db"))  # the API server would refuse it
    condition = await eventually(lambda: _reason(emulator, "db") == "IssuanceFailed"
                                 and len(managed_secrets(emulator)) == 3 and ready(emulator, "db"),
                                 what="three Secrets and the bad pod reported")
    assert condition["message"].startswith("pod db-bad: spec.hostname 'DB_BAD' is not a DNS label")
    assert condition["message"].endswith("3/4 pods have valid certificates")
    secrets = managed_secrets(emulator)
    assert _dns_names(secrets["db-db-0"]) == [
        "db.shop.svc", "*.db.shop.svc", "db-0.db.shop.svc", "db-0.db.shop.svc.cluster.local"]
    assert _dns_names(secrets["db-db-1"]) == [
        "db.shop.svc", "*.db.shop.svc", "db-1.db.shop.svc", "db-1.db.shop.svc.cluster.local"]
    assert _dns_names(secrets["db-db-client"]) == ["db.shop.svc", "*.db.shop.svc"]

    # Re-created behind another headless Service (the API server allows no other way to change it).
    first = secrets["db-db-0"]
    emulator.delete("v1", "pods", "db-0", NS)
    emulator.create(_statefulset_pod("db-0", "db-0", "db-v2"))
    second = await eventually(lambda: _reissued(emulator, "db-db-0", first), what="db-0 re-issued")
    assert _dns_names(second)[2:] == ["db-0.db-v2.shop.svc", "db-0.db-v2.shop.svc.cluster.local"]

    # A Secret issued before pods got their headless names (an older operator recorded the identity's
    # hash alone) is re-issued: the pod's names are part of the hash.
    raw = {"selector": {"matchLabels": {"app": "db"}}, "dnsNames": ["db.shop.svc", "*.db.shop.svc"]}
    older = parse_identity_spec(raw, namespace=NS).certificate_hash()
    assert older != second["metadata"]["annotations"][c.SPEC_HASH_ANNOTATION]
    emulator.patch("v1", "secrets", "db-db-1", NS, {"metadata": {"annotations": {c.SPEC_HASH_ANNOTATION: older}}})
    third = await eventually(lambda: _reissued(emulator, "db-db-1", secrets["db-db-1"]), what="db-1 re-issued")
    assert third["metadata"]["annotations"][c.SPEC_HASH_ANNOTATION] != older
    assert "db-1.db.shop.svc" in _dns_names(third)


def _reissued(emulator: Emulator, name: str, before: dict[str, Any]) -> dict[str, Any] | None:
    secret = managed_secrets(emulator).get(name)
    return secret if secret and _serial(secret) != _serial(before) else None
