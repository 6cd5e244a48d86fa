"""The e2e suite's fixtures: a real control plane, the chart installed with helm, the operator as a local
process authenticated as the chart's ServiceAccount.

``make e2e`` builds the control plane (e2e/controlplane) and runs ``pytest -m e2e tests/e2e`` in a
network namespace of its own (see tests/e2e/controlplane.py). With ``MTLS_E2E_KUBECONFIG`` set, the
suite runs against that cluster instead (kind, a real one): the chart is installed there the same
way, without its webhooks (that cluster cannot reach a process on this machine), and the tests that
need the local control plane (webhooks, the audit log) are skipped.

Webhook routing: the API server runs with ``--enable-aggregator-routing``, so it reaches the chart's
webhook Service through the Service's EndpointSlices (Kubernetes >= 1.33; Endpoints before). No
endpoint controller runs (there are no operator pods, only a local process), so the suite writes
both, pointing at the network namespace's own address, where the local operator's webhook server
listens. The API server then connects with TLS to ``<service>.<namespace>.svc`` and verifies the
operator's serving certificate against the caBundle the operator keeps in the webhook
configurations: nothing in the TLS path is weakened or bypassed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from tests.chart.conftest import CHART, ROOT, Rendered, parse, tool
from tests.e2e.client import Answer, Client
from tests.e2e.controlplane import Binaries, ControlPlane, ControlPlaneError, _kill_with_parent
from tests.e2e.kubelet import Kubelet, served_version

RELEASE = "mtls-operator"
NAMESPACE = "mtls-system"
T = TypeVar("T")

EXTERNAL_KUBECONFIG = os.environ.get("MTLS_E2E_KUBECONFIG")
# Chart values for the suite: short waits, so that a CA rotation and a Lease takeover fit in a test.
VALUES: dict[str, Any] = {
    "ca": {"propagationDelay": "0s"},
    "leaderElection": {"leaseDuration": "6s"},
}
DEFAULT_SIGNER = "mtls.dev/spiffe"
# Each operator process gets its own ports (they share the network namespace).
OPERATOR_PORTS = {"mtls-operator-0": (9443, 8080, 9090), "mtls-operator-1": (9444, 8081, 9091)}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the modules in the order of a cluster's life: the audit comparison after everything the
    operator does, helm upgrade and uninstall last."""
    order = ["test_install", "test_parity", "test_pod_certificate_requests", "test_issuance", "test_admission",
             "test_renewal", "test_rotation", "test_pod_certificate_signer", "test_ha", "test_secret_policy",
             "test_rbac_audit", "test_lifecycle"]

    def rank(item: pytest.Item) -> int:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        return order.index(module) if module in order else len(order)

    items.sort(key=rank)


async def eventually(check: Callable[[], T], *, within: float = 30.0, what: str = "condition",
                     interval: float = 0.25) -> T:
    import asyncio
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = await asyncio.to_thread(check)
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {within:.0f}s waiting for {what}; last value: {last!r}")


def wait_for(check: Callable[[], T], *, within: float = 30.0, what: str = "condition", interval: float = 0.25) -> T:
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {within:.0f}s waiting for {what}; last value: {last!r}")


