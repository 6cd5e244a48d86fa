"""Parity: the same requests sent to the emulator (``kube_emulator``) and to the real API server,
their answers diffed — status codes, reasons, field paths, messages, and the fields of stored objects
that the operator, kubectl and the demo read.

The requests are the ones the operator and kubectl rely on (create, get, list with selectors,
merge and JSON patches, the status subresource, optimistic concurrency, preconditions, finalizers,
generateName) and their error cases. Every difference is either fixed in the emulator or listed in
KNOWN_DIFFERENCES below, with why; the same list is in the emulator's module docstring. A listed
difference that no longer differs fails too, so that the list stays true.
"""

from __future__ import annotations

import base64
import datetime
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from kube_emulator import EmulatorThread
from mtls_operator.demo.run import project_crds
from tests.e2e.client import Answer, Client
from tests.e2e.conftest import Cluster, Release, pod_certificate_api
from tests.e2e.kubelet import ctb_path, generate_key, pcr_path, proof_of_possession, serves, stub_pkcs10
from tests.e2e.signing import SigningCA, condition, issued_status, leaf_cert, now, pem, stamp

pytestmark = pytest.mark.e2e
NS = "parity"
IDS = f"/apis/mtls.dev/v1alpha1/namespaces/{NS}/mtlsidentities"
SECRETS = f"/api/v1/namespaces/{NS}/secrets"
CONFIGMAPS = f"/api/v1/namespaces/{NS}/configmaps"
PODS = f"/api/v1/namespaces/{NS}/pods"
LEASES = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases"
HOUR = datetime.timedelta(hours=1)
CERT = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="  # base64 of a PEM header: any bytes will do here

UID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

# (step id, compared field) -> why the emulator answers differently (also in its module docstring).
KNOWN_DIFFERENCES: dict[tuple[str, str], str] = {
    ("pod-spec-immutable", "message-has-internal-diff"):
        "kube-apiserver appends a diff of its internal (Go) pod spec to this message; the emulator, which has no "
        "internal types, gives the same message without it",
}


def _identity(name: str = "payments", **spec: Any) -> dict[str, Any]:
    body_spec: dict[str, Any] = {"selector": {"matchLabels": {"app": name}}}
    body_spec.update(spec)
    return {"apiVersion": "mtls.dev/v1alpha1", "kind": "MTLSIdentity", "metadata": {"name": name, "namespace": NS},
            "spec": body_spec}


@dataclass(frozen=True)
class Step:
    id: str
    method: str
    path: str
    body: Any = None
    content_type: str = "application/json"
    # For a success: the fields of the answer to compare (dotted paths); errors compare the Status.
    fields: tuple[str, ...] = ("kind", "apiVersion", "metadata.name", "metadata.namespace")
    query: dict[str, str] = field(default_factory=dict)


MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"

