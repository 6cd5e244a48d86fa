"""The admission webhooks end to end: the real operator (kopf's admission server, our certificate),
the emulator calling them as kube-apiserver does (Service routing, caBundle verification), kubectl.
"""

from __future__ import annotations

import asyncio
import base64
import json
import pathlib
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
import yaml

from kube_emulator import Emulator, EmulatorServer
from kube_emulator.selectors import parse_field_selector, parse_label_selector
from mtls_operator import constants as c
from mtls_operator.controller.webhook_tls import load_key_pair
from mtls_operator.errors import ChainError
from mtls_operator.models import KeySpec, Usage
from mtls_operator.pki import LeafRequest, fingerprint, issue_leaf, load_ca, parse_pem_certificates, verify_leaf
from mtls_operator.rules.admission import ca_bundle_text, webhook_configurations
from mtls_operator.rules.plan import secret_data

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
)

REPO = pathlib.Path(__file__).resolve().parents[2]
LOCAL_KUBECTL = REPO / ".tools" / "bin" / "kubectl"
KUBECTL = shutil.which("kubectl") or (str(LOCAL_KUBECTL) if LOCAL_KUBECTL.exists() else None)
SERVICE = "mtls-operator-webhook"
CONFIGURATION = "mtls-operator"
KINDS = ("mutatingwebhookconfigurations", "validatingwebhookconfigurations")
MUTATING, VALIDATING = (f"/apis/admissionregistration.k8s.io/v1/{kind}" for kind in KINDS)
PODS = f"/api/v1/namespaces/{NS}/pods"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def register_webhooks(emulator: Emulator, webhook_port: int, *, namespace: str = OPERATOR_NS,
                      **overrides: Any) -> None:
    """The configurations as the Helm chart creates them (no caBundle), the Service routed to the operator."""
    for body in webhook_configurations(configuration=CONFIGURATION, service=SERVICE, namespace=namespace):
        for hook in body["webhooks"]:
            hook.update(overrides)
        emulator.create(body)
    emulator.route_service(namespace, SERVICE, 443, f"127.0.0.1:{webhook_port}")


def ca_bundles(emulator: Emulator) -> list[str | None]:
    found = []
    for kind in KINDS:
        body = emulator.get("admissionregistration.k8s.io/v1", kind, CONFIGURATION) or {}
        found.extend(hook.get("clientConfig", {}).get("caBundle") for hook in body.get("webhooks") or [])
    return found


def trust_bundle(emulator: Emulator) -> bytes:
    """What pods trust: the CA Secret's ca.crt."""
    secret = emulator.get("v1", "secrets", c.DEFAULT_CA_SECRET, OPERATOR_NS)
    assert secret is not None
    return secret_data(secret, c.CA_CRT) or b""


def webhook_bundle(emulator: Emulator) -> bytes:
    """What the API server must trust for the webhooks: the webhook CA Secret's ca.crt."""
    secret = emulator.get("v1", "secrets", c.DEFAULT_WEBHOOK_CA_SECRET, OPERATOR_NS)
    assert secret is not None
    return secret_data(secret, c.CA_CRT) or b""


def webhook_ca_phase(emulator: Emulator) -> str:
    secret = emulator.get("v1", "secrets", c.DEFAULT_WEBHOOK_CA_SECRET, OPERATOR_NS) or {}
    return str((secret.get("metadata", {}).get("annotations") or {}).get("mtls.dev/rotation-phase", ""))


