"""``mtls-operator demo``: the real operator on an embedded emulated cluster, end to end, in seconds.

Two workloads get identities; the operator issues each opted-in pod its own certificate; a real
mutual-TLS handshake between a ``payments`` pod and an ``orders`` pod succeeds, and one with a
certificate from a foreign CA is refused. ``payments`` runs StatefulSet-style pods with stable names;
the ``orders`` pod is created as a Deployment's is (only a generateName) through the API, so the
operator's admission webhook injects its Secret volume, as it would in a cluster with the Helm chart.
With pod certificates on, an ``inventory`` pod is served by the kubelet instead
(``spec.delivery: PodCertificate``, see ``pod_certificate.py``): its key never leaves the node, and its
files do mutual TLS with a Secret-served pod's. Exits 0 only if all of that held.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from kube_emulator import EmulatorServer, load_crds
from mtls_operator import constants as c
from mtls_operator.config import Settings
from mtls_operator.demo.handshake import HandshakeResult, TLSFiles, mutual_tls_handshake
from mtls_operator.demo.pod_certificate import serve_by_pod_certificate
from mtls_operator.main import OperatorThread
from mtls_operator.models import KeySpec, Usage
from mtls_operator.pki import LeafRequest, create_self_signed_ca, issue_leaf
from mtls_operator.rules.admission import webhook_configurations
from mtls_operator.rules.plan import secret_data

NAMESPACE = "shop"
OPERATOR_NAMESPACE = "mtls-system"
API = f"{c.GROUP}/{c.VERSION}"
TIMEOUT = 20.0

WORKLOADS: dict[str, dict[str, Any]] = {
    "payments": {
        "replicas": 2,
        "dnsNames": ["payments", f"payments.{NAMESPACE}.svc", f"payments.{NAMESPACE}.svc.cluster.local"],
    },
    # Created through the API with a generateName: injected by the webhook.
    "orders": {"replicas": 0, "dnsNames": ["orders", f"orders.{NAMESPACE}.svc"]},
}
WEBHOOK_SERVICE = "mtls-operator-webhook"


def project_crds() -> list[dict[str, Any]]:
    """The operator's CustomResourceDefinitions, shipped as package data (``mtls_operator/crds``)."""
    return load_crds(importlib.resources.files("mtls_operator").joinpath("crds"))


def _identity(name: str, dns_names: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": c.KIND,
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "serviceAccountName": name,
            "dnsNames": dns_names,
            "duration": "24h",
        },
    }


def _pod(name: str, app: str, *, opted_in: bool = True) -> dict[str, Any]:
    labels = {"app": app}
    if opted_in:
        labels[c.INJECT_LABEL] = c.INJECT_VALUE
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
        "spec": {"serviceAccountName": app, "containers": [{"name": "app", "image": f"example/{app}:1"}]},
        "status": {"phase": "Running"},
    }


def _deployment_pod(app: str) -> dict[str, Any]:
    """A pod as a ReplicaSet creates it: no name yet, only a generateName."""
    body = _pod("", app)
    del body["metadata"]["name"]
    body["metadata"]["generateName"] = f"{app}-7d9f8c-"
    body["spec"]["containers"].append({"name": "proxy", "image": "example/proxy:1"})
    return body


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _ready(identity: Mapping[str, Any] | None) -> bool:
    conditions = ((identity or {}).get("status") or {}).get("conditions") or []
    return any(cond.get("type") == "Ready" and cond.get("status") == "True" for cond in conditions)


def _files(secret: Mapping[str, Any]) -> TLSFiles:
    return TLSFiles(
        cert_chain=secret_data(secret, c.TLS_CRT) or b"",
        key=secret_data(secret, c.TLS_KEY) or b"",
        bundle=secret_data(secret, c.CA_CRT) or b"",
    )


def _foreign_files(bundle: bytes) -> TLSFiles:
    """A well-formed SVID for a plausible identity, signed by a CA nobody here trusts."""
    now = datetime.now(UTC)
    rogue_ca = create_self_signed_ca(now, common_name="rogue CA")
    leaf = issue_leaf(
        rogue_ca,
        LeafRequest(
            spiffe_id=f"spiffe://cluster.local/ns/{NAMESPACE}/sa/orders",
            dns_names=("orders",),
            usages=frozenset({Usage.CLIENT, Usage.SERVER}),
            key=KeySpec(),
            duration=timedelta(hours=1),
        ),
        now,
    )
    return TLSFiles(cert_chain=leaf.chain_pem, key=leaf.key_pem, bundle=bundle)


def run_demo(output_dir: str | None = None, out: TextIO = sys.stdout) -> int:
    logging.basicConfig(level=logging.WARNING, format="  [%(levelname)s %(name)s] %(message)s")
    logging.getLogger("kopf").setLevel(logging.ERROR)
    return asyncio.run(run_demo_async(Path(output_dir) if output_dir else None, out))


