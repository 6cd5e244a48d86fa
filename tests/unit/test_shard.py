"""The shard's namespace set (controller/shard.py): what joins, what leaves, from lists and watch events."""

from __future__ import annotations

from mtls_operator.controller.shard import NamespaceShard


def namespace(name: str) -> dict[str, object]:
    return {"kind": "PartialObjectMetadata", "metadata": {"name": name}}


def shard_with_log() -> tuple[NamespaceShard, list[tuple[str, str]]]:
    log: list[tuple[str, str]] = []
    shard = NamespaceShard("mtls.dev/shard=a", joined=lambda ns: log.append(("joined", ns)),
                           left=lambda ns: log.append(("left", ns)))
    return shard, log


def test_nothing_is_served_until_the_first_list() -> None:
    shard, log = shard_with_log()
    assert not shard.ready.is_set()
    assert not shard.serves("x")
    shard.listed([namespace("x"), namespace("y")])
    assert shard.ready.is_set()
    assert shard.serves("x")
    assert shard.serves("y")
    assert log == [("joined", "x"), ("joined", "y")]


def test_a_relist_replaces_the_set_and_reports_the_difference() -> None:
    shard, log = shard_with_log()
    shard.listed([namespace("x"), namespace("y")])
    log.clear()
    shard.listed([namespace("y"), namespace("z")])
    assert shard.namespaces == {"y", "z"}
    assert log == [("left", "x"), ("joined", "z")]


def test_watch_events_join_and_leave_once() -> None:
    shard, log = shard_with_log()
    shard.listed([])
    shard.changed("ADDED", namespace("x"))
    shard.changed("MODIFIED", namespace("x"))  # still matching: nothing new
    shard.changed("MODIFIED", namespace("y"))  # relabelled into the selector
    shard.changed("DELETED", namespace("x"))  # deleted, or relabelled out of it
    shard.changed("DELETED", namespace("x"))
    shard.changed("ADDED", {"metadata": {}})  # no name: ignored
    assert shard.namespaces == {"y"}
    assert log == [("joined", "x"), ("joined", "y"), ("left", "x")]