class Http:
    """Raw HTTP against the emulator: (status, parsed body)."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session, self.url = session, url

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        content_type = "application/merge-patch+json" if method == "PATCH" else "application/json"
        async with self.session.request(method, self.url + path, json=body,
                                        headers={"Content-Type": content_type}) as response:
            return response.status, await response.json(content_type=None)


class Kubectl:
    def __init__(self, kubeconfig: pathlib.Path, cache: pathlib.Path) -> None:
        assert KUBECTL is not None
        self.base = [KUBECTL, "--kubeconfig", str(kubeconfig), "--cache-dir", str(cache)]

    async def __call__(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        # The emulator serves on this loop: kubectl runs in a thread so the loop keeps answering it.
        return await asyncio.to_thread(subprocess.run, [*self.base, *args], input=stdin, capture_output=True,
                                       text=True, timeout=60, check=False)


@pytest.fixture
async def http(server: EmulatorServer) -> AsyncIterator[Http]:
    async with aiohttp.ClientSession() as session:
        yield Http(session, server.url)


@pytest.fixture
def kubectl(server: EmulatorServer, tmp_path: pathlib.Path) -> Kubectl:
    if KUBECTL is None:
        pytest.skip("kubectl not found: run `make tools` (see shared/TOOLS.md)")
    return Kubectl(server.write_kubeconfig(tmp_path / "kubeconfig", namespace=NS), tmp_path / "cache")


@pytest.fixture
def webhook_port() -> int:
    return free_port()


@pytest.fixture
async def webhook_operator(server: EmulatorServer, clock: FakeClock, webhook_port: int,
                           ) -> AsyncIterator[OperatorHandle]:
    """The operator serving webhooks, the configurations registered; returns once the API server trusts it."""
    register_webhooks(server.emulator, webhook_port)
    handle = OperatorHandle(server, clock, operator_settings(webhook_port=webhook_port))
    await handle.start()
    try:
        await eventually(lambda: all(ca_bundles(server.emulator)), what="caBundle in both configurations")
        await eventually(lambda: handle.runtime.serving is not None and handle.runtime.serving.state.ca_fingerprint,
                         what="a serving certificate from the CA")
        yield handle
    finally:
        await handle.stop()


def generated_pod(app: str = "payments", **spec: Any) -> dict[str, Any]:
    """A Deployment's pod: a generateName, no name."""
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": f"{app}-7d9f8c-", "namespace": NS,
                         "labels": {"app": app, c.INJECT_LABEL: c.INJECT_VALUE}},
            "spec": {"serviceAccountName": "default",
                     "initContainers": [{"name": "setup", "image": "example/setup:1"}],
                     "containers": [{"name": "app", "image": "example/app:1"},
                                    {"name": "sidecar", "image": "example/proxy:1"}],
                     **spec}}


def volume_secret(pod_body: dict[str, Any]) -> str | None:
    for volume in pod_body["spec"].get("volumes") or []:
        if volume["name"] == c.IDENTITY_VOLUME:
            return str(volume["secret"]["secretName"])
    return None


# The real path ------------------------------------------------------------------------------------------


async def test_kubectl_create_of_a_deployment_pod_is_injected_and_its_secret_issued(
    webhook_operator: OperatorHandle, emulator: Emulator, kubectl: Kubectl, tmp_path: pathlib.Path
) -> None:
    emulator.create(identity("payments"))
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(yaml.safe_dump(generated_pod()))
    # kubectl apply needs a name; a generateName pod is created, as a ReplicaSet does.
    created = await kubectl("create", "-f", str(manifest), "-o", "json")
    assert created.returncode == 0, created.stderr
    pod_body = json.loads(created.stdout)
    secret_name = pod_body["metadata"]["annotations"][c.SECRET_NAME_ANNOTATION]
    assert secret_name.startswith("payments-payments-7d9f8c-"), "<identity>-<generateName><suffix>"
    assert secret_name != "payments-" + pod_body["metadata"]["name"], "chosen before the pod had its name"
    assert volume_secret(pod_body) == secret_name
    mount = {"name": c.IDENTITY_VOLUME, "mountPath": c.DEFAULT_MOUNT_PATH, "readOnly": True}
    for container in [*pod_body["spec"]["initContainers"], *pod_body["spec"]["containers"]]:
        assert mount in container["volumeMounts"], container["name"]

    secrets = await eventually(lambda: managed_secrets(emulator, "payments"), what="the Secret")
    secret = secrets[secret_name]
    assert secret["metadata"]["ownerReferences"][0]["uid"] == pod_body["metadata"]["uid"]
    assert secret["metadata"]["labels"][c.POD_LABEL] == pod_body["metadata"]["name"]
    assert secret_data(secret, c.CA_CRT) == trust_bundle(emulator)
    await eventually(lambda: (get_identity(emulator, "payments").get("status") or {}).get("issued") == 1,
                     what="issued=1")
    assert get_identity(emulator, "payments")["status"]["pods"] == 1


