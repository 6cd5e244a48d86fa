"""One typed door to the Kubernetes API: every call the operator makes goes through ``KubeAPI``.

It speaks plain JSON dicts over the synchronous ``kubernetes`` client's transport (auth, TLS and
kubeconfig handling stay the client's), runs each call in a worker thread of its own pool so the event
loop never blocks, and turns HTTP failures into the project's own errors in exactly one place.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import urllib3
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from mtls_operator.errors import ConflictError, KubernetesAPIError, NotFoundError

JSON = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"

# Statuses a retry can fix: conflicts, throttling, server trouble, timeouts.
_RETRYABLE = frozenset({0, 408, 409, 429, 500, 502, 503, 504})


class KubeAPI:
    """JSON-in, JSON-out access to the API server. ``ApiException`` never escapes this class."""

    def __init__(self, api_client: k8s_client.ApiClient, *, timeout: float = 30.0) -> None:
        self._api_client = api_client
        self._timeout = timeout
        # Requests made, by (HTTP method, resource): cheap, and what benchmarks report per certificate.
        self.counts: Counter[tuple[str, str]] = Counter()
        # The API calls' own threads, as many as the client keeps connections. Not asyncio's default pool:
        # key generation and parsing run there (an RSA 4096 key is seconds of CPU, and tenants choose the
        # key type and the number of pods), and the Lease renewal, the CA and every other tenant's calls
        # must never wait behind that work.
        size = int(getattr(api_client.configuration, "connection_pool_maxsize", 0) or 0)
        self._executor = ThreadPoolExecutor(max_workers=max(4, size), thread_name_prefix="mtls-api")

    @classmethod
    def from_configuration(cls, configuration: k8s_client.Configuration, *, user_agent: str | None = None) -> KubeAPI:
        """``user_agent`` names this replica in the API server's audit log (who wrote what, when)."""
        api_client = k8s_client.ApiClient(configuration)
        if user_agent:
            api_client.user_agent = user_agent
        return cls(api_client)

    @property
    def api_client(self) -> k8s_client.ApiClient:
        return self._api_client

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._api_client.close()  # type: ignore[no-untyped-call]

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: object = None,
        content_type: str = "application/json",
        accept: str = "application/json",
    ) -> JSON:
        self.counts[(method, _resource_of(path))] += 1
        call = functools.partial(self._request_sync, method, path, query, body, content_type, accept)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def _request_sync(
        self, method: str, path: str, query: Mapping[str, str] | None, body: object, content_type: str,
        accept: str = "application/json",
    ) -> JSON:
        headers = {"Accept": accept}
        if body is not None:
            headers["Content-Type"] = content_type
        serialized = self._api_client.param_serialize(
            method=method,
            resource_path=path,
            query_params=list((query or {}).items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        what = f"{method} {path}"
        try:
            response = self._api_client.call_api(*serialized, _request_timeout=self._timeout)
            raw = response.read()  # type: ignore[no-untyped-call]
            status = int(response.status)
        except ApiException as exc:
            raise _translate(what, int(exc.status or 0), exc.body, exc.reason) from None
        except (OSError, urllib3.exceptions.HTTPError) as exc:  # refused, reset, TLS, retries exhausted
            raise KubernetesAPIError(f"{what}: {exc}", status=None, retryable=True) from None
        if status >= 400:
            raise _translate(what, status, raw, None)
        if not raw:
            return {}
        parsed = json.loads(raw)
        return parsed if isinstance(parsed, dict) else {"items": parsed}


def _resource_of(path: str) -> str:
    """The resource a path addresses: ``/api/v1/namespaces/x/secrets/y`` -> ``secrets``."""
    parts = [part for part in path.split("/") if part]
    parts = parts[2:] if parts[:1] == ["api"] else parts[3:]
    if len(parts) >= 2 and parts[0] == "namespaces":
        parts = parts[2:] if len(parts) > 2 else parts[:1]
    if not parts:
        return ""
    return parts[0] + ("/status" if parts[-1] == "status" and len(parts) == 3 else "")


def _translate(what: str, status: int, raw: bytes | str | None, reason: str | None) -> KubernetesAPIError:
    """Turn an HTTP failure into our exception, keeping the server's own message (it names the field)."""
    message = reason or ""
    if raw:
        try:
            payload = json.loads(raw)
            if isinstance(payload, dict) and payload.get("message"):
                message = str(payload["message"])
        except ValueError:
            message = (raw.decode(errors="replace") if isinstance(raw, bytes) else raw)[:200]
    text = f"{what}: HTTP {status}: {message}".rstrip(": ")
    if status == 404:
        return NotFoundError(text)
    if status == 409:
        return ConflictError(text)
    return KubernetesAPIError(text, status=status, retryable=status in _RETRYABLE)


def core_path(resource: str, namespace: str | None = None, name: str | None = None) -> str:
    """``/api/v1/namespaces/<ns>/<resource>/<name>`` with every segment escaped."""
    return _path("/api/v1", resource, namespace, name)


def group_path(
    group: str, version: str, resource: str, namespace: str | None = None, name: str | None = None
) -> str:
    return _path(f"/apis/{group}/{version}", resource, namespace, name)


def _path(prefix: str, resource: str, namespace: str | None, name: str | None) -> str:
    parts = [prefix]
    if namespace is not None:
        parts.append(f"namespaces/{quote(namespace, safe='')}")
    parts.append(resource)
    if name is not None:
        parts.append(quote(name, safe=""))
    return "/".join(parts)
