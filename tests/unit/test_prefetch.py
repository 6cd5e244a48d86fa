"""The start-up lists (controller/prefetch.py) and the start-up phases (observability/startup.py)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import yaml

from mtls_operator import constants as c
from mtls_operator.controller import prefetch as prefetch_module
from mtls_operator.controller.objects import WatchedObjects, metadata_view, stored_pod
from mtls_operator.controller.prefetch import METADATA_ONLY, Endpoint, ListPrefetch, endpoint
from mtls_operator.k8s import api as api_module
from mtls_operator.observability.startup import PHASES, StartupPhases, since_start
from mtls_operator.pki import certs_to_pem, create_self_signed_ca
from mtls_operator.rules.spec import LabelSelector


def _pod(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}",
                         "labels": {"app": "a", c.INJECT_LABEL: c.INJECT_VALUE}},
            "spec": {"serviceAccountName": "sa", "containers": [{"name": "x"}]}, "status": {"phase": "Running"}}


def _secret(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "resourceVersion": "3",
                         "labels": {c.MANAGED_BY_LABEL: c.MANAGER_NAME, c.IDENTITY_LABEL: "a"},
                         "annotations": {c.BUNDLE_HASH_ANNOTATION: "sha256:x"}}}


class ListingServer(ThreadingHTTPServer):
    """Two pages of pods, one of Secrets, over HTTP; records each request's path, query and headers."""

    def __init__(self, status: int = 200) -> None:
        self.requests: list[tuple[str, dict[str, str], dict[str, str]]] = []
        self.status = status
        super().__init__(("127.0.0.1", 0), _Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ListingServer

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query))
        self.server.requests.append((parts.path, query, dict(self.headers)))
        if parts.path.endswith("/pods"):
            body = ({"metadata": {"resourceVersion": "10"}, "items": [_pod("p2")]} if "continue" in query else
                    {"metadata": {"resourceVersion": "10", "continue": "k"}, "items": [_pod("p1")]})
        else:
            body = {"metadata": {"resourceVersion": "11"}, "items": [_secret("s1")]}
        raw = json.dumps(body).encode()
        self.send_response(self.server.status)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *_: Any) -> None:
        pass


def _prefetch(server: ListingServer, token: str | None = "t0ken") -> ListPrefetch:  # noqa: S107 -- a test token
    prefetch = ListPrefetch(Endpoint(server.url, token, None), "mtls-operator/test")
    prefetch.start()
    return prefetch


@pytest.fixture
def server() -> Iterator[ListingServer]:
    listing = ListingServer()
    yield listing
    listing.shutdown()
    listing.server_close()


async def test_lists_pods_then_secrets_and_keeps_what_the_store_keeps(server: ListingServer) -> None:
    prefetch = _prefetch(server)
    await asyncio.sleep(0.2)  # the pages come before the keepers: held as bytes until then
    prefetch.keep_as(stored_pod, metadata_view)
    listed = await prefetch.take()
    assert listed is not None
    assert [path for path, _, _ in server.requests] == ["/api/v1/pods", "/api/v1/pods", "/api/v1/secrets"]
    assert server.requests[0][1] == {"labelSelector": f"{c.INJECT_LABEL}={c.INJECT_VALUE}", "limit": "500"}
    assert server.requests[1][1]["continue"] == "k"
    assert server.requests[2][2]["Accept"] == METADATA_ONLY, "Secrets metadata only"
    assert server.requests[0][2]["Authorization"] == "Bearer t0ken"
    assert server.requests[0][2]["User-Agent"] == "mtls-operator/test"
    assert listed.pods[0] == "10"
    assert [pod.name for pod in listed.pods[1]] == ["p1", "p2"]
    assert listed.secrets[0] == "11"
    assert listed.secrets[1][0].data == {}
    objects = WatchedObjects()
    objects.pods_stored(listed.pods[1])
    objects.secrets_stored(listed.secrets[1])
    assert objects.synced
    assert [pod.name for pod in objects.pods("ns", LabelSelector((("app", "a"),)))] == ["p1", "p2"]
    assert list(objects.secrets("ns", "a")) == ["s1"]
    assert objects.listed(listed.secrets[1][0])
    assert await prefetch.take() is None, "taken once"


async def test_a_failed_list_is_none_and_the_watches_list_themselves(caplog: pytest.LogCaptureFixture) -> None:
    failing = ListingServer(status=403)
    try:
        prefetch = _prefetch(failing, token=None)
        prefetch.keep_as(stored_pod, metadata_view)
        assert await prefetch.take() is None
    finally:
        failing.shutdown()
        failing.server_close()
    assert "Authorization" not in failing.requests[0][2]
    assert "listing pods and Secrets at start-up failed" in caplog.text
    assert "HTTP 403" in caplog.text


