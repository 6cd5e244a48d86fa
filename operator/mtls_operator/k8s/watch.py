"""Lean watches outside kopf, on the operator's one HTTP session.

kopf's per-event machinery (a body object, a patch, handler selection, progress, logging per event)
is worth it for the few MTLSIdentities, not for every opted-in pod and managed Secret. A
``ResourceWatch`` follows one collection's stream from a list's resourceVersion and hands each
event's type and object to a callback on the event loop; when the stream's history is lost (410
Gone, a broken connection) it reports ``RESYNC`` with no object, since changes may have been missed,
and starts again from a fresh list.

Secrets are watched metadata-only (``PartialObjectMetadata``): the operator only needs to know
that a managed Secret was edited or deleted behind its back, never its keys, so none crosses the
wire for the watch. The API server takes two media types for that: a list asks for
``as=PartialObjectMetadataList``, a watch for ``as=PartialObjectMetadata`` (each event carries one
object). A watch that asks for the list type gets a 200 stream that kube-apiserver closes at its
first event, unwritten (it cannot turn one object into a list) — so a watch that ends at once and
empty is never re-opened at once: it backs off like a failure (1 s, doubling up to 30 s) and keeps
its place. A stream counts as healthy when it delivered an event (a bookmark included) or lasted
half its ``timeoutSeconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection, Mapping
from typing import Any

from mtls_operator.errors import KubernetesAPIError
from mtls_operator.k8s.api import JSON, METADATA_ONLY, METADATA_ONLY_OBJECT, KubeAPI

logger = logging.getLogger(__name__)

RESYNC = "RESYNC"

# Called with the event type and the object (metadata only for a metadata-only watch), or with
# (RESYNC, None) when anything may have been missed.
OnEvent = Callable[[str, Mapping[str, Any] | None], None]
# Called instead of a RESYNC, with every object the selector matches (a full list, page by page), each
# as ``keep`` made it (the object itself without one).
OnList = Callable[[list[Any]], None]
# What a list keeps of each object, page by page: the bodies of a page are dropped once it is read.
Keep = Callable[[JSON], Any]

_PAGE = 500

_MAX_BACKOFF = 30.0


class ResourceWatch:
    def __init__(
        self,
        api: KubeAPI,
        path: str,
        label_selector: str,
        on_event: OnEvent,
        *,
        types: Collection[str] = ("ADDED", "MODIFIED", "DELETED"),
        metadata_only: bool = False,
        timeout_seconds: int = 60,
        on_list: OnList | None = None,
        field_selector: str = "",
        keep: Keep | None = None,
    ) -> None:
        self._api = api
        self._path = path
        # The selectors every list and watch carries (a field selector: the PodCertificateRequest signer's).
        self._selectors = {name: value for name, value in (("labelSelector", label_selector),
                                                          ("fieldSelector", field_selector)) if value}
        self._on_event = on_event
        self._types = frozenset(types)
        # Lists and watches ask for different media types (see the module docstring).
        self._list_accept = METADATA_ONLY if metadata_only else None
        self._watch_accept = METADATA_ONLY_OBJECT if metadata_only else None
        self._timeout_seconds = timeout_seconds
        self._on_list = on_list
        self._keep = keep

    async def run(self, listed: tuple[str, list[Any]] | None = None) -> None:
        """Follow the collection until cancelled. ``listed``: a list already made (its resourceVersion and
        its objects as ``keep`` made them), handed to ``on_list`` and watched from instead of listing."""
        delay = 0.0  # before the next attempt: none after a healthy stream, growing after failures
        relist_now = True  # one 410 Gone re-lists at once; another before a healthy stream backs off
        version: str | None = None
        loop = asyncio.get_running_loop()
        while True:
            if delay:
                await asyncio.sleep(delay)
            try:
                if version is None and self._on_list is not None:
                    version, items = listed if listed is not None else await self._list_all()
                    listed = None
                    self._on_list(items)
                elif version is None:
                    version = await self._resource_version()
                    self._on_event(RESYNC, None)  # anything may have happened while we were not watching
                started = loop.time()
                version, delivered = await self._stream(version)
            except KubernetesAPIError as exc:
                delay = _backoff(delay)
                logger.warning("watch on %s failed, retrying in %.0fs: %s", self._path, delay, exc)
                version = None
                continue
            if delivered or loop.time() - started >= self._timeout_seconds / 2:
                delay, relist_now = 0.0, True
            elif version is None and relist_now:
                delay, relist_now = 0.0, False
            else:
                delay = _backoff(delay)
                logger.warning("watch on %s ended at once with no event, next in %.0fs", self._path, delay)

    async def _resource_version(self) -> str:
        query = {**self._selectors, "limit": "1"}
        listing = await self._api.request("GET", self._path, query=query, accept=self._list_accept)
        return str((listing.get("metadata") or {}).get("resourceVersion") or "")

    async def _list_all(self) -> tuple[str, list[Any]]:
        return await list_all(self._api, self._path, self._selectors, accept=self._list_accept, keep=self._keep)

    async def _stream(self, version: str) -> tuple[str | None, bool]:
        """Follow the stream from ``version``; return where to resume (None: re-list first) and whether
        any event came (an ERROR apart)."""
        query = {
            **self._selectors,
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(self._timeout_seconds),
        }
        delivered = False
        events = self._api.watch(self._path, query=query, accept=self._watch_accept,
                                 read_timeout=self._timeout_seconds + 30.0)
        async with contextlib.aclosing(events):  # an early return closes the stream's connection
            async for event in events:
                kind = str(event.get("type"))
                body = event.get("object")
                if not isinstance(body, dict):
                    raise KubernetesAPIError(f"WATCH {self._path}: an event of type {kind} without an object",
                                             status=None, retryable=True)
                if kind == "ERROR":
                    code = body.get("code")
                    if code == 410:  # 410 Gone (Expired): our place in history is lost, re-list
                        return None, delivered
                    raise KubernetesAPIError(f"WATCH {self._path}: {body.get('message') or body.get('reason')}",
                                             status=code if isinstance(code, int) else None, retryable=True)
                delivered = True
                version = str((body.get("metadata") or {}).get("resourceVersion") or version)
                if kind in self._types:
                    self._on_event(kind, body)
        return version, delivered


async def list_all(api: KubeAPI, path: str, selectors: Mapping[str, str], *, accept: str | None = None,
                   keep: Keep | None = None) -> tuple[str, list[Any]]:
    """Every object the selectors match, page by page, each as ``keep`` makes it; and the list's
    resourceVersion, to watch from."""
    items: list[Any] = []
    query = {**selectors, "limit": str(_PAGE)}
    while True:
        listing = await api.request("GET", path, query=query, accept=accept)
        page = [item for item in listing.get("items") or [] if isinstance(item, dict)]
        items.extend(map(keep, page) if keep is not None else page)
        metadata = listing.get("metadata") or {}
        if not metadata.get("continue"):
            return str(metadata.get("resourceVersion") or ""), items
        query = {**query, "continue": str(metadata["continue"])}


def _backoff(delay: float) -> float:
    return min(max(1.0, delay * 2), _MAX_BACKOFF)
