"""Trust comes only from the operator's own records: nothing a tenant writes enters a bundle."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from mtls_operator import constants as c
from mtls_operator.controller.ca_store import CAStore
from mtls_operator.controller.reconciler import Reconciler
from mtls_operator.controller.rotation import RotationController
from mtls_operator.controller.workqueue import RateLimiter
from mtls_operator.errors import ChainError
from mtls_operator.models import KeySpec
from mtls_operator.pki import (
    LeafRequest,
    certs_to_pem,
    create_self_signed_ca,
    fingerprint,
    issue_leaf,
    parse_pem_certificates,
    verify_leaf,
)
from mtls_operator.rules.plan import b64text, secret_data

from .conftest import OPERATOR_NS, Bench

API = f"{c.GROUP}/{c.VERSION}"
CA_SECRET = "mtls-operator-ca"


def _identity(namespace: str, name: str) -> dict[str, Any]:
    return {"apiVersion": API, "kind": c.KIND, "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": {"matchLabels": {"app": name}}}}


def _pod(namespace: str, name: str, app: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {"app": app, c.INJECT_LABEL: c.INJECT_VALUE}},
            "spec": {"serviceAccountName": app, "containers": [{"name": "app", "image": "x"}]},
            "status": {"phase": "Running"}}


def _fingerprints(pem: bytes | None) -> set[str]:
    return {fingerprint(cert) for cert in parse_pem_certificates(pem or b"")}


async def _issue_everywhere(bench: Bench) -> None:
    for namespace, name in (("shop", "web"), ("attacker", "evil")):
        bench.emulator.create(_identity(namespace, name))
        bench.emulator.create(_pod(namespace, f"{name}-0", name))
        await bench.reconciler.reconcile((namespace, name))


def _restart(bench: Bench) -> tuple[CAStore, RotationController]:
    """A new operator process: nothing in memory, everything from the cluster."""
    ca_store = CAStore(bench.cluster, namespace=OPERATOR_NS, secret_name=CA_SECRET, clock=bench.clock)
    bench.reconciler = Reconciler(bench.cluster, bench.settings, ca_store, clock=bench.clock,
                                  limiter=RateLimiter(1000), jitter=lambda: 0.0)
    rotation = RotationController(bench.cluster, ca_store, bench.settings, clock=bench.clock, on_change=lambda: None)
    return ca_store, rotation


@pytest.mark.parametrize("how", ["edits the operator's ConfigMap", "labels a ConfigMap and a Secret of its own"])
async def test_a_tenant_ca_never_enters_the_bundle_when_the_ca_was_replaced_while_down(bench: Bench, how: str) -> None:
    emulator = bench.emulator
    await _issue_everywhere(bench)
    old_fp = bench.ca_store.current().fingerprint

    # The tenant's own CA, and a leaf it signs for another namespace's identity.
    evil_ca = create_self_signed_ca(bench.clock.now, common_name="evil")
    forged = issue_leaf(evil_ca, LeafRequest(spiffe_id="spiffe://cluster.local/ns/shop/sa/web", dns_names=(),
                                             usages=("server", "client"), key=KeySpec(), duration=timedelta(hours=1)),
                        bench.clock.now)
    evil_pem = certs_to_pem([evil_ca.cert]).decode()
    if how.startswith("edits"):
        bundle = emulator.get("v1", "configmaps", c.TRUST_BUNDLE_CONFIGMAP, "attacker")
        emulator.patch("v1", "configmaps", c.TRUST_BUNDLE_CONFIGMAP, "attacker",
                       {"data": {c.CA_CRT: bundle["data"][c.CA_CRT] + evil_pem}})
    else:
        emulator.delete("v1", "configmaps", c.TRUST_BUNDLE_CONFIGMAP, "attacker")
        labels = {c.MANAGED_BY_LABEL: c.MANAGER_NAME}
        emulator.create({"apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": {"name": c.TRUST_BUNDLE_CONFIGMAP, "namespace": "attacker", "labels": labels},
                         "data": {c.CA_CRT: evil_pem}})
        emulator.create({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                         "metadata": {"name": "decoy", "namespace": "attacker",
                                      "labels": {**labels, c.IDENTITY_LABEL: "evil"}},
                         "data": {c.CA_CRT: b64text(evil_pem.encode())}})

    # While no operator runs, the admin replaces the CA, ca.crt included.
    new_ca = create_self_signed_ca(bench.clock.now)
    emulator.patch("v1", "secrets", CA_SECRET, OPERATOR_NS,
                   {"data": {key: b64text(value) for key, value in new_ca.secret_data().items()}})

    ca_store, rotation = _restart(bench)
    await rotation.step()
    ca_secret = emulator.get("v1", "secrets", CA_SECRET, OPERATOR_NS)
    assert ca_secret["metadata"]["annotations"]["mtls.dev/rotation-phase"] == "Reissuing"
    trusted = _fingerprints(secret_data(ca_secret, c.CA_CRT))
    # The old CA is found again from the operator's own record; the tenant's never.
    assert trusted == {new_ca.fingerprint, old_fp}
    assert fingerprint(evil_ca.cert) not in trusted
    with pytest.raises(ChainError):
        verify_leaf(forged.cert, [], parse_pem_certificates(secret_data(ca_secret, c.CA_CRT) or b""), bench.clock.now)

    # Every pod Secret and trust ConfigMap the operator writes carries that bundle, and no more.
    for namespace, name in (("shop", "web"), ("attacker", "evil")):
        await bench.reconciler.reconcile((namespace, name))
        pod_secret = emulator.get("v1", "secrets", f"{name}-{name}-0", namespace)
        assert _fingerprints(secret_data(pod_secret, c.CA_CRT)) == trusted
        config_map = emulator.get("v1", "configmaps", c.TRUST_BUNDLE_CONFIGMAP, namespace)
        if namespace == "shop" or how.startswith("edits"):
            assert _fingerprints(config_map["data"][c.CA_CRT].encode()) == trusted

    # The rotation is not held by the tenant's objects: it moves on to Retiring once leaves are renewed.
    for _ in range(3):
        bench.clock.now += timedelta(minutes=5)
        await rotation.step()
    ca_secret = emulator.get("v1", "secrets", CA_SECRET, OPERATOR_NS)
    assert ca_secret["metadata"]["annotations"]["mtls.dev/rotation-phase"] in ("Retiring", "Idle")
    assert fingerprint(evil_ca.cert) not in _fingerprints(secret_data(ca_secret, c.CA_CRT))
    assert ca_store.current().fingerprint == new_ca.fingerprint


async def test_a_tenant_holding_a_rotation_is_named_on_the_ca_secret_and_every_identity(bench: Bench) -> None:
    emulator = bench.emulator
    await _issue_everywhere(bench)
    rotation = RotationController(bench.cluster, bench.ca_store, bench.settings, clock=bench.clock,
                                  on_change=lambda: None)
    emulator.patch("v1", "secrets", CA_SECRET, OPERATOR_NS, {"metadata": {"annotations": {"mtls.dev/rotate": "true"}}})
    bench.ca_store.invalidate()
    await rotation.step()
    assert bench.ca_store.rotation.phase == "Distributing"
    old_bundle = emulator.get("v1", "configmaps", c.TRUST_BUNDLE_CONFIGMAP, "attacker")["data"][c.CA_CRT]
    for namespace, name in (("shop", "web"), ("attacker", "evil")):
        await bench.reconciler.reconcile((namespace, name))
    # The tenant keeps putting the old bundle back, and labels a decoy Secret of its own.
    emulator.patch("v1", "configmaps", c.TRUST_BUNDLE_CONFIGMAP, "attacker", {"data": {c.CA_CRT: old_bundle}})
    emulator.create({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                     "metadata": {"name": "decoy", "namespace": "attacker",
                                  "labels": {c.MANAGED_BY_LABEL: c.MANAGER_NAME, c.IDENTITY_LABEL: "evil"}},
                     "data": {c.CA_CRT: b64text(old_bundle.encode())}})
    await rotation.step()
    assert bench.ca_store.stalled is None
    bench.clock.now += timedelta(hours=1)
    await rotation.step()
    assert bench.ca_store.rotation.phase == "Distributing"  # waiting, as it must: that pod's trust needs it
    assert bench.ca_store.stalled is not None
    assert "ConfigMap attacker/mtls-trust-bundle" in bench.ca_store.stalled
    assert "decoy" not in bench.ca_store.stalled
    reasons = {event["reason"]: event["message"] for event in emulator.list("v1", "events", OPERATOR_NS)}
    assert "ConfigMap attacker/mtls-trust-bundle" in reasons["RotationStalled"]
    assert "Secret attacker/decoy" in reasons["ForeignObjectsIgnored"]
    await bench.reconciler.reconcile(("shop", "web"))
    conditions = emulator.get(API, c.PLURAL, "web", "shop")["status"]["conditions"]
    authority = next(cond for cond in conditions if cond["type"] == "CertificateAuthority")
    assert authority["reason"] == "RotationStalled"

    # Repaired by the next pass (the tenant stops): the rotation moves on and says so no more.
    await bench.reconciler.reconcile(("attacker", "evil"))
    await rotation.step()
    await rotation.step()
    assert bench.ca_store.stalled is None


async def test_a_trust_configmap_the_operator_did_not_create_is_reported_never_written_nor_read(bench: Bench) -> None:
    emulator = bench.emulator
    evil_pem = certs_to_pem([create_self_signed_ca(bench.clock.now, common_name="evil").cert]).decode()
    squatter = emulator.create({"apiVersion": "v1", "kind": "ConfigMap",
                                "metadata": {"name": c.TRUST_BUNDLE_CONFIGMAP, "namespace": "attacker"},
                                "data": {c.CA_CRT: evil_pem}})
    await _issue_everywhere(bench)
    after = emulator.get("v1", "configmaps", c.TRUST_BUNDLE_CONFIGMAP, "attacker")
    assert after["metadata"]["resourceVersion"] == squatter["metadata"]["resourceVersion"]
    pod_secret = emulator.get("v1", "secrets", "evil-evil-0", "attacker")
    assert _fingerprints(secret_data(pod_secret, c.CA_CRT)) == {bench.ca_store.current().fingerprint}
    events = [e for e in emulator.list("v1", "events", "attacker") if e["reason"] == "TrustBundleNotPublished"]
    assert len(events) == 1
    await bench.reconciler.reconcile(("attacker", "evil"))
    assert len([e for e in emulator.list("v1", "events", "attacker") if e["reason"] == "TrustBundleNotPublished"]) == 1