async def test_lists_older_than_fresh_or_discarded_are_not_taken(server: ListingServer,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    prefetch = _prefetch(server)
    prefetch.keep_as(stored_pod, metadata_view)
    monkeypatch.setattr(prefetch_module, "FRESH", -1.0)
    assert await prefetch.take() is None
    discarded = _prefetch(server)
    discarded.discard()
    assert await discarded.take() is None


def test_the_metadata_only_type_is_the_api_clients() -> None:
    assert METADATA_ONLY == api_module.METADATA_ONLY


def _kubeconfig(tmp_path: Path, cluster: dict[str, Any], user: dict[str, Any]) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "ctx",
        "contexts": [{"name": "other", "context": {"cluster": "nope", "user": "nope"}},
                     {"name": "ctx", "context": {"cluster": "c", "user": "u", "namespace": "x"}}],
        "clusters": [{"name": "c", "cluster": cluster}], "users": [{"name": "u", "user": user}],
    }))
    return str(path)


def test_endpoint_of_a_plain_http_kubeconfig_with_a_token(tmp_path: Path) -> None:
    where = endpoint(_kubeconfig(tmp_path, {"server": "http://127.0.0.1:8080"}, {"token": "abc"}), {})
    assert where == Endpoint("http://127.0.0.1:8080", "abc", None)


def test_endpoint_over_tls_with_a_token_file_and_ca_data(tmp_path: Path) -> None:
    ca = create_self_signed_ca(datetime.now(UTC))
    (tmp_path / "token").write_text("from-file\n")
    cluster = {"server": "https://api.example:6443",
               "certificate-authority-data": base64.b64encode(certs_to_pem([ca.cert])).decode()}
    where = endpoint(_kubeconfig(tmp_path, cluster, {"tokenFile": "token"}), {})
    assert where is not None
    assert where.token == "from-file"
    assert where.tls is not None
    assert where.tls.verify_mode == ssl.CERT_REQUIRED
    assert where.tls.check_hostname


def test_endpoint_skipping_verification_as_the_kubeconfig_says(tmp_path: Path) -> None:
    cluster = {"server": "https://api.example:6443", "insecure-skip-tls-verify": True}
    where = endpoint(_kubeconfig(tmp_path, cluster, {}), {})
    assert where is not None
    assert where.tls is not None
    assert where.tls.verify_mode == ssl.CERT_NONE


@pytest.mark.parametrize(("cluster", "user"), [
    ({"server": "https://a:1"}, {"exec": {"command": "aws"}}),
    ({"server": "https://a:1"}, {"auth-provider": {"name": "oidc"}}),
    ({"server": "https://a:1"}, {"client-certificate-data": "eA==", "client-key-data": "eA=="}),
    ({"server": "https://a:1"}, {"username": "u", "password": "p"}),
    ({"server": "https://a:1", "proxy-url": "http://proxy:3128"}, {"token": "t"}),
    ({"server": "https://a:1", "tls-server-name": "other"}, {"token": "t"}),
    ({"server": "unix:///socket"}, {"token": "t"}),
])
def test_no_endpoint_for_anything_but_plain_cases(tmp_path: Path, cluster: dict[str, Any],
                                                  user: dict[str, Any]) -> None:
    assert endpoint(_kubeconfig(tmp_path, cluster, user), {}) is None


def test_no_endpoint_for_an_unreadable_or_merged_kubeconfig(tmp_path: Path) -> None:
    assert endpoint(str(tmp_path / "missing"), {}) is None
    (tmp_path / "bad").write_text("{not yaml: [")
    assert endpoint(str(tmp_path / "bad"), {}) is None
    assert endpoint(None, {"KUBECONFIG": f"{tmp_path}/a{os.pathsep}{tmp_path}/b"}) is None


def test_endpoint_in_cluster_from_the_service_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ca = create_self_signed_ca(datetime.now(UTC))
    (tmp_path / "token").write_text("sa-token")
    (tmp_path / "ca.crt").write_bytes(certs_to_pem([ca.cert]))
    monkeypatch.setattr(prefetch_module, "_SERVICE_ACCOUNT", tmp_path)
    where = endpoint(None, {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"})
    assert where is not None
    assert where.server == "https://[fd00::1]:443"
    assert where.token == "sa-token"


def test_reaches_only_the_configured_server() -> None:
    prefetch = ListPrefetch(Endpoint("http://127.0.0.1:1/", None, None), "ua")
    assert prefetch.reaches("http://127.0.0.1:1")
    assert not prefetch.reaches("https://127.0.0.1:1")


def test_startup_phases_end_once_and_summarise_in_order() -> None:
    phases = StartupPhases()
    assert phases.end("store")
    assert phases.end("runtime")
    first = phases.ended["store"]
    assert not phases.end("store"), "a later list does not end it again"
    assert phases.ended["store"] == first
    assert 0 < first <= since_start()
    summary = phases.summary()
    assert summary.index("runtime") < summary.index("store")
    assert set(phases.ended) <= set(PHASES)