async def test_a_pod_no_identity_selects_is_admitted_unchanged_with_a_warning(
    webhook_operator: OperatorHandle, emulator: Emulator, kubectl: Kubectl, tmp_path: pathlib.Path
) -> None:
    emulator.create(identity("payments"))
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(yaml.safe_dump(generated_pod("orders")))
    created = await kubectl("create", "-f", str(manifest), "-o", "json")
    assert created.returncode == 0, created.stderr
    assert "Warning: no MTLSIdentity in this namespace selects this pod (labels app=orders" in created.stderr
    pod_body = json.loads(created.stdout)
    assert volume_secret(pod_body) is None
    assert c.SECRET_NAME_ANNOTATION not in (pod_body["metadata"].get("annotations") or {})


async def test_an_identity_applied_just_before_its_pods_is_found(
    webhook_operator: OperatorHandle, emulator: Emulator, http: Http
) -> None:
    # No waiting for the operator's watch: the webhook asks the API server before it warns.
    status, created = await http.request("POST", f"/apis/{API}/namespaces/{NS}/{c.PLURAL}", identity("payments"))
    assert status == 201, created
    status, pod_body = await http.request("POST", PODS, generated_pod())
    assert status == 201, pod_body
    assert volume_secret(pod_body) is not None


async def test_a_pod_already_carrying_the_volume_keeps_it_and_the_secret_follows_it(
    webhook_operator: OperatorHandle, emulator: Emulator, http: Http
) -> None:
    emulator.create(identity("payments"))
    body = generated_pod(volumes=[{"name": c.IDENTITY_VOLUME, "secret": {"secretName": "payments-handmade"}}])
    body["spec"]["containers"][0]["volumeMounts"] = [{"name": c.IDENTITY_VOLUME, "mountPath": "/tls"}]
    status, pod_body = await http.request("POST", PODS, body)
    assert status == 201, pod_body
    assert pod_body["metadata"]["annotations"][c.SECRET_NAME_ANNOTATION] == "payments-handmade"
    assert [v["name"] for v in pod_body["spec"]["volumes"]] == [c.IDENTITY_VOLUME]
    assert pod_body["spec"]["containers"][0]["volumeMounts"] == [{"name": c.IDENTITY_VOLUME, "mountPath": "/tls"}]
    assert pod_body["spec"]["containers"][1]["volumeMounts"][0]["mountPath"] == c.DEFAULT_MOUNT_PATH
    await eventually(lambda: "payments-handmade" in managed_secrets(emulator, "payments"), what="the Secret")


async def test_a_mount_path_override_is_used_and_a_bad_one_refused(
    webhook_operator: OperatorHandle, emulator: Emulator, http: Http
) -> None:
    emulator.create(identity("payments"))
    body = generated_pod()
    body["metadata"]["annotations"] = {c.MOUNT_PATH_ANNOTATION: "/etc/mtls"}
    status, pod_body = await http.request("POST", PODS, body)
    assert status == 201, pod_body
    assert pod_body["spec"]["containers"][0]["volumeMounts"][0]["mountPath"] == "/etc/mtls"
    body["metadata"]["annotations"] = {c.MOUNT_PATH_ANNOTATION: "/etc/../mtls"}
    status, refused = await http.request("POST", PODS, body)
    assert status == 422, refused
    assert refused["message"] == (
        f'admission webhook "{c.INJECT_WEBHOOK_NAME}" denied the request: pod annotation '
        "mtls.dev/mount-path='/etc/../mtls' is not a usable mount path: it must not contain '..' "
        "(for example /var/run/secrets/mtls.dev)"
    )


# Identities at apply time ----------------------------------------------------------------------------------

