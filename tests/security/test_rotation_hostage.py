"""A tenant must not keep a CA rotation from finishing with objects of its own making.

The rotation counts the pod Secrets the operator wrote for live pods (controller/rotation.py
``_fleet``). A tenant can copy the operator's labels and an ownerReference to one of its own live
pods onto a Secret of its own; the identity's next pass deletes such a Secret, but a finalizer the
tenant put on it keeps it, terminating, for ever. Counted, it would hold the Reissuing phase (and
with it the previous CA in every namespace's trust bundle) or the Distributing phase without end.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from mtls_operator import constants as c
from mtls_operator.controller.rotation import RotationController
from mtls_operator.pki import fingerprint, parse_pem_certificates
from mtls_operator.rules.plan import b64text, secret_data

from .conftest import OPERATOR_NS, Bench

API = f"{c.GROUP}/{c.VERSION}"
CA_SECRET = "mtls-operator-ca"
IDENTITIES = (("shop", "web"), ("attacker", "evil"))


def _identity(namespace: str, name: str) -> dict[str, Any]:
    return {"apiVersion": API, "kind": c.KIND, "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": {"matchLabels": {"app": name}}}}


def _pod(namespace: str, name: str, app: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {"app": app, c.INJECT_LABEL: c.INJECT_VALUE}},
            "spec": {"serviceAccountName": app, "containers": [{"name": "app", "image": "x"}]},
            "status": {"phase": "Running"}}


def _decoy(name: str, pod: dict[str, Any], annotations: dict[str, str], bundle: bytes) -> dict[str, Any]:
    """A Secret the tenant makes look like a pod Secret of its identity ``evil``, held by a finalizer."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": "attacker",
                         "labels": {c.MANAGED_BY_LABEL: c.MANAGER_NAME, c.IDENTITY_LABEL: "evil",
                                    c.POD_LABEL: pod["metadata"]["name"]},
                         "annotations": annotations,
                         "finalizers": ["attacker.example/hold"],
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": pod["metadata"]["name"],
                                              "uid": pod["metadata"]["uid"]}]},
            "data": {c.CA_CRT: b64text(bundle)}}


async def _pass(bench: Bench) -> None:
    for key in IDENTITIES:
        await bench.reconciler.reconcile(key)


async def _start(bench: Bench) -> tuple[RotationController, dict[str, Any]]:
    pods = {}
    for namespace, name in IDENTITIES:
        bench.emulator.create(_identity(namespace, name))
        pods[namespace] = bench.emulator.create(_pod(namespace, f"{name}-0", name))
    await _pass(bench)
    rotation = RotationController(bench.cluster, bench.ca_store, bench.settings, clock=bench.clock,
                                  on_change=lambda: None)
    bench.emulator.patch("v1", "secrets", CA_SECRET, OPERATOR_NS,
                         {"metadata": {"annotations": {"mtls.dev/rotate": "true"}}})
    bench.ca_store.invalidate()
    await rotation.step()
    assert bench.ca_store.rotation.phase == "Distributing"
    return rotation, pods["attacker"]


async def _steps(bench: Bench, rotation: RotationController, count: int) -> None:
    for _ in range(count):
        await _pass(bench)
        bench.clock.now += timedelta(minutes=5)
        await rotation.step()


async def test_a_terminating_decoy_with_the_previous_fingerprint_never_keeps_the_old_ca_trusted(bench: Bench) -> None:
    rotation, attacker_pod = await _start(bench)
    old_fp = bench.ca_store.current().fingerprint
    await _steps(bench, rotation, 3)
    assert bench.ca_store.rotation.phase == "Reissuing"
    decoy = _decoy("decoy", attacker_pod, {c.CA_FINGERPRINT_ANNOTATION: old_fp}, bench.ca_store.bundle_pem)
    bench.emulator.create(decoy)
    await _pass(bench)  # the pass deletes the decoy; its finalizer keeps it, terminating
    held = bench.emulator.get("v1", "secrets", "decoy", "attacker")
    assert held is not None
    assert held["metadata"].get("deletionTimestamp")

    await _steps(bench, rotation, 4)
    ca_secret = bench.emulator.get("v1", "secrets", CA_SECRET, OPERATOR_NS)
    assert ca_secret["metadata"]["annotations"]["mtls.dev/rotation-phase"] == "Idle"
    trusted = {fingerprint(cert) for cert in parse_pem_certificates(secret_data(ca_secret, c.CA_CRT) or b"")}
    assert old_fp not in trusted


async def test_a_decoy_under_a_name_its_pod_does_not_have_never_holds_distributing(bench: Bench) -> None:
    rotation, attacker_pod = await _start(bench)
    # Not deleted this time, only misnamed: the tenant keeps it stale; the operator writes only the
    # Secret that the pod's name (or its mtls.dev/secret-name) gives.
    decoy = _decoy("evil-evil-0-copy", attacker_pod, {}, b"not the bundle")
    del decoy["metadata"]["finalizers"]
    bench.emulator.create(decoy)
    bench.clock.now += timedelta(minutes=5)
    await rotation.step()  # the rotation looks before the identity's pass removes the decoy
    await _pass(bench)
    bench.emulator.create(decoy)  # and the tenant puts it back, again and again
    for _ in range(3):
        bench.clock.now += timedelta(minutes=5)
        await rotation.step()
    assert bench.ca_store.rotation.phase == "Reissuing"
