"""The start-up lists (controller/prefetch.py) and the start-up phases (observability/startup.py)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from typing import Any, cast

import pytest

from mtls_operator import constants as c
from mtls_operator.controller import prefetch as prefetch_module
from mtls_operator.controller.objects import WatchedObjects
from mtls_operator.controller.prefetch import ListPrefetch
from mtls_operator.errors import KubernetesAPIError
from mtls_operator.k8s import KubeAPI
from mtls_operator.k8s.api import METADATA_ONLY
from mtls_operator.observability.startup import PHASES, StartupPhases, since_start
from mtls_operator.rules.spec import LabelSelector


def _pod(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}",
                         "labels": {"app": "a", c.INJECT_LABEL: c.INJECT_VALUE}},
            "spec": {"serviceAccountName": "sa", "containers": [{"name": "x"}]}, "status": {"phase": "Running"}}


def _secret(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "resourceVersion": "3",
                         "labels": {c.MANAGED_BY_LABEL: c.MANAGER_NAME, c.IDENTITY_LABEL: "a"},
                         "annotations": {c.BUNDLE_HASH_ANNOTATION: "sha256:x"}}}


class ListingAPI:
    """Two pages of pods, one of Secrets; records the requests and the thread that made them."""

    def __init__(self, fail: bool = False) -> None:
        self.requests: list[tuple[str, dict[str, str], str | None]] = []
        self.threads: set[str] = set()
        self.closed = False
        self.fail = fail

    async def request(self, method: str, path: str, *, query: Mapping[str, str] | None = None,
                      accept: str | None = None, **_: Any) -> dict[str, Any]:
        self.threads.add(threading.current_thread().name)
        self.requests.append((path, dict(query or {}), accept))
        if self.fail:
            raise KubernetesAPIError("GET: refused", status=None, retryable=True)
        if path.endswith("/pods"):
            if "continue" in (query or {}):
                return {"metadata": {"resourceVersion": "10"}, "items": [_pod("p2")]}
            return {"metadata": {"resourceVersion": "10", "continue": "k"}, "items": [_pod("p1")]}
        return {"metadata": {"resourceVersion": "11"}, "items": [_secret("s1")]}

    async def close(self) -> None:
        self.closed = True


async def test_lists_pods_then_secrets_in_a_thread_and_keeps_what_the_store_keeps() -> None:
    api = ListingAPI()
    prefetch = ListPrefetch(lambda: cast(KubeAPI, api))
    prefetch.start()
    listed = await prefetch.take()
    assert listed is not None
    assert api.threads == {"mtls-operator list prefetch"}
    assert api.closed
    assert [path for path, _, _ in api.requests] == ["/api/v1/pods", "/api/v1/pods", "/api/v1/secrets"]
    assert api.requests[0][1] == {"labelSelector": f"{c.INJECT_LABEL}={c.INJECT_VALUE}", "limit": "500"}
    assert api.requests[2][2] == METADATA_ONLY, "Secrets metadata only"
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
    prefetch = ListPrefetch(lambda: cast(KubeAPI, ListingAPI(fail=True)))
    prefetch.start()
    assert await prefetch.take() is None
    assert "listing pods and Secrets at start-up failed" in caplog.text


async def test_lists_older_than_fresh_or_discarded_are_not_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    prefetch = ListPrefetch(lambda: cast(KubeAPI, ListingAPI()))
    prefetch.start()
    monkeypatch.setattr(prefetch_module, "FRESH", -1.0)
    assert await prefetch.take() is None
    discarded = ListPrefetch(lambda: cast(KubeAPI, ListingAPI()))
    discarded.start()
    discarded.discard()
    assert await discarded.take() is None
    await asyncio.sleep(0)


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