@dataclass
class Cluster:
    kubeconfig: Path
    workdir: Path
    control_plane: ControlPlane | None
    api: Client = field(init=False)

    def __post_init__(self) -> None:
        self.api = Client(str(self.kubeconfig))

    @property
    def local(self) -> bool:
        return self.control_plane is not None

    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "HOME": str(self.workdir)}

    def kubectl(self, *args: str, check: bool = True, stdin: str | None = None,
                kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
        env = self.env()
        if kubeconfig is not None:
            env["KUBECONFIG"] = str(kubeconfig)
        result = subprocess.run([tool("kubectl"), *args], env=env, input=stdin, capture_output=True, text=True,
                                timeout=120, check=False, cwd=ROOT)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([tool("helm"), *args], env=self.env(), capture_output=True, text=True, timeout=300,
                                check=False, cwd=ROOT)
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
        return result


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("cluster")
    if EXTERNAL_KUBECONFIG:
        yield Cluster(Path(EXTERNAL_KUBECONFIG), workdir, None)
        return
    folder = os.environ.get("MTLS_E2E_K8S_BIN")
    if not folder:
        pytest.fail("no control plane: run the suite with `make e2e` (or set MTLS_E2E_KUBECONFIG to a cluster's)")
    version = os.environ.get("MTLS_E2E_K8S_VERSION", "")
    try:
        with ControlPlane(workdir, Binaries.in_folder(Path(folder)), address=os.environ.get(
                "MTLS_E2E_ADDRESS", "10.250.0.1"), version=version) as control_plane:
            yield Cluster(control_plane.admin_kubeconfig, workdir, control_plane)
    except ControlPlaneError as exc:
        pytest.exit(f"e2e: {exc}", returncode=3)


def webhook_endpoints(cluster: Cluster, service: str, port: int, address: str) -> None:
    """Route the webhook Service to ``address:port`` (see the module docstring), as the endpoint
    controllers would for a ready pod at that address. Written for both resolvers: EndpointSlices
    (Kubernetes >= 1.33) and Endpoints (before)."""
    slice_body = {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"{service}-local", "namespace": NAMESPACE, "labels": {
            "kubernetes.io/service-name": service, "endpointslice.kubernetes.io/managed-by": "mtls-e2e"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    }
    endpoints_body = {
        "apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": service, "namespace": NAMESPACE},
        "subsets": [{"addresses": [{"ip": address}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
    }
    for path, body in ((f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices", slice_body),
                       (f"/api/v1/namespaces/{NAMESPACE}/endpoints", endpoints_body)):
        answer = cluster.api.create(path, body)
        if answer.status == 409:
            answer = cluster.api.request("PUT", f"{path}/{body['metadata']['name']}", body)  # type: ignore[index]
        assert answer.ok, answer.body


@dataclass
class Release:
    cluster: Cluster
    values_file: Path
    manifest: Rendered
    deployment: dict[str, Any]
    operator_kubeconfig: Path

    @property
    def service_account(self) -> str:
        name: str = self.deployment["spec"]["template"]["spec"]["serviceAccountName"]
        return name

    @property
    def webhooks(self) -> bool:
        return any(item["name"] == "MTLS_WEBHOOK_PORT" and item["value"] != "0" for item in self.env_items)

    @property
    def pod_certificates(self) -> bool:
        return any(item["name"] == "MTLS_POD_CERTIFICATES" and item.get("value") == "true" for item in self.env_items)

    @property
    def signer_name(self) -> str:
        return next((item.get("value") or DEFAULT_SIGNER for item in self.env_items
                     if item["name"] == "MTLS_POD_CERTIFICATE_SIGNER"), DEFAULT_SIGNER)

    @property
    def env_items(self) -> list[dict[str, Any]]:
        (container,) = self.deployment["spec"]["template"]["spec"]["containers"]
        items: list[dict[str, Any]] = container["env"]
        return items

    def operator_env(self, name: str) -> dict[str, str]:
        """The Deployment's environment for the operator container (the pod name for MTLS_POD_NAME), with
        this process's own ports."""
        env = {item["name"]: item.get("value", "") for item in self.env_items}
        env["MTLS_POD_NAME"] = name
        webhook, health, metrics = OPERATOR_PORTS[name]
        if self.webhooks:
            env["MTLS_WEBHOOK_PORT"] = str(webhook)
        env["MTLS_HEALTH_PORT"] = str(health)
        env["MTLS_METRICS_PORT"] = str(metrics)
        return env


def _service_account_kubeconfig(cluster: Cluster, service_account: str) -> Path:
    """A kubeconfig with a token of the chart's ServiceAccount, from the TokenRequest API."""
    token = cluster.kubectl("create", "token", service_account, "-n", NAMESPACE, "--duration=4h").stdout.strip()
    assert token.count(".") == 2, "kubectl create token did not print a JWT"
    source = yaml.safe_load(cluster.kubeconfig.read_text())
    context_name = source["current-context"]
    context = next(item["context"] for item in source["contexts"] if item["name"] == context_name)
    entry = next(item["cluster"] for item in source["clusters"] if item["name"] == context["cluster"])
    path = cluster.workdir / "operator.kubeconfig"
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "operator",
        "clusters": [{"name": "cluster", "cluster": entry}],
        "users": [{"name": f"system:serviceaccount:{NAMESPACE}:{service_account}", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "cluster", "user":
                                                     f"system:serviceaccount:{NAMESPACE}:{service_account}"}}],
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def pod_certificates_missing() -> str:
    """Why this checkout cannot serve pod certificates ('' when it can): the chart's
    ``podCertificates.enabled``, the identity's ``spec.delivery`` and the operator's MTLS_POD_CERTIFICATES
    come with the signer (PCR.md: branches pcrsigner and pcrdelivery)."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    crd = (ROOT / "crds" / "mtlsidentity.yaml").read_text()
    config = (ROOT / "operator" / "mtls_operator" / "config.py").read_text()
    missing = [what for what, present in (
        ("the chart's podCertificates.enabled", "podCertificates" in schema.get("properties", {})),
        ("the identity's spec.delivery", "delivery:" in crd),
        ("the operator's MTLS_POD_CERTIFICATES", "MTLS_POD_CERTIFICATES" in config)) if not present]
    return f"this checkout lacks {', '.join(missing)} (the pod-certificate signer and delivery)" if missing else ""


def helm_install(cluster: Cluster) -> Release:
    values = dict(VALUES)
    if not cluster.local:
        values["webhook"] = {"enabled": False}
    if not pod_certificates_missing() and served_version(cluster.api) is not None:
        # The signer and the ClusterTrustBundle publisher run for the whole session, so the RBAC audit
        # holds the chart's pod-certificate rules to what the operator does with them.
        values["podCertificates"] = {"enabled": True}
    values_file = cluster.workdir / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    cluster.helm("install", RELEASE, str(CHART), "-n", NAMESPACE, "--create-namespace", "-f", str(values_file))
    return _release(cluster, values_file)


def _release(cluster: Cluster, values_file: Path) -> Release:
    manifest = parse(cluster.helm("get", "manifest", RELEASE, "-n", NAMESPACE).stdout)
    deployment = cluster.api.get(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{RELEASE}")
    assert deployment.ok, deployment.body
    service_account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    release = Release(cluster, values_file, manifest, deployment.body,
                      _service_account_kubeconfig(cluster, service_account))
    if cluster.local and release.webhooks and cluster.control_plane is not None:
        env = release.operator_env("mtls-operator-0")
        webhook_endpoints(cluster, env["MTLS_WEBHOOK_SERVICE"], int(env["MTLS_WEBHOOK_PORT"]),
                          cluster.control_plane.address)
    return release


@pytest.fixture(scope="session")
def release(cluster: Cluster) -> Release:
    return helm_install(cluster)


class OperatorProcess:
    """``mtls-operator run`` as a local process, with the Deployment's environment and a token of the
    chart's ServiceAccount: every request it makes is judged by the API server's RBAC."""

    def __init__(self, release: Release, name: str) -> None:
        self.release = release
        self.name = name
        self.log = release.cluster.workdir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def health_port(self) -> int:
        return OPERATOR_PORTS[self.name][1]

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, f"{self.name} already runs"
        env = {**os.environ, **self.release.operator_env(self.name),
               "KUBECONFIG": str(self.release.operator_kubeconfig)}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(Path(sys.executable).parent / "mtls-operator"), "run"], env=env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_kill_with_parent)
        wait_for(self.healthy, within=60, what=f"{self.name}'s health endpoint")
        if self.release.webhooks:
            wait_for(self._webhook_listening, within=60, what=f"{self.name}'s webhook server")

    def _webhook_listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", OPERATOR_PORTS[self.name][0]), timeout=1):
                return True
        except OSError:
            return False

    def healthy(self) -> dict[str, Any] | None:
        if self.process is None or self.process.poll() is not None:
            raise AssertionError(f"{self.name} exited ({self.process and self.process.returncode}): "
                                 f"{self.tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz",
                                        timeout=2) as response:
                answer: dict[str, Any] = json.loads(response.read() or b"{}")
                return answer or {"ok": True}
        except (OSError, urllib.error.URLError, ValueError):
            return None

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, *, kill: bool = False) -> None:
        if self.process is None or self.process.poll() is not None:
            self.process = None
            return
        os.killpg(self.process.pid, signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@pytest.fixture(scope="session")
def operator(release: Release) -> Iterator[OperatorProcess]:
    """The operator (leader), running for the whole session; a test that stops it starts it again."""
    process = OperatorProcess(release, "mtls-operator-0")
    process.start()
    try:
        if release.webhooks:
            wait_for(lambda: webhook_ca_bundles(release.cluster), within=60, what="the operator's caBundle")
        yield process
    finally:
        process.stop()
        with contextlib.suppress(OSError):
            sys.stderr.write(f"\n--- {process.name} log (last lines) ---\n{process.tail(40)}\n")


def webhook_ca_bundles(cluster: Cluster) -> list[str] | None:
    bundles = []
    for kind in ("mutatingwebhookconfigurations", "validatingwebhookconfigurations"):
        answer = cluster.api.get(f"/apis/admissionregistration.k8s.io/v1/{kind}/{RELEASE}")
        if not answer.ok:
            return None
        for hook in answer["webhooks"]:
            bundle = hook["clientConfig"].get("caBundle")
            if not bundle:
                return None
            bundles.append(bundle)
    return bundles


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, deleted (by the real namespace controller) afterwards."""
    name = f"e2e-{request.node.name.removeprefix('test_').replace('_', '-')[:40].rstrip('-')}"
    answer = cluster.api.create("/api/v1/namespaces", {"metadata": {"name": name}})
    assert answer.ok, answer.body
    yield name
    cluster.api.delete(f"/api/v1/namespaces/{name}")


def needs_local(cluster: Cluster) -> None:
    if not cluster.local:
        pytest.skip("needs the local control plane (make e2e): webhooks and the audit log")


def identity_body(name: str, namespace: str, app: str | None = None, **spec: Any) -> dict[str, Any]:
    body_spec: dict[str, Any] = {"selector": {"matchLabels": {"app": app or name}}}
    body_spec.update(spec)
    return {"apiVersion": "mtls.dev/v1alpha1", "kind": "MTLSIdentity",
            "metadata": {"name": name, "namespace": namespace}, "spec": body_spec}


def pod_body(name: str, namespace: str, app: str, *, opted_in: bool = True, sa: str = "default") -> dict[str, Any]:
    labels = {"app": app}
    if opted_in:
        labels["mtls.dev/inject"] = "true"
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"serviceAccountName": sa, "containers": [{"name": "app", "image": "example/app:1"}]}}


def identities_path(namespace: str, name: str = "") -> str:
    return f"/apis/mtls.dev/v1alpha1/namespaces/{namespace}/mtlsidentities" + (f"/{name}" if name else "")


def core_path(resource: str, namespace: str, name: str = "") -> str:
    return f"/api/v1/namespaces/{namespace}/{resource}" + (f"/{name}" if name else "")


def managed_secrets(cluster: Cluster, namespace: str) -> dict[str, dict[str, Any]]:
    answer = cluster.api.get(core_path("secrets", namespace),
                             labelSelector="app.kubernetes.io/managed-by=mtls-operator")
    assert answer.ok, answer.body
    return {item["metadata"]["name"]: item for item in answer["items"]}


ROTATION_PHASES = ("Distributing", "Reissuing", "Retiring")


def assert_rotation_went_through(cluster: Cluster, phases: list[str], ca_secret: str) -> None:
    """The phases sampled during a CA rotation came in order, and the CA Secret's Events show every phase.

    A phase moves on as soon as its last object carries the bundle (no poll between), so with the
    propagation delay at 0s a phase of two pods can begin and end between two samples."""
    sampled = [phase for phase in phases if phase != "Idle"]
    assert sampled == [phase for phase in ROTATION_PHASES if phase in sampled], phases
    answer = cluster.api.get(core_path("events", NAMESPACE), fieldSelector=f"involvedObject.name={ca_secret}")
    assert answer.ok, answer.body
    reasons = {item.get("reason") for item in answer["items"]}
    assert {"RotationStarted", "RotationReissuing", "RotationRetiring", "RotationComplete"} <= reasons, reasons


def identity_status(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    """The identity's status; empty before the operator's first status write."""
    status: dict[str, Any] = cluster.api.get(identities_path(namespace, name)).body.get("status") or {}
    return status


def ready_condition(answer: Answer) -> dict[str, Any] | None:
    for condition in (answer.body.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            found: dict[str, Any] = condition
            return found
    return None


def pod_certificate_api(cluster: Cluster) -> str:
    """The version of certificates.k8s.io that serves PodCertificateRequests and ClusterTrustBundles; the
    test skips, saying why, on a release without them."""
    version = served_version(cluster.api)
    if version is None or served_version(cluster.api, "clustertrustbundles") != version:
        reason = cluster.control_plane.pod_certificates.reason if cluster.control_plane else ""
        pytest.skip(reason or "the API server serves no PodCertificateRequests and ClusterTrustBundles at one "
                    "version of certificates.k8s.io (Kubernetes >= 1.35 with the PodCertificateRequest gate)")
    return version


def kubelet_for(cluster: Cluster, node_name: str, version: str) -> Kubelet:
    """A registered node played by the test, with a client certificate of its own (local control plane only:
    it needs the cluster CA's key)."""
    needs_local(cluster)
    assert cluster.control_plane is not None
    kubeconfig = cluster.control_plane.client_kubeconfig(
        f"node-{node_name}", f"system:node:{node_name}", ("system:nodes",))
    kubelet = Kubelet(cluster.api, Client(str(kubeconfig)), node_name, version)
    kubelet.register()
    return kubelet
