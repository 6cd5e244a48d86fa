"""`kubectl mtls …`: the real kubectl finds the plugin on PATH and runs it against the emulator and the real
operator (webhooks served, Lease held), as a user does with a cluster."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import pathlib
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from kube_emulator import EmulatorServer
from mtls_operator import constants as c
from mtls_operator.rules.rotation import PHASE_ANNOTATION

from .conftest import (
    NS,
    OPERATOR_NS,
    OperatorHandle,
    eventually,
    get_identity,
    identity,
    managed_secrets,
    operator_settings,
    pod,
    ready,
)
from .test_webhooks import KUBECTL, ca_bundles, free_port, register_webhooks

PLUGIN_DIR = pathlib.Path(sys.executable).parent  # the venv's bin: where pip put kubectl-mtls

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl not found: run `make tools` (see shared/TOOLS.md)")


class WallClock:
    """The operator decides on the same clock as the plugin (a manual renewal is due at the user's now)."""

    def __call__(self) -> datetime:
        return datetime.now(UTC).replace(microsecond=0)


class KubectlMtls:
    def __init__(self, kubeconfig: pathlib.Path) -> None:
        assert KUBECTL is not None
        assert (PLUGIN_DIR / "kubectl-mtls").exists(), "kubectl-mtls is not installed: make install"
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig),
                    "PATH": f"{PLUGIN_DIR}{os.pathsep}{pathlib.Path(KUBECTL).parent}{os.pathsep}{os.environ['PATH']}"}

    async def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        # The emulator serves on this loop: kubectl runs in a thread so the loop keeps answering it.
        return await asyncio.to_thread(subprocess.run, ["kubectl", "mtls", *args], env=self.env, capture_output=True,
                                       text=True, timeout=60, check=False)

    async def json(self, *args: str) -> Any:
        run = await self(*args, "-o", "json")
        assert run.returncode == 0, run.stdout + run.stderr
        return json.loads(run.stdout)


@pytest.fixture
async def cluster(server: EmulatorServer) -> AsyncIterator[OperatorHandle]:
    """The operator as the chart runs it: webhooks on, leader election on; two pods of one identity issued."""
    port = free_port()
    register_webhooks(server.emulator, port)
    handle = OperatorHandle(server, WallClock(), operator_settings(webhook_port=port, leader_election=True))  # type: ignore[arg-type]
    await handle.start()
    try:
        await eventually(lambda: all(ca_bundles(server.emulator)), what="caBundle in both configurations")
        await eventually(lambda: handle.runtime.serving is not None and handle.runtime.serving.state.ca_fingerprint,
                         what="a serving certificate from the CA")
        server.emulator.create(identity("payments", dnsNames=["payments.shop.svc"]))
        for name in ("payments-0", "payments-1"):
            server.emulator.create(pod(name, "payments"))
        await eventually(lambda: ready(server.emulator, "payments"), what="payments Ready")
        yield handle
    finally:
        await handle.stop()


@pytest.fixture
def mtls(server: EmulatorServer, tmp_path: pathlib.Path) -> KubectlMtls:
    return KubectlMtls(server.write_kubeconfig(tmp_path / "kubeconfig"))


async def test_status_lists_identities_by_urgency(cluster: OperatorHandle, server: EmulatorServer,
                                                  mtls: KubectlMtls) -> None:
    server.emulator.create(identity("orders", duration="1h"))
    server.emulator.create(pod("orders-0", "orders"))
    await eventually(lambda: ready(server.emulator, "orders"), what="orders Ready")
    data = await mtls.json("status", "-A")
    names = [(item["namespace"], item["name"], item["urgency"]) for item in data["items"]]
    # orders' certificates (1h) expire before payments' (24h): listed first.
    assert names == [(NS, "orders", "ok"), (NS, "payments", "ok")]
    payments = data["items"][1]
    assert (payments["pods"], payments["issued"], payments["ready"]) == (2, 2, "True")
    assert payments["caGenerations"] == {"current": 2}
    assert payments["rotationPhase"] == "Idle"
    assert data["ca"]["source"] == "ca-secret"

    table = await mtls("status", "-n", NS)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:5] == ["NAME", "READY", "PODS", "ISSUED", "EARLIEST-EXPIRY"]
    assert lines[1].split()[0] == "orders"
    assert "CA signing now: sha256:" in table.stdout

    soon = await mtls.json("status", "-A", "--expiring-within", "2h")
    assert [item["name"] for item in soon["items"]] == ["orders"]
    as_yaml = yaml.safe_load((await mtls("status", "-A", "-o", "yaml")).stdout)
    assert [item["name"] for item in as_yaml["items"]] == ["orders", "payments"]

    bad = await mtls("status", "--expiring-within", "soon")
    assert bad.returncode == 2
    assert "--expiring-within 'soon'" in bad.stderr


