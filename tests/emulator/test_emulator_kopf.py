"""A small kopf operator runs against the emulator through a kubeconfig."""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any

import kopf
import pytest

from kube_emulator import EmulatorServer

from .conftest import widget


async def _eventually(predicate: Any, within: float = 15) -> None:
    for _ in range(int(within / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the condition never became true")


async def test_kopf_operator_runs_against_emulator(
    server: EmulatorServer, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    registry = kopf.OperatorRegistry()
    deleted: list[str] = []

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.create("example.com", "v1", "widgets", registry=registry, id="created")
    async def created(spec: Any, patch: kopf.Patch, **_: Any) -> dict[str, Any]:
        patch.metadata.labels["handled"] = "yes"
        return {"doubled": spec["size"] * 2}

    @kopf.on.delete("example.com", "v1", "widgets", registry=registry)
    async def removed(name: str, **_: Any) -> None:
        deleted.append(name)

    emulator = server.emulator
    stop = asyncio.Event()
    ready = asyncio.Event()
    task = asyncio.create_task(kopf.operator(
        registry=registry, clusterwide=True, standalone=True, stop_flag=stop, ready_flag=ready,
    ))
    try:
        await asyncio.wait_for(ready.wait(), 15)
        emulator.create(widget("w1", size=3))

        def handled() -> bool:
            obj = emulator.get("example.com/v1", "widgets", "w1", "default") or {}
            return (obj["metadata"].get("labels", {}).get("handled") == "yes"
                    and obj.get("status", {}).get("created", {}).get("doubled") == 6)

        await _eventually(handled)
        obj = emulator.get("example.com/v1", "widgets", "w1", "default")
        assert obj is not None
        assert obj["metadata"]["finalizers"] == ["kopf.zalando.org/KopfFinalizerMarker"]

        emulator.delete("example.com/v1", "widgets", "w1", "default")
        await _eventually(lambda: emulator.get("example.com/v1", "widgets", "w1", "default") is None)
        assert deleted == ["w1"]
        assert emulator.requests.count("watch", "widgets") >= 1
        assert emulator.requests.count("patch", "widgets", subresource="status") >= 1
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def test_kopf_recovers_from_injected_faults(
    server: EmulatorServer, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(server.write_kubeconfig(tmp_path / "kubeconfig")))
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.event("example.com", "v1", "widgets", registry=registry)
    async def seen(name: str, type: str | None, patch: kopf.Patch, **_: Any) -> None:
        if type in (None, "ADDED"):
            patch.metadata.labels["seen"] = "yes"

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.networking.error_backoffs = [0.1, 0.2, 0.3]
        settings.watching.reconnect_backoff = 0.1

    emulator = server.emulator
    dropped = emulator.faults.add(verb="watch", resource="widgets", drop_watch=True, count=2)
    failed = emulator.faults.add(verb="patch", resource="widgets", status=500, count=1)
    stop = asyncio.Event()
    ready = asyncio.Event()
    task = asyncio.create_task(kopf.operator(
        registry=registry, clusterwide=True, standalone=True, stop_flag=stop, ready_flag=ready,
    ))
    try:
        await asyncio.wait_for(ready.wait(), 15)
        await _eventually(lambda: dropped.fired == 2)
        emulator.create(widget("w1"))

        def labelled() -> bool:
            obj = emulator.get("example.com/v1", "widgets", "w1", "default") or {}
            return obj.get("metadata", {}).get("labels", {}).get("seen") == "yes"

        await _eventually(labelled)
        assert failed.fired == 1
        assert emulator.requests.count("watch", "widgets") >= 3
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
