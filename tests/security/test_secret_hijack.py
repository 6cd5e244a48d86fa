"""A tenant must never get a Secret it did not create overwritten or deleted by the operator."""

from __future__ import annotations

from typing import Any

from mtls_operator import constants as c
from mtls_operator.rules.plan import pod_info

from .conftest import Bench

NS = "shop"
API = f"{c.GROUP}/{c.VERSION}"
VICTIM_DATA = {"tls.crt": "dmljdGltLWNlcnQ=", "tls.key": "dmljdGltLWtleQ=="}


def _identity(name: str, app: str) -> dict[str, Any]:
    return {"apiVersion": API, "kind": c.KIND, "metadata": {"name": name, "namespace": NS},
            "spec": {"selector": {"matchLabels": {"app": app}}}}


def _pod(name: str, app: str, secret_name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "labels": {"app": app, c.INJECT_LABEL: c.INJECT_VALUE},
                         "annotations": {c.SECRET_NAME_ANNOTATION: secret_name}},
            "spec": {"serviceAccountName": "default", "containers": [{"name": "app", "image": "x"}]},
            "status": {"phase": "Running"}}


def _victim_secret(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": NS, "labels": {"team": "victim"}}, "data": VICTIM_DATA}


async def test_a_name_remembered_from_a_first_issue_never_overwrites_a_secret_created_since(bench: Bench) -> None:
    emulator, reconciler = bench.emulator, bench.reconciler
    body = emulator.create(_identity("web", "web"))
    key = (NS, "web")
    await reconciler.reconcile(key)  # learns the spec a first issue may use
    version = (body["metadata"]["uid"], body["metadata"]["generation"])

    # The attacker's first pod gets its first certificate outside a pass, under the victim's name...
    first = emulator.create(_pod("web-a", "web", "victim-tls"))
    assert await reconciler.issue_first(key, version, pod_info(first))
    # ... and goes away (with its Secret) before the pass that follows.
    emulator.delete("v1", "pods", "web-a", NS)
    if emulator.get("v1", "secrets", "victim-tls", NS) is not None:  # unless the garbage collector was first
        emulator.delete("v1", "secrets", "victim-tls", NS)
    # The victim creates its own TLS Secret under that name.
    victim = emulator.create(_victim_secret("victim-tls"))
    # A second pod with the same annotation, and the pass.
    emulator.create(_pod("web-b", "web", "victim-tls"))
    await reconciler.reconcile(key)

    after = emulator.get("v1", "secrets", "victim-tls", NS)
    assert after is not None
    assert after["data"] == VICTIM_DATA
    assert after["metadata"]["resourceVersion"] == victim["metadata"]["resourceVersion"]
    assert not after["metadata"].get("ownerReferences")
    status = emulator.get(API, c.PLURAL, "web", NS)["status"]
    ready = next(cond for cond in status["conditions"] if cond["type"] == "Ready")
    assert ready["status"] == "False"
    assert ready["reason"] == "SecretConflict"
    assert "victim-tls" in ready["message"]


async def test_a_secret_with_forged_labels_of_another_pod_is_not_taken_over(bench: Bench) -> None:
    """Labels say "managed", but the Secret belongs to no pod the identity serves under that name."""
    emulator, reconciler = bench.emulator, bench.reconciler
    emulator.create(_identity("web", "web"))
    forged = _victim_secret("victim-tls")
    forged["metadata"]["labels"] = {c.MANAGED_BY_LABEL: c.MANAGER_NAME, c.IDENTITY_LABEL: "web",
                                    c.POD_LABEL: "someone-else"}
    victim = emulator.create(forged)
    emulator.create(_pod("web-b", "web", "victim-tls"))
    await reconciler.reconcile((NS, "web"))
    after = emulator.get("v1", "secrets", "victim-tls", NS)
    assert after is not None
    assert after["data"] == VICTIM_DATA
    assert after["metadata"]["resourceVersion"] == victim["metadata"]["resourceVersion"]


async def test_deleting_the_claiming_pod_leaves_the_victims_secret(bench: Bench) -> None:
    emulator, reconciler = bench.emulator, bench.reconciler
    emulator.create(_identity("web", "web"))
    emulator.create(_victim_secret("victim-tls"))
    emulator.create(_pod("web-b", "web", "victim-tls"))
    await reconciler.reconcile((NS, "web"))
    emulator.delete("v1", "pods", "web-b", NS)
    await reconciler.reconcile((NS, "web"))
    after = emulator.get("v1", "secrets", "victim-tls", NS)
    assert after is not None
    assert after["data"] == VICTIM_DATA
