"""Admission webhooks: the emulator calls them over HTTPS on create, like the apiserver."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp.web
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mtls_operator.testing import Emulator, EmulatorServer

from .conftest import Http

PODS = "/api/v1/namespaces/default/pods"
MUTATING = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
VALIDATING = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"


def pod(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "app", "image": "app:1"}]}}


class WebhookServer:
    def __init__(self) -> None:
        self.reviews: list[dict[str, Any]] = []
        self.url = ""
        self.ca_bundle = ""

    async def handle(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        review = await request.json()
        self.reviews.append(review)
        req = review["request"]
        labels = req["object"]["metadata"].get("labels") or {}
        response: dict[str, Any] = {"uid": req["uid"], "allowed": True}
        if request.path == "/mutate":
            ops = [{"op": "add", "path": "/metadata/annotations", "value": {"injected": "yes"}}]
            response.update(patchType="JSONPatch", patch=base64.b64encode(json.dumps(ops).encode()).decode())
        elif labels.get("deny") == "yes":
            response.update(allowed=False, status={"code": 403, "message": "pods labelled deny=yes are refused"})
        return aiohttp.web.json_response({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                                          "response": response})


def _certificate(tmp: Path) -> tuple[Path, Path, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "webhook")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_path, key_path = tmp / "tls.crt", tmp / "tls.key"
    cert_path.write_bytes(pem)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path, base64.b64encode(pem).decode()


@pytest.fixture
async def webhook(tmp_path: Path) -> AsyncIterator[WebhookServer]:
    hooks = WebhookServer()
    cert, key, hooks.ca_bundle = _certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    runner = aiohttp.web.ServerRunner(aiohttp.web.Server(hooks.handle))
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    hooks.url = f"https://127.0.0.1:{port}"
    yield hooks
    await runner.cleanup()


def configuration(name: str, url: str, ca_bundle: str, **extra: Any) -> dict[str, Any]:
    hook = {"name": f"{name}.example.com", "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "clientConfig": {"url": url, "caBundle": ca_bundle},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
            "objectSelector": {"matchLabels": {"mtls.dev/inject": "true"}}, **extra}
    return {"metadata": {"name": name}, "webhooks": [hook]}


async def test_mutating_webhook_patches_created_objects(http: Http, webhook: WebhookServer) -> None:
    await http.post(MUTATING, configuration("inject", f"{webhook.url}/mutate", webhook.ca_bundle))
    status, created = await http.post(PODS, pod("a", **{"mtls.dev/inject": "true"}))
    assert status == 201
    assert created["metadata"]["annotations"] == {"injected": "yes"}
    request = webhook.reviews[0]["request"]
    assert request["operation"] == "CREATE"
    assert request["resource"] == {"group": "", "version": "v1", "resource": "pods"}
    assert request["namespace"] == "default"
    assert request["object"]["spec"]["serviceAccountName"] == "default"
    status, other = await http.post(PODS, pod("b"))
    assert status == 201
    assert "annotations" not in other["metadata"], "the objectSelector does not match"
    assert len(webhook.reviews) == 1


async def test_validating_webhook_denies(http: Http, webhook: WebhookServer) -> None:
    await http.post(VALIDATING, configuration("check", f"{webhook.url}/validate", webhook.ca_bundle))
    status, body = await http.post(PODS, pod("a", deny="yes", **{"mtls.dev/inject": "true"}))
    assert status == 403
    assert body["message"] == 'admission webhook "check.example.com" denied the request: ' \
                              "pods labelled deny=yes are refused"
    status, _ = await http.post(PODS, pod("b", **{"mtls.dev/inject": "true"}))
    assert status == 201


async def test_unreachable_webhook_fails_unless_ignored(http: Http) -> None:
    await http.post(MUTATING, configuration("broken", "https://127.0.0.1:1/mutate", "", timeoutSeconds=2))
    status, body = await http.post(PODS, pod("a", **{"mtls.dev/inject": "true"}))
    assert status == 500
    assert 'failed calling webhook "broken.example.com"' in body["message"]
    await http.delete(f"{MUTATING}/broken")
    await http.post(MUTATING, configuration("lenient", "https://127.0.0.1:1/mutate", "", failurePolicy="Ignore"))
    status, _ = await http.post(PODS, pod("a", **{"mtls.dev/inject": "true"}))
    assert status == 201


async def test_webhooks_can_be_turned_off(webhook: WebhookServer) -> None:
    emulator = Emulator(admission_webhooks=False)
    emulator.create({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
                     **configuration("inject", f"{webhook.url}/mutate", webhook.ca_bundle)})
    async with EmulatorServer(emulator) as server, aiohttp.ClientSession() as session:
        status, created = await Http(session, server.url).post(PODS, pod("a", **{"mtls.dev/inject": "true"}))
    assert status == 201
    assert "annotations" not in created["metadata"]
    assert webhook.reviews == []