async def test_inspect_and_verify_pods(cluster: OperatorHandle, server: EmulatorServer, mtls: KubectlMtls) -> None:
    report = await mtls.json("inspect", "pod/payments-0", "-n", NS)
    secret = managed_secrets(server.emulator, "payments")["payments-payments-0"]
    annotations = secret["metadata"]["annotations"]
    assert report["spiffeID"] == f"spiffe://cluster.local/ns/{NS}/sa/default"
    assert report["dnsNames"] == ["payments.shop.svc"]
    assert report["serial"] == annotations[c.SERIAL_ANNOTATION]
    assert report["renewAt"] == annotations[c.RENEW_AT_ANNOTATION]
    assert report["signedBy"] == {"fingerprint": annotations[c.CA_FINGERPRINT_ANNOTATION], "generation": "current"}
    assert report["trustsCurrentCA"] is True
    assert report["trustsNextCA"] is None
    text = (await mtls("inspect", "pod/payments-0", "-n", NS)).stdout
    assert "Trusts current CA: yes" in text
    assert "Trusts next CA:    no rotation under way" in text
    assert "BEGIN" not in text  # never PEM

    verdict = await mtls("verify", "pod/payments-0", "pod/payments-1", "-n", NS)
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr
    assert "now: \u221a pod/payments-0 and pod/payments-1 trust each other" in verdict.stdout
    assert "after the next rotation step: no CA rotation under way" in verdict.stdout

    missing = await mtls("inspect", "pod/nobody", "-n", NS)
    assert missing.returncode == 1
    assert missing.stderr.strip() == f"error: pod {NS}/nobody not found"
    server.emulator.create(pod("plain", "payments", opted_in=False))
    plain = await mtls("inspect", "pod/plain", "-n", NS)
    assert plain.returncode == 1
    assert "not opted in" in plain.stderr

    # A pod the kubelet serves (delivery PodCertificate): no Secret to inspect, and the answer says where the
    # key is and how to see its requests.
    kubelet_served = pod("inventory-0", "inventory")
    kubelet_served["spec"] |= {"nodeName": "node-1", "volumes": [{"name": c.IDENTITY_VOLUME, "projected": {"sources": [
        {"podCertificate": {"signerName": "mtls.dev/spiffe", "keyType": "ECDSAP256", "keyPath": "tls.key",
                            "certificateChainPath": "tls.crt"}}]}}]}
    server.emulator.create(kubelet_served)
    held = await mtls("inspect", "pod/inventory-0", "-n", NS)
    assert held.returncode == 1
    assert "from the kubelet (delivery PodCertificate, signer mtls.dev/spiffe)" in held.stderr
    assert "only in memory on node-1" in held.stderr
    assert f"kubectl get podcertificaterequests -n {NS} --field-selector spec.podName=inventory-0" in held.stderr


async def test_check_passes_and_fails_for_ci(cluster: OperatorHandle, mtls: KubectlMtls) -> None:
    run = await mtls("check", "-n", NS)
    assert run.returncode == 0, run.stdout + run.stderr
    marks = {line.split(":")[0] for line in run.stdout.splitlines() if line[:2] in ("\u221a ", "\u203c ", "\u00d7 ")}
    assert marks == {
        "\u221a CRD installed",
        "\u221a leader holds a fresh Lease",
        "\u221a mutatingwebhook caBundle",
        "\u221a validatingwebhook caBundle",
        "\u221a webhook serves a certificate the caBundle verifies",
        "\u221a CA valid for more than 30 days",
        # The emulator serves no SubjectAccessReview nor SelfSubjectAccessReview: said so, never passed.
        "\u203c operator RBAC",
        "\u203c your access (kubectl mtls)",
    }
    data = await mtls.json("check", "-n", NS)
    rbac = next(item for item in data["checks"] if item["name"] == "operator RBAC")
    assert rbac["result"] == "warn"
    assert "could not check" in rbac["message"]

    broken = await mtls("check", "-n", NS, "--lease", "nobody-leads")
    assert broken.returncode == 1
    assert "\u00d7 leader holds a fresh Lease: Lease mtls-system/nobody-leads not found" in broken.stdout
    assert "    hint: is the operator running?" in broken.stdout


