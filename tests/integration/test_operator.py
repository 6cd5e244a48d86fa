"""Cluster behaviour: the real kopf operator against the emulated API, one rule per test."""

from __future__ import annotations

import asyncio
import base64
import logging
from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509

from kube_emulator import Emulator, EmulatorServer
from mtls_operator import constants as c
from mtls_operator.pki import create_self_signed_ca
from mtls_operator.rules.plan import b64text, secret_data

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
    operator_settings,
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
    # The Event follows the Secret's write.
    await eventually(lambda: any("spec-change" in event["message"] for event in emulator.list("v1", "events", NS)),
                     what="an Event saying spec-change")


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
    emulator: Emulator, operator: OperatorHandle
) -> None:
    # Named against the alphabet, so only age (creationTimestamp, whole seconds) can decide.
    emulator.create(identity("zeta", app="payments"))
    await eventually(lambda: ready(emulator, "zeta"), what="older identity seen")
    await asyncio.sleep(1.1)
    emulator.create(identity("alpha", app="payments"))
    emulator.create(pod("payments-0", "payments"))

    condition = await eventually(lambda: (ready(emulator, "alpha") or {}).get("reason") == "Conflict"
                                 and ready(emulator, "alpha"), what="Conflict on the newer identity")
    assert condition["status"] == "False"
    assert "payments-0" in condition["message"]
    assert "zeta" in condition["message"]
    await eventually(lambda: (ready(emulator, "zeta") or {}).get("status") == "True", what="older serves")
    assert set(managed_secrets(emulator)) == {"zeta-payments-0"}
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
    await eventually(lambda: operator.runtime.reconciler.index.served, what="first reconcile after restart")
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

    # Wrong as written (not a policy refusal: tests/integration/test_dns_policy.py): nothing is re-issued.
    emulator.patch(API, c.PLURAL, "payments", NS, {"spec": {"renewBefore": "30h"}})
    condition = await eventually(lambda: (ready(emulator, "payments") or {}).get("reason") == "InvalidSpec"
                                 and ready(emulator, "payments"), what="InvalidSpec")
    assert condition["status"] == "False"
    assert condition["message"].startswith("spec.renewBefore: '30h' must be shorter than the duration (24h)")
    await settle(operator)
    kept = managed_secrets(emulator)["payments-payments-0"]
    assert kept["metadata"]["resourceVersion"] == original["metadata"]["resourceVersion"]
    warnings = [e for e in emulator.list("v1", "events", NS) if e["type"] == "Warning"]
    assert any(e["reason"] == "InvalidSpec" for e in warnings)

    # Fixing the spec brings it back.
    emulator.patch(API, c.PLURAL, "payments", NS, {"spec": {"renewBefore": None}})
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
    handle = OperatorHandle(server, clock, operator_settings())
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
    await eventually(lambda: any("repair: 1" in e["message"] for e in emulator.list("v1", "events", NS)),
                     what="an Event counting the repair")
    # The deletion came through the metadata-only Secret watch, opened once and kept (the emulator ends a
    # watch that asks for the wrong media type as kube-apiserver does; it was re-opened in a tight loop).
    assert emulator.requests.count(verb="watch", resource="secrets") == 1
    assert emulator.requests.count(verb="watch", resource="pods") == 1


async def test_pod_recreated_under_same_name_gets_new_key_and_owner(
    emulator: Emulator, operator: OperatorHandle
) -> None:
    emulator.create(identity("db"))
    keeper = emulator.create(pod("keeper", "other"))
    old_pod = emulator.create(pod("db-0", "db"))
    first = (await eventually(lambda: managed_secrets(emulator), what="a Secret"))["db-db-0"]
    # The Secret outlives its pod (here: owned by another live pod, so the garbage collector keeps
    # it, as a StatefulSet racing the collector can see); the new db-0 must not inherit it as is.
    stale_owner = [{**first["metadata"]["ownerReferences"][0], "uid": keeper["metadata"]["uid"]}]
    emulator.patch("v1", "secrets", "db-db-0", NS, {"metadata": {"ownerReferences": stale_owner}})
    emulator.delete("v1", "pods", "db-0", NS)
    new_pod = emulator.create(pod("db-0", "db"))
    assert new_pod["metadata"]["uid"] != old_pod["metadata"]["uid"]

    def reissued() -> dict[str, Any] | None:
        secret = managed_secrets(emulator).get("db-db-0")
        owner = secret["metadata"]["ownerReferences"][0]["uid"] if secret else None
        return secret if owner == new_pod["metadata"]["uid"] else None

    second = await eventually(reissued, what="Secret owned by the new pod")
    assert _serial(second) != _serial(first)
    assert _key(second) != _key(first)