async def run_demo_async(output_dir: Path | None, out: TextIO) -> int:
    """The demo on the running event loop; 0 only if every check held."""
    started = time.monotonic()

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    async with EmulatorServer(crds=project_crds()) as server:
        emulator = server.emulator
        say(f"Emulated Kubernetes API on {server.url} (kmock), CRD {c.PLURAL}.{c.GROUP} installed")
        for namespace in (OPERATOR_NAMESPACE, NAMESPACE):
            emulator.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        # The webhook configurations as the Helm chart creates them (the operator fills in their caBundle),
        # and the webhook Service routed to the operator's admission server on a free local port.
        webhook_port = _free_port()
        for configuration in webhook_configurations(configuration="mtls-operator", service=WEBHOOK_SERVICE,
                                                    namespace=OPERATOR_NAMESPACE):
            emulator.create(configuration)
        emulator.route_service(OPERATOR_NAMESPACE, WEBHOOK_SERVICE, 443, f"127.0.0.1:{webhook_port}")
        # No metrics endpoint: the demo must not take (or collide on) port 9090. Pod certificates on: the
        # signer and the ClusterTrustBundle publisher run.
        settings = Settings(namespace=OPERATOR_NAMESPACE, metrics_port=0, webhook_port=webhook_port, health_port=0,
                            leader_election=False, pod_certificates=True)
        operator = OperatorThread(settings, server.client_configuration())
        await asyncio.to_thread(operator.start)
        say(f"Started the operator (kopf) against it, serving its admission webhooks on port {webhook_port}")
        try:
            return await _scenario(emulator, server.url, operator, settings, output_dir, say, started)
        finally:
            await asyncio.to_thread(operator.stop)


Say = Callable[[str], None]


async def _webhooks_ready(emulator: Any, operator: OperatorThread, port: int) -> bool:
    """The API server can call the webhooks: caBundle published, certificate from the CA, server up."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        bundles = [hook.get("clientConfig", {}).get("caBundle")
                   for kind in ("mutatingwebhookconfigurations", "validatingwebhookconfigurations")
                   for hook in (emulator.get("admissionregistration.k8s.io/v1", kind, "mtls-operator") or {})
                   .get("webhooks", [])]
        serving = operator.memo.get("serving_certificate")
        if all(bundles) and serving is not None and serving.state.ca_fingerprint and _listening(port):
            return True
        await asyncio.sleep(0.1)
    return False


async def _create_through_api(url: str, body: Mapping[str, Any]) -> tuple[int, dict[str, Any], list[str]]:
    """POST as kubectl does, so the API server's admission (our webhook) runs: status, object, warnings."""
    async with aiohttp.ClientSession() as session, session.post(
        f"{url}/api/v1/namespaces/{NAMESPACE}/pods", json=body
    ) as response:
        return response.status, await response.json(), response.headers.getall("Warning", [])