BAD_IDENTITIES = [
    ({"duration": "30m"}, "spec.duration: '30m' is out of range; allowed: 1h..8760h"),
    ({"renewBefore": "48h"}, "spec.renewBefore: '48h' must be shorter than the duration (24h)"),
    ({"dnsNames": ["payments.other.svc"]}, "spec.dnsNames[0]: 'payments.other.svc'"),
    ({"privateKey": {"algorithm": "Ed25519", "size": 256}}, "spec.privateKey.size: Ed25519 keys have no size"),
    ({"secretTemplate": {"labels": {"mtls.dev/pod": "x"}}}, "spec.secretTemplate.labels[mtls.dev/pod]:"),
    ({"selector": {"matchExpressions": [{"key": "app", "operator": "In"}]}},
     "spec.selector.matchExpressions[0].values:"),
]


@pytest.mark.parametrize(("spec", "message"), BAD_IDENTITIES, ids=[m.split(":")[0] for _, m in BAD_IDENTITIES])
async def test_kubectl_apply_of_a_bad_identity_is_refused_with_its_message(
    webhook_operator: OperatorHandle, emulator: Emulator, kubectl: Kubectl, tmp_path: pathlib.Path,
    spec: dict[str, Any], message: str
) -> None:
    manifest = tmp_path / "identity.yaml"
    manifest.write_text(yaml.safe_dump(identity("payments", **spec)))
    applied = await kubectl("apply", "-f", str(manifest))
    assert applied.returncode != 0
    assert f'admission webhook "{c.IDENTITIES_WEBHOOK_NAME}" denied the request: {message}' in applied.stderr
    assert emulator.get(API, c.PLURAL, "payments", NS) is None


async def test_an_update_to_a_bad_spec_is_refused_and_the_identity_keeps_its_spec(
    webhook_operator: OperatorHandle, emulator: Emulator, kubectl: Kubectl, tmp_path: pathlib.Path
) -> None:
    manifest = tmp_path / "identity.yaml"
    manifest.write_text(yaml.safe_dump(identity("payments", duration="24h")))
    assert (await kubectl("apply", "-f", str(manifest))).returncode == 0
    manifest.write_text(yaml.safe_dump(identity("payments", duration="10000h")))
    applied = await kubectl("apply", "-f", str(manifest))
    assert "denied the request: spec.duration: '10000h' is out of range" in applied.stderr
    assert get_identity(emulator, "payments")["spec"]["duration"] == "24h"
    # Writes that leave the spec alone pass (labels here; the operator's finalizer likewise).
    labelled = await kubectl("label", f"{c.SHORT_NAME}/payments", "team=shop")
    assert labelled.returncode == 0, labelled.stderr


async def test_an_over_long_identity_name_is_refused(webhook_operator: OperatorHandle, http: Http) -> None:
    name = "x" * 64
    body = identity("x", app="payments")
    body["metadata"]["name"] = name
    status, refused = await http.request("POST", f"/apis/{API}/namespaces/{NS}/{c.PLURAL}", body)
    assert status == 422
    assert refused["message"].endswith(
        "metadata.name: must be at most 63 characters (it is the mtls.dev/identity label of every Secret), not 64"
    )


# The server itself ----------------------------------------------------------------------------------------


def review(obj: Any, *, operation: str = "CREATE", resource: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "c0ffee", "operation": operation, "namespace": NS, "object": obj, "oldObject": None,
                        "resource": resource or {"group": "", "version": "v1", "resource": "pods"},
                        "kind": {"group": "", "version": "v1", "kind": "Pod"},
                        "userInfo": {"username": "system:admin"}, "dryRun": False}}


async def post_review(emulator: Emulator, port: int, path: str, payload: bytes) -> tuple[int, Any]:
    """POST straight to the operator's server, verifying it as the API server does."""
    context = ssl.create_default_context(cadata=webhook_bundle(emulator).decode())
    async with aiohttp.ClientSession() as session, session.post(
        f"https://127.0.0.1:{port}{path}", data=payload, ssl=context,
        server_hostname=f"{SERVICE}.{OPERATOR_NS}.svc", headers={"Content-Type": "application/json"},
    ) as response:
        text = await response.text()
        return response.status, json.loads(text) if text.startswith("{") else text


