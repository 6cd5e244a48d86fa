"""One typed door to the Kubernetes API: every call the operator makes goes through ``KubeAPI``.

It speaks plain JSON dicts over one ``aiohttp`` session on the event loop (connections kept alive
and reused, no model objects, no worker threads), and turns HTTP failures into the project's own
errors in exactly one place. Where the API server is and how to authenticate stay the
``kubernetes`` client's business: its config loader reads the kubeconfig or the in-cluster service
account into a ``Configuration`` (``k8s/config.py``), and this class takes the server, the TLS
files and the bearer token from it — the token per request, so a rotated service-account token or
an exec plugin's refresh is picked up.

The bearer token is read through the configuration's refresh hook at most once a minute (as
client-go reloads a service-account token file), and at once after a 401: the hook of a kubeconfig
rebuilds part of the configuration on every call, which cost a third of a millisecond per request.

An earlier version ran the synchronous ``kubernetes`` client in worker threads: one thread hop and
one urllib3 round of parsing per call made HTTP the larger part of the operator's CPU per
certificate (bench/versus_bench.py shows the difference).

Bodies are encoded and answers and watch events decoded with orjson: several per certificate, and
the standard library's json costs about 20 microseconds more per certificate (a Secret's body to
encode, its answer and two watch events to decode).
"""

from __future__ import annotations

import functools
import json
import re
import ssl
import time
from collections import Counter
from collections.abc import AsyncGenerator, Mapping
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
import orjson
from kubernetes import client as k8s_client

from mtls_operator.errors import ConflictError, KubernetesAPIError, NotFoundError
from mtls_operator.k8s.http import HTTPClient

JSON = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"
# Lists of object metadata only (no data, no spec), as the API server serves them.
METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
# For a single object and for a watch (each event carries one object): the same, one object at a time.
# A watch asking for the list type gets a stream kube-apiserver ends at its first event, unwritten.
METADATA_ONLY_OBJECT = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"

# Statuses a retry can fix: conflicts, throttling, server trouble, timeouts.
_RETRYABLE = frozenset({0, 408, 409, 429, 500, 502, 503, 504})
# Concurrent connections to the API server: the reconciler serves 8 pods of an identity at once,
# first issues 8 more, plus the watches, the Lease and status writes.
_CONNECTIONS = 32
# A watch stream's lines are whole objects; one that never ends is refused, not buffered forever.
_MAX_WATCH_LINE = 4 * 1024 * 1024
# Seconds a bearer token read from the configuration is used before it is read again.
_TOKEN_TTL = 60.0
# What a request line's target and a header's value may hold: printable ASCII, no line breaks.
_SAFE_TARGET = re.compile(r"[!-~]+")
_SAFE_VALUE = re.compile(r"[ -~]+")
_DEFAULT_USER_AGENT = "mtls-operator"


