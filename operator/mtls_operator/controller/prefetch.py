"""The opted-in pods and managed Secrets listed while the process is still starting.

At a restart over thousands of pods the first look at every identity waits for two lists: the opted-in
pods and the managed Secrets (metadata only). They depend on nothing but where the API server is, so
the command line starts them first thing, in a thread of its own, and imports the kubernetes client,
aiohttp, kopf and the controller meanwhile (most of a start-up's time): the API server serves the lists
while the process imports. That is why this module imports only the standard library, orjson and
PyYAML, and reaches the API server with ``http.client``: the kubernetes client's config loader and
aiohttp alone take longer to import than the API server takes to serve 10,000 pods.

It reads where the API server is the way ``k8s/config.py`` does (an explicit kubeconfig, else the
in-cluster service account, else ~/.kube/config), for the plain cases only: a bearer token (or token
file), client certificate files, a CA file or CA data, or no TLS. Anything else (an exec plugin, an
auth provider, inline client keys, a proxy) gets no prefetch, and the watches list as before; and the
command line drops the prefetch unless the server is the one ``load_configuration`` finds.

The pages are read as they come; each is kept as the watched store keeps it (``stored_pod``,
``metadata_view``) once the main thread has imported those (``keep_as``), and until then held as the
bytes that came, never as decoded bodies. The first leadership takes the lists and its watches continue
from their resourceVersions, exactly as after lists of their own (whatever changed since is in the
watch's history). Lists older than ``FRESH`` are not taken, and a failed list only means the watches
list themselves.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import http.client
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

import orjson
import yaml

from mtls_operator import constants as c
from mtls_operator.observability.startup import since_start

if TYPE_CHECKING:
    from mtls_operator.k8s.views import SecretView
    from mtls_operator.rules.plan import PodInfo

logger = logging.getLogger(__name__)

# Seconds a prefetched list may be old when leadership begins: start-up only.
FRESH = 30.0

POD_SELECTOR = f"{c.INJECT_LABEL}={c.INJECT_VALUE}"
SECRET_SELECTOR = f"{c.MANAGED_BY_LABEL}={c.MANAGER_NAME}"
# k8s.api.METADATA_ONLY (that module imports aiohttp): a list of object metadata only.
METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
_PAGE = 500
_TIMEOUT = 30.0

# The in-cluster service account, where the kubernetes client's loader reads it.
_SERVICE_HOST = "KUBERNETES_SERVICE_HOST"
_SERVICE_PORT = "KUBERNETES_SERVICE_PORT"
_SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# The kubeconfig fields this reader understands; any other field means "not a plain case".
_CLUSTER_FIELDS = frozenset({"server", "certificate-authority", "certificate-authority-data",
                             "insecure-skip-tls-verify"})
_USER_FIELDS = frozenset({"token", "tokenFile", "client-certificate", "client-key"})


@dataclass(frozen=True)
class Endpoint:
    """The API server and how to reach it."""

    server: str  # scheme://host[:port], as the kubernetes client's Configuration.host
    token: str | None
    tls: ssl.SSLContext | None  # None: plain HTTP


def endpoint(kubeconfig: str | None, environ: Mapping[str, str] = os.environ) -> Endpoint | None:
    """Where the API server is, read as ``load_configuration`` reads it; None for anything but plain cases."""
    try:
        explicit = kubeconfig or environ.get("KUBECONFIG")
        if explicit:
            return None if os.pathsep in explicit else _from_kubeconfig(Path(explicit))
        host, port = environ.get(_SERVICE_HOST), environ.get(_SERVICE_PORT)
        token_file = _SERVICE_ACCOUNT / "token"
        if host and port and token_file.is_file():
            host = f"[{host}]" if ":" in host else host
            return Endpoint(f"https://{host}:{port}", token_file.read_text().strip(),
                            ssl.create_default_context(cafile=str(_SERVICE_ACCOUNT / "ca.crt")))
        default = Path.home() / ".kube" / "config"
        return _from_kubeconfig(default) if default.is_file() else None
    except (OSError, ValueError, ssl.SSLError, yaml.YAMLError, binascii.Error):
        return None


def _named(entries: object, name: object, field: str) -> dict[str, Any] | None:
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and entry.get("name") == name and isinstance(entry.get(field), dict):
            return dict(entry[field])
    return None


def _from_kubeconfig(path: Path) -> Endpoint | None:
    config = yaml.safe_load(path.read_text())
    if not isinstance(config, dict):
        return None
    context = _named(config.get("contexts"), config.get("current-context"), "context")
    if context is None:
        return None
    cluster = _named(config.get("clusters"), context.get("cluster"), "cluster")
    user = _named(config.get("users"), context.get("user"), "user") or {}
    if cluster is None or set(cluster) - _CLUSTER_FIELDS or set(user) - _USER_FIELDS:
        return None
    server = str(cluster.get("server") or "")
    base = path.parent
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = (base / str(user["tokenFile"])).read_text().strip()
    scheme = urlsplit(server).scheme
    if scheme == "http":
        return Endpoint(server, str(token) if token else None, None)
    if scheme != "https":
        return None
    authority = cluster.get("certificate-authority")
    authority_data = cluster.get("certificate-authority-data")
    tls = ssl.create_default_context(
        cafile=str(base / str(authority)) if authority else None,
        cadata=base64.b64decode(str(authority_data)).decode() if authority_data else None,
    )
    if cluster.get("insecure-skip-tls-verify") is True:
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
    if user.get("client-certificate"):
        key = user.get("client-key")
        tls.load_cert_chain(str(base / str(user["client-certificate"])), str(base / str(key)) if key else None)
    return Endpoint(server, str(token) if token else None, tls)


@dataclass(frozen=True)
class Listed:
    """Both lists: each one's resourceVersion (to watch from) and its objects as the store keeps them."""

    pods: tuple[str, list[PodInfo]]
    secrets: tuple[str, list[SecretView]]
    at: float  # time.monotonic() when the lists began
    done: float  # when they ended, in seconds since the process started


