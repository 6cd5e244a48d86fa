"""Deletion: finalizers, delete-collection, garbage collection, namespaces; one test per rule."""

from __future__ import annotations

import asyncio
from typing import Any

from kube_emulator import Emulator, EmulatorServer

from .conftest import Http, secret, widget

SECRETS = "/api/v1/namespaces/default/secrets"
WIDGETS = "/apis/example.com/v1/namespaces/default/widgets"


async def _eventually(predicate: Any, within: float = 5) -> None:
    for _ in range(int(within / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never became true")


def owned_by(obj: dict[str, Any]) -> list[dict[str, Any]]:
    meta = obj["metadata"]
    return [{"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": meta["name"], "uid": meta["uid"]}]


async def test_delete_answers_status_success(http: Http) -> None:
    await http.post(SECRETS, secret("a"))
    status, body = await http.delete(f"{SECRETS}/a")
    assert status == 200
    assert body["kind"] == "Status"
    assert body["status"] == "Success"
    assert body["details"]["name"] == "a"
    status, _ = await http.get(f"{SECRETS}/a")
    assert status == 404


async def test_delete_missing_is_404(http: Http) -> None:
    status, body = await http.delete(f"{SECRETS}/nope")
    assert status == 404
    assert body["reason"] == "NotFound"


async def test_delete_with_finalizers_sets_deletion_timestamp(http: Http) -> None:
    body = widget("w")
    body["metadata"]["finalizers"] = ["example.com/cleanup"]
    _, created = await http.post(WIDGETS, body)
    status, deleting = await http.delete(f"{WIDGETS}/w")
    assert status == 200
    meta = deleting["metadata"]
    assert meta["deletionTimestamp"]
    assert meta["deletionGracePeriodSeconds"] == 0
    assert meta["generation"] == created["metadata"]["generation"] + 1
    status, still = await http.get(f"{WIDGETS}/w")
    assert status == 200
    assert still["metadata"]["deletionTimestamp"] == meta["deletionTimestamp"]


async def test_removing_the_last_finalizer_deletes(http: Http) -> None:
    body = widget("w")
    body["metadata"]["finalizers"] = ["a", "b"]
    await http.post(WIDGETS, body)
    await http.delete(f"{WIDGETS}/w")
    status, _ = await http.patch(f"{WIDGETS}/w", {"metadata": {"finalizers": ["b"]}})
    assert status == 200
    status, _ = await http.get(f"{WIDGETS}/w")
    assert status == 200
    status, _ = await http.patch(f"{WIDGETS}/w", {"metadata": {"finalizers": None}})
    assert status == 200
    status, _ = await http.get(f"{WIDGETS}/w")
    assert status == 404


async def test_no_new_finalizers_on_an_object_being_deleted(http: Http) -> None:
    body = widget("w")
    body["metadata"]["finalizers"] = ["a"]
    await http.post(WIDGETS, body)
    await http.delete(f"{WIDGETS}/w")
    status, _ = await http.patch(f"{WIDGETS}/w", {"metadata": {"finalizers": ["a", "b"]}})
    assert status == 422


async def test_delete_preconditions_conflict(http: Http) -> None:
    await http.post(SECRETS, secret("a"))
    status, body = await http.delete(f"{SECRETS}/a", {"preconditions": {"resourceVersion": "1"}})
    assert status == 409
    assert body["reason"] == "Conflict"


async def test_delete_collection_with_label_selector(http: Http) -> None:
    for name, team in (("a", "x"), ("b", "x"), ("c", "y")):
        await http.post(SECRETS, secret(name, metadata={"name": name, "labels": {"team": team}}))
    status, body = await http.delete(SECRETS, labelSelector="team=x")
    assert status == 200
    assert body["kind"] == "SecretList"
    assert sorted(i["metadata"]["name"] for i in body["items"]) == ["a", "b"]
    _, remaining = await http.get(SECRETS)
    assert [i["metadata"]["name"] for i in remaining["items"]] == ["c"]


async def test_delete_collection_with_field_selector(http: Http) -> None:
    for name in ("a", "b"):
        await http.post(SECRETS, secret(name))
    await http.delete(SECRETS, fieldSelector="metadata.name=b")
    _, remaining = await http.get(SECRETS)
    assert [i["metadata"]["name"] for i in remaining["items"]] == ["a"]


async def test_owner_reference_garbage_collection(http: Http, server: EmulatorServer) -> None:
    _, owner = await http.post(WIDGETS, widget("owner"))
    await http.post(SECRETS, secret("child", metadata={"name": "child", "ownerReferences": owned_by(owner)}))
    _, other = await http.post(WIDGETS, widget("other"))
    both = owned_by(owner) + owned_by(other)
    await http.post(SECRETS, secret("shared", metadata={"name": "shared", "ownerReferences": both}))
    status, _ = await http.delete(f"{WIDGETS}/owner")
    assert status == 200
    emulator = server.emulator
    await _eventually(lambda: emulator.get("v1", "secrets", "child", "default") is None)
    shared = emulator.get("v1", "secrets", "shared", "default")
    assert shared is not None, "an object with a live owner stays"
    assert shared["metadata"]["ownerReferences"] == owned_by(other)


async def test_garbage_collection_waits_for_the_owner_to_be_gone(http: Http, server: EmulatorServer) -> None:
    body = widget("owner")
    body["metadata"]["finalizers"] = ["hold"]
    _, owner = await http.post(WIDGETS, body)
    await http.post(SECRETS, secret("child", metadata={"name": "child", "ownerReferences": owned_by(owner)}))
    await http.delete(f"{WIDGETS}/owner")
    await asyncio.sleep(0.05)
    assert server.emulator.get("v1", "secrets", "child", "default") is not None
    await http.patch(f"{WIDGETS}/owner", {"metadata": {"finalizers": None}})
    await _eventually(lambda: server.emulator.get("v1", "secrets", "child", "default") is None)


async def test_garbage_collection_of_dangling_owner_references(emulator: Emulator) -> None:
    refs = [{"apiVersion": "v1", "kind": "Pod", "name": "gone", "uid": "00000000-0000-4000-8000-000000000000"}]
    emulator.create(secret("orphan", metadata={"name": "orphan", "namespace": "default", "ownerReferences": refs}))
    assert emulator.get("v1", "secrets", "orphan", "default") is None


async def test_orphan_propagation_keeps_dependents(http: Http, server: EmulatorServer) -> None:
    _, owner = await http.post(WIDGETS, widget("owner"))
    await http.post(SECRETS, secret("child", metadata={"name": "child", "ownerReferences": owned_by(owner)}))
    await http.delete(f"{WIDGETS}/owner", {"propagationPolicy": "Orphan"})
    await asyncio.sleep(0.05)
    child = server.emulator.get("v1", "secrets", "child", "default")
    assert child is not None
    assert "ownerReferences" not in child["metadata"]


async def test_deleting_a_namespace_deletes_its_objects(http: Http, server: EmulatorServer) -> None:
    await http.post("/api/v1/namespaces", {"metadata": {"name": "shop"}})
    await http.post("/api/v1/namespaces/shop/secrets", secret("a", namespace="shop"))
    status, body = await http.delete("/api/v1/namespaces/shop")
    assert status == 200
    assert body["status"]["phase"] == "Terminating"
    status, _ = await http.post("/api/v1/namespaces/shop/secrets", secret("b", namespace="shop"))
    assert status in (403, 404)
    emulator = server.emulator
    await _eventually(lambda: emulator.get("v1", "namespaces", "shop") is None)
    assert emulator.list("v1", "secrets", "shop") == []