async def test_deleted_ca_is_reported_not_replaced(emulator: Emulator, operator: OperatorHandle) -> None:
    emulator.create(identity("payments"))
    emulator.create(pod("payments-0", "payments"))
    await eventually(lambda: (ready(emulator, "payments") or {}).get("status") == "True", what="Ready")
    ca_secret = emulator.get("v1", "secrets", c.DEFAULT_CA_SECRET, OPERATOR_NS)
    assert ca_secret is not None
    fingerprint = get_identity(emulator, "payments")["status"]["caFingerprint"]
    serial = _serial(managed_secrets(emulator)["payments-payments-0"])

    emulator.delete("v1", "secrets", c.DEFAULT_CA_SECRET, OPERATOR_NS)
    emulator.create(pod("payments-1", "payments"))
    condition = await eventually(lambda: (ready(emulator, "payments") or {}).get("reason") == "CAUnavailable"
                                 and ready(emulator, "payments"), what="CAUnavailable")
    assert "deleted" in condition["message"]
    assert emulator.get("v1", "secrets", c.DEFAULT_CA_SECRET, OPERATOR_NS) is None
    assert _serial(managed_secrets(emulator)["payments-payments-0"]) == serial

    emulator.create({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                     "metadata": {"name": c.DEFAULT_CA_SECRET, "namespace": OPERATOR_NS},
                     "data": ca_secret["data"]})
    await eventually(lambda: (ready(emulator, "payments") or {}).get("status") == "True", what="restored")
    assert get_identity(emulator, "payments")["status"]["caFingerprint"] == fingerprint
    assert _serial(managed_secrets(emulator)["payments-payments-0"]) == serial


async def test_trust_bundle_configmap_restored(emulator: Emulator, operator: OperatorHandle) -> None:
    emulator.create(identity("payments"))
    emulator.create(pod("payments-0", "payments"))
    await eventually(lambda: emulator.get("v1", "configmaps", c.TRUST_BUNDLE_CONFIGMAP, NS), what="bundle")
    original = emulator.get("v1", "configmaps", c.TRUST_BUNDLE_CONFIGMAP, NS)
    assert original is not None
    emulator.patch("v1", "configmaps", c.TRUST_BUNDLE_CONFIGMAP, NS, {"data": {"ca.crt": "tampered"}})
    emulator.create(pod("payments-1", "payments"))
    await eventually(lambda: (emulator.get("v1", "configmaps", c.TRUST_BUNDLE_CONFIGMAP, NS) or {}).get("data")
                     == original["data"], what="bundle repaired")


async def test_two_pods_cannot_share_one_secret_name(emulator: Emulator, operator: OperatorHandle) -> None:
    emulator.create(identity("payments"))
    emulator.create(pod("payments-0", "payments", annotations={c.SECRET_NAME_ANNOTATION: "shared"}))
    await eventually(lambda: "shared" in managed_secrets(emulator), what="the first claimant served")
    owner = managed_secrets(emulator)["shared"]["metadata"]["ownerReferences"][0]["name"]
    emulator.create(pod("a-intruder", "payments", annotations={c.SECRET_NAME_ANNOTATION: "shared"}))
    condition = await eventually(lambda: (ready(emulator, "payments") or {}).get("reason") == "IssuanceFailed"
                                 and ready(emulator, "payments"), what="the second claimant refused")
    assert "a-intruder" in condition["message"]
    await settle(operator)
    secret = managed_secrets(emulator)["shared"]
    assert secret["metadata"]["ownerReferences"][0]["name"] == owner == "payments-0"


async def test_long_names(emulator: Emulator, operator: OperatorHandle) -> None:
    long_identity = "i" * 64
    emulator.create(identity(long_identity, app="x"))
    condition = await eventually(lambda: (ready(emulator, long_identity) or {}).get("reason") == "InvalidSpec"
                                 and ready(emulator, long_identity), what="InvalidSpec for a long name")
    assert "metadata.name" in condition["message"]

    long_pod = "p" * 100
    emulator.create(identity("payments"))
    emulator.create(pod(long_pod, "payments"))
    secret = (await eventually(lambda: managed_secrets(emulator, "payments"), what="Secret"))[f"payments-{long_pod}"]
    label = secret["metadata"]["labels"][c.POD_LABEL]
    assert len(label) <= 63
    assert label.startswith("p" * 40)


async def test_identity_deleted_mid_reconcile_leaves_no_secrets(
    emulator: Emulator, server: Any, clock: FakeClock
) -> None:
    slow = OperatorHandle(server, clock, operator_settings(max_issuance_per_second=10))
    await slow.start()
    try:
        emulator.create(identity("payments"))
        for index in range(15):
            emulator.create(pod(f"payments-{index}", "payments"))
        await eventually(lambda: len(managed_secrets(emulator)) >= 2, what="issuance under way")
        emulator.delete(API, c.PLURAL, "payments", NS)
        await eventually(lambda: emulator.get(API, c.PLURAL, "payments", NS) is None, what="identity gone",
                         within=20)
        assert not managed_secrets(emulator)
    finally:
        await slow.stop()


