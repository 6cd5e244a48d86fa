"""KubeAPI (k8s/api.py) against a small aiohttp server: errors translated in one place, the bearer token
read once a minute and again after a 401, one keep-alive session, watch lines parsed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp.web
import pytest
from kubernetes import client as k8s_client

from mtls_operator.errors import ConflictError, KubernetesAPIError, NotFoundError
from mtls_operator.k8s import KubeAPI
from mtls_operator.k8s.api import METADATA_ONLY


class Server:
    def __init__(self) -> None:
        self.token = "Bearer t1"
        self.seen: list[dict[str, Any]] = []
        self.peers: set[Any] = set()

    async def handle(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        self.seen.append({"path": request.path, "query": dict(request.query), "headers": dict(request.headers)})
        self.peers.add(request.transport.get_extra_info("peername") if request.transport else None)
        if request.headers.get("Authorization") != self.token:
            return aiohttp.web.json_response({"kind": "Status", "message": "Unauthorized"}, status=401)
        name = request.path.rsplit("/", 1)[-1]
        if name == "missing":
            return aiohttp.web.json_response({"message": 'secrets "missing" not found'}, status=404)
        if name == "taken":
            return aiohttp.web.json_response({"message": 'secrets "taken" already exists'}, status=409)
        if name == "broken":
            return aiohttp.web.Response(text="<html>bad gateway</html>", status=502)
        if request.query.get("watch") == "true":
            response = aiohttp.web.StreamResponse()
            await response.prepare(request)
            for index in range(3):
                event = {"type": "ADDED", "object": {"metadata": {"name": f"s{index}", "resourceVersion": str(index)}}}
                line = json.dumps(event).encode() + b"\n"
                await response.write(line[:10])  # an event split across chunks
                await response.write(line[10:])
            return response
        return aiohttp.web.json_response({"metadata": {"name": name}, "echo": await request.text()})


@pytest.fixture
async def served() -> AsyncIterator[tuple[Server, str]]:
    server = Server()
    app = aiohttp.web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def configuration(url: str, reads: list[str], tokens: list[str]) -> k8s_client.Configuration:
    config = k8s_client.Configuration()
    config.host = url
    config.api_key["BearerToken"] = tokens[0]  # as the kubeconfig loader sets it, with its refresh hook

    def refresh(conf: k8s_client.Configuration) -> None:
        conf.api_key["BearerToken"] = tokens[min(len(reads), len(tokens) - 1)]
        reads.append(conf.api_key["BearerToken"])

    config.refresh_api_key_hook = refresh
    return config


async def test_requests_share_one_connection_and_read_the_token_once(served: tuple[Server, str]) -> None:
    server, url = served
    reads: list[str] = []
    api = KubeAPI(configuration(url, reads, ["Bearer t1"]), user_agent="mtls-operator/test (a-0)")
    try:
        for _ in range(5):
            assert (await api.request("GET", "/api/v1/namespaces/x/secrets/a"))["metadata"] == {"name": "a"}
        body = await api.request("POST", "/api/v1/namespaces/x/secrets", body={"k": 1})
        assert json.loads(body["echo"]) == {"k": 1}
    finally:
        await api.close()
    assert reads == ["Bearer t1"], "the token hook ran once, not per request"
    assert len(server.peers) == 1, "one keep-alive connection"
    assert {seen["headers"]["User-Agent"] for seen in server.seen} == {"mtls-operator/test (a-0)"}
    assert server.seen[-1]["headers"]["Content-Type"] == "application/json"


async def test_a_401_reads_the_token_again_and_retries_once(served: tuple[Server, str]) -> None:
    server, url = served
    server.token = "Bearer t2"  # rotated since the operator read t1
    reads: list[str] = []
    api = KubeAPI(configuration(url, reads, ["Bearer t1", "Bearer t2"]))
    try:
        await api.request("GET", "/api/v1/namespaces/x/secrets/a")
        server.token = "Bearer t3"  # nobody will ever have it: one retry, then the error
        with pytest.raises(KubernetesAPIError, match="HTTP 401: Unauthorized") as caught:
            await api.request("GET", "/api/v1/namespaces/x/secrets/a")
    finally:
        await api.close()
    assert reads == ["Bearer t1", "Bearer t2", "Bearer t2"]
    assert caught.value.status == 401
    assert not caught.value.retryable


async def test_errors_are_translated_in_one_place(served: tuple[Server, str]) -> None:
    _, url = served
    api = KubeAPI(configuration(url, [], ["Bearer t1"]))
    try:
        with pytest.raises(NotFoundError, match='secrets/missing: HTTP 404: secrets "missing" not found'):
            await api.request("GET", "/api/v1/namespaces/x/secrets/missing")
        with pytest.raises(ConflictError, match="already exists"):
            await api.request("POST", "/api/v1/namespaces/x/secrets/taken", body={})
        with pytest.raises(KubernetesAPIError, match="HTTP 502: <html>bad gateway") as caught:
            await api.request("GET", "/api/v1/namespaces/x/secrets/broken")
        assert caught.value.retryable
    finally:
        await api.close()
    refused = KubeAPI(configuration("http://127.0.0.1:9", [], ["Bearer t1"]))
    try:
        with pytest.raises(KubernetesAPIError) as caught:
            await refused.request("GET", "/api/v1/namespaces")
        assert caught.value.status is None
        assert caught.value.retryable
    finally:
        await refused.close()


async def test_watch_lines_are_parsed_across_chunks_with_the_accept_header(served: tuple[Server, str]) -> None:
    server, url = served
    api = KubeAPI(configuration(url, [], ["Bearer t1"]))
    try:
        events = [event async for event in api.watch("/api/v1/secrets", query={"labelSelector": "a=b"},
                                                      accept=METADATA_ONLY, read_timeout=5)]
    finally:
        await api.close()
    assert [event["object"]["metadata"]["name"] for event in events] == ["s0", "s1", "s2"]
    assert server.seen[0]["query"] == {"labelSelector": "a=b", "watch": "true"}
    assert server.seen[0]["headers"]["Accept"] == METADATA_ONLY


async def test_an_https_server_in_capitals_is_still_spoken_to_over_tls_only(served: tuple[Server, str]) -> None:
    """A URL scheme is case-insensitive (RFC 3986, 3.1): ``HTTPS://`` is TLS too, never plain HTTP with the token."""
    server, url = served  # a plain-HTTP server: a TLS client cannot talk to it
    api = KubeAPI(configuration(url.replace("http://", "HTTPS://"), [], ["Bearer t1"]))
    try:
        with pytest.raises(KubernetesAPIError):
            await api.request("GET", "/api/v1/namespaces/x/secrets/a")
        with pytest.raises(KubernetesAPIError):
            async for _ in api.watch("/api/v1/namespaces/x/secrets", query={}, read_timeout=5):
                pass
    finally:
        await api.close()
    assert server.seen == [], "no request (and no bearer token) went out in plain text"