class _Pages:
    """One list's pages as they came: kept at once when the keeper is there, else held as bytes."""

    def __init__(self) -> None:
        self.version = ""
        self.kept: list[Any] = []
        self.held: list[bytes] = []

    def add(self, raw: bytes, listing: Mapping[str, Any], keep: Callable[[Any], Any] | None) -> None:
        if keep is None:
            self.held.append(raw)
            return
        self.flush(keep)
        self.kept.extend(map(keep, _items(listing)))

    def flush(self, keep: Callable[[Any], Any]) -> None:
        for raw in self.held:
            self.kept.extend(map(keep, _items(orjson.loads(raw))))
        self.held.clear()


def _items(listing: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [item for item in listing.get("items") or [] if isinstance(item, dict)]


class ListPrefetch:
    """``start()`` the lists in a thread; the main thread hands over how to keep each object (``keep_as``);
    the first leadership ``take()``s them."""

    def __init__(self, where: Endpoint, user_agent: str) -> None:
        self.where = where
        self._user_agent = user_agent
        self._result: concurrent.futures.Future[Listed] | None = concurrent.futures.Future()
        self._keepers: tuple[Callable[[Any], PodInfo], Callable[[Any], SecretView]] | None = None
        self._keepers_set = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._main, args=(self._result,), name="mtls-operator list prefetch",
                         daemon=True).start()

    def keep_as(self, pod: Callable[[Any], PodInfo], secret: Callable[[Any], SecretView]) -> None:
        """How the store keeps a pod and a Secret (``stored_pod``, ``metadata_view``), once imported."""
        self._keepers = (pod, secret)
        self._keepers_set.set()

    def _main(self, result: concurrent.futures.Future[Listed]) -> None:
        result.set_running_or_notify_cancel()  # a take() that gives up cannot cancel it under the thread
        try:
            result.set_result(self._lists())
        except BaseException as exc:  # handed to take(): the watches then list themselves
            result.set_exception(exc)

    def _lists(self) -> Listed:
        at = time.monotonic()
        connection = self._connect()
        try:
            pods = self._list(connection, "/api/v1/pods", POD_SELECTOR, None, 0)
            secrets = self._list(connection, "/api/v1/secrets", SECRET_SELECTOR, METADATA_ONLY, 1)
        finally:
            connection.close()
        if not self._keepers_set.wait(_TIMEOUT) or self._keepers is None:
            raise TimeoutError("nothing to keep the listed objects with")
        pods.flush(self._keepers[0])
        secrets.flush(self._keepers[1])
        return Listed(pods=(pods.version, pods.kept), secrets=(secrets.version, secrets.kept), at=at,
                      done=since_start())

    def _connect(self) -> http.client.HTTPConnection:
        parts = urlsplit(self.where.server)
        if self.where.tls is None:
            return http.client.HTTPConnection(parts.netloc, timeout=_TIMEOUT)
        return http.client.HTTPSConnection(parts.netloc, timeout=_TIMEOUT, context=self.where.tls)

    def _list(self, connection: http.client.HTTPConnection, path: str, selector: str, accept: str | None,
              which: int) -> _Pages:
        pages = _Pages()
        query = {"labelSelector": selector, "limit": str(_PAGE)}
        while True:
            raw = self._get(connection, path, query, accept)
            listing = orjson.loads(raw)
            if not isinstance(listing, dict):
                raise ValueError(f"GET {path}: the answer is not a list")
            pages.add(raw, listing, self._keepers[which] if self._keepers is not None else None)
            metadata = listing.get("metadata") or {}
            pages.version = str(metadata.get("resourceVersion") or "")
            if not metadata.get("continue"):
                return pages
            query = {**query, "continue": str(metadata["continue"])}

    def _get(self, connection: http.client.HTTPConnection, path: str, query: Mapping[str, str],
             accept: str | None) -> bytes:
        headers = {"Accept": accept or "application/json", "User-Agent": self._user_agent}
        if self.where.token:
            headers["Authorization"] = f"Bearer {self.where.token}"
        prefix = urlsplit(self.where.server).path.rstrip("/")
        connection.request("GET", f"{prefix}{path}?{urlencode(query)}", headers=headers)
        response = connection.getresponse()
        raw = response.read()
        if response.status != http.client.OK:
            raise ConnectionError(f"GET {path}: HTTP {response.status}")
        return raw

    def reaches(self, server: str) -> bool:
        """Whether the lists come from this server (the configuration the operator runs with)."""
        return self.where.server.rstrip("/") == server.rstrip("/")

    def discard(self) -> None:
        """Not taken in time (or not the operator's server): its memory goes, ``take`` returns None."""
        self._result = None
        self._keepers_set.set()

    async def take(self) -> Listed | None:
        """The lists, once, if they succeeded and are fresh; else None (the watches list themselves)."""
        result, self._result = self._result, None
        if result is None:
            return None
        try:
            listed = await asyncio.wait_for(asyncio.wrap_future(result), FRESH)
        except Exception as exc:  # whatever failed, the watches list again
            logger.warning("listing pods and Secrets at start-up failed, the watches list them again: %s",
                           exc or type(exc).__name__)
            return None
        return listed if time.monotonic() - listed.at <= FRESH else None