async def test_malformed_reviews_are_answered_400_and_the_server_keeps_serving(
    webhook_operator: OperatorHandle, emulator: Emulator, webhook_port: int
) -> None:
    emulator.create(identity("payments"))
    no_user = review(generated_pod())
    del no_user["request"]["userInfo"]
    for payload, reason in [
        (b"{not json", "Expecting property name"),
        (b"[]", "malformed AdmissionReview: the body must be a JSON object"),
        (json.dumps({"request": {"object": {}}}).encode(), "malformed AdmissionReview: request.uid must be"),
        (json.dumps(no_user).encode(), "malformed AdmissionReview: request.userInfo must be an object"),
    ]:
        status, answer = await post_review(emulator, webhook_port, "/inject-pod", payload)
        assert status == 400, payload
        assert reason in answer, answer
    unknown = review({}, resource={"group": "apps", "version": "v1", "resource": "deployments"})
    status, _ = await post_review(emulator, webhook_port, "/inject-pod", json.dumps(unknown).encode())
    assert status == 404
    # A well-formed review right after: allowed, with a patch.
    good = json.dumps(review(generated_pod())).encode()
    status, answer = await post_review(emulator, webhook_port, "/inject-pod", good)
    assert status == 200
    assert answer["response"]["allowed"]
    assert answer["response"]["uid"] == "c0ffee"
    assert answer["response"]["patchType"] == "JSONPatch"


async def test_a_pod_with_no_containers_is_admitted_with_no_mounts(
    webhook_operator: OperatorHandle, emulator: Emulator, webhook_port: int
) -> None:
    emulator.create(identity("payments"))
    bare = generated_pod()
    bare["spec"] = {"serviceAccountName": "default"}
    status, answer = await post_review(emulator, webhook_port, "/inject-pod", json.dumps(review(bare)).encode())
    assert status == 200
    assert answer["response"]["allowed"]
    ops = json.loads(base64.b64decode(answer["response"]["patch"]))
    assert {op["path"] for op in ops} == {"/metadata/annotations", "/spec/volumes"}
    assert not any("volumeMounts" in json.dumps(op) for op in ops)


# Failure policy -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("policy", "created"), [("Fail", False), ("Ignore", True)])
async def test_webhook_down_follows_the_failure_policy(
    emulator: Emulator, http: Http, policy: str, created: bool
) -> None:
    register_webhooks(emulator, free_port(), failurePolicy=policy)  # nothing listens there
    status, answer = await http.request("POST", PODS, generated_pod())
    if created:
        assert status == 201, answer
        assert volume_secret(answer) is None
    else:
        assert status == 500
        assert f'failed calling webhook "{c.INJECT_WEBHOOK_NAME}"' in answer["message"]
    # Pods that do not opt in never reach the webhook.
    plain = generated_pod()
    del plain["metadata"]["labels"][c.INJECT_LABEL]
    status, answer = await http.request("POST", PODS, plain)
    assert status == 201, answer


async def test_until_the_ca_exists_the_webhook_is_untrusted_then_it_serves(
    server: EmulatorServer, clock: FakeClock, http: Http, webhook_port: int
) -> None:
    emulator = server.emulator
    # The operator's namespace does not exist yet, so it cannot create its CA: it serves a placeholder.
    late = "mtls-late"
    emulator.create(identity("payments"))
    register_webhooks(emulator, webhook_port, namespace=late)
    handle = OperatorHandle(server, clock, operator_settings(webhook_port=webhook_port, namespace=late))
    await handle.start()
    try:
        await eventually(lambda: listening(webhook_port), what="the admission server listening")
        status, answer = await http.request("POST", PODS, generated_pod())
        assert status == 500, answer
        assert "tls: failed to verify certificate" in answer["message"], answer
        assert ca_bundles(emulator) == [None, None], "no CA, nothing to publish"
        emulator.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": late}})
        await eventually(lambda: all(ca_bundles(emulator)), what="the caBundle once the CA exists")
        await eventually(lambda: handle.runtime.serving is not None and handle.runtime.serving.state.ca_fingerprint,
                         what="the serving certificate from the CA")
        status, answer = await http.request("POST", PODS, generated_pod())
        assert status == 201, answer
        assert volume_secret(answer) is not None
    finally:
        await handle.stop()


