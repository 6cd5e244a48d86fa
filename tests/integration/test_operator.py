"""Cluster behaviour: the real kopf operator against the emulated API, one rule per test."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

from cryptography import x509

from mtls_operator import constants as c
from mtls_operator.pki import create_self_signed_ca
from mtls_operator.plan import b64text, secret_data
from mtls_operator.testing import Emulator

from .conftest import (
    API,
    NS,
    OPERATOR_NS,
    FakeClock,
    OperatorHandle,
    eventually,
    get_identity,
    identity,
    managed_secrets,
    pod,
    ready,
    settle,
)


def _serial(secret: dict[str, Any]) -> str:
    return str(secret["metadata"]["annotations"][c.SERIAL_ANNOTATION])


def _key(secret: dict[str, Any]) -> bytes:
    return secret_data(secret, c.TLS_KEY) or b""


async def test_identity_created_issues_secrets_for_served_pods_only(
    emulator: Emulator, operator: OperatorHandle
) -> None:
    emulator.create(identity("payments", serviceAccountName="payments",
                             dnsNames=["payments", "payments.shop.svc"]))
    emulator.create(pod("payments-0", "payments", sa="payments"))
    emulator.create(pod("payments-1", "payments", sa="payments"))
    emulator.create(pod("payments-legacy", "payments", sa="payments", opted_in=False))
    emulator.create(pod("payments-other-sa", "payments", sa="default"))
    emulator.create(pod("orders-0", "orders"))

    await eventually(lambda: (ready(emulator, "payments") or {}).get("status") == "True", what="Ready=True")
    secrets = managed_secrets(emulator)
    assert set(secrets) == {"payments-payments-0", "payments-payments-1"}
    secret = secrets["payments-payments-0"]
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"]["ownerReferences"][0]["name"] == "payments-0"
    leaf = x509.load_pem_x509_certificate(secret_data(secret, c.TLS_CRT) or b"")
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://cluster.local/ns/shop/sa/payments"]
    assert san.get_values_for_type(x509.DNSName) == ["payments", "payments.shop.svc"]

    status = get_identity(emulator, "payments")["status"]
    assert status["pods"] == 2
    assert status["issued"] == 2
    assert status["spiffeIDs"] == ["spiffe://cluster.local/ns/shop/sa/payments"]
    assert status["caFingerprint"].startswith("sha256:")
    assert status["nextRenewalTime"]
    assert status["observedGeneration"] == get_identity(emulator, "payments")["metadata"]["generation"]
    assert status["conditions"][0]["reason"] == "Issued"
    assert status["conditions"][0]["message"] == "2/2 pods have valid certificates"
    bundle = emulator.get("v1", "configmaps", c.TRUST_BUNDLE_CONFIGMAP, NS)
    assert bundle is not None
    assert bundle["data"]["ca.crt"].encode() == secret_data(secret, c.CA_CRT)
    events = emulator.list("v1", "events", NS)
    assert any(event["reason"] == "Issued" and event["involvedObject"]["name"] == "payments" for event in events)


async def test_pod_deleted_secret_gone(emulator: Emulator, operator: OperatorHandle) -> None:
    emulator.create(identity("payments"))
    emulator.create(pod("payments-0", "payments"))
    emulator.create(pod("payments-1", "payments"))
    await eventually(lambda: len(managed_secrets(emulator)) == 2, what="two Secrets")
    emulator.delete("v1", "pods", "payments-0", NS)
    await eventually(lambda: set(managed_secrets(emulator)) == {"payments-payments-1"}, what="Secret of pod 0 gone")
    await eventually(lambda: get_identity(emulator, "payments")["status"]["pods"] == 1, what="status pods=1")


async def test_pod_labels_changed_secret_gone(emulator: Emulator, operator: OperatorHandle) -> None:
    emulator.create(identity("payments"))
    emulator.create(pod("payments-0", "payments"))
    await eventually(lambda: managed_secrets(emulator), what="a Secret")
    emulator.patch("v1", "pods", "payments-0", NS, {"metadata": {"labels": {c.INJECT_LABEL: None}}})
    await eventually(lambda: not managed_secrets(emulator), what="Secret deleted after opt-out")
    emulator.create(pod("payments-1", "payments"))
    await eventually(lambda: set(managed_secrets(emulator)) == {"payments-payments-1"}, what="new pod served")
    emulator.patch("v1", "pods", "payments-1", NS, {"metadata": {"labels": {"app": "somethingelse"}}})
    await eventually(lambda: not managed_secrets(emulator), what="Secret deleted after selector mismatch")
    assert emulator.get("v1", "pods", "payments-1", NS) is not None


async def test_spec_changed_reissues_with_new_key(emulator: Emulator, operator: OperatorHandle) -> None:
    emulator.create(identity("payments", dnsNames=["payments"]))
    emulator.create(pod("payments-0", "payments"))
    first = (await eventually(lambda: managed_secrets(emulator), what="a Secret"))["payments-payments-0"]
    emulator.patch(API, c.PLURAL, "payments", NS, {"spec": {"dnsNames": ["payments", "payments.shop.svc"]}})

    def reissued() -> dict[str, Any] | None:
        secret = managed_secrets(emulator).get("payments-payments-0")
        return secret if secret and _serial(secret) != _serial(first) else None

    second = await eventually(reissued, what="re-issued Secret")
    assert _key(second) != _key(first)
    leaf = x509.load_pem_x509_certificate(secret_data(second, c.TLS_CRT) or b"")
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "payments.shop.svc" in san.get_values_for_type(x509.DNSName)
    events = emulator.list("v1", "events", NS)
    assert any("spec-change" in event["message"] for event in events)


async def test_identity_deleted_secrets_gone(emulator: Emulator, operator: OperatorHandle) -> None:
    emulator.create(identity("payments"))
    emulator.create(pod("payments-0", "payments"))
    emulator.create(pod("payments-1", "payments"))
    await eventually(lambda: len(managed_secrets(emulator)) == 2, what="two Secrets")
    emulator.delete(API, c.PLURAL, "payments", NS)
    await eventually(lambda: not managed_secrets(emulator), what="Secrets deleted with the identity")
    await eventually(lambda: emulator.get(API, c.PLURAL, "payments", NS) is None, what="finalizer released")
    assert emulator.get("v1", "pods", "payments-0", NS) is not None


async def test_two_identities_on_one_pod_older_serves_newer_conflict(
    emulator: Emulator, operator: OperatorHandle, clock: FakeClock
) -> None:
    emulator.create(identity("first", app="payments"))
    await eventually(lambda: ready(emulator, "first"), what="first identity seen")
    emulator.create(identity("second", app="payments"))
    emulator.create(pod("payments-0", "payments"))

    condition = await eventually(lambda: (ready(emulator, "second") or {}).get("reason") == "Conflict"
                                 and ready(emulator, "second"), what="Conflict on the newer identity")
    assert condition["status"] == "False"
    assert "payments-0" in condition["message"]
    assert "first" in condition["message"]
    await eventually(lambda: (ready(emulator, "first") or {}).get("status") == "True", what="older serves")
    assert set(managed_secrets(emulator)) == {"first-payments-0"}
    assert any(e["reason"] == "Conflict" for e in emulator.list("v1", "events", NS))


async def test_restart_reissues_nothing(emulator: Emulator, operator: OperatorHandle) -> None:
    emulator.create(identity("payments"))
    for index in range(3):
        emulator.create(pod(f"payments-{index}", "payments"))
    await eventually(lambda: (ready(emulator, "payments") or {}).get("status") == "True", what="Ready")
    before = {name: _serial(secret) for name, secret in managed_secrets(emulator).items()}
    assert len(before) == 3

    await operator.stop()
    emulator.requests.reset()
    await operator.start()
    await eventually(lambda: operator.runtime.reconciler.served, what="first reconcile after restart")
    await settle(operator)

    after = {name: _serial(secret) for name, secret in managed_secrets(emulator).items()}
    assert after == before
    assert emulator.requests.count(verb="create", resource="secrets") == 0
    assert emulator.requests.count(verb="patch", resource="secrets") == 0
    assert emulator.requests.count(verb="delete", resource="secrets") == 0


async def test_clash_with_unmanaged_secret_reported_and_untouched(
    emulator: Emulator, operator: OperatorHandle
) -> None:
    foreign = emulator.create({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                               "metadata": {"name": "payments-payments-0", "namespace": NS},
                               "data": {"password": b64text(b"hunter2")}})
    emulator.create(identity("payments"))
    emulator.create(pod("payments-0", "payments"))
    emulator.create(pod("payments-1", "payments"))

    condition = await eventually(lambda: (ready(emulator, "payments") or {}).get("reason") == "SecretConflict"
                                 and ready(emulator, "payments"), what="SecretConflict")
    assert "payments-payments-0" in condition["message"]
    await eventually(lambda: "payments-payments-1" in managed_secrets(emulator), what="the other pod served")
    await settle(operator)
    untouched = emulator.get("v1", "secrets", "payments-payments-0", NS)
    assert untouched is not None
    assert untouched["metadata"]["resourceVersion"] == foreign["metadata"]["resourceVersion"]
    assert untouched["data"] == {"password": b64text(b"hunter2")}
    assert any(e["reason"] == "SecretConflict" for e in emulator.list("v1", "events", NS))


async def test_bad_spec_reported_and_existing_secret_untouched(emulator: Emulator, operator: OperatorHandle) -> None:
    emulator.create(identity("payments", dnsNames=["payments"]))
    emulator.create(pod("payments-0", "payments"))
    original = (await eventually(lambda: managed_secrets(emulator), what="a Secret"))["payments-payments-0"]

    emulator.patch(API, c.PLURAL, "payments", NS, {"spec": {"dnsNames": ["db.other-namespace.svc"]}})
    condition = await eventually(lambda: (ready(emulator, "payments") or {}).get("reason") == "PolicyViolation"
                                 and ready(emulator, "payments"), what="PolicyViolation")
    assert condition["status"] == "False"
    assert "spec.dnsNames[0]" in condition["message"]
    assert "db.other-namespace.svc" in condition["message"]
    await settle(operator)
    kept = managed_secrets(emulator)["payments-payments-0"]
    assert kept["metadata"]["resourceVersion"] == original["metadata"]["resourceVersion"]
    warnings = [e for e in emulator.list("v1", "events", NS) if e["type"] == "Warning"]
    assert any(e["reason"] == "PolicyViolation" for e in warnings)

    # Fixing the spec brings it back.
    emulator.patch(API, c.PLURAL, "payments", NS, {"spec": {"dnsNames": ["payments.shop.svc"]}})
    await eventually(lambda: (ready(emulator, "payments") or {}).get("status") == "True", what="Ready again")


async def test_bad_duration_names_the_field(emulator: Emulator, operator: OperatorHandle) -> None:
    emulator.create(identity("payments", duration="24h", renewBefore="30h"))
    condition = await eventually(lambda: (ready(emulator, "payments") or {}).get("reason") == "InvalidSpec"
                                 and ready(emulator, "payments"), what="InvalidSpec")
    assert "spec.renewBefore" in condition["message"]


async def test_unusable_ca_reported_then_recovered(emulator: Emulator, server: Any, clock: FakeClock) -> None:
    emulator.create({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                     "metadata": {"name": c.DEFAULT_CA_SECRET, "namespace": OPERATOR_NS},
                     "data": {"tls.crt": b64text(b"not a certificate"), "tls.key": b64text(b"nope")}})
    from mtls_operator.config import Settings

    handle = OperatorHandle(server, clock, Settings(namespace=OPERATOR_NS))
    await handle.start()
    try:
        emulator.create(identity("payments"))
        emulator.create(pod("payments-0", "payments"))
        condition = await eventually(lambda: (ready(emulator, "payments") or {}).get("reason") == "CAUnavailable"
                                     and ready(emulator, "payments"), what="CAUnavailable")
        assert c.DEFAULT_CA_SECRET in condition["message"]
        assert not managed_secrets(emulator)

        ca = create_self_signed_ca(clock())
        data = {key: base64.b64encode(value).decode() for key, value in ca.secret_data().items()}
        emulator.patch("v1", "secrets", c.DEFAULT_CA_SECRET, OPERATOR_NS, {"data": data})
        await eventually(lambda: (ready(emulator, "payments") or {}).get("status") == "True", what="recovered")
        assert get_identity(emulator, "payments")["status"]["caFingerprint"] == ca.fingerprint
    finally:
        await handle.stop()


async def test_renewal_when_due(emulator: Emulator, operator: OperatorHandle, clock: FakeClock) -> None:
    emulator.create(identity("payments", duration="24h", renewBefore="8h"))
    emulator.create(pod("payments-0", "payments"))
    first = (await eventually(lambda: managed_secrets(emulator), what="a Secret"))["payments-payments-0"]
    renew_at = first["metadata"]["annotations"][c.RENEW_AT_ANNOTATION]

    clock.advance(timedelta(hours=10))
    operator.poke()
    await settle(operator)
    assert _serial(managed_secrets(emulator)["payments-payments-0"]) == _serial(first)

    clock.advance(timedelta(hours=7))  # 17h in: past renew-at (16h, or earlier with jitter)
    operator.poke()

    def renewed() -> dict[str, Any] | None:
        secret = managed_secrets(emulator).get("payments-payments-0")
        return secret if secret and _serial(secret) != _serial(first) else None

    second = await eventually(renewed, what="renewed certificate")
    assert second["metadata"]["annotations"][c.RENEW_AT_ANNOTATION] > renew_at
    assert any("renewal" in e["message"] for e in emulator.list("v1", "events", NS))


async def test_older_identity_deleted_newer_takes_over(emulator: Emulator, operator: OperatorHandle) -> None:
    emulator.create(identity("first", app="payments"))
    await eventually(lambda: ready(emulator, "first"), what="first identity seen")
    emulator.create(identity("second", app="payments"))
    emulator.create(pod("payments-0", "payments"))
    await eventually(lambda: (ready(emulator, "second") or {}).get("reason") == "Conflict", what="Conflict")
    emulator.delete(API, c.PLURAL, "first", NS)
    await eventually(lambda: (ready(emulator, "second") or {}).get("status") == "True", what="newer serves")
    assert set(managed_secrets(emulator)) == {"second-payments-0"}


async def test_api_errors_are_retried_and_nothing_is_lost(emulator: Emulator, operator: OperatorHandle) -> None:
    failing = emulator.faults.add(verb="create", resource="secrets", status=500, count=2)
    throttled = emulator.faults.add(verb="list", resource="pods", status=429, retry_after=0.1, count=1)
    emulator.create(identity("payments"))
    emulator.create(pod("payments-0", "payments"))
    emulator.create(pod("payments-1", "payments"))
    await eventually(lambda: (ready(emulator, "payments") or {}).get("status") == "True", what="Ready despite faults")
    assert failing.fired == 2
    assert throttled.fired == 1
    assert set(managed_secrets(emulator)) == {"payments-payments-0", "payments-payments-1"}
    # The operator is still alive and serving new pods.
    emulator.create(pod("payments-2", "payments"))
    await eventually(lambda: len(managed_secrets(emulator)) == 3, what="third pod served")


async def test_dropped_watch_is_resumed(emulator: Emulator, operator: OperatorHandle) -> None:
    emulator.create(identity("payments"))
    emulator.create(pod("payments-0", "payments"))
    await eventually(lambda: managed_secrets(emulator), what="first Secret")
    emulator.faults.add(verb="watch", resource="pods", drop_watch=True, count=1)
    emulator.create(pod("payments-1", "payments"))
    await eventually(lambda: len(managed_secrets(emulator)) == 2, what="pod created around a dropped watch served",
                     within=20)


async def test_managed_secret_deleted_is_reissued(emulator: Emulator, operator: OperatorHandle) -> None:
    emulator.create(identity("payments"))
    emulator.create(pod("payments-0", "payments"))
    first = (await eventually(lambda: managed_secrets(emulator), what="a Secret"))["payments-payments-0"]
    emulator.delete("v1", "secrets", "payments-payments-0", NS)
    second = await eventually(lambda: managed_secrets(emulator).get("payments-payments-0"), what="re-created")
    assert _serial(second) != _serial(first)



async def test_pod_recreated_under_same_name_gets_new_key_and_owner(
    emulator: Emulator, operator: OperatorHandle
) -> None:
    emulator.create(identity("db"))
    old_pod = emulator.create(pod("db-0", "db"))
    first = (await eventually(lambda: managed_secrets(emulator), what="a Secret"))["db-db-0"]
    # Kubernetes would garbage-collect the Secret with the old pod; replace both at once, as a
    # StatefulSet controller racing the garbage collector can.
    emulator.patch("v1", "secrets", "db-db-0", NS, {"metadata": {"ownerReferences": None}})
    emulator.delete("v1", "pods", "db-0", NS)
    new_pod = emulator.create(pod("db-0", "db"))
    assert new_pod["metadata"]["uid"] != old_pod["metadata"]["uid"]
    stale_owner = {"metadata": {"ownerReferences": first["metadata"]["ownerReferences"]}}
    emulator.patch("v1", "secrets", "db-db-0", NS, stale_owner)

    def reissued() -> dict[str, Any] | None:
        secret = managed_secrets(emulator).get("db-db-0")
        owner = secret["metadata"]["ownerReferences"][0]["uid"] if secret else None
        return secret if owner == new_pod["metadata"]["uid"] else None

    second = await eventually(reissued, what="Secret owned by the new pod")
    assert _serial(second) != _serial(first)
    assert _key(second) != _key(first)