class KubeAPI:
    """JSON-in, JSON-out access to the API server. No aiohttp error escapes this class."""

    def __init__(
        self, configuration: k8s_client.Configuration, *, timeout: float = 30.0, user_agent: str | None = None
    ) -> None:
        self._configuration = configuration
        self._timeout = timeout
        self._user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None  # watches
        self._http: HTTPClient | None = None  # every other request
        if user_agent is not None and not _SAFE_VALUE.fullmatch(user_agent):
            raise ValueError(f"a User-Agent of printable characters, not {user_agent[:100]!r}")
        self._fixed_headers = f"User-Agent: {user_agent or _DEFAULT_USER_AGENT}\r\n"
        self._base = str(configuration.host).rstrip("/")
        self._token: str | None = None
        self._token_read_at: float | None = None
        # Requests made, by (HTTP method, resource): cheap, and what benchmarks report per certificate.
        self.counts: Counter[tuple[str, str]] = Counter()

    @classmethod
    def from_configuration(cls, configuration: k8s_client.Configuration, *, user_agent: str | None = None) -> KubeAPI:
        """``user_agent`` names this replica in the API server's audit log (who wrote what, when)."""
        return cls(configuration, user_agent=user_agent)

    def _ssl(self) -> ssl.SSLContext | bool:
        configuration = self._configuration
        if urlsplit(self._base).scheme != "https":  # schemes are case-insensitive: ``HTTPS://`` is TLS too
            return False
        context = ssl.create_default_context(cafile=configuration.ssl_ca_cert or None)
        if not configuration.verify_ssl:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif configuration.assert_hostname is False:
            context.check_hostname = False
        if configuration.cert_file:
            context.load_cert_chain(configuration.cert_file, configuration.key_file)
        return context

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            headers = {"Accept": "application/json"}
            if self._user_agent:
                headers["User-Agent"] = self._user_agent
            connector = aiohttp.TCPConnector(ssl=self._ssl(), limit=_CONNECTIONS, keepalive_timeout=60)
            # No session-wide timeout: each request sets its own, and watches stream for minutes.
            self._session = aiohttp.ClientSession(headers=headers, connector=connector,
                                                  timeout=aiohttp.ClientTimeout(total=None),
                                                  skip_auto_headers=("Content-Type",))
        return self._session

    def _authorization(self) -> str | None:
        now = time.monotonic()
        if self._token_read_at is None or now - self._token_read_at > _TOKEN_TTL:
            configuration = self._configuration
            token = configuration.get_api_key_with_prefix("BearerToken") or configuration.get_api_key_with_prefix(
                "authorization"
            )
            if token and not _SAFE_VALUE.fullmatch(str(token)):
                raise KubernetesAPIError("the bearer token holds characters a header cannot carry", status=None,
                                         retryable=False)
            self._token, self._token_read_at = (str(token) if token else None), now
        return self._token

    def _headers(self, accept: str | None, content_type: str | None) -> dict[str, str]:
        headers: dict[str, str] = {}
        token = self._authorization()
        if token:
            headers["Authorization"] = token
        if accept:
            headers["Accept"] = accept
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    async def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: object = None,
        content_type: str = "application/json",
        accept: str | None = None,
    ) -> JSON:
        self.counts[(method, _resource_of(path))] += 1
        what = f"{method} {path}"
        data = orjson.dumps(body) if body is not None else None
        target = self._client().prefix + path
        if query:
            target += "?" + urlencode(query, quote_via=quote)
        if not _SAFE_TARGET.fullmatch(target):
            raise KubernetesAPIError(f"{what}: not a request target: {target[:200]!r}", status=None, retryable=False)
        for attempt in range(2):
            message = self._message(method, target, data, content_type, accept)
            try:
                answer = await self._client().request(message, repeatable=method == "GET")
            except (OSError, TimeoutError) as exc:  # refused, reset, TLS, not HTTP, timed out
                raise KubernetesAPIError(f"{what}: {exc or type(exc).__name__}", status=None,
                                         retryable=True) from None
            if answer.status != 401 or attempt:
                break
            self._token_read_at = None  # the token expired or was rotated: read it again, once
        status, raw = answer.status, answer.body
        if status >= 400:
            raise _translate(what, status, raw, answer.reason)
        if not raw:
            return {}
        try:
            parsed = orjson.loads(raw)
        except ValueError:
            raise KubernetesAPIError(f"{what}: the answer is not JSON", status=status, retryable=True) from None
        return parsed if isinstance(parsed, dict) else {"items": parsed}

    def _client(self) -> HTTPClient:
        if self._http is None:
            context = self._ssl()
            self._http = HTTPClient(self._base, ssl_context=context if isinstance(context, ssl.SSLContext) else None,
                                    server_hostname=self._configuration.tls_server_name or None,
                                    limit=_CONNECTIONS, timeout=self._timeout)
        return self._http

    def _message(self, method: str, target: str, data: bytes | None, content_type: str, accept: str | None) -> bytes:
        """One HTTP/1.1 request, head and body, as sent."""
        assert self._http is not None
        head = f"{method} {target} HTTP/1.1\r\nHost: {self._http.host_header}\r\n{self._fixed_headers}"
        head += f"Accept: {accept or 'application/json'}\r\n"
        token = self._authorization()
        if token:
            head += f"Authorization: {token}\r\n"
        if data is None:
            return (head + "\r\n").encode("latin-1")
        head += f"Content-Type: {content_type}\r\nContent-Length: {len(data)}\r\n\r\n"
        return head.encode("latin-1") + data

    async def watch(
        self,
        path: str,
        *,
        query: Mapping[str, str],
        accept: str | None = None,
        read_timeout: float,
    ) -> AsyncGenerator[JSON, None]:
        """The events of one watch stream (``watch=true`` is added), each a parsed JSON line, until the
        server ends it. Failures are ``KubernetesAPIError`` like every request's."""
        self.counts[("WATCH", _resource_of(path))] += 1
        what = f"WATCH {path}"
        try:
            async with self._open().get(
                self._base + path, params={**query, "watch": "true"}, headers=self._headers(accept, None),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=read_timeout),
                server_hostname=self._configuration.tls_server_name or None,
            ) as response:
                if response.status >= 400:
                    if response.status == 401:
                        self._token_read_at = None  # the next attempt reads the token again
                    raise _translate(what, response.status, await response.read(), response.reason)
                buffer = b""
                async for chunk in response.content.iter_any():
                    buffer += chunk
                    if b"\n" not in chunk:
                        if len(buffer) > _MAX_WATCH_LINE:
                            raise KubernetesAPIError(f"{what}: an event longer than {_MAX_WATCH_LINE} bytes",
                                                     status=None, retryable=True)
                        continue
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        if line.strip():
                            event = orjson.loads(line)
                            if isinstance(event, dict):
                                yield event
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            raise KubernetesAPIError(f"{what}: {exc or type(exc).__name__}", status=None, retryable=True) from None


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
        parts.append(f"namespaces/{_segment(namespace)}")
    parts.append(resource)
    if name is not None:
        parts.append(_segment(name))
    return "/".join(parts)


# A path segment escaped; a handful of namespaces are asked for by every request, each escaped once.
@functools.lru_cache(maxsize=1024)
def _segment(text: str) -> str:
    return quote(text, safe="")