# caBundle upkeep ----------------------------------------------------------------------------------------


async def test_the_operator_keeps_the_ca_bundle_current(
    webhook_operator: OperatorHandle, emulator: Emulator, http: Http
) -> None:
    expected = ca_bundle_text(webhook_bundle(emulator))
    assert ca_bundles(emulator) == [expected, expected]
    # Someone (a helm upgrade) resets one: the operator puts it back, other fields untouched.
    _, validating = webhook_configurations(configuration=CONFIGURATION, service=SERVICE, namespace=OPERATOR_NS)
    reset = {**validating["webhooks"][0], "timeoutSeconds": 3}
    status, _ = await http.request("PATCH", f"{VALIDATING}/{CONFIGURATION}", {"webhooks": [reset]})
    assert status == 200
    await eventually(lambda: ca_bundles(emulator) == [expected, expected], what="the caBundle restored")
    stored = emulator.get("admissionregistration.k8s.io/v1", KINDS[1], CONFIGURATION)
    assert stored is not None
    assert stored["webhooks"][0]["timeoutSeconds"] == 3
    # Configurations created later (a chart installed after the operator started) are filled in too.
    emulator.delete("admissionregistration.k8s.io/v1", KINDS[0], CONFIGURATION)
    mutating, _ = webhook_configurations(configuration=CONFIGURATION, service=SERVICE, namespace=OPERATOR_NS)
    emulator.create(mutating)
    await eventually(lambda: ca_bundles(emulator) == [expected, expected], what="the new configuration filled in")



async def test_the_serving_certificate_is_renewed_at_two_thirds_of_its_life(
    webhook_operator: OperatorHandle, clock: FakeClock
) -> None:
    serving = webhook_operator.runtime.serving
    assert serving is not None
    first = serving.state
    assert first.not_after - first.not_before == timedelta(hours=24, minutes=1)  # backdated a minute
    clock.advance(timedelta(hours=15))
    await asyncio.sleep(1.0)  # two CA refresh intervals of this operator: nothing is due yet
    assert serving.state == first
    clock.advance(timedelta(hours=1, minutes=1))
    renewed = await eventually(lambda: serving.state if serving.state != first else None, what="a renewal")
    assert renewed.ca_fingerprint == first.ca_fingerprint
    assert renewed.not_before == clock.now - timedelta(minutes=1)


async def rotate_admitting_pods(
    emulator: Emulator, http: Http, clock: FakeClock, secret_name: str
) -> tuple[list[str], list[str]]:
    """Ask the CA in ``secret_name`` to rotate and create a pod through the webhook at every step until
    its phase is Idle again: (the phases seen, the pod creates refused). The clock moves in small steps
    so that certificates dated by it are valid in real time for the emulator's TLS check."""
    def phase_of(secret: dict[str, Any]) -> str:
        return str((secret.get("metadata", {}).get("annotations") or {}).get("mtls.dev/rotation-phase", ""))

    # Every version of the CA Secret, from a watch of it (polling alone can miss a short phase on a loaded
    # machine): the phases are read from those versions, the refusals at each step of the polling loop.
    watcher, _ = emulator.watch(emulator.resource("v1", "secrets"), OPERATOR_NS, parse_label_selector(None),
                                parse_field_selector(f"metadata.name={secret_name}"), None)
    rotate = {"metadata": {"annotations": {"mtls.dev/rotate": "true"}}}
    emulator.patch("v1", "secrets", secret_name, OPERATOR_NS, rotate)
    refused: list[str] = []
    phases: list[str] = []

    def follow() -> None:
        while not watcher.queue.empty():
            item = watcher.queue.get_nowait()
            if item is not None and (phase := phase_of(item[1])) and (not phases or phases[-1] != phase):
                phases.append(phase)

    try:
        for _ in range(300):
            follow()
            if len(phases) > 1 and phases[-1] == "Idle":
                break
            phase = phase_of(emulator.get("v1", "secrets", secret_name, OPERATOR_NS) or {})
            status, body = await http.request("POST", PODS, generated_pod())
            if status != 201:
                refused.append(f"{phase}: {status} {body.get('message')}")
            clock.advance(timedelta(milliseconds=500))
            await asyncio.sleep(0.1)
    finally:
        emulator.unwatch(watcher)
    return phases, refused