async def _scenario(emulator: Any, url: str, operator: OperatorThread, settings: Settings, output_dir: Path | None,
                    say: Say, started: float) -> int:
    # First what the identities need: the operator writes them (its finalizer) through the API server, which
    # calls the identities webhook; before the webhook's CA is in place that call fails (open, with a warning).
    if not await _webhooks_ready(emulator, operator, settings.webhook_port):
        say("FAILED: the admission webhooks did not become ready in time")
        return 1
    for app, workload in WORKLOADS.items():
        emulator.create(_identity(app, workload["dnsNames"]))
        for index in range(workload["replicas"]):
            emulator.create(_pod(f"{app}-{index}", app))
        say(f"Created MTLSIdentity {NAMESPACE}/{app}" + (f" and {workload['replicas']} opted-in pod(s) with stable "
                                                         "names" if workload["replicas"] else ""))
    emulator.create(_pod("payments-legacy", "payments", opted_in=False))
    say(f"Created pod {NAMESPACE}/payments-legacy without the {c.INJECT_LABEL} label (must not be served)")
    code, orders_pod, warnings = await _create_through_api(url, _deployment_pod("orders"))
    if code != 201:
        say(f"FAILED: creating the orders pod through the API answered {code}: {orders_pod.get('message')}")
        return 1
    orders_name = str(orders_pod["metadata"]["name"])
    injected = str((orders_pod["metadata"].get("annotations") or {}).get(c.SECRET_NAME_ANNOTATION))
    mounted_in = [ctr["name"] for ctr in orders_pod["spec"]["containers"]
                  if any(m.get("name") == c.IDENTITY_VOLUME for m in ctr.get("volumeMounts") or [])]
    say(f"Created pod {NAMESPACE}/{orders_name} through the API (generateName orders-7d9f8c-); the webhook "
        f"injected Secret {injected}, volume {c.IDENTITY_VOLUME}, mounted at {c.DEFAULT_MOUNT_PATH} in "
        f"{', '.join(mounted_in)}" + "".join(f"\n  warning: {text}" for text in warnings))

    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if all(_ready(emulator.get(API, c.PLURAL, app, NAMESPACE)) for app in WORKLOADS):
            break
        await asyncio.sleep(0.1)
    else:
        say("FAILED: identities did not become Ready in time:")
        for app in WORKLOADS:
            status = (emulator.get(API, c.PLURAL, app, NAMESPACE) or {}).get("status")
            say(f"  {app}: {status}")
        return 1

    say("")
    say("Identities (kubectl get mtlsid):")
    say(f"  {'NAME':<10} {'READY':<6} {'PODS':<5} {'ISSUED':<7} NEXT-RENEWAL")
    for app in WORKLOADS:
        status = (emulator.get(API, c.PLURAL, app, NAMESPACE) or {}).get("status") or {}
        say(f"  {app:<10} {'True':<6} {status.get('pods')!s:<5} {status.get('issued')!s:<7} "
            f"{status.get('nextRenewalTime')}")
    secrets = sorted(
        emulator.list("v1", "secrets", NAMESPACE, label_selector=f"{c.MANAGED_BY_LABEL}={c.MANAGER_NAME}"),
        key=lambda s: s["metadata"]["name"],
    )
    say("")
    say("Pod Secrets (type kubernetes.io/tls, one private key each):")
    width = max((len(secret["metadata"]["name"]) for secret in secrets), default=0)
    for secret in secrets:
        annotations = secret["metadata"].get("annotations") or {}
        serial = annotations.get(c.SERIAL_ANNOTATION, "")[:12]
        say(f"  {secret['metadata']['name']:<{width}} {annotations.get(c.SPIFFE_ID_ANNOTATION)}  "
            f"expires {annotations.get(c.NOT_AFTER_ANNOTATION)}  serial {serial}…")
    by_pod = {secret["metadata"]["labels"][c.POD_LABEL]: secret for secret in secrets}
    checks: list[tuple[str, bool]] = []
    checks.append(("every opted-in pod of a Secret identity has its Secret",
                   set(by_pod) == {"payments-0", "payments-1", orders_name}))
    checks.append(("the pod without the opt-in label has none", "payments-legacy" not in by_pod))
    volumes = {v["name"]: v for v in orders_pod["spec"].get("volumes") or []}
    checks.append(("the webhook-injected orders pod mounts the Secret the operator wrote for it",
                   orders_name in by_pod and by_pod[orders_name]["metadata"]["name"] == injected
                   == volumes.get(c.IDENTITY_VOLUME, {}).get("secret", {}).get("secretName")
                   and mounted_in == ["app", "proxy"]))
    if output_dir is not None:
        for secret in secrets:
            folder = output_dir / NAMESPACE / secret["metadata"]["name"]
            folder.mkdir(parents=True, exist_ok=True)
            for key in (c.TLS_CRT, c.TLS_KEY, c.CA_CRT):
                # The key file is private from its first byte (no window with the umask's mode).
                mode = 0o600 if key == c.TLS_KEY else 0o644
                descriptor = os.open(folder / key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
                with os.fdopen(descriptor, "wb") as handle:
                    handle.write(secret_data(secret, key) or b"")
        say(f"\nWrote {len(secrets)} Secret(s) as files under {output_dir}/{NAMESPACE}/")

    if "payments-0" in by_pod and orders_name in by_pod:
        server_files, client_files = _files(by_pod["payments-0"]), _files(by_pod[orders_name])
        good = await asyncio.to_thread(
            mutual_tls_handshake, server_files, client_files, server_hostname=f"payments.{NAMESPACE}.svc"
        )
        foreign = await asyncio.to_thread(
            mutual_tls_handshake, server_files, _foreign_files(client_files.bundle),
            server_hostname=f"payments.{NAMESPACE}.svc",
        )
        say("")
        _report_handshake(say, f"{orders_name} -> payments-0 (mutual TLS)", good)
        _report_handshake(say, "foreign-CA client -> payments-0", foreign)
        checks.append((f"mutual TLS between payments-0 and {orders_name} succeeds", good.ok))
        checks.append(("the server saw the client's SPIFFE ID",
                       good.client_spiffe_id == f"spiffe://cluster.local/ns/{NAMESPACE}/sa/orders"))
        checks.append(("a certificate from a foreign CA is refused (verification, not a crash)",
                       not foreign.ok and "certificate verify failed" in (foreign.error or "")))
        checks.extend(await serve_by_pod_certificate(
            emulator, namespace=NAMESPACE, signer=settings.pod_certificate_signer,
            create_pod=lambda body: _create_through_api(url, body), peer_name="payments-0", peer=server_files,
            ca_bundle=server_files.bundle, output_dir=output_dir, say=say, report=_report_handshake))
    else:
        checks.append(("Secrets exist for a handshake", False))

    say("")
    for text, held in checks:
        say(f"  [{'ok' if held else 'FAILED'}] {text}")
    elapsed = time.monotonic() - started
    passed = all(held for _, held in checks)
    say(f"\nDemo {'passed' if passed else 'FAILED'} in {elapsed:.1f}s (API requests: {emulator.requests.reads} reads, "
        f"{emulator.requests.writes} writes).")
    return 0 if passed else 1


def _report_handshake(say: Say, title: str, result: HandshakeResult) -> None:
    if result.ok:
        say(f"  {title}: OK over {result.tls_version}; server saw client {result.client_spiffe_id}, "
            f"client saw server {result.server_spiffe_id}")
    else:
        say(f"  {title}: refused ({result.error})")
