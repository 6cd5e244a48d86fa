"""Fixtures for the emulator's own suite: a server on the test's loop, raw HTTP, a sync client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kube_emulator import Emulator, EmulatorServer, EmulatorThread

# A real project's CRDs (this repository's single source), for the tests that install a folder.
REPOSITORY_CRDS = Path(__file__).resolve().parents[2] / "crds"

WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wdg"]},
        "versions": [{
            "name": "v1",
            "served": True,
            "storage": True,
            "subresources": {"status": {}},
            "additionalPrinterColumns": [
                {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                {"name": "Color", "type": "string", "jsonPath": ".spec.color"},
                {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"},
            ],
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "spec": {
                        "type": "object",
                        "required": ["size"],
                        "properties": {
                            "size": {"type": "integer", "minimum": 1},
                            "color": {"type": "string", "enum": ["red", "green", "blue"], "default": "red"},
                            "code": {"type": "string", "pattern": "^[a-z]+$"},
                            "tags": {"type": "array", "items": {"type": "string"}},
                        },
                    },
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                },
            }},
        }],
    },
}


def widget(name: str, size: int = 1, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name, "namespace": "default"},
            "spec": {"size": size, **spec}}


def secret(name: str, namespace: str = "default", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
                            "stringData": {"key": "value"}}
    body.update(extra)
    return body


class Http:
    """Raw HTTP against the server: (status, parsed JSON body)."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url

    async def request(self, method: str, path: str, body: Any = None, *, content_type: str = "application/json",
                      headers: dict[str, str] | None = None, **params: Any) -> tuple[int, Any]:
        data = None if body is None else (body if isinstance(body, (bytes, str)) else json.dumps(body))
        all_headers = {"Content-Type": content_type, **(headers or {})}
        query = {k: str(v) for k, v in params.items()}
        async with self.session.request(method, self.url + path, data=data, headers=all_headers,
                                        params=query) as resp:
            text = await resp.text()
            return resp.status, (json.loads(text) if text and text[0] in "{[" else text)

    async def get(self, path: str, **params: Any) -> tuple[int, Any]:
        return await self.request("GET", path, **params)

    async def post(self, path: str, body: Any, **params: Any) -> tuple[int, Any]:
        return await self.request("POST", path, body, **params)

    async def put(self, path: str, body: Any, **params: Any) -> tuple[int, Any]:
        return await self.request("PUT", path, body, **params)

    async def patch(self, path: str, body: Any, content_type: str = "application/merge-patch+json",
                    **params: Any) -> tuple[int, Any]:
        return await self.request("PATCH", path, body, content_type=content_type, **params)

    async def delete(self, path: str, body: Any = None, **params: Any) -> tuple[int, Any]:
        return await self.request("DELETE", path, body, **params)

    async def watch(self, path: str, *, count: int | None = None, within: float = 5,
                    **params: Any) -> list[dict[str, Any]]:
        """Watch events until the stream ends, or ``count`` events arrived."""
        events: list[dict[str, Any]] = []
        query = {"watch": "true", **{k: str(v) for k, v in params.items()}}
        async with asyncio.timeout(within), self.session.get(self.url + path, params=query) as resp:
            assert resp.status == 200, await resp.text()
            assert resp.headers["Content-Type"].startswith("application/json")
            async for line in resp.content:
                if line.strip():
                    events.append(json.loads(line))
                if count is not None and len(events) >= count:
                    break
        return events


@pytest.fixture
def emulator() -> Emulator:
    return Emulator(crds=[WIDGET_CRD])


@pytest.fixture
async def server(emulator: Emulator) -> AsyncIterator[EmulatorServer]:
    async with EmulatorServer(emulator) as srv:
        yield srv


@pytest.fixture
async def http(server: EmulatorServer) -> AsyncIterator[Http]:
    async with aiohttp.ClientSession() as session:
        yield Http(session, server.url)


@pytest.fixture
def thread_server() -> Iterator[EmulatorThread]:
    with EmulatorThread(crds=[WIDGET_CRD]) as srv:
        yield srv
