"""Admission webhooks: the emulator calls them over HTTPS on create and update, like kube-apiserver."""

from __future__ import annotations

import asyncio
import base64
import datetime
import inspect
import json
import pathlib
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp.web
import kubernetes.client
import pytest
import yaml

from kube_emulator import Emulator, EmulatorServer
from mtls_operator.models import KeySpec, Usage
from mtls_operator.pki import CertificateAuthority, LeafRequest, certs_to_pem, create_self_signed_ca, issue_leaf

from .conftest import Http
from .test_emulator_kubectl import KUBECTL, Kubectl

PODS = "/api/v1/namespaces/default/pods"
MUTATING = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
VALIDATING = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
INJECT = {"mtls.dev/inject": "true"}
SERVICE_HOST = "hooks.webhooks.svc"  # the name the webhook's serving certificate carries, besides localhost
ANOTHER_CA = "<the bundle of another CA>"  # in FAILURES: replaced by a CA that did not sign the webhook's certificate

Review = dict[str, Any]
Answer = Callable[[Review], Any]  # an AdmissionReview dict, a web.Response, or an awaitable of either


def pod(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "app", "image": "app:1"}]}}


def reply(review: Review, **response: Any) -> dict[str, Any]:
    """An AdmissionReview answer to ``review``: allowed unless ``response`` says otherwise."""
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "response": {"uid": review["request"]["uid"], "allowed": True, **response}}


def json_patch(review: Review, ops: list[dict[str, Any]], **response: Any) -> dict[str, Any]:
    return reply(review, patchType="JSONPatch", patch=base64.b64encode(json.dumps(ops).encode()).decode(), **response)


def annotate(review: Review) -> dict[str, Any]:
    return json_patch(review, [{"op": "add", "path": "/metadata/annotations", "value": {"injected": "yes"}}])


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def serving_context(ca: CertificateAuthority, tmp: pathlib.Path, *dns_names: str) -> ssl.SSLContext:
    """A TLS server context with a certificate for ``dns_names`` from ``ca``."""
    request = LeafRequest("spiffe://cluster.local/ns/webhooks/sa/hooks", dns_names, frozenset({Usage.SERVER}),
                          KeySpec(), datetime.timedelta(hours=1))
    leaf = issue_leaf(ca, request, datetime.datetime.now(datetime.UTC))
    cert, key = tmp / f"{dns_names[0]}.crt", tmp / f"{dns_names[0]}.key"
    cert.write_bytes(leaf.chain_pem)
    key.write_bytes(leaf.key_pem)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


class WebhookServer:
    """An HTTPS admission webhook: records each review and its query, answers with ``answers[path]``."""

    def __init__(self) -> None:
        self.reviews: list[Review] = []
        self.queries: list[dict[str, str]] = []
        self.answers: dict[str, Answer] = {}
        self.release = asyncio.Event()  # set at teardown: lets hanging answers end
        self.port = 0
        self.url = ""
        self.ca_bundle = ""

    async def handle(self, request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        review = await request.json()
        self.reviews.append({**review, "_path": request.path})
        self.queries.append(dict(request.query))
        answer: Answer = self.answers.get(request.path, reply)
        result = answer(review)
        if inspect.isawaitable(result):
            result = await result
        if isinstance(result, aiohttp.web.StreamResponse):
            return result
        return aiohttp.web.json_response(result)

    async def hang(self, review: Review) -> dict[str, Any]:
        await self.release.wait()
        return reply(review)


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return create_self_signed_ca(datetime.datetime.now(datetime.UTC), common_name="webhook test CA")


@pytest.fixture
async def webhook(tmp_path: pathlib.Path, ca: CertificateAuthority) -> AsyncIterator[WebhookServer]:
    hooks = WebhookServer()
    hooks.ca_bundle = b64(certs_to_pem(ca.trust))
    runner = aiohttp.web.ServerRunner(aiohttp.web.Server(hooks.handle))
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0,
                               ssl_context=serving_context(ca, tmp_path, "localhost", SERVICE_HOST))
    await site.start()
    hooks.port = runner.addresses[0][1]
    hooks.url = f"https://localhost:{hooks.port}"
    yield hooks
    hooks.release.set()
    await runner.cleanup()


def hook(name: str, client_config: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": f"{name}.example.com", "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "clientConfig": client_config,
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
            "objectSelector": {"matchLabels": INJECT}, **extra}