async def test_check_sees_a_webhook_the_api_server_cannot_verify(cluster: OperatorHandle, server: EmulatorServer,
                                                                 mtls: KubectlMtls) -> None:
    await cluster.stop()  # nobody restores the caBundle
    for kind in ("mutatingwebhookconfigurations", "validatingwebhookconfigurations"):
        body = server.emulator.get("admissionregistration.k8s.io/v1", kind, "mtls-operator")
        assert body is not None
        hooks = body["webhooks"]
        for hook in hooks:
            hook["clientConfig"]["caBundle"] = ""
        server.emulator.patch("admissionregistration.k8s.io/v1", kind, "mtls-operator", None, {"webhooks": hooks})
    run = await mtls("check", "-n", NS)
    assert run.returncode == 1
    assert "\u00d7 mutatingwebhook caBundle: inject.mtls.dev: no caBundle" in run.stdout
    assert "\u00d7 webhook serves a certificate the caBundle verifies" in run.stdout


async def test_renew_reissues_with_reason_manual(cluster: OperatorHandle, server: EmulatorServer,
                                                 mtls: KubectlMtls) -> None:
    before = {name: s["metadata"]["annotations"][c.SERIAL_ANNOTATION]
              for name, s in managed_secrets(server.emulator, "payments").items()}
    run = await mtls("renew", "identity/payments", "-n", NS)
    assert run.returncode == 0, run.stderr
    assert "2 certificate(s) of identity shop/payments marked for renewal (reason manual)" in run.stdout

    def renewed() -> bool:
        now = managed_secrets(server.emulator, "payments")
        return all(now[name]["metadata"]["annotations"][c.SERIAL_ANNOTATION] != serial
                   for name, serial in before.items())

    await eventually(renewed, what="both certificates re-issued")
    for secret in managed_secrets(server.emulator, "payments").values():
        assert c.RENEW_REASON_ANNOTATION not in secret["metadata"]["annotations"]
    last = await eventually(lambda: get_identity(server.emulator, "payments")["status"].get("lastIssuance"),
                            what="lastIssuance")
    assert last["reason"] == "manual"
    assert last["message"].endswith("Re-issuing: renewal requested (manual)")
    assert cluster.runtime.metrics.registry.get_sample_value(
        "mtls_certificates_issued_total", {"reason": "manual"}) == 2

    unknown = await mtls("renew", "identity/nobody", "-n", NS)
    assert unknown.returncode == 1
    assert "identity shop/nobody not found" in unknown.stderr


async def test_rotate_ca_and_verify_after_the_next_step(cluster: OperatorHandle, server: EmulatorServer,
                                                        mtls: KubectlMtls) -> None:
    run = await mtls("rotate-ca")
    assert run.returncode == 0, run.stderr
    assert "CA rotation requested" in run.stdout

    def phase() -> str:
        secret = server.emulator.get("v1", "secrets", "mtls-operator-ca", OPERATOR_NS) or {}
        return str((secret.get("metadata") or {}).get("annotations", {}).get(PHASE_ANNOTATION))

    await eventually(lambda: phase() == "Distributing", what="Distributing")
    # Once both pods' bundles hold the next CA (the default propagation delay keeps the phase for 2 minutes).
    def bundles_hold_two_cas() -> bool:
        return all(base64.b64decode(s["data"][c.CA_CRT]).count(b"BEGIN CERTIFICATE") == 2
                   for s in managed_secrets(server.emulator, "payments").values())

    await eventually(bundles_hold_two_cas, what="both pod bundles hold the next CA")
    report = await mtls.json("verify", "pod/payments-0", "pod/payments-1", "-n", NS)
    assert report["rotationPhase"] == "Distributing"
    assert report["now"] == {"trusted": True, "reasons": []}
    assert report["afterNextStep"] == {"trusted": True, "reasons": []}
    inspected = await mtls.json("inspect", "pod/payments-0", "-n", NS)
    assert inspected["trustsNextCA"] is True
    assert {entry["generation"] for entry in inspected["bundle"]} == {"current", "next"}

    again = await mtls("rotate-ca")
    assert again.returncode == 1
    assert "already under way (phase Distributing)" in again.stderr


async def test_an_unreachable_api_server_fails_check_and_errors_elsewhere(tmp_path: pathlib.Path) -> None:
    kubeconfig = tmp_path / "dead.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "dead",
        "clusters": [{"name": "dead", "cluster": {"server": f"http://127.0.0.1:{free_port()}"}}],
        "users": [{"name": "dead", "user": {"token": "x"}}],
        "contexts": [{"name": "dead", "context": {"cluster": "dead", "user": "dead"}}]}))
    mtls = KubectlMtls(kubeconfig)
    check = await mtls("check")
    assert check.returncode == 1
    assert check.stdout.startswith("\u00d7 API server reachable: ")
    assert "    hint: check your kubeconfig and context" in check.stdout
    status = await mtls("status", "-A")
    assert status.returncode == 1
    assert status.stderr.startswith("error: cannot list identities: ")
    missing = await KubectlMtls(tmp_path / "nothing-here")("status")
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: cannot load Kubernetes credentials")
