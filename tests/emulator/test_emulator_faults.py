"""Fault injection and the request log; one test per rule."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from kube_emulator import EmulatorServer, RequestLog
from kube_emulator.server import REQUEST_LOG_PATH

from .conftest import Http, secret

SECRETS = "/api/v1/namespaces/default/secrets"


async def test_fault_injection_500(http: Http, server: EmulatorServer) -> None:
    fault = server.emulator.faults.add(verb="create", resource="secrets", status=500)
    status, body = await http.post(SECRETS, secret("a"))
    assert status == 500
    assert body["reason"] == "InternalError"
    assert fault.fired == 1
    status, _ = await http.post(SECRETS, secret("a"))
    assert status == 201, "count=1 (the default) fires once"


async def test_fault_injection_429_retry_after(http: Http, server: EmulatorServer) -> None:
    server.emulator.faults.add(verb="list", resource="secrets", status=429, retry_after=2)
    async with http.session.get(http.url + SECRETS) as resp:
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "2"
        body = await resp.json()
    assert body["reason"] == "TooManyRequests"
    assert body["details"]["retryAfterSeconds"] == 2


async def test_fault_injection_409(http: Http, server: EmulatorServer) -> None:
    await http.post(SECRETS, secret("a"))
    server.emulator.faults.add(verb="patch", resource="secrets", status=409)
    status, body = await http.patch(f"{SECRETS}/a", {"metadata": {"labels": {"a": "b"}}})
    assert status == 409
    assert body["reason"] == "Conflict"


async def test_fault_injection_selects_by_verb_resource_name_and_count(http: Http, server: EmulatorServer) -> None:
    for name in ("a", "b"):
        await http.post(SECRETS, secret(name))
    fault = server.emulator.faults.add(verb="get", resource="secrets", name="b", status=503, count=2)
    assert (await http.get(f"{SECRETS}/a"))[0] == 200
    assert (await http.get(f"{SECRETS}/b"))[0] == 503
    assert (await http.get(SECRETS))[0] == 200, "list is another verb"
    assert (await http.get(f"{SECRETS}/b"))[0] == 503
    assert (await http.get(f"{SECRETS}/b"))[0] == 200
    assert fault.fired == 2
    assert server.emulator.faults.active == []


async def test_fault_injection_forever_until_cleared(http: Http, server: EmulatorServer) -> None:
    server.emulator.faults.add(resource="secrets", status=500, count=None)
    for _ in range(3):
        assert (await http.get(SECRETS))[0] == 500
    server.emulator.faults.clear()
    assert (await http.get(SECRETS))[0] == 200


async def test_fault_injection_slow_answer(http: Http, server: EmulatorServer) -> None:
    fault = server.emulator.faults.add(verb="list", resource="secrets", delay=0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    status, _ = await http.get(SECRETS)
    assert status == 200
    assert loop.time() - started >= 0.3
    assert fault.fired == 1


async def test_fault_injection_dropped_watch_stream(http: Http, server: EmulatorServer) -> None:
    server.emulator.create(secret("a"))
    server.emulator.faults.add(verb="watch", resource="secrets", drop_watch=True)
    events: list[bytes] = []

    async def read_stream() -> None:
        async with http.session.get(http.url + SECRETS, params={"watch": "true"}) as resp:
            assert resp.status == 200
            async for line in resp.content:
                events.append(line)

    with pytest.raises(aiohttp.ClientPayloadError):
        await read_stream()
    assert len(events) == 1, "the initial events are sent before the drop"
    watched = await http.watch(SECRETS, count=1)
    assert watched[0]["type"] == "ADDED", "the next watch works"


def test_fault_needs_an_effect() -> None:
    from kube_emulator import FaultInjector

    with pytest.raises(ValueError, match="needs"):
        FaultInjector().add(verb="get")


async def test_request_log_counts(http: Http, server: EmulatorServer) -> None:
    log = server.emulator.requests
    log.reset()
    await http.post(SECRETS, secret("a"))
    await http.get(f"{SECRETS}/a")
    await http.get(SECRETS)
    await http.patch(f"{SECRETS}/a", {"metadata": {"labels": {"x": "1"}}})
    await http.put(f"{SECRETS}/a", secret("a"))
    await http.delete(f"{SECRETS}/a")
    await http.delete(SECRETS)
    await http.get("/api/v1")  # discovery: not a resource request
    await http.watch(SECRETS, timeoutSeconds=0.1)
    await http.patch("/apis/example.com/v1/namespaces/default/widgets/x/status", {"status": {}})
    for verb in ("create", "get", "list", "patch", "update", "delete", "deletecollection", "watch"):
        assert log.count(verb=verb, resource="secrets") == 1, verb
    assert log.count(resource="secrets") == 8
    assert log.count(resource="widgets.example.com", subresource="status") == 1
    assert log.count(resource="widgets", subresource="") == 0
    assert log.reads == 3
    assert log.writes == 6
    assert log.other == 1
    assert log.recent[0][:5] == ("create", "secrets", "default", None, 201)
    assert log.recent[-1][:5] == ("patch", "widgets", "default", "x", 404)
    assert "aiohttp" in (log.recent[0].user_agent or "")  # who asked: the client's User-Agent


def test_request_log_is_bounded() -> None:
    log = RequestLog(recent_size=10)
    for i in range(1000):
        log.record("get", "", "secrets", None, "default", f"s{i}", 200)
    assert len(log.recent) == 10
    assert log.count("get", "secrets") == 1000
    log.reset()
    assert log.count() == 0


async def test_request_log_served_over_http_for_other_processes(http: Http, server: EmulatorServer) -> None:
    server.emulator.requests.reset()
    await http.post(SECRETS, secret("a"))
    await http.get(f"{SECRETS}/a")
    status, body = await http.get(REQUEST_LOG_PATH)
    assert status == 200
    assert body["reads"] == 1
    assert body["writes"] == 1
    assert {"verb": "create", "resource": "secrets", "subresource": "", "count": 1} in body["counts"]
    # Reading the log is not itself a logged request.
    status, again = await http.get(REQUEST_LOG_PATH)
    assert again["reads"] == 1