def configuration(name: str, url: str, ca_bundle: str, **extra: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "webhooks": [hook(name, {"url": url, "caBundle": ca_bundle}, **extra)]}


async def register(http: Http, kind: str, name: str, webhook: WebhookServer, path: str, **extra: Any) -> None:
    status, body = await http.post(kind, configuration(name, webhook.url + path, webhook.ca_bundle, **extra))
    assert status == 201, body


ALL_POD_WRITES = [{"operations": ["CREATE", "UPDATE"], "apiGroups": [""], "apiVersions": ["v1"],
                   "resources": ["pods"]}]


# ----------------------------------------------------------------------------------- create
async def test_mutating_webhook_patches_created_objects(http: Http, webhook: WebhookServer) -> None:
    webhook.answers["/mutate"] = annotate
    await register(http, MUTATING, "inject", webhook, "/mutate")
    status, created = await http.post(PODS, pod("a", **INJECT))
    assert status == 201
    assert created["metadata"]["annotations"] == {"injected": "yes"}
    request = webhook.reviews[0]["request"]
    assert request["operation"] == "CREATE"
    assert request["kind"] == {"group": "", "version": "v1", "kind": "Pod"}
    assert request["resource"] == {"group": "", "version": "v1", "resource": "pods"}
    assert request["name"] == "a"
    assert request["namespace"] == "default"
    assert request["object"]["metadata"]["namespace"] == "default", "the URL's namespace is set before admission"
    assert request["object"]["spec"]["serviceAccountName"] == "default"
    assert request["oldObject"] is None
    assert request["dryRun"] is False
    assert request["options"] == {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
    assert "subResource" not in request
    status, other = await http.post(PODS, pod("b"))
    assert status == 201
    assert "annotations" not in other["metadata"], "the objectSelector does not match"
    assert len(webhook.reviews) == 1


async def test_generate_name_is_mutated_before_the_name_exists(http: Http, webhook: WebhookServer) -> None:
    await register(http, MUTATING, "inject", webhook, "/mutate")
    await register(http, VALIDATING, "check", webhook, "/validate")
    body = pod("", **INJECT)
    body["metadata"] = {"generateName": "web-", "labels": INJECT}
    status, created = await http.post(PODS, body)
    assert status == 201
    name = created["metadata"]["name"]
    assert name.startswith("web-")
    mutating, validating = webhook.reviews
    assert mutating["_path"] == "/mutate"
    assert "name" not in mutating["request"], "request.name is empty (omitted) before the name is generated"
    assert "name" not in mutating["request"]["object"]["metadata"]
    assert "uid" not in mutating["request"]["object"]["metadata"]
    assert validating["request"]["name"] == name
    assert validating["request"]["object"]["metadata"]["name"] == name
    assert validating["request"]["object"]["metadata"]["uid"] == created["metadata"]["uid"]


async def test_json_patch_applied_before_validation_of_a_pod_without_containers(
    http: Http, webhook: WebhookServer
) -> None:
    container = {"name": "added", "image": "added:1"}
    webhook.answers["/mutate"] = lambda review: json_patch(review, [
        {"op": "add", "path": "/spec/volumes", "value": [{"name": "v", "secret": {"secretName": "s"}}]},
        *([{"op": "add", "path": "/spec/containers", "value": [container]}]
          if review["request"]["object"]["metadata"]["name"] == "fixed" else []),
    ])
    await register(http, MUTATING, "inject", webhook, "/mutate")
    empty = {"metadata": {"name": "empty", "labels": INJECT}, "spec": {}}
    status, body = await http.post(PODS, empty)
    assert status == 422, "the mutated pod still has no containers: the pod's own validation refuses it"
    assert body["details"]["causes"][0]["field"] == "spec.containers"
    assert webhook.reviews[0]["request"]["object"]["spec"] == {"serviceAccountName": "default"}
    status, created = await http.post(PODS, {"metadata": {"name": "fixed", "labels": INJECT}, "spec": {}})
    assert status == 201, created
    assert created["spec"]["containers"] == [container]
    assert created["spec"]["volumes"] == [{"name": "v", "secret": {"secretName": "s"}}]


# ----------------------------------------------------------------------------------- update
PATCHES = [
    ("application/merge-patch+json", {"metadata": {"labels": {"color": "blue"}}}, {}),
    ("application/strategic-merge-patch+json", {"metadata": {"labels": {"color": "blue"}}}, {}),
    ("application/json-patch+json", [{"op": "add", "path": "/metadata/labels/color", "value": "blue"}], {}),
    ("application/apply-patch+yaml", {"apiVersion": "v1", "kind": "Pod", "metadata": {"labels": {"color": "blue"}}},
     {"fieldManager": "test"}),
]


@pytest.mark.parametrize(("content_type", "patch", "params"), PATCHES, ids=[p[0].split("/")[1] for p in PATCHES])
async def test_patch_is_admitted_as_update_after_the_patch(
    http: Http, webhook: WebhookServer, content_type: str, patch: Any, params: dict[str, str]
) -> None:
    await http.post(PODS, pod("a", **INJECT))
    webhook.answers["/mutate"] = annotate
    await register(http, MUTATING, "inject", webhook, "/mutate", rules=ALL_POD_WRITES)
    status, patched = await http.patch(f"{PODS}/a", patch, content_type=content_type, **params)
    assert status == 200, patched
    assert patched["metadata"]["labels"]["color"] == "blue"
    assert patched["metadata"]["annotations"] == {"injected": "yes"}
    request = webhook.reviews[0]["request"]
    assert request["operation"] == "UPDATE"
    assert request["name"] == "a"
    assert request["object"]["metadata"]["labels"]["color"] == "blue", "the webhook sees the patched object"
    assert "color" not in request["oldObject"]["metadata"]["labels"]
    assert request["options"]["kind"] == "PatchOptions"


async def test_put_is_admitted_as_update(http: Http, webhook: WebhookServer) -> None:
    _, created = await http.post(PODS, pod("a", **INJECT))
    webhook.answers["/mutate"] = annotate
    await register(http, MUTATING, "inject", webhook, "/mutate", rules=ALL_POD_WRITES)
    created["metadata"]["labels"]["color"] = "blue"
    status, replaced = await http.put(f"{PODS}/a", created)
    assert status == 200, replaced
    assert replaced["metadata"]["annotations"] == {"injected": "yes"}
    request = webhook.reviews[0]["request"]
    assert (request["operation"], request["options"]["kind"]) == ("UPDATE", "UpdateOptions")
    assert request["oldObject"]["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    stale = dict(created, metadata=dict(created["metadata"], labels={"stale": "yes", **INJECT}))
    status, _ = await http.put(f"{PODS}/a", stale)
    assert status == 409, "preconditions are checked after mutating admission, as in the apiserver"
    assert len(webhook.reviews) == 2


async def test_apply_patch_of_an_absent_object_is_admitted_as_create(http: Http, webhook: WebhookServer) -> None:
    webhook.answers["/mutate"] = annotate
    await register(http, MUTATING, "inject", webhook, "/mutate", rules=ALL_POD_WRITES)
    body = {"apiVersion": "v1", "kind": "Pod", **pod("a", **INJECT)}
    status, created = await http.patch(f"{PODS}/a", body, content_type="application/apply-patch+yaml",
                                       fieldManager="test")
    assert status == 201, created
    assert created["metadata"]["annotations"] == {"injected": "yes"}
    assert webhook.reviews[0]["request"]["operation"] == "CREATE"


async def test_update_readmits_when_the_object_changed_during_admission(
    emulator: Emulator, http: Http, webhook: WebhookServer
) -> None:
    await http.post(PODS, pod("a", **INJECT))

    def change_it_meanwhile(review: Review) -> dict[str, Any]:
        if len(webhook.reviews) == 1:  # another writer updates the pod while the webhook is being called
            emulator.patch("v1", "pods", "a", "default", {"metadata": {"labels": {"other": "writer"}}})
        return reply(review)

    webhook.answers["/mutate"] = change_it_meanwhile
    await register(http, MUTATING, "inject", webhook, "/mutate", rules=ALL_POD_WRITES)
    status, patched = await http.patch(f"{PODS}/a", {"metadata": {"labels": {"color": "blue"}}})
    assert status == 200
    assert patched["metadata"]["labels"] == {"color": "blue", "other": "writer", **INJECT}
    first, second = (review["request"] for review in webhook.reviews)
    assert "other" not in first["oldObject"]["metadata"]["labels"]
    assert second["oldObject"]["metadata"]["labels"]["other"] == "writer", "admitted again on the newer object"


RULES = [  # (rule fields, what is written, called?)
    ({"resources": ["pods"]}, "pods", True),
    ({"resources": ["pods"]}, "pods/status", False),
    ({"resources": ["pods/status"]}, "pods", False),
    ({"resources": ["pods/status"]}, "pods/status", True),
    ({"resources": ["*"]}, "pods/status", False),
    ({"resources": ["*/status"]}, "pods/status", True),
    ({"resources": ["*/*"]}, "pods/status", True),
    ({"resources": ["pods/*"]}, "pods/status", True),
    ({"resources": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "operations": ["*"]}, "pods", True),
    ({"resources": ["pods"], "operations": ["CREATE"]}, "pods", False),
    ({"resources": ["pods"], "apiGroups": ["apps"]}, "pods", False),
    ({"resources": ["pods"], "apiVersions": ["v2"]}, "pods", False),
    ({"resources": ["*"], "scope": "Namespaced"}, "pods", True),
    ({"resources": ["*"], "scope": "Cluster"}, "pods", False),
    ({"resources": ["*"], "scope": "Cluster"}, "namespaces", True),
    ({"resources": ["*"], "scope": "Namespaced"}, "namespaces", False),
    ({"resources": ["*"], "scope": "*"}, "namespaces", True),
]


@pytest.mark.parametrize(("rule", "written", "called"), RULES)
async def test_rules(
    emulator: Emulator, http: Http, webhook: WebhookServer, rule: dict[str, Any], written: str, called: bool
) -> None:
    emulator.create({"apiVersion": "v1", "kind": "Pod", **pod("a")})
    emulator.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
    full_rule = {"operations": ["UPDATE"], "apiGroups": [""], "apiVersions": ["v1"], **rule}
    await register(http, VALIDATING, "check", webhook, "/validate", rules=[full_rule], objectSelector={})
    path = {"pods": f"{PODS}/a", "pods/status": f"{PODS}/a/status", "namespaces": "/api/v1/namespaces/shop"}[written]
    status, _ = await http.patch(path, {"metadata": {"labels": {"x": "y"}}})
    assert status == 200
    assert len(webhook.reviews) == int(called)
    if called and written == "pods/status":
        request = webhook.reviews[0]["request"]
        assert (request["subResource"], request["requestSubResource"]) == ("status", "status")
    if called and written == "namespaces":
        assert webhook.reviews[0]["request"]["namespace"] == "shop", "a Namespace's review names itself"


# -------------------------------------------------------------------------------- selectors
async def test_object_selector_matches_the_old_or_the_new_object(http: Http, webhook: WebhookServer) -> None:
    await register(http, VALIDATING, "check", webhook, "/validate", rules=ALL_POD_WRITES)
    await http.post(PODS, pod("a"))
    assert webhook.reviews == [], "neither matches"
    await http.patch(f"{PODS}/a", {"metadata": {"labels": INJECT}})
    assert len(webhook.reviews) == 1, "the new object matches"
    await http.patch(f"{PODS}/a", {"metadata": {"labels": {"mtls.dev/inject": None}}})
    assert len(webhook.reviews) == 2, "the old object matches"
    await http.patch(f"{PODS}/a", {"metadata": {"labels": {"color": "blue"}}})
    assert len(webhook.reviews) == 2, "neither matches"


NAMESPACE_SELECTORS = [  # (namespaceSelector, namespace of the pod, called?)
    ({"matchLabels": {"team": "a"}}, "team-a", True),
    ({"matchLabels": {"team": "a"}}, "default", False),
    ({"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                            "values": ["kube-system"]}]}, "default", True),
    ({"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                            "values": ["kube-system"]}]}, "kube-system", False),
    ({"matchExpressions": [{"key": "team", "operator": "Exists"}]}, "team-a", True),
    ({"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]}, "team-a", False),
    ({}, "kube-system", True),
]


@pytest.mark.parametrize(("selector", "namespace", "called"), NAMESPACE_SELECTORS)
async def test_namespace_selector(
    emulator: Emulator, http: Http, webhook: WebhookServer, selector: dict[str, Any], namespace: str, called: bool
) -> None:
    emulator.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a", "labels": {"team": "a"}}})
    await register(http, VALIDATING, "check", webhook, "/validate", namespaceSelector=selector)
    status, _ = await http.post(f"/api/v1/namespaces/{namespace}/pods", pod("a", **INJECT))
    assert status == 201
    assert len(webhook.reviews) == int(called)


async def test_namespace_selector_of_a_namespace_is_its_own_labels(http: Http, webhook: WebhookServer) -> None:
    rules = [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["namespaces"]}]
    await register(http, VALIDATING, "check", webhook, "/validate", rules=rules, objectSelector={},
                   namespaceSelector={"matchLabels": {"team": "a"}})
    await http.post("/api/v1/namespaces", {"metadata": {"name": "other"}})
    status, _ = await http.post("/api/v1/namespaces", {"metadata": {"name": "team-a", "labels": {"team": "a"}}})
    assert status == 201
    assert [review["request"]["name"] for review in webhook.reviews] == ["team-a"]


# --------------------------------------------------------------------------------- failures
def answer_status(status: int) -> Answer:
    return lambda review: aiohttp.web.json_response(reply(review), status=status)


FAILURES: list[tuple[str, dict[str, Any], Answer | None, str]] = [
    # (case, clientConfig changes, answer, what the 500 says after 'failed calling webhook "..."')
    ("refused", {"url": "https://127.0.0.1:1/mutate"}, None, "connect: connection refused"),
    ("unknown CA", {"caBundle": ANOTHER_CA}, None, "tls: failed to verify certificate"),
    ("http 500", {}, answer_status(500), "the server responded with the status code 500"),
    ("not JSON", {}, lambda review: aiohttp.web.Response(text="<html>"), "the response is not JSON"),
    ("no response", {}, lambda review: {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"},
     "webhook response was absent"),
    ("wrong uid", {}, lambda review: {**reply(review), "response": {"uid": "nope", "allowed": True}},
     'expected response.uid="'),
    ("wrong kind", {}, lambda review: {**reply(review), "apiVersion": "admission.k8s.io/v1beta1"},
     "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview"),
    ("allowed not bool", {}, lambda review: reply(review, allowed="yes"), "cannot decode response.allowed"),
    ("patch not base64", {}, lambda review: reply(review, patchType="JSONPatch", patch="%%%"),
     "cannot decode response.patch"),
    ("patch without type", {}, lambda review: reply(review, patch=b64(b"[]")),
     "webhook returned response.patch but not response.patchType"),
    ("other patch type", {}, lambda review: reply(review, patchType="MergePatch", patch=b64(b"{}")),
     'unsupported patch type "MergePatch"'),
    ("unrouted service", {"service": {"namespace": "webhooks", "name": "gone", "path": "/mutate"}}, None,
     'Post "https://gone.webhooks.svc:443/mutate?timeout=10s": the emulator has no route to service'),
]


@pytest.mark.parametrize("policy", ["Fail", "Ignore", None])
@pytest.mark.parametrize(("case", "config", "answer", "message"), FAILURES, ids=[f[0] for f in FAILURES])
async def test_a_failing_webhook_obeys_its_failure_policy(
    http: Http, webhook: WebhookServer, policy: str | None, case: str, config: dict[str, Any], answer: Answer | None,
    message: str,
) -> None:
    client_config: dict[str, Any] = {"url": f"{webhook.url}/mutate", "caBundle": webhook.ca_bundle, **config}
    if config.get("caBundle") == ANOTHER_CA:
        other = create_self_signed_ca(datetime.datetime.now(datetime.UTC))  # same subject, another key
        client_config["caBundle"] = b64(certs_to_pem(other.trust))
    if "service" in config:
        del client_config["url"]
    if answer is not None:
        webhook.answers["/mutate"] = answer
    extra = {} if policy is None else {"failurePolicy": policy}
    status, _ = await http.post(MUTATING, {"metadata": {"name": "broken"},
                                           "webhooks": [hook("broken", client_config, **extra)]})
    assert status == 201
    status, body = await http.post(PODS, pod("a", **INJECT))
    if policy == "Ignore":
        assert status == 201, body
        assert "annotations" not in body["metadata"]
    else:  # Fail is the default
        assert status == 500, body
        assert body["reason"] == "InternalError"
        assert body["message"].startswith('Internal error occurred: failed calling webhook "broken.example.com": ')
        assert message in body["message"]


@pytest.mark.parametrize("policy", ["Fail", "Ignore"])
async def test_a_timeout_obeys_the_failure_policy(http: Http, webhook: WebhookServer, policy: str) -> None:
    webhook.answers["/mutate"] = webhook.hang
    await register(http, MUTATING, "slow", webhook, "/mutate", timeoutSeconds=1, failurePolicy=policy)
    status, body = await http.post(PODS, pod("a", **INJECT))
    if policy == "Ignore":
        assert status == 201
    else:
        assert status == 500
        assert body["message"].endswith('/mutate?timeout=1s": context deadline exceeded')


@pytest.mark.parametrize(("timeout_seconds", "sent"), [(None, "10s"), (5, "5s"), (100, "30s"), (0, "1s")])
async def test_timeout_seconds_default_and_bounds(
    http: Http, webhook: WebhookServer, timeout_seconds: int | None, sent: str
) -> None:
    extra = {} if timeout_seconds is None else {"timeoutSeconds": timeout_seconds}
    await register(http, VALIDATING, "check", webhook, "/validate", **extra)
    await http.post(PODS, pod("a", **INJECT))
    assert webhook.queries == [{"timeout": sent}], "the apiserver tells the webhook its timeout"


@pytest.mark.parametrize("policy", ["Fail", "Ignore"])
async def test_a_patch_that_does_not_apply_fails_whatever_the_policy(
    http: Http, webhook: WebhookServer, policy: str
) -> None:
    webhook.answers["/mutate"] = lambda review: json_patch(review, [{"op": "remove", "path": "/spec/nothing"}])
    await register(http, MUTATING, "bad", webhook, "/mutate", failurePolicy=policy)
    status, body = await http.post(PODS, pod("a", **INJECT))
    assert status == 500
    assert body["message"].startswith('Internal error occurred: admission webhook "bad.example.com" returned a patch '
                                      "that cannot be applied: ")


DENIALS = [  # (the webhook's status, the answer's code, reason and message)
    ({"code": 403, "reason": "Forbidden", "message": "pods labelled deny=yes are refused"}, 403, "Forbidden",
     'admission webhook "check.example.com" denied the request: pods labelled deny=yes are refused'),
    ({"message": "no code"}, 400, None, 'admission webhook "check.example.com" denied the request: no code'),
    ({"code": 200, "reason": "Nope"}, 400, "Nope", 'admission webhook "check.example.com" denied the request: Nope'),
    (None, 400, None, 'admission webhook "check.example.com" denied the request without explanation'),
]


@pytest.mark.parametrize(("result", "code", "reason", "message"), DENIALS)
async def test_a_denial_is_the_webhooks_status(
    http: Http, webhook: WebhookServer, result: dict[str, Any] | None, code: int, reason: str | None, message: str
) -> None:
    extra = {} if result is None else {"status": result}
    webhook.answers["/validate"] = lambda review: reply(review, allowed=False, **extra)
    await register(http, VALIDATING, "check", webhook, "/validate")
    status, body = await http.post(PODS, pod("a", **INJECT))
    assert (status, body["code"], body.get("reason"), body["message"]) == (code, code, reason, message)
    assert body["status"] == "Failure"
    status, _ = await http.get(f"{PODS}/a")
    assert status == 404


async def test_dry_run_reaches_only_webhooks_without_side_effects(http: Http, webhook: WebhookServer) -> None:
    await register(http, VALIDATING, "check", webhook, "/validate")
    status, _ = await http.post(PODS, pod("a", **INJECT), dryRun="All")
    assert status == 201
    assert webhook.reviews[0]["request"]["dryRun"] is True
    status, _ = await http.get(f"{PODS}/a")
    assert status == 404
    await register(http, VALIDATING, "effects", webhook, "/validate", sideEffects="Some")
    status, body = await http.post(PODS, pod("a", **INJECT), dryRun="All")
    assert (status, body["message"]) == (400, 'admission webhook "effects.example.com" does not support dry run')


# --------------------------------------------------------------------------------- warnings
async def test_warnings_reach_the_client_as_headers(server: EmulatorServer, http: Http, webhook: WebhookServer) -> None:
    webhook.answers["/mutate"] = lambda review: reply(review, warnings=["first", 'a "quoted" one'])
    webhook.answers["/validate"] = lambda review: reply(review, warnings=["first", "third"])
    await register(http, MUTATING, "inject", webhook, "/mutate")
    await register(http, VALIDATING, "check", webhook, "/validate")
    async with http.session.post(server.url + PODS, json=pod("a", **INJECT)) as resp:
        assert resp.status == 201
        assert resp.headers.getall("Warning") == ['299 - "first"', '299 - "a \\"quoted\\" one"', '299 - "third"']
    webhook.answers["/validate"] = lambda review: reply(review, allowed=False, warnings=["denied, and why"])
    async with http.session.post(server.url + PODS, json=pod("b", **INJECT)) as resp:
        assert resp.status == 400
        assert '299 - "denied, and why"' in resp.headers.getall("Warning")


async def test_warnings_in_the_kubernetes_client(server: EmulatorServer, http: Http, webhook: WebhookServer) -> None:
    webhook.answers["/validate"] = lambda review: reply(review, warnings=["heads up"])
    await register(http, VALIDATING, "check", webhook, "/validate")

    body = kubernetes.client.V1Pod(
        metadata=kubernetes.client.V1ObjectMeta(name="a", labels=INJECT),
        spec=kubernetes.client.V1PodSpec(containers=[kubernetes.client.V1Container(name="app", image="app:1")]))

    def create() -> Any:
        with kubernetes.client.ApiClient(server.client_configuration()) as client:
            return kubernetes.client.CoreV1Api(client).create_namespaced_pod_with_http_info("default", body)

    _, status, headers = await asyncio.to_thread(create)
    assert status == 201
    assert headers.getlist("Warning") == ['299 - "heads up"']


@pytest.mark.skipif(KUBECTL is None, reason="kubectl not found: run `make tools` (see shared/TOOLS.md)")
async def test_kubectl_prints_warnings(
    server: EmulatorServer, http: Http, webhook: WebhookServer, tmp_path: pathlib.Path
) -> None:
    webhook.answers["/validate"] = lambda review: reply(review, warnings=["heads up from the webhook"])
    await register(http, VALIDATING, "check", webhook, "/validate")
    kubectl = Kubectl(server.write_kubeconfig(tmp_path / "kubeconfig"), tmp_path / "cache")
    manifest = tmp_path / "pod.yaml"
    body = {"apiVersion": "v1", "kind": "Pod", **pod("", **INJECT)}
    body["metadata"] = {"generateName": "web-", "labels": INJECT}
    manifest.write_text(yaml.safe_dump(body))
    result: subprocess.CompletedProcess[str] = await asyncio.to_thread(kubectl, "create", "-f", str(manifest))
    assert "Warning: heads up from the webhook" in result.stderr
    assert "pod/web-" in result.stdout


# ------------------------------------------------------------------------- service routing
async def test_service_webhooks_are_routed_and_their_name_verified(
    emulator: Emulator, http: Http, webhook: WebhookServer
) -> None:
    webhook.answers["/mutate"] = annotate
    emulator.route_service("webhooks", "hooks", 443, f"127.0.0.1:{webhook.port}")
    service = {"namespace": "webhooks", "name": "hooks", "path": "/mutate"}
    status, _ = await http.post(MUTATING, {"metadata": {"name": "inject"}, "webhooks": [
        hook("inject", {"service": service, "caBundle": webhook.ca_bundle})]})
    assert status == 201
    status, created = await http.post(PODS, pod("a", **INJECT))
    assert status == 201, created
    assert created["metadata"]["annotations"] == {"injected": "yes"}

    # The same server under another service name: its certificate is not for other.webhooks.svc.
    emulator.route_service("webhooks", "other", 8443, f"127.0.0.1:{webhook.port}")
    await http.delete(f"{MUTATING}/inject")
    status, _ = await http.post(MUTATING, {"metadata": {"name": "wrong"}, "webhooks": [
        hook("wrong", {"service": {**service, "name": "other", "port": 8443}, "caBundle": webhook.ca_bundle})]})
    status, body = await http.post(PODS, pod("b", **INJECT))
    assert status == 500
    assert 'Post "https://other.webhooks.svc:8443/mutate?timeout=10s": tls: failed to verify certificate' in \
        body["message"]
    assert len(webhook.reviews) == 1


def test_route_service_needs_host_and_port() -> None:
    with pytest.raises(ValueError, match="expected host:port"):
        Emulator().route_service("webhooks", "hooks", 443, "127.0.0.1")


async def test_webhooks_can_be_turned_off(webhook: WebhookServer) -> None:
    emulator = Emulator(admission_webhooks=False)
    emulator.create({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
                     **configuration("inject", f"{webhook.url}/mutate", webhook.ca_bundle)})
    async with EmulatorServer(emulator) as server, aiohttp.ClientSession() as session:
        status, created = await Http(session, server.url).post(PODS, pod("a", **INJECT))
    assert status == 201
    assert "annotations" not in created["metadata"]
    assert webhook.reviews == []
