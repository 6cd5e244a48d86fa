"""Lists and watches: selectors, resource versions, 410 Gone, timeouts; one test per rule."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from kube_emulator import Emulator, EmulatorServer

from .conftest import Http, secret, widget

SECRETS = "/api/v1/namespaces/default/secrets"
WIDGETS = "/apis/example.com/v1/namespaces/default/widgets"


def labelled(name: str, **labels: str) -> dict[str, object]:
    return secret(name, metadata={"name": name, "labels": labels})


async def test_list_has_kind_api_version_and_resource_version(http: Http) -> None:
    await http.post(SECRETS, secret("a"))
    status, body = await http.get(SECRETS)
    assert status == 200
    assert body["kind"] == "SecretList"
    assert body["apiVersion"] == "v1"
    assert int(body["metadata"]["resourceVersion"]) >= 1
    assert [(i["kind"], i["apiVersion"], i["metadata"]["name"]) for i in body["items"]] == [("Secret", "v1", "a")]


async def test_list_across_namespaces(http: Http) -> None:
    await http.post(SECRETS, secret("a"))
    await http.post("/api/v1/namespaces/kube-system/secrets", secret("b", namespace="kube-system"))
    _, body = await http.get("/api/v1/secrets")
    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in body["items"]] == [
        ("default", "a"), ("kube-system", "b")]


async def test_list_label_selector(http: Http) -> None:
    await http.post(SECRETS, labelled("a", app="x", tier="web"))
    await http.post(SECRETS, labelled("b", app="y"))
    await http.post(SECRETS, labelled("c"))
    for selector, expected in [("app=x", ["a"]), ("app!=x", ["b", "c"]), ("app in (x,y)", ["a", "b"]),
                               ("app", ["a", "b"]), ("!app", ["c"]), ("app=x,tier=web", ["a"])]:
        _, body = await http.get(SECRETS, labelSelector=selector)
        assert [i["metadata"]["name"] for i in body["items"]] == expected, selector


async def test_list_field_selector_name_and_namespace(http: Http) -> None:
    await http.post(SECRETS, secret("a"))
    await http.post(SECRETS, secret("b"))
    await http.post("/api/v1/namespaces/kube-system/secrets", secret("a", namespace="kube-system"))
    _, body = await http.get("/api/v1/secrets", fieldSelector="metadata.name=a")
    assert len(body["items"]) == 2
    _, body = await http.get("/api/v1/secrets", fieldSelector="metadata.name=a,metadata.namespace=default")
    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in body["items"]] == [("default", "a")]


async def test_invalid_selector_is_400(http: Http) -> None:
    status, body = await http.get(SECRETS, labelSelector="a in (")
    assert status == 400
    assert body["reason"] == "BadRequest"


async def test_custom_resource_field_selector_only_name_and_namespace(http: Http) -> None:
    status, _ = await http.get(WIDGETS, fieldSelector="spec.size=1")
    assert status == 400


async def test_list_limit_and_continue(http: Http) -> None:
    for i in range(5):
        await http.post(SECRETS, secret(f"s{i}"))
    _, first = await http.get(SECRETS, limit=2)
    assert [i["metadata"]["name"] for i in first["items"]] == ["s0", "s1"]
    assert first["metadata"]["remainingItemCount"] == 3
    _, second = await http.get(SECRETS, limit=2, **{"continue": first["metadata"]["continue"]})
    assert [i["metadata"]["name"] for i in second["items"]] == ["s2", "s3"]
    _, third = await http.get(SECRETS, limit=2, **{"continue": second["metadata"]["continue"]})
    assert [i["metadata"]["name"] for i in third["items"]] == ["s4"]
    assert "continue" not in third["metadata"]


async def test_a_page_after_a_write_shows_the_current_state(http: Http) -> None:
    # Pages read while nothing changes share one selection; a write between two pages is seen by the next.
    for name in ("s0", "s1", "s3"):
        await http.post(SECRETS, secret(name))
    _, first = await http.get(SECRETS, limit=2)
    await http.post(SECRETS, secret("s2"))
    await http.post(SECRETS, secret("s4"))
    _, second = await http.get(SECRETS, limit=2, **{"continue": first["metadata"]["continue"]})
    assert [i["metadata"]["name"] for i in second["items"]] == ["s2", "s3"]
    assert second["metadata"]["remainingItemCount"] == 1
    _, other = await http.get(SECRETS, limit=2, labelSelector="missing=label")
    assert other["items"] == []


async def test_watch_without_resource_version_starts_with_added_events(http: Http) -> None:
    await http.post(SECRETS, secret("a"))
    await http.post(SECRETS, secret("b"))
    events = await http.watch(SECRETS, count=2)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "a"), ("ADDED", "b")]
    assert events[0]["object"]["kind"] == "Secret"


async def test_watch_streams_live_changes(http: Http) -> None:
    async def change() -> None:
        await asyncio.sleep(0.05)
        await http.post(SECRETS, secret("a"))
        await http.patch(f"{SECRETS}/a", {"metadata": {"labels": {"x": "1"}}})
        await http.delete(f"{SECRETS}/a")

    task = asyncio.create_task(change())
    events = await http.watch(SECRETS, count=3, resourceVersion="0")
    await task
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions)


async def test_watch_from_resource_version_replays_later_events(http: Http) -> None:
    _, a = await http.post(SECRETS, secret("a"))
    await http.post(SECRETS, secret("b"))
    await http.patch(f"{SECRETS}/a", {"metadata": {"labels": {"x": "1"}}})
    events = await http.watch(SECRETS, count=2, resourceVersion=a["metadata"]["resourceVersion"])
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "b"), ("MODIFIED", "a")]


async def test_watch_from_too_old_resource_version_gets_410() -> None:
    emulator = Emulator(watch_history=3)
    first = emulator.create(secret("s0"))
    for i in range(1, 6):
        emulator.create(secret(f"s{i}"))
    async with EmulatorServer(emulator) as server, aiohttp.ClientSession() as session:
        http = Http(session, server.url)
        events = await http.watch(SECRETS, resourceVersion=first["metadata"]["resourceVersion"])
    assert len(events) == 1
    assert events[0]["type"] == "ERROR"
    status = events[0]["object"]
    assert status["kind"] == "Status"
    assert status["code"] == 410
    assert status["reason"] == "Expired"


async def test_watch_timeout_seconds_ends_the_stream(http: Http) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    events = await http.watch(SECRETS, timeoutSeconds=1, resourceVersion="0")
    assert events == []
    assert 0.9 <= loop.time() - started < 3


async def test_watch_label_selector(http: Http) -> None:
    async def change() -> None:
        await asyncio.sleep(0.05)
        await http.post(SECRETS, labelled("other", app="y"))
        await http.post(SECRETS, labelled("a", app="x"))
        await http.patch(f"{SECRETS}/a", {"metadata": {"labels": {"app": "y"}}})  # stops matching
        await http.patch(f"{SECRETS}/other", {"metadata": {"labels": {"app": "x"}}})  # starts matching

    task = asyncio.create_task(change())
    events = await http.watch(SECRETS, count=3, labelSelector="app=x")
    await task
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "a"), ("DELETED", "a"), ("ADDED", "other")]
    assert events[1]["object"]["metadata"]["labels"] == {"app": "x"}, "the last state that matched"


async def test_watch_field_selector(http: Http) -> None:
    async def change() -> None:
        await asyncio.sleep(0.05)
        await http.post(SECRETS, secret("a"))
        await http.post(SECRETS, secret("b"))

    task = asyncio.create_task(change())
    events = await http.watch(SECRETS, count=1, fieldSelector="metadata.name=b")
    await task
    assert [e["object"]["metadata"]["name"] for e in events] == ["b"]


async def test_watch_bookmarks(emulator: Emulator) -> None:
    async with EmulatorServer(emulator, bookmark_interval=0.1) as server, aiohttp.ClientSession() as session:
        http = Http(session, server.url)
        events = await http.watch(SECRETS, count=1, allowWatchBookmarks="true", resourceVersion="0")
    assert events[0]["type"] == "BOOKMARK"
    assert events[0]["object"]["metadata"]["resourceVersion"] == emulator.resource_version


async def test_watch_events_between_bookmarks_and_the_timeout(emulator: Emulator) -> None:
    # Events while the stream's timer wakes it for bookmarks: every event arrives once, in order, a bookmark
    # is sent only when no event waits, and the stream still ends at its timeout.
    async with EmulatorServer(emulator, bookmark_interval=0.1) as server, aiohttp.ClientSession() as session:
        http = Http(session, server.url)

        async def change() -> None:
            for index in range(8):
                await asyncio.sleep(0.06)
                await http.post(SECRETS, secret(f"s{index}"))

        loop = asyncio.get_running_loop()
        started = loop.time()
        task = asyncio.create_task(change())
        events = await http.watch(SECRETS, allowWatchBookmarks="true", timeoutSeconds=1, resourceVersion="0")
        await task
    assert 0.9 <= loop.time() - started < 3
    added = [e["object"]["metadata"]["name"] for e in events if e["type"] == "ADDED"]
    assert added == [f"s{index}" for index in range(8)]
    bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
    assert len(bookmarks) >= 3
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions)


async def test_watch_send_initial_events_ends_with_a_bookmark(http: Http) -> None:
    await http.post(SECRETS, secret("a"))
    events = await http.watch(SECRETS, count=2, sendInitialEvents="true", allowWatchBookmarks="true",
                              resourceVersionMatch="NotOlderThan")
    assert [e["type"] for e in events] == ["ADDED", "BOOKMARK"]
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


async def test_watch_path_prefix(http: Http) -> None:
    await http.post(SECRETS, secret("a"))
    events = await http.watch("/api/v1/watch/namespaces/default/secrets", count=1)
    assert events[0]["object"]["metadata"]["name"] == "a"


async def test_watch_content_type_is_json_lines(server: EmulatorServer) -> None:
    server.emulator.create(secret("a"))
    async with aiohttp.ClientSession() as session, session.get(
        f"{server.url}{SECRETS}", params={"watch": "1", "timeoutSeconds": "1"}
    ) as resp:
        assert resp.headers["Content-Type"] == "application/json"
        line = await resp.content.readline()
    assert json.loads(line)["type"] == "ADDED"


async def test_watch_of_custom_resources_and_in_process_writes(http: Http, server: EmulatorServer) -> None:
    async def change() -> None:
        await asyncio.sleep(0.05)
        server.emulator.create(widget("w"))

    task = asyncio.create_task(change())
    events = await http.watch(WIDGETS, count=1, resourceVersion=server.emulator.resource_version)
    await task
    assert events[0]["type"] == "ADDED"
    assert events[0]["object"]["apiVersion"] == "example.com/v1"


# Metadata only (PartialObjectMetadata), as the apiserver serves a client that asks for it in Accept
# (client-go's metadata informers; the operator's Secret watch): no data, no spec, one form per verb.
METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
METADATA_OBJECT = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"


async def test_metadata_only_list_and_get(http: Http) -> None:
    await http.post(SECRETS, labelled("a", app="x"))
    await http.post(SECRETS, labelled("b", app="y"))
    status, listing = await http.get(SECRETS, labelSelector="app=x", headers={"Accept": METADATA_LIST})
    assert status == 200
    assert listing["kind"] == "PartialObjectMetadataList"
    assert listing["apiVersion"] == "meta.k8s.io/v1"
    assert listing["metadata"]["resourceVersion"]
    assert [(item["kind"], item["apiVersion"], sorted(item)) for item in listing["items"]] == [
        ("PartialObjectMetadata", "meta.k8s.io/v1", ["apiVersion", "kind", "metadata"])]
    assert listing["items"][0]["metadata"]["labels"] == {"app": "x"}
    status, one = await http.get(f"{SECRETS}/b", headers={"Accept": METADATA_OBJECT})
    assert status == 200
    assert sorted(one) == ["apiVersion", "kind", "metadata"]
    assert one["metadata"]["name"] == "b"


async def test_metadata_only_watch_streams_partial_objects(server: EmulatorServer) -> None:
    emulator = server.emulator
    first = emulator.create(secret("a"))
    events: list[dict[str, Any]] = []

    async def change() -> None:
        await asyncio.sleep(0.05)
        emulator.patch("v1", "secrets", "a", "default", {"metadata": {"labels": {"x": "1"}},
                                                           "stringData": {"k": "v2"}})
        emulator.delete("v1", "secrets", "a", "default")

    query = {"watch": "true", "resourceVersion": first["metadata"]["resourceVersion"],
             "allowWatchBookmarks": "true"}
    task = asyncio.create_task(change())
    async with asyncio.timeout(5), aiohttp.ClientSession() as session, session.get(
        f"{server.url}{SECRETS}", params=query, headers={"Accept": METADATA_OBJECT}
    ) as resp:
        assert resp.status == 200
        async for line in resp.content:
            events.append(json.loads(line))
            if len(events) == 2:
                break
    await task
    assert [e["type"] for e in events] == ["MODIFIED", "DELETED"]
    for event in events:
        assert sorted(event["object"]) == ["apiVersion", "kind", "metadata"], "no data crosses the wire"
        assert event["object"]["kind"] == "PartialObjectMetadata"
        assert event["object"]["apiVersion"] == "meta.k8s.io/v1"
    assert events[0]["object"]["metadata"]["labels"] == {"x": "1"}
    assert int(events[1]["object"]["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])


async def test_metadata_only_watch_bookmarks_are_partial_objects(emulator: Emulator) -> None:
    async with EmulatorServer(emulator, bookmark_interval=0.1) as server, aiohttp.ClientSession() as session, \
            session.get(f"{server.url}{SECRETS}", headers={"Accept": METADATA_OBJECT},
                        params={"watch": "true", "allowWatchBookmarks": "true", "resourceVersion": "0"}) as resp:
        line = await asyncio.wait_for(resp.content.readline(), 5)
    event = json.loads(line)
    assert event["type"] == "BOOKMARK"
    assert event["object"] == {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                               "metadata": {"resourceVersion": emulator.resource_version}}


async def test_metadata_only_media_types_that_do_not_fit_are_refused_as_by_the_apiserver(http: Http) -> None:
    await http.post(SECRETS, labelled("a", app="x"))
    status, body = await http.get(SECRETS, headers={"Accept": METADATA_OBJECT})
    assert (status, body["reason"], body["message"]) == (
        406, "NotAcceptable",
        "you requested PartialObjectMetadata, but the requested object is a list (*core.SecretList)")
    status, body = await http.get(f"{SECRETS}/a", headers={"Accept": METADATA_LIST})
    assert (status, body["reason"], body["message"]) == (
        406, "NotAcceptable", "you requested PartialObjectMetadataList, but the requested object is not a list "
                              "(*core.Secret)")


async def test_a_watch_that_asks_for_the_list_type_ends_at_its_first_event_unwritten(server: EmulatorServer) -> None:
    # kube-apiserver cannot encode a watch event's object as a list: a 200 stream that ends, empty, at
    # the first event (what made the operator's Secret watch re-connect in a tight loop).
    first = server.emulator.create(secret("a"))
    server.emulator.patch("v1", "secrets", "a", "default", {"metadata": {"labels": {"x": "1"}}})
    query = {"watch": "true", "resourceVersion": first["metadata"]["resourceVersion"], "timeoutSeconds": "30"}
    async with asyncio.timeout(5), aiohttp.ClientSession() as session, session.get(
        f"{server.url}{SECRETS}", params=query, headers={"Accept": METADATA_LIST}
    ) as resp:
        assert resp.status == 200
        assert await resp.read() == b""
