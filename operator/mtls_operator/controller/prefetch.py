"""The opted-in pods and managed Secrets listed while the process is still starting.

At a restart over thousands of pods the first look at every identity waits for two lists: the opted-in
pods and the managed Secrets (metadata only). They depend on nothing but where the API server is, so
``ListPrefetch`` starts them from the command line, in a thread with an event loop and an HTTP session
of its own, while the main thread still imports kopf and the controller and kopf starts: the API server
serves the lists meanwhile. Each page is kept as the watched store keeps it (``stored_pod``,
``metadata_view``) and its bodies dropped, so no full list of bodies is ever held.

The first leadership takes the lists and its watches continue from their resourceVersions, exactly as
after lists of their own (whatever changed since is in the watch's history). Lists older than
``FRESH`` are not taken (a replica that waited long to lead lists again, as does any later leadership),
and a failed list only means the watches list themselves.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from mtls_operator import constants as c
from mtls_operator.controller.objects import metadata_view, stored_pod
from mtls_operator.k8s import KubeAPI, core_path
from mtls_operator.k8s.api import METADATA_ONLY
from mtls_operator.k8s.views import SecretView
from mtls_operator.k8s.watch import list_all
from mtls_operator.observability.startup import since_start
from mtls_operator.rules.plan import PodInfo

logger = logging.getLogger(__name__)

# Seconds a prefetched list may be old when leadership begins: start-up only.
FRESH = 30.0

POD_SELECTOR = f"{c.INJECT_LABEL}={c.INJECT_VALUE}"
SECRET_SELECTOR = f"{c.MANAGED_BY_LABEL}={c.MANAGER_NAME}"


@dataclass(frozen=True)
class Listed:
    """Both lists: each one's resourceVersion (to watch from) and its objects as the store keeps them."""

    pods: tuple[str, list[PodInfo]]
    secrets: tuple[str, list[SecretView]]
    at: float  # time.monotonic() when the lists began
    done: float  # when they ended, in seconds since the process started


async def list_pods_and_secrets(api: KubeAPI) -> Listed:
    """The two lists, one after the other: they overlap the start-up's imports, not each other (the pages of
    two lists interleaved cost an API server that serves a list's pages from one selection, as the
    project's emulator does, a selection per page)."""
    at = time.monotonic()
    pods = await list_all(api, core_path("pods"), {"labelSelector": POD_SELECTOR}, keep=stored_pod)
    secrets = await list_all(api, core_path("secrets"), {"labelSelector": SECRET_SELECTOR}, accept=METADATA_ONLY,
                             keep=metadata_view)
    return Listed(pods=pods, secrets=secrets, at=at, done=since_start())


class ListPrefetch:
    """``start()`` the lists in a thread; the first leadership ``take()``s them."""

    def __init__(self, api: Callable[[], KubeAPI]) -> None:
        self._api = api
        self._result: concurrent.futures.Future[Listed] | None = concurrent.futures.Future()

    def start(self) -> None:
        threading.Thread(target=self._main, args=(self._result,), name="mtls-operator list prefetch",
                         daemon=True).start()

    def _main(self, result: concurrent.futures.Future[Listed]) -> None:
        try:
            result.set_result(asyncio.run(self._lists()))
        except BaseException as exc:  # handed to take(): the watches then list themselves
            result.set_exception(exc)

    async def _lists(self) -> Listed:
        api = self._api()
        try:
            return await list_pods_and_secrets(api)
        finally:
            await api.close()

    def discard(self) -> None:
        """Not taken in time: its memory goes (``take`` then returns None)."""
        self._result = None

    async def take(self) -> Listed | None:
        """The lists, once, if they succeeded and are fresh; else None (the watches list themselves)."""
        result, self._result = self._result, None
        if result is None:
            return None
        try:
            listed = await asyncio.wrap_future(result)
        except Exception as exc:  # whatever failed, the watches list again
            logger.warning("listing pods and Secrets at start-up failed, the watches list them again: %s", exc)
            return None
        return listed if time.monotonic() - listed.at <= FRESH else None
