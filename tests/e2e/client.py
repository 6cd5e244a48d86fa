"""A small synchronous Kubernetes API client for the e2e suite: every answer, errors included, as data.

The suite compares answers (status codes, reasons, causes) of the real API server with the
emulator's, so this client never raises on an HTTP error: it returns the status and the body. It
reads the same kubeconfigs as the operator (client certificates, tokens, inline data).
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from typing import Any

import urllib3

from mtls_operator.k8s.config import load_configuration


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def __getitem__(self, key: str) -> Any:
        return self.body[key]


class Client:
    def __init__(self, kubeconfig: str) -> None:
        configuration = load_configuration(kubeconfig)
        self.host = configuration.host.rstrip("/")
        self._headers = {"Accept": "application/json", "User-Agent": "mtls-operator-e2e"}
        token = configuration.api_key.get("authorization") or configuration.api_key.get("BearerToken")
        if token:
            prefix = configuration.api_key_prefix.get("authorization", "")
            self._headers["Authorization"] = f"{prefix} {token}".strip() if prefix else token
        self._pool = urllib3.PoolManager(
            cert_reqs="CERT_REQUIRED" if configuration.verify_ssl else "CERT_NONE",
            ca_certs=configuration.ssl_ca_cert, cert_file=configuration.cert_file, key_file=configuration.key_file,
            maxsize=4,
        )

    def request(self, method: str, path: str, body: object = None, *, query: dict[str, str] | None = None,
                content_type: str = "application/json", timeout: float = 30, accept: str | None = None) -> Answer:
        headers = dict(self._headers)
        if accept:
            headers["Accept"] = accept
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body).encode()
        url = self.host + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        response = self._pool.request(method, url, body=data, headers=headers, timeout=timeout, retries=False)
        raw = response.data
        try:
            parsed = json.loads(raw) if raw else {}
        except ValueError:
            parsed = {"raw": raw.decode(errors="replace")}
        if not isinstance(parsed, dict):
            parsed = {"value": parsed}
        warnings = tuple(response.headers.getlist("Warning")) if hasattr(response.headers, "getlist") else ()
        return Answer(response.status, parsed, warnings)

    def watch(self, path: str, query: dict[str, str], *, accept: str | None = None,
              timeout: float = 60) -> tuple[int, list[dict[str, Any]]]:
        """One watch stream read to its end (``timeoutSeconds`` in ``query`` ends it): the HTTP status
        and every event, parsed; an answer that is not a stream comes back as its one body."""
        headers = dict(self._headers)
        if accept:
            headers["Accept"] = accept
        url = self.host + path + "?" + urllib.parse.urlencode({**query, "watch": "true"})
        response = self._pool.request("GET", url, headers=headers, timeout=timeout, retries=False,
                                      preload_content=False)
        try:
            raw = b"".join(response.stream(65536))
        finally:
            response.release_conn()
        if response.status != 200:
            # A refusal (a Status, which may span lines) rather than a stream.
            events = [json.loads(raw)] if raw.strip() else []
        else:
            events = [json.loads(line) for line in raw.splitlines() if line.strip()]
        return response.status, [event if isinstance(event, dict) else {"value": event} for event in events]

    def get(self, path: str, **query: str) -> Answer:
        return self.request("GET", path, query=query or None)

    def create(self, path: str, body: dict[str, Any]) -> Answer:
        return self.request("POST", path, body)

    def patch(self, path: str, body: dict[str, Any], *, kind: str = "merge") -> Answer:
        content_type = {"merge": "application/merge-patch+json", "json": "application/json-patch+json",
                        "strategic": "application/strategic-merge-patch+json"}[kind]
        return self.request("PATCH", path, body, content_type=content_type)

    def delete(self, path: str, body: dict[str, Any] | None = None) -> Answer:
        return self.request("DELETE", path, body)

    def close(self) -> None:
        self._pool.clear()