async def test_a_pod_ca_rotation_leaves_the_webhooks_ca_and_certificate_alone(
    server: EmulatorServer, emulator: Emulator, clock: FakeClock, http: Http, webhook_port: int
) -> None:
    register_webhooks(emulator, webhook_port)
    handle = OperatorHandle(server, clock, operator_settings(webhook_port=webhook_port,
                                                             ca_propagation_delay=timedelta(0)))
    await handle.start()
    try:
        await eventually(lambda: all(ca_bundles(emulator)), what="caBundle in both configurations")
        serving = handle.runtime.serving
        assert serving is not None
        await eventually(lambda: serving.state.ca_fingerprint, what="a serving certificate from the webhook CA")
        served = serving.state
        hooks_trust = ca_bundles(emulator)
        emulator.create(identity("payments"))
        old = trust_bundle(emulator)
        phases, refused = await rotate_admitting_pods(emulator, http, clock, c.DEFAULT_CA_SECRET)
        assert refused == []
        assert phases[-4:] == ["Distributing", "Reissuing", "Retiring", "Idle"], phases
        assert trust_bundle(emulator) != old
        # The webhooks have a CA of their own: nothing about them moved.
        assert ca_bundles(emulator) == hooks_trust == [ca_bundle_text(webhook_bundle(emulator))] * 2
        assert serving.state == served
        status, body = await http.request("POST", PODS, generated_pod())
        assert status == 201, body
    finally:
        await handle.stop()


async def test_the_webhook_ca_rotates_without_refusing_a_pod(
    server: EmulatorServer, emulator: Emulator, clock: FakeClock, http: Http, webhook_port: int
) -> None:
    register_webhooks(emulator, webhook_port)
    handle = OperatorHandle(server, clock, operator_settings(webhook_port=webhook_port))
    await handle.start()
    try:
        await eventually(lambda: all(ca_bundles(emulator)), what="caBundle in both configurations")
        serving = handle.runtime.serving
        assert serving is not None
        await eventually(lambda: serving.state.ca_fingerprint, what="a serving certificate from the webhook CA")
        emulator.create(identity("payments"))
        old_hooks, old_pods, old_serving = webhook_bundle(emulator), trust_bundle(emulator), serving.state
        phases, refused = await rotate_admitting_pods(emulator, http, clock, c.DEFAULT_WEBHOOK_CA_SECRET)
        assert refused == []
        assert phases == ["Idle", "Distributing", "Reissuing", "Idle"], phases
        new_hooks = parse_pem_certificates(webhook_bundle(emulator))
        assert len(new_hooks) == 1, "the old webhook CA has left"
        assert new_hooks[0] not in parse_pem_certificates(old_hooks)
        # The configurations follow the Secret's last write (published right after it, which the phase shows).
        await eventually(lambda: ca_bundles(emulator) == [ca_bundle_text(webhook_bundle(emulator))] * 2,
                         what="both caBundles on the new webhook CA alone")
        assert serving.state.ca_fingerprint == fingerprint(new_hooks[0]) != old_serving.ca_fingerprint
        assert trust_bundle(emulator) == old_pods, "the pods' CA is not touched"
        secret = emulator.get("v1", "secrets", c.DEFAULT_WEBHOOK_CA_SECRET, OPERATOR_NS)
        assert secret is not None
        assert "mtls.dev/rotate" not in secret["metadata"]["annotations"]
        assert "next.crt" not in secret["data"]
        status, body = await http.request("POST", PODS, generated_pod())
        assert status == 201, body
    finally:
        await handle.stop()