STEPS = [
    Step("namespace-missing", "GET", "/api/v1/namespaces/parity-missing"),
    Step("identity-create", "POST", IDS, _identity(), fields=(
        "kind", "apiVersion", "metadata.name", "metadata.generation", "spec")),
    Step("identity-create-existing", "POST", IDS, _identity()),
    Step("identity-get", "GET", f"{IDS}/payments", fields=("kind", "metadata.name", "metadata.generation", "spec")),
    Step("identity-get-missing", "GET", f"{IDS}/missing"),
    Step("identity-schema-invalid", "POST", IDS, _identity("bad-schema", duration="forever", usages=["bogus"])),
    Step("identity-selector-missing", "POST", IDS, {**_identity("no-selector"), "spec": {"dnsNames": ["x"]}}),
    Step("identity-name-invalid", "POST", IDS, _identity("Bad_Name")),
    Step("identity-unknown-field-strict", "POST", IDS, _identity("strict", colour="blue"),
         query={"fieldValidation": "Strict"}),
    Step("identity-merge-patch", "PATCH", f"{IDS}/payments", {"spec": {"dnsNames": ["payments"]}}, MERGE,
         fields=("metadata.generation", "spec")),
    Step("identity-status-patch", "PATCH", f"{IDS}/payments/status", {"status": {"pods": 1, "issued": 0}}, MERGE,
         fields=("metadata.generation", "status")),
    Step("identity-json-patch-test-fails", "PATCH", f"{IDS}/payments",
         [{"op": "test", "path": "/metadata/resourceVersion", "value": "1"},
          {"op": "add", "path": "/metadata/finalizers", "value": ["mtls.dev/x"]}], JSON_PATCH),
    Step("identity-update-stale", "PUT", f"{IDS}/payments",
         {**_identity(), "metadata": {"name": "payments", "namespace": NS, "resourceVersion": "1"}}),
    Step("identity-update-no-version", "PUT", f"{IDS}/payments", _identity(), fields=("metadata.generation",)),
    Step("identity-list-selector", "GET", IDS, query={"labelSelector": "team=none"}, fields=("kind", "items")),
    Step("identity-list-bad-selector", "GET", IDS, query={"labelSelector": "a b"}),
    Step("identity-list-field-selector", "GET", IDS, query={"fieldSelector": "metadata.name=payments"},
         fields=("kind", "items.0.metadata.name")),
    Step("secret-tls-without-key", "POST", SECRETS, {"metadata": {"name": "tls"}, "type": "kubernetes.io/tls",
                                                      "data": {"tls.crt": CERT}}),
    Step("secret-not-base64", "POST", SECRETS, {"metadata": {"name": "b64"}, "data": {"x": "not base64!"}}),
    Step("secret-create", "POST", SECRETS, {"metadata": {"name": "plain"}, "data": {"x": CERT}},
         fields=("kind", "metadata.name", "type", "data")),
    Step("secret-delete-wrong-uid", "DELETE", f"{SECRETS}/plain",
         {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": "0000-not-the-uid"}}),
    Step("secret-delete-missing", "DELETE", f"{SECRETS}/missing"),
    Step("configmap-label-invalid", "POST", CONFIGMAPS, {"metadata": {"name": "cm", "labels": {"app": "-bad-"}}}),
    Step("configmap-name-too-long", "POST", CONFIGMAPS, {"metadata": {"name": "c" * 254}}),
    Step("lease-missing", "GET", f"{LEASES}/mtls-operator"),
    Step("lease-create", "POST", LEASES, {"metadata": {"name": "mtls-operator"}, "spec": {
        "holderIdentity": "a", "leaseDurationSeconds": 15}}, fields=("kind", "metadata.name", "spec.holderIdentity")),
    Step("pod-create", "POST", PODS, {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
         fields=("kind", "metadata.name", "spec.serviceAccountName", "status.phase")),
    Step("pod-spec-immutable", "PATCH", f"{PODS}/p", {"spec": {"serviceAccountName": "other"}}, MERGE),
    Step("identity-finalizer", "PATCH", f"{IDS}/payments", {"metadata": {"finalizers": ["mtls.dev/test"]}}, MERGE,
         fields=("metadata.finalizers",)),
    Step("identity-delete-with-finalizer", "DELETE", f"{IDS}/payments", fields=("kind", "metadata.finalizers")),
    Step("identity-finalizer-removed", "PATCH", f"{IDS}/payments", {"metadata": {"finalizers": None}}, MERGE,
         fields=("kind", "metadata.name")),
    Step("identity-gone", "GET", f"{IDS}/payments"),
]


# Older releases format the values in field errors as Go did then (``Invalid value: "null"`` for a
# nil, ``0x0`` for a zero int64); the emulator follows the newest release (1.37). The format changed
# with apimachinery v0.34's field.Error.ErrorBody: measured different on 1.30.4, the same on 1.36.3.
OLDER_RELEASE_DIFFERENCES: dict[tuple[str, str], str] = {
    (step, key): "value formatting of field errors in releases before 1.34"
    for step in ("identity-schema-invalid", "identity-selector-missing", "identity-update-no-version")
    for key in ("message", "details.causes")
}
NEWEST_FORMAT_MINOR = 34


def _pick(body: Any, dotted: str) -> Any:
    value = body
    for part in dotted.split("."):
        if isinstance(value, list) and part.isdigit():
            value = value[int(part)] if int(part) < len(value) else "<missing>"
        elif isinstance(value, dict):
            value = value.get(part, "<missing>")
        else:
            return "<missing>"
    return value


def normalize(step: Step, answer: Answer) -> dict[str, Any]:
    """What is compared of one answer: the Status of an error, the chosen fields of a success."""
    seen: dict[str, Any] = {"code": answer.status}
    body = answer.body
    if body.get("kind") == "Status":
        details = body.get("details") or {}
        message = UID.sub("<uid>", str(body.get("message")))
        # kube-apiserver appends a diff of its internal pod spec to this one message (see KNOWN_DIFFERENCES).
        message, _, diff = message.partition("\n")
        seen["message-has-internal-diff"] = bool(diff)
        message = _sorted_aggregate(message, details.get("causes") or [])
        seen.update({"status": body.get("status"), "reason": body.get("reason"), "message": message,
                     "details.name": details.get("name"), "details.group": details.get("group"),
                     "details.kind": details.get("kind"),
                     "details.causes": sorted(json.dumps({**cause, "message": cause.get("message", "").partition(
                         "\n")[0]}, sort_keys=True) for cause in details.get("causes") or [])})
        return seen
    for dotted in step.fields:
        value = _pick(body, dotted)
        if dotted == "items" and isinstance(value, list):
            value = [item["metadata"]["name"] for item in value]
        seen[dotted] = value
    return seen


def _sorted_aggregate(message: str, causes: list[dict[str, Any]]) -> str:
    """An Invalid message's ``[a, b]`` list in sorted order: kube-openapi validates an object's properties
    in Go map order, so the real API server lists the errors of one request in a random order."""
    parts = [f"{cause['field']}: {cause['message']}" if cause.get("field") else cause.get("message", "")
             for cause in causes]
    head, bracket, _ = message.partition(": [")
    if len(parts) < 2 or not bracket or (message != f"{head}: [{', '.join(parts)}]" and not all(
            part in message for part in parts)):
        return message
    return f"{head}: [{', '.join(sorted(parts))}]"


@pytest.fixture(scope="module")
def emulator_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    with EmulatorThread(crds=project_crds()) as server:
        kubeconfig = server.write_kubeconfig(tmp_path_factory.mktemp("emulator") / "kubeconfig")
        client = Client(str(kubeconfig))
        yield client
        client.close()


def _run(client: Client, steps: list[Step] = STEPS, namespace: str = NS) -> dict[str, dict[str, Any]]:
    created = client.create("/api/v1/namespaces", {"metadata": {"name": namespace}})
    assert created.ok, created.body
    answers = {}
    for step in steps:
        answer = client.request(step.method, step.path, step.body, query=step.query or None,
                                content_type=step.content_type)
        answers[step.id] = normalize(step, answer)
    return answers


def _compare(cluster: Cluster, steps: list[Step], real: dict[str, dict[str, Any]],
             emulated: dict[str, dict[str, Any]], known: dict[tuple[str, str], str]) -> None:
    differences: dict[tuple[str, str], tuple[Any, Any]] = {}
    for step in steps:
        for key in sorted(set(real[step.id]) | set(emulated[step.id])):
            want, got = real[step.id].get(key, "<absent>"), emulated[step.id].get(key, "<absent>")
            if want != got:
                differences[(step.id, key)] = (want, got)
    unexplained = {key: value for key, value in differences.items() if key not in known}
    report = "\n".join(f"  {step} {key}:\n    api server: {want!r}\n    emulator:   {got!r}"
                       for (step, key), (want, got) in unexplained.items())
    assert not unexplained, f"the emulator differs from kube-apiserver:\n{report}"
    stale = sorted(set(known) - set(differences))
    assert not stale, f"listed as different but answered the same now (remove them here and in the docstring): {stale}"


# ------------------------------------------------------------------ metadata-only lists and watches
# What the operator's Secret and Namespace watches (k8s/watch.py) ask for: a list takes the list type,
# a watch the object type. The emulator must answer both, and the wrong pairings, as kube-apiserver does.
META_NS = "parity-meta"
META_SECRETS = f"/api/v1/namespaces/{META_NS}/secrets"
AS_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
AS_OBJECT = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
META_LABEL = "parity=meta"
META_WATCH_SECONDS = "2"
NUMBER = re.compile(r"\d+")


def _shape(obj: Any) -> dict[str, Any]:
    """What is compared of one object of a metadata-only answer: its type, its top-level fields (no
    data), the metadata the operator reads, and which metadata fields are set (not their values)."""
    if not isinstance(obj, dict):
        return {"not-an-object": repr(obj)}
    metadata = obj.get("metadata") or {}
    if obj.get("kind") == "Status":
        return {"kind": "Status", "code": obj.get("code"), "reason": obj.get("reason"),
                "message": NUMBER.sub("<n>", str(obj.get("message")))}
    return {"kind": obj.get("kind"), "apiVersion": obj.get("apiVersion"), "fields": sorted(obj),
            "name": metadata.get("name"), "namespace": metadata.get("namespace"), "labels": metadata.get("labels"),
            "annotations": metadata.get("annotations"),
            "set": sorted(key for key in ("uid", "resourceVersion", "creationTimestamp", "generation")
                          if metadata.get(key) is not None)}


def _list_shape(answer: Answer) -> dict[str, Any]:
    if answer.body.get("kind") == "Status":
        return {"code": answer.status, **_shape(answer.body)}
    return {"code": answer.status, "kind": answer.body.get("kind"), "apiVersion": answer.body.get("apiVersion"),
            "has-resourceVersion": bool((answer.body.get("metadata") or {}).get("resourceVersion")),
            "items": [_shape(item) for item in answer.body.get("items") or []]}


def _events(status: int, events: list[dict[str, Any]]) -> dict[str, Any]:
    """A watch's events in order, bookmarks apart: whether one came and what the first looked like."""
    shown = [{"type": event.get("type"), **_shape(event.get("object"))}
             for event in events if event.get("type") != "BOOKMARK"]
    bookmarks = [event for event in events if event.get("type") == "BOOKMARK"]
    first = bookmarks[0].get("object") if bookmarks else None
    return {"code": status, "events": shown, "bookmark": bool(bookmarks),
            "bookmark-object": None if first is None else {
                "kind": first.get("kind"), "apiVersion": first.get("apiVersion"), "fields": sorted(first),
                "metadata": sorted(first.get("metadata") or {}),
                "resourceVersion-set": bool((first.get("metadata") or {}).get("resourceVersion"))}}


def _run_metadata_only(client: Client) -> dict[str, Any]:
    assert client.create("/api/v1/namespaces", {"metadata": {"name": META_NS}}).ok
    labels = {"parity": "meta"}
    for name, secret_labels in (("a", labels), ("other", None)):
        created = client.create(META_SECRETS, {"metadata": {"name": name, "labels": secret_labels},
                                               "data": {"tls.key": CERT}})
        assert created.ok, created.body
    seen: dict[str, Any] = {}
    listing = client.request("GET", META_SECRETS, query={"labelSelector": META_LABEL}, accept=AS_LIST)
    seen["list"] = _list_shape(listing)
    seen["list-as-object"] = _list_shape(client.request("GET", META_SECRETS, query={"labelSelector": META_LABEL},
                                                        accept=AS_OBJECT))
    seen["get"] = _list_shape(client.request("GET", f"{META_SECRETS}/a", accept=AS_OBJECT))
    seen["get-as-list"] = _list_shape(client.request("GET", f"{META_SECRETS}/a", accept=AS_LIST))
    since = str(listing.body["metadata"]["resourceVersion"])
    # What happens after the list: a Secret edited, one created, one deleted (the watch replays them).
    assert client.patch(f"{META_SECRETS}/a", {"metadata": {"annotations": {"edited": "yes"}}}).ok
    assert client.create(META_SECRETS, {"metadata": {"name": "b", "labels": labels}, "data": {"x": CERT}}).ok
    assert client.delete(f"{META_SECRETS}/a").ok
    query = {"labelSelector": META_LABEL, "resourceVersion": since, "allowWatchBookmarks": "true",
             "timeoutSeconds": META_WATCH_SECONDS}
    seen["watch"] = _events(*client.watch(META_SECRETS, query, accept=AS_OBJECT))
    # Asked for the list type, a watch's stream ends at its first event without writing it (a watch
    # event carries one object, which the API server cannot turn into a list).
    seen["watch-as-list"] = _events(*client.watch(META_SECRETS, query, accept=AS_LIST))
    # The state first, then a bookmark that marks its end (annotated k8s.io/initial-events-end).
    initial = {"labelSelector": META_LABEL, "sendInitialEvents": "true", "resourceVersionMatch": "NotOlderThan",
               "allowWatchBookmarks": "true", "timeoutSeconds": META_WATCH_SECONDS}
    seen["watch-initial-events"] = _events(*client.watch(META_SECRETS, initial, accept=AS_OBJECT))
    client.delete(f"/api/v1/namespaces/{META_NS}")
    return seen


def _run_metadata_only(client: Client) -> dict[str, Any]:
    assert client.create("/api/v1/namespaces", {"metadata": {"name": META_NS}}).ok
    labels = {"parity": "meta"}
    for name, secret_labels in (("a", labels), ("other", None)):
        created = client.create(META_SECRETS, {"metadata": {"name": name, "labels": secret_labels},
                                               "data": {"tls.key": CERT}})
        assert created.ok, created.body
    seen: dict[str, Any] = {}
    listing = client.request("GET", META_SECRETS, query={"labelSelector": META_LABEL}, accept=AS_LIST)
    seen["list"] = _list_shape(listing)
    seen["list-as-object"] = _list_shape(client.request("GET", META_SECRETS, query={"labelSelector": META_LABEL},
                                                        accept=AS_OBJECT))
    seen["get"] = _list_shape(client.request("GET", f"{META_SECRETS}/a", accept=AS_OBJECT))
    seen["get-as-list"] = _list_shape(client.request("GET", f"{META_SECRETS}/a", accept=AS_LIST))
    since = str(listing.body["metadata"]["resourceVersion"])
    # What happens after the list: a Secret edited, one created, one deleted (the watch replays them).
    assert client.patch(f"{META_SECRETS}/a", {"metadata": {"annotations": {"edited": "yes"}}}).ok
    assert client.create(META_SECRETS, {"metadata": {"name": "b", "labels": labels}, "data": {"x": CERT}}).ok
    assert client.delete(f"{META_SECRETS}/a").ok
    query = {"labelSelector": META_LABEL, "resourceVersion": since, "allowWatchBookmarks": "true",
             "timeoutSeconds": META_WATCH_SECONDS}
    seen["watch"] = _events(*client.watch(META_SECRETS, query, accept=AS_OBJECT))
    # Asked for the list type, a watch's stream ends at its first event without writing it (a watch
    # event carries one object, which the API server cannot turn into a list).
    seen["watch-as-list"] = _events(*client.watch(META_SECRETS, query, accept=AS_LIST))
    # The state first, then a bookmark that marks its end (annotated k8s.io/initial-events-end).
    initial = {"labelSelector": META_LABEL, "sendInitialEvents": "true", "resourceVersionMatch": "NotOlderThan",
               "allowWatchBookmarks": "true", "timeoutSeconds": META_WATCH_SECONDS}
    seen["watch-initial-events"] = _events(*client.watch(META_SECRETS, initial, accept=AS_OBJECT))
    client.delete(f"/api/v1/namespaces/{META_NS}")
    return seen


def test_metadata_only_lists_and_watches_answer_as_the_api_server(cluster: Cluster, tmp_path: Any) -> None:
    """A 410 (a watch from a resourceVersion older than the history) is left out: kube-apiserver's watch
    cache replays from any version it has seen since it started, so no short test can expire one."""
    real = _run_metadata_only(cluster.api)
    with EmulatorThread() as server:
        client = Client(str(server.write_kubeconfig(tmp_path / "kubeconfig")))
        try:
            emulated = _run_metadata_only(client)
        finally:
            client.close()
    assert real["watch"]["events"], "the API server replayed the changes after the list"
    if real["watch-initial-events"]["code"] != 200:
        # Releases with the WatchList gate off by default (before 1.32, and 1.33) refuse sendInitialEvents;
        # the emulator answers as the newer ones do, so the step is not compared there.
        assert real["watch-initial-events"]["code"] == 422, real["watch-initial-events"]
        del real["watch-initial-events"], emulated["watch-initial-events"]
    else:
        assert real["watch-initial-events"]["bookmark"], "the API server marked the end of the initial events"
    differences = {step: (real[step], emulated[step]) for step in real if real[step] != emulated[step]}
    report = "\n".join(f"  {step}:\n    api server: {want!r}\n    emulator:   {got!r}"
                       for step, (want, got) in differences.items())
    assert not differences, f"the emulator's metadata-only answers differ from kube-apiserver:\n{report}"


def test_the_emulator_answers_as_the_api_server(cluster: Cluster, release: Release, emulator_client: Client) -> None:
    real = _run(cluster.api)
    emulated = _run(emulator_client)
    cluster.api.delete(f"/api/v1/namespaces/{NS}")
    known = dict(KNOWN_DIFFERENCES)
    minor = int(str(cluster.api.get("/version")["minor"]).rstrip("+"))
    if minor < NEWEST_FORMAT_MINOR:
        known.update(OLDER_RELEASE_DIFFERENCES)
    _compare(cluster, STEPS, real, emulated, known)


# -- PodCertificateRequests and ClusterTrustBundles --------------------------------------------------------
# The requests of a kubelet (as the admin here: the emulator has no node authorization, and NodeRestriction
# is tests/e2e/test_pod_certificate_requests.py's) and of a signer, with every status validation rule the
# operator's signer must meet, and the ClusterTrustBundle rules of its publisher. The bodies carry
# certificates valid from now: they are made once and sent to both servers within the 5 minutes the API
# server allows between a leaf's notBefore and its clock.
PCR_NS = "parity-pcr"
PCR_SIGNER = "parity.mtls.dev/signer"
# (step id, compared field) -> why the emulator answers differently (also in its module docstring).
POD_CERTIFICATE_DIFFERENCES: dict[tuple[str, str], str] = {}


def pod_certificate_steps(version: str) -> list[Step]:
    pcrs = pcr_path(version, PCR_NS)
    bundles = ctb_path(version)
    ca, other = SigningCA.create("parity signer"), SigningCA.create("parity other")
    key = generate_key("ECDSAP256")
    start = now()
    leaf = leaf_cert(ca, key, 2 * HOUR, start)
    right = issued_status([leaf, ca.cert])

    def request(name: str, **spec: Any) -> dict[str, Any]:
        body_spec: dict[str, Any] = {
            "signerName": PCR_SIGNER, "podName": "web-0", "podUID": "4b5b4d1e-0000-4000-8000-00000000000a",
            "serviceAccountName": "default", "serviceAccountUID": "4b5b4d1e-0000-4000-8000-00000000000b",
            "nodeName": "node-1", "nodeUID": "4b5b4d1e-0000-4000-8000-00000000000c",
            "maxExpirationSeconds": 86400, "stubPKCS10Request": base64.b64encode(stub_pkcs10(key)).decode()}
        body_spec.update(spec)
        return {"apiVersion": f"certificates.k8s.io/{version}", "kind": "PodCertificateRequest",
                "metadata": {"name": name, "namespace": PCR_NS}, "spec": {k: v for k, v in body_spec.items()
                                                                          if v is not None}}

    def status(name: str, body: dict[str, Any]) -> tuple[str, str, dict[str, Any], str]:
        return "PATCH", f"{pcrs}/{name}/status", {"status": body}, MERGE

    def bundle(name: str, anchors: str, signer: str | None = PCR_SIGNER) -> dict[str, Any]:
        spec: dict[str, Any] = {"trustBundle": anchors} | ({"signerName": signer} if signer else {})
        return {"apiVersion": f"certificates.k8s.io/{version}", "kind": "ClusterTrustBundle",
                "metadata": {"name": name}, "spec": spec}

    denied = {"conditions": [condition("Denied", "NoIdentity", "no identity selects the pod")]}
    pcr_fields = ("kind", "apiVersion", "metadata.name", "spec.signerName", "spec.maxExpirationSeconds",
                  "status")
    issued_fields = ("status.certificateChain", "status.notBefore", "status.notAfter", "status.beginRefreshAt",
                     "status.conditions.0.type", "status.conditions.0.reason")
    rsa_key = generate_key("RSA3072")
    small = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    bundle_name = "parity.mtls.dev:signer:bundle"
    # v1beta1 (1.35/1.36) also takes the key as pkixPublicKey + proofOfPossession (a signature over the pod UID).
    pod_uid = request("-")["spec"]["podUID"]
    pkix, proof = proof_of_possession(key, pod_uid)
    b64 = {"pkixPublicKey": base64.b64encode(pkix).decode(), "proofOfPossession": base64.b64encode(proof).decode()}
    wrong_proof = base64.b64encode(proof_of_possession(key, pod_uid + "x")[1]).decode()
    legacy = [
        Step("pcr-create-pkix", "POST", pcrs, request("req-5", stubPKCS10Request=None, **b64),
             fields=(*pcr_fields, "spec.pkixPublicKey", "spec.proofOfPossession")),
        Step("pcr-create-pkix-proof-wrong", "POST", pcrs, request("bad-9", stubPKCS10Request=None, **b64 | {
            "proofOfPossession": wrong_proof})),
        Step("pcr-create-pkix-and-stub", "POST", pcrs, request("bad-10", **b64)),
        Step("pcr-create-pkix-without-proof", "POST", pcrs, request("bad-11", stubPKCS10Request=None,
                                                                    pkixPublicKey=b64["pkixPublicKey"])),
    ] if version == "v1beta1" else []
    return [
        Step("pcr-create", "POST", pcrs, request("req-1"), fields=pcr_fields),
        Step("pcr-create-default-expiration", "POST", pcrs, request("req-2", maxExpirationSeconds=None),
             fields=pcr_fields),
        Step("pcr-create-rsa", "POST", pcrs, request("req-3", stubPKCS10Request=base64.b64encode(
            stub_pkcs10(rsa_key)).decode()), fields=pcr_fields),
        Step("pcr-create-expiration-short", "POST", pcrs, request("bad-1", maxExpirationSeconds=600)),
        Step("pcr-create-expiration-long", "POST", pcrs, request("bad-2", maxExpirationSeconds=92 * 86400)),
        Step("pcr-create-kubernetes-signer-long", "POST", pcrs, request(
            "bad-3", signerName="kubernetes.io/kube-apiserver-client-pod", maxExpirationSeconds=2 * 86400)),
        Step("pcr-create-stub-garbage", "POST", pcrs, request("bad-4", stubPKCS10Request="bm90IGEgcmVxdWVzdA==")),
        Step("pcr-create-rsa-2048", "POST", pcrs, request("bad-5", stubPKCS10Request=base64.b64encode(
            stub_pkcs10(small)).decode())),
        Step("pcr-create-no-key", "POST", pcrs, request("bad-6", stubPKCS10Request=None)),
        Step("pcr-create-signer-invalid", "POST", pcrs, request("bad-7", signerName="no-domain")),
        Step("pcr-create-fields-missing", "POST", pcrs, request("bad-8", podUID=None, nodeUID=None,
                                                                serviceAccountUID=None)),
        Step("pcr-create-status-dropped", "POST", pcrs, request("req-4") | {"status": denied}, fields=pcr_fields),
        *legacy,
        Step("pcr-spec-immutable", "PATCH", f"{pcrs}/req-1", {"spec": {"maxExpirationSeconds": 7200}}, MERGE),
        Step("pcr-status-chain-not-leaf-first", *status("req-1", right | {
            "certificateChain": pem(ca.cert) + pem(leaf)})),
        Step("pcr-status-another-key", *status("req-1", issued_status([leaf_cert(ca, generate_key("ECDSAP256"),
                                                                                 2 * HOUR, start)]))),
        Step("pcr-status-chain-empty", *status("req-1", right | {"certificateChain": ""})),
        Step("pcr-status-chain-not-pem", *status("req-1", right | {"certificateChain": "not a certificate"})),
        Step("pcr-status-not-before-mismatch", *status("req-1", right | {
            "notBefore": stamp(start - datetime.timedelta(seconds=1))})),
        Step("pcr-status-not-after-mismatch", *status("req-1", right | {"notAfter": stamp(start + 3 * HOUR)})),
        Step("pcr-status-times-missing", *status("req-1", {"conditions": right["conditions"],
                                                          "certificateChain": right["certificateChain"]})),
        Step("pcr-status-refresh-early", *status("req-1", right | {
            "beginRefreshAt": stamp(start + datetime.timedelta(minutes=9))})),
        Step("pcr-status-refresh-late", *status("req-1", right | {
            "beginRefreshAt": stamp(start + 2 * HOUR - datetime.timedelta(minutes=9))})),
        Step("pcr-status-lifetime-short", *status("req-1", issued_status([leaf_cert(ca, key, HOUR / 2, start)]))),
        Step("pcr-status-lifetime-long", *status("req-1", issued_status([leaf_cert(ca, key, 25 * HOUR, start)]))),
        Step("pcr-status-two-conditions", *status("req-1", right | {
            "conditions": [*right["conditions"], *denied["conditions"]]})),
        Step("pcr-status-condition-false", *status("req-1", denied | {
            "conditions": [denied["conditions"][0] | {"status": "False"}]})),
        Step("pcr-status-condition-unknown", *status("req-1", {"conditions": [condition("Approved", "Yes", "ok")]})),
        Step("pcr-status-condition-no-reason", *status("req-1", {"conditions": [
            {k: v for k, v in denied["conditions"][0].items() if k != "reason"}]})),
        Step("pcr-status-denied-with-chain", *status("req-1", right | {"conditions": denied["conditions"]})),
        Step("pcr-status-pending-change", *status("req-1", {"certificateChain": right["certificateChain"]})),
        Step("pcr-status-issued", *status("req-1", right), fields=issued_fields),
        Step("pcr-status-issued-final", *status("req-1", right | {"beginRefreshAt": stamp(start + HOUR / 2)})),
        Step("pcr-status-denied", *status("req-2", denied), fields=("status.conditions.0.type",
                                                                     "status.conditions.0.reason")),
        Step("pcr-status-denied-final", *status("req-2", {"conditions": [condition("Failed", "Broken", "x")]})),
        Step("pcr-get", "GET", f"{pcrs}/req-1", fields=pcr_fields[:4] + issued_fields),
        Step("pcr-list", "GET", pcrs, query={"fieldSelector": "spec.signerName=parity.mtls.dev/signer"},
             fields=("kind", "items")),
        Step("ctb-create-prefix-wrong", "POST", bundles, bundle("parity-bundle", ca.pem)),
        Step("ctb-create-colon-without-signer", "POST", bundles, bundle("parity:bundle", ca.pem, signer=None)),
        Step("ctb-create-not-ca", "POST", bundles, bundle(bundle_name, pem(leaf))),
        Step("ctb-create-duplicate", "POST", bundles, bundle(bundle_name, ca.pem + ca.pem)),
        Step("ctb-create-empty", "POST", bundles, bundle(bundle_name, "")),
        Step("ctb-create-not-pem", "POST", bundles, bundle(bundle_name, "junk")),
        Step("ctb-create", "POST", bundles, bundle(bundle_name, ca.pem), fields=(
            "kind", "apiVersion", "metadata.name", "spec")),
        Step("ctb-create-existing", "POST", bundles, bundle(bundle_name, ca.pem)),
        Step("ctb-update-anchors", "PATCH", f"{bundles}/{bundle_name}", {"spec": {
            "trustBundle": ca.pem + other.pem}}, MERGE, fields=("spec",)),
        Step("ctb-signer-immutable", "PATCH", f"{bundles}/{bundle_name}", {"spec": {
            "signerName": "parity.mtls.dev/other"}}, MERGE),
        Step("ctb-list-signer", "GET", bundles, query={"fieldSelector": "spec.signerName=parity.mtls.dev/signer"},
             fields=("kind", "items")),
        Step("ctb-create-unsigned", "POST", bundles, bundle("parity-unsigned", other.pem, signer=None),
             fields=("kind", "metadata.name", "spec")),
        Step("ctb-delete", "DELETE", f"{bundles}/{bundle_name}", fields=("kind", "status")),
        Step("ctb-delete-unsigned", "DELETE", f"{bundles}/parity-unsigned", fields=("kind", "status")),
        Step("ctb-gone", "GET", f"{bundles}/{bundle_name}"),
    ]


def test_the_emulator_answers_pod_certificate_requests_as_the_api_server(
        cluster: Cluster, emulator_client: Client) -> None:
    version = pod_certificate_api(cluster)
    # The emulator serves v1 and v1beta1; the real API server of 1.35/1.36 only v1beta1: compare at its version.
    if not serves(emulator_client, version) or not serves(emulator_client, version, "clustertrustbundles"):
        pytest.skip(f"the emulator serves no PodCertificateRequests/ClusterTrustBundles at certificates.k8s.io/"
                    f"{version} (they come with branch pcremu)")
    steps = pod_certificate_steps(version)
    real = _run(cluster.api, steps, PCR_NS)
    emulated = _run(emulator_client, steps, PCR_NS)
    cluster.api.delete(f"/api/v1/namespaces/{PCR_NS}")
    _compare(cluster, steps, real, emulated, dict(POD_CERTIFICATE_DIFFERENCES))