async def test_secret_deleted_while_its_watch_was_down_is_reissued(
    emulator: Emulator, operator: OperatorHandle
) -> None:
    emulator.create(identity("payments"))
    emulator.create(pod("payments-0", "payments"))
    first = (await eventually(lambda: managed_secrets(emulator), what="a Secret"))["payments-payments-0"]
    dropped = emulator.faults.add(verb="watch", resource="secrets", drop_watch=True, count=1)
    await eventually(lambda: dropped.fired == 1, what="the Secret watch dropped", within=15)
    emulator.delete("v1", "secrets", "payments-payments-0", NS)
    second = await eventually(lambda: managed_secrets(emulator).get("payments-payments-0"), what="re-created")
    assert _serial(second) != _serial(first)


async def test_identity_deleted_without_its_finalizer_leaves_nothing(
    emulator: Emulator, operator: OperatorHandle
) -> None:
    emulator.create(identity("payments"))
    emulator.create(pod("payments-0", "payments"))
    await eventually(lambda: managed_secrets(emulator), what="a Secret")
    await eventually(lambda: get_identity(emulator, "payments")["metadata"].get("finalizers"), what="finalizer")
    # The usual way out of a stuck deletion: drop the finalizers, then delete.
    emulator.patch(API, c.PLURAL, "payments", NS, {"metadata": {"finalizers": None}})
    emulator.delete(API, c.PLURAL, "payments", NS)
    await eventually(lambda: not managed_secrets(emulator), what="Secrets cleaned up without the finalizer")


async def test_a_new_pod_gets_its_first_certificate_at_once_and_the_pass_reports_it(
    emulator: Emulator, operator: OperatorHandle, caplog: pytest.LogCaptureFixture
) -> None:
    emulator.create(identity("payments"))
    await eventually(lambda: (ready(emulator, "payments") or {}).get("reason") == "NoPods", what="NoPods")
    caplog.set_level(logging.INFO, logger="mtls_operator")
    emulator.create(pod("payments-0", "payments"))
    await eventually(lambda: managed_secrets(emulator).get("payments-payments-0"), what="the Secret")
    # Issued from the pod's ADDED event, before (and without) a pass over the identity's pods (logged within
    # issue_log.DELAY: certificates issued together are logged together) ...
    await eventually(lambda: any("first certificate for pod shop/payments-0" in record.getMessage()
                                 for record in caplog.records), what="the issue's log line")
    # ... and the pass queued after it reports it like any other issue.
    last = await eventually(lambda: (get_identity(emulator, "payments").get("status") or {}).get("lastIssuance"),
                            what="lastIssuance")
    assert last["reason"] == "new"
    assert last["count"] == 1
    assert last["message"] == "pod payments-0: Issuing: no certificate yet"
    events = await eventually(lambda: [e["message"] for e in emulator.list("v1", "events", NS)
                                       if e["reason"] == "Issued"], what="the Issued Event")
    assert events == ["issued 1 certificate(s) (new: 1); pod payments-0: Issuing: no certificate yet"]
    assert get_identity(emulator, "payments")["status"]["issued"] == 1


async def test_a_ca_secret_named_by_the_user_is_never_created_by_the_operator(
    server: EmulatorServer, emulator: Emulator, clock: FakeClock
) -> None:
    handle = OperatorHandle(server, clock, operator_settings(ca_secret="corp-ca"))
    await handle.start()
    try:
        emulator.create(identity("payments"))
        emulator.create(pod("payments-0", "payments"))
        condition = await eventually(lambda: (c_ := ready(emulator, "payments")) and c_["reason"] == "CAUnavailable"
                                     and c_, what="CAUnavailable")
        assert "Secret mtls-system/corp-ca does not exist: create it with your CA" in condition["message"]
        assert emulator.get("v1", "secrets", "corp-ca", OPERATOR_NS) is None
        theirs = create_self_signed_ca(clock.now, common_name="Corp CA")
        emulator.create({"apiVersion": "v1", "kind": "Secret", "type": c.SECRET_TYPE_TLS,
                         "metadata": {"name": "corp-ca", "namespace": OPERATOR_NS},
                         "data": {k: b64text(v) for k, v in theirs.secret_data().items()}})
        await eventually(lambda: (ready(emulator, "payments") or {}).get("status") == "True", within=15,
                         what="Ready once the CA exists")
        assert get_identity(emulator, "payments")["status"]["caFingerprint"] == theirs.fingerprint
    finally:
        await handle.stop()
