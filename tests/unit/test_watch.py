"""The lean watches (k8s/watch.py) against a scripted API: what they ask for and what they report."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Mapping
from typing import Any, cast

import pytest

from mtls_operator.errors import KubernetesAPIError
from mtls_operator.k8s import KubeAPI
from mtls_operator.k8s.api import METADATA_ONLY, METADATA_ONLY_OBJECT
from mtls_operator.k8s.watch import RESYNC, ResourceWatch, list_all


class ScriptedAPI:
    """Answers the list with a resourceVersion and each watch with the next scripted stream."""

    def __init__(self, streams: list[list[dict[str, Any]] | Exception]) -> None:
        self.streams = streams
        self.lists: list[tuple[str, dict[str, str], str | None]] = []
        self.watches: list[tuple[str, dict[str, str], str | None]] = []
        self.done = asyncio.Event()

    async def request(self, method: str, path: str, *, query: Mapping[str, str] | None = None,
                      accept: str | None = None, **_: Any) -> dict[str, Any]:
        self.lists.append((path, dict(query or {}), accept))
        return {"metadata": {"resourceVersion": f"{10 * len(self.lists)}"}, "items": []}

    async def watch(self, path: str, *, query: Mapping[str, str], accept: str | None = None,
                    read_timeout: float) -> AsyncGenerator[dict[str, Any], None]:
        self.watches.append((path, dict(query), accept))
        if not self.streams:
            self.done.set()
            await asyncio.Event().wait()
        stream = self.streams.pop(0)
        if isinstance(stream, Exception):
            raise stream
        for event in stream:
            yield event


def secret(name: str, version: str) -> dict[str, Any]:
    return {"kind": "PartialObjectMetadata", "metadata": {"name": name, "resourceVersion": version}}


async def follow(api: ScriptedAPI, **options: Any) -> list[tuple[str, str | None]]:
    seen: list[tuple[str, str | None]] = []

    def record(kind: str, obj: Mapping[str, Any] | None) -> None:
        seen.append((kind, None if obj is None else obj["metadata"]["name"]))

    watch = ResourceWatch(cast(KubeAPI, api), "/api/v1/secrets", "a=b", record, **options)
    task = asyncio.create_task(watch.run())
    await asyncio.wait_for(api.done.wait(), 5)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return seen


async def test_lists_for_a_version_then_streams_from_it_with_the_server_side_selector() -> None:
    api = ScriptedAPI([[{"type": "ADDED", "object": secret("a", "11")},
                        {"type": "ADDED", "object": secret("b", "12")}]])
    seen = await follow(api, metadata_only=True, types=("MODIFIED", "DELETED"), timeout_seconds=7)
    assert api.lists == [("/api/v1/secrets", {"labelSelector": "a=b", "limit": "1"}, METADATA_ONLY)]
    path, query, accept = api.watches[0]
    # A list asks for the list type, a watch for the object type: kube-apiserver ends a watch that asks
    # for the list type at its first event, unwritten (tests/e2e/test_parity.py shows it).
    assert (path, accept) == ("/api/v1/secrets", METADATA_ONLY_OBJECT)
    assert query == {"labelSelector": "a=b", "resourceVersion": "10", "allowWatchBookmarks": "true",
                     "timeoutSeconds": "7"}
    # Resumes where the last event left it, without a new list.
    assert api.watches[1][1]["resourceVersion"] == "12"
    assert seen == [(RESYNC, None)], "ADDED events are not among the types asked for"


async def test_reports_the_types_asked_for_and_skips_bookmarks() -> None:
    events = [{"type": "ADDED", "object": secret("a", "11")},
              {"type": "BOOKMARK", "object": secret("", "12")},
              {"type": "MODIFIED", "object": secret("a", "13")},
              {"type": "DELETED", "object": secret("a", "14")}]
    api = ScriptedAPI([events])
    seen = await follow(api)
    assert seen == [(RESYNC, None), ("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]
    assert api.watches[0][2] is None, "whole objects unless metadata only is asked for"
    assert api.watches[1][1]["resourceVersion"] == "14"


async def test_lost_history_relists_and_reports_a_resync() -> None:
    gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410}}
    api = ScriptedAPI([[{"type": "MODIFIED", "object": secret("a", "11")}, gone], []])
    seen = await follow(api)
    assert seen == [(RESYNC, None), ("MODIFIED", "a"), (RESYNC, None)]
    assert len(api.lists) == 2
    assert api.watches[1][1]["resourceVersion"] == "20", "from the new list's version"


@pytest.mark.looptime
async def test_a_failed_stream_backs_off_then_relists() -> None:
    api = ScriptedAPI([KubernetesAPIError("WATCH /api/v1/secrets: connection reset", status=None)])
    loop = asyncio.get_running_loop()
    started = loop.time()
    seen = await follow(api)
    assert loop.time() - started == 1.0, "one second of backoff before the retry"
    assert seen == [(RESYNC, None), (RESYNC, None)]


class PagedAPI(ScriptedAPI):
    """A list of two pages (a, then b) at resourceVersion 5."""

    async def request(self, method: str, path: str, *, query: Mapping[str, str] | None = None,
                      accept: str | None = None, **_: Any) -> dict[str, Any]:
        self.lists.append((path, dict(query or {}), accept))
        if "continue" not in (query or {}):
            return {"metadata": {"resourceVersion": "5", "continue": "next"}, "items": [secret("a", "3")]}
        return {"metadata": {"resourceVersion": "5"}, "items": [secret("b", "4")]}


async def test_a_full_list_replaces_the_resync_and_pages_through() -> None:
    api = PagedAPI([[{"type": "DELETED", "object": secret("a", "6")}]])
    listed: list[list[str]] = []
    seen: list[tuple[str, str]] = []
    watch = ResourceWatch(cast(KubeAPI, api), "/api/v1/namespaces", "a=b",
                          lambda kind, obj: seen.append((kind, (obj or {})["metadata"]["name"])), metadata_only=True,
                          on_list=lambda items: listed.append([item["metadata"]["name"] for item in items]))
    task = asyncio.create_task(watch.run())
    await asyncio.wait_for(api.done.wait(), 5)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert listed == [["a", "b"]], "one call with every page, no RESYNC"
    assert [query for _, query, _ in api.lists] == [{"labelSelector": "a=b", "limit": "500"},
                                                   {"labelSelector": "a=b", "limit": "500", "continue": "next"}]
    assert seen == [("DELETED", "a")]
    assert api.watches[0][1]["resourceVersion"] == "5"


async def test_keep_makes_each_listed_object_what_on_list_gets() -> None:
    api = PagedAPI([[]])
    listed: list[list[object]] = []
    watch = ResourceWatch(cast(KubeAPI, api), "/api/v1/secrets", "a=b", lambda kind, obj: None,
                          on_list=listed.append, keep=lambda item: ("kept", item["metadata"]["name"]))
    task = asyncio.create_task(watch.run())
    await asyncio.wait_for(api.done.wait(), 5)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert listed == [[("kept", "a"), ("kept", "b")]]


async def test_a_list_already_made_is_handed_on_and_watched_from_without_listing() -> None:
    api = ScriptedAPI([[{"type": "ADDED", "object": secret("c", "8")}]])
    listed: list[list[object]] = []
    seen: list[str] = []
    watch = ResourceWatch(cast(KubeAPI, api), "/api/v1/secrets", "a=b",
                          lambda kind, obj: seen.append((obj or {})["metadata"]["name"]), on_list=listed.append)
    task = asyncio.create_task(watch.run(("7", ["made before"])))
    await asyncio.wait_for(api.done.wait(), 5)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert listed == [["made before"]]
    assert api.lists == [], "no list of its own"
    assert api.watches[0][1]["resourceVersion"] == "7"
    assert seen == ["c"]


async def test_list_all_pages_through_and_keeps_what_keep_makes() -> None:
    api = PagedAPI([])
    version, items = await list_all(cast(KubeAPI, api), "/api/v1/secrets", {"labelSelector": "a=b"},
                                    accept=METADATA_ONLY, keep=lambda item: item["metadata"]["resourceVersion"])
    assert (version, items) == ("5", ["3", "4"])
    assert [accept for _, _, accept in api.lists] == [METADATA_ONLY, METADATA_ONLY]


class EndlessAPI(ScriptedAPI):
    """Every watch answers with the same stream, for ever; counts the connections."""

    def __init__(self, stream: list[dict[str, Any]]) -> None:
        super().__init__([])
        self.stream = stream

    async def watch(self, path: str, *, query: Mapping[str, str], accept: str | None = None,
                    read_timeout: float) -> AsyncGenerator[dict[str, Any], None]:
        self.watches.append((path, dict(query), accept))
        for event in self.stream:
            yield event


async def run_for(api: ScriptedAPI, seconds: float, **options: Any) -> list[tuple[str, str | None]]:
    """Follow ``api`` for ``seconds`` of the loop's (looptime's) time; what was reported."""
    seen: list[tuple[str, str | None]] = []
    watch = ResourceWatch(cast(KubeAPI, api), "/api/v1/secrets", "a=b",
                          lambda kind, obj: seen.append((kind, None if obj is None else obj["metadata"]["name"])),
                          **options)
    task = asyncio.create_task(watch.run())
    await asyncio.sleep(seconds)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return seen


@pytest.mark.looptime
async def test_a_stream_that_ends_at_once_and_empty_is_not_reopened_in_a_tight_loop() -> None:
    # What kube-apiserver does to a watch it cannot encode: 200, then the end, no event. Ten minutes of
    # it cost a handful of connections (1, 2, 4 ... 30 s apart), not one per round trip.
    api = EndlessAPI([])
    await run_for(api, 600, metadata_only=True, timeout_seconds=60)
    assert 20 <= len(api.watches) <= 25, len(api.watches)
    assert len(api.lists) == 1, "the place in history is kept: no re-list"
    assert {query["resourceVersion"] for _, query, _ in api.watches} == {"10"}


@pytest.mark.looptime
async def test_a_410_relists_once_at_once_then_backs_off() -> None:
    gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}
    api = EndlessAPI([gone])
    seen = await run_for(api, 600)
    assert 20 <= len(api.lists) <= 26, len(api.lists)
    assert len(api.watches) == len(api.lists)
    assert seen == [(RESYNC, None)] * len(api.lists)


@pytest.mark.looptime
async def test_another_error_event_is_a_failure_with_backoff() -> None:
    forbidden = {"type": "ERROR", "object": {"kind": "Status", "code": 403, "message": "secrets is forbidden"}}
    api = EndlessAPI([forbidden])
    await run_for(api, 600)
    assert 20 <= len(api.watches) <= 25, len(api.watches)


@pytest.mark.looptime
async def test_healthy_streams_reconnect_at_once_from_the_last_version() -> None:
    # Each stream delivers events (a bookmark included), so there is no backoff: one connection per
    # stream, each from where the last ended, and every event reported once.
    streams: list[list[dict[str, Any]] | Exception] = [
        [{"type": "MODIFIED", "object": secret("a", "11")}],
        [{"type": "BOOKMARK", "object": secret("", "15")}],
        [{"type": "DELETED", "object": secret("a", "16")}],
    ]
    api = ScriptedAPI(streams)
    seen = await follow(api)
    assert [query["resourceVersion"] for _, query, _ in api.watches] == ["10", "11", "15", "16"]
    assert seen == [(RESYNC, None), ("MODIFIED", "a"), ("DELETED", "a")]
    assert len(api.lists) == 1


@pytest.mark.looptime
async def test_a_quiet_stream_that_lasts_its_timeout_reconnects_at_once() -> None:
    class QuietAPI(EndlessAPI):
        async def watch(self, path: str, *, query: Mapping[str, str], accept: str | None = None,
                        read_timeout: float) -> AsyncGenerator[dict[str, Any], None]:
            self.watches.append((path, dict(query), accept))
            await asyncio.sleep(float(query["timeoutSeconds"]))  # the server ends it at its timeout
            for event in self.stream:
                yield event

    api = QuietAPI([])
    await run_for(api, 605, timeout_seconds=60)
    assert len(api.watches) == 11, "one connection per 60 s, none wasted on backoff"