async def test_pod_trust_and_webhook_trust_share_no_ca(
    webhook_operator: OperatorHandle, emulator: Emulator, http: Http, clock: FakeClock
) -> None:
    emulator.create(identity("payments"))
    status, created = await http.request("POST", PODS, generated_pod())
    assert status == 201, created
    secret_name = created["metadata"]["annotations"][c.SECRET_NAME_ANNOTATION]
    secret = (await eventually(lambda: managed_secrets(emulator, "payments"), what="the Secret"))[secret_name]
    config_map = await eventually(lambda: emulator.get("v1", "configmaps", c.TRUST_BUNDLE_CONFIGMAP, NS),
                                  what="the trust bundle ConfigMap")
    hooks = {fingerprint(cert) for cert in parse_pem_certificates(webhook_bundle(emulator))}
    assert {ca_bundle_text(webhook_bundle(emulator))} == set(ca_bundles(emulator))
    for pod_trust in (secret_data(secret, c.CA_CRT) or b"", config_map["data"][c.CA_CRT].encode(),
                      trust_bundle(emulator)):
        assert hooks.isdisjoint(fingerprint(cert) for cert in parse_pem_certificates(pod_trust))
        assert pod_trust.strip()

    # A pod certificate naming the webhook Service (as if a policy bug had let a tenant ask for it),
    # served in place of the operator: the API server refuses it, since the caBundle trusts only the
    # webhook CA.
    pod_ca_secret = emulator.get("v1", "secrets", c.DEFAULT_CA_SECRET, OPERATOR_NS)
    assert pod_ca_secret is not None
    pod_ca = load_ca(secret_data(pod_ca_secret, c.TLS_CRT) or b"", secret_data(pod_ca_secret, c.TLS_KEY) or b"",
                     secret_data(pod_ca_secret, c.CA_CRT), clock.now)
    impostor = issue_leaf(pod_ca, LeafRequest(
        spiffe_id=f"spiffe://cluster.local/ns/{NS}/sa/default", dns_names=(f"{SERVICE}.{OPERATOR_NS}.svc",),
        usages=frozenset(Usage), key=KeySpec(), duration=timedelta(hours=1)), clock.now)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    load_key_pair(context, impostor)
    impostor_server = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0, ssl=context)
    try:
        impostor_port = impostor_server.sockets[0].getsockname()[1]
        emulator.route_service(OPERATOR_NS, SERVICE, 443, f"127.0.0.1:{impostor_port}")
        status, refused = await http.request("POST", PODS, generated_pod())
        assert status == 500, refused
        assert "tls: failed to verify certificate" in refused["message"], refused
    finally:
        impostor_server.close()
        await impostor_server.wait_closed()
    # The same pod certificate is a good one for pods: only the webhooks refuse it.
    verify_leaf(impostor.cert, [], parse_pem_certificates(trust_bundle(emulator)), clock.now)
    with pytest.raises(ChainError):
        verify_leaf(impostor.cert, [], parse_pem_certificates(webhook_bundle(emulator)), clock.now)


async def test_reviews_sent_straight_to_the_webhook_cost_a_bounded_number_of_api_lookups(
    webhook_operator: OperatorHandle, emulator: Emulator, webhook_port: int
) -> None:
    """Anyone who reaches the webhook port may send reviews for pods no identity selects; each would
    make the operator list identities under its own credentials. Past a small budget it does not."""
    await eventually(lambda: listening(webhook_port), what="webhook serving")
    before = emulator.requests.count(verb="list", resource="mtlsidentities")
    started = time.monotonic()
    unselected = {"apiVersion": "v1", "kind": "Pod",
                  "metadata": {"name": "probe", "namespace": "elsewhere",
                               "labels": {"app": "nothing", c.INJECT_LABEL: c.INJECT_VALUE}},
                  "spec": {"containers": [{"name": "app", "image": "x"}]}}
    payload = json.dumps(review(unselected)).encode()
    for _ in range(100):
        status, answer = await post_review(emulator, webhook_port, "/inject-pod", payload)
        assert status == 200
        assert answer["response"]["allowed"] is True
    lookups = emulator.requests.count(verb="list", resource="mtlsidentities") - before
    limiter = webhook_operator.runtime.identity_lookups
    assert lookups <= limiter.burst + limiter.rate * (time.monotonic() - started) + 1
