"""The store of watched pods and Secrets, and passes that read it instead of the API (controller/objects.py)."""

from __future__ import annotations

import base64
import copy
from datetime import timedelta
from typing import Any

import pytest

from mtls_operator import constants as c
from mtls_operator.controller.objects import WatchedObjects, metadata_view
from mtls_operator.controller.reconciler import Reconciler
from mtls_operator.rules.spec import parse_label_selector
from tests.unit.fake_cluster import FakeCluster
from tests.unit.parts import NS, WEB, Clock, reconciler


def _metadata_only(body: dict[str, Any]) -> dict[str, Any]:
    """A Secret as a metadata-only list or watch serves it."""
    return {"kind": "PartialObjectMetadata", "metadata": copy.deepcopy(body["metadata"])}


def _synced(rec: Reconciler, cluster: FakeCluster) -> None:
    """What the runtime's watches do at start: one list of the pods, one metadata-only list of the Secrets."""
    rec.objects.pods_listed(list(cluster.pods.values()))
    rec.objects.secrets_listed([_metadata_only(body) for body in cluster.secrets.values()
                                if body["metadata"].get("labels", {}).get(c.MANAGED_BY_LABEL) == c.MANAGER_NAME])


def _tamper(cluster: FakeCluster, name: str) -> dict[str, Any]:
    """A person swaps the key of a pod Secret (a new resourceVersion, the annotations left as they were)."""
    stored = cluster.secrets[(NS, name)]
    stored["data"][c.TLS_KEY] = base64.b64encode(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
                                                 ).decode()
    stored["metadata"]["resourceVersion"] = "9000"
    return stored


async def _issued(cluster: FakeCluster, clock: Clock) -> None:
    cluster.add_identity(NS, "web", WEB)
    for name in ("web-0", "web-1", "web-2"):
        cluster.add_pod(NS, name, {"app": "web"})
    cluster.add_pod(NS, "other", {"app": "other"})
    await (await reconciler(cluster, clock)).reconcile((NS, "web"))
    assert len([key for key in cluster.secrets if key[0] == NS]) == 3


async def test_a_restart_reads_the_store_lists_nothing_and_writes_nothing() -> None:
    cluster, clock = FakeCluster(), Clock()
    await _issued(cluster, clock)
    rec = await reconciler(cluster, clock)  # a new process (its CA store reads the CA written before)
    _synced(rec, cluster)
    cluster.fail("list_secrets")  # a pass over the store never lists Secrets (nor reads one)
    cluster.fail("get_secret")
    await rec.reconcile((NS, "web"))
    assert cluster.writes == []
    status = cluster.identities[(NS, "web")]["status"]
    assert (status["pods"], status["issued"]) == (3, 3)


async def test_a_secret_edited_while_nobody_watched_is_found_by_the_check_and_repaired() -> None:
    cluster, clock = FakeCluster(), Clock()
    await _issued(cluster, clock)
    _tamper(cluster, "web-web-1")
    rec = await reconciler(cluster, clock)
    _synced(rec, cluster)
    await rec.reconcile((NS, "web"))  # the first look trusts the annotations: nothing written yet
    assert ("update", "Secret", NS, "web-web-1") not in cluster.writes
    assert await rec.verify_listed(pause=0) == {(NS, "web")}
    clock.advance(timedelta(seconds=5))
    await rec.reconcile((NS, "web"))
    assert cluster.writes[-1] == ("update", "Secret", NS, "web-web-1")
    last = cluster.identities[(NS, "web")]["status"]["lastIssuance"]
    assert last["reason"] == "repair"
    assert await rec.verify_listed(pause=0) == set()  # what the repair wrote is the operator's own


async def test_the_check_of_listed_secrets_lets_the_passes_go_first_before_every_page(
        monkeypatch: pytest.MonkeyPatch) -> None:
    cluster, clock = FakeCluster(), Clock()
    await _issued(cluster, clock)
    _tamper(cluster, "web-web-2")
    rec = await reconciler(cluster, clock)
    _synced(rec, cluster)
    await rec.reconcile((NS, "web"))
    monkeypatch.setattr("mtls_operator.controller.reconciler.VERIFY_PAGE", 1)
    order: list[str] = []
    listed = cluster.list_secrets_page

    async def page(*args: Any) -> tuple[list[dict[str, Any]], str | None]:
        order.append("page")
        return await listed(*args)

    async def idle() -> None:
        order.append("idle")

    monkeypatch.setattr(cluster, "list_secrets_page", page)
    assert await rec.verify_listed(pause=0, idle=idle) == {(NS, "web")}
    assert order == ["idle", "page"] * 3


async def test_secrets_the_operator_wrote_itself_are_never_listed_again_to_be_checked() -> None:
    cluster, clock = FakeCluster(), Clock()
    rec = await reconciler(cluster, clock)
    _synced(rec, cluster)
    cluster.add_identity(NS, "web", WEB)
    for name in ("web-0", "web-1"):
        rec.objects.pod_event("ADDED", cluster.add_pod(NS, name, {"app": "web"}))
    await rec.reconcile((NS, "web"))
    assert len([key for key in cluster.secrets if key[0] == NS]) == 2
    rec.objects.secrets_listed([_metadata_only(body) for body in cluster.secrets.values()])  # a lost watch
    await rec.reconcile((NS, "web"))
    cluster.fail("list_secrets_page")  # the versions the passes read are the operator's own: nothing to list
    assert await rec.verify_listed(pause=0) == set()


async def test_a_listed_secret_is_checked_once_not_after_every_list() -> None:
    cluster, clock = FakeCluster(), Clock()
    await _issued(cluster, clock)
    rec = await reconciler(cluster, clock)
    _synced(rec, cluster)
    await rec.reconcile((NS, "web"))
    assert await rec.verify_listed(pause=0) == set()  # checked once: its data is what its annotations say
    _synced(rec, cluster)  # listed again, the same versions
    await rec.reconcile((NS, "web"))
    cluster.fail("list_secrets_page")
    assert await rec.verify_listed(pause=0) == set()


async def test_a_secret_edited_behind_our_back_is_read_with_its_data_and_repaired() -> None:
    cluster, clock = FakeCluster(), Clock()
    await _issued(cluster, clock)
    rec = await reconciler(cluster, clock)
    _synced(rec, cluster)
    await rec.reconcile((NS, "web"))
    rec.objects.secret_event("MODIFIED", _metadata_only(_tamper(cluster, "web-web-2")))
    clock.advance(timedelta(seconds=5))
    await rec.reconcile((NS, "web"))
    assert cluster.writes[-1] == ("update", "Secret", NS, "web-web-2")


async def test_a_pass_over_the_store_issues_new_pods_and_deletes_for_gone_ones() -> None:
    cluster, clock = FakeCluster(), Clock()
    await _issued(cluster, clock)
    rec = await reconciler(cluster, clock)
    _synced(rec, cluster)
    cluster.fail("list_secrets")
    rec.objects.pod_event("ADDED", cluster.add_pod(NS, "web-3", {"app": "web"}))
    rec.objects.pod_event("DELETED", cluster.pods.pop((NS, "web-0")))
    await rec.reconcile((NS, "web"))
    assert sorted(name for ns, name in cluster.secrets if ns == NS) == ["web-web-1", "web-web-2", "web-web-3"]
    # The store has the operator's own writes at once: the next pass does nothing again.
    writes = len(cluster.writes)
    await rec.reconcile((NS, "web"))
    assert len(cluster.writes) == writes


def test_a_late_event_never_undoes_the_operators_own_write_or_delete() -> None:
    objects = WatchedObjects()
    old = {"metadata": {"name": "s", "namespace": NS, "uid": "u1", "resourceVersion": "5",
                        "labels": {c.IDENTITY_LABEL: "web"}}}
    newer = copy.deepcopy(old)
    newer["metadata"]["resourceVersion"] = "7"
    objects.secrets_listed([old])
    written = objects.wrote(metadata_view(newer))
    objects.secret_event("MODIFIED", old)  # the watch catching up with an older version
    assert objects.secrets(NS, "web")["s"].meta.resource_version == "7"
    objects.secret_event("MODIFIED", newer)  # the operator's own write reported back: kept as it is
    assert objects.secrets(NS, "web")["s"] is written
    relabelled = copy.deepcopy(newer)
    relabelled["metadata"]["resourceVersion"] = "8"
    relabelled["metadata"]["labels"]["extra"] = "yes"
    objects.secret_event("MODIFIED", relabelled)  # someone else's edit: a new version, stored
    assert objects.secrets(NS, "web")["s"].labels["extra"] == "yes"
    objects.deleted(metadata_view(newer))
    objects.secret_event("MODIFIED", newer)
    assert objects.secrets(NS, "web") == {}
    objects.secret_event("DELETED", newer)
    objects.secret_event("ADDED", {"metadata": {**newer["metadata"], "uid": "u2", "resourceVersion": "9"}})
    assert objects.secrets(NS, "web")["s"].meta.uid == "u2"  # a new Secret under the name


def test_pods_follow_their_events_and_the_selector() -> None:
    objects = WatchedObjects()
    assert not objects.synced
    pod = {"metadata": {"name": "a", "namespace": NS, "uid": "p1",
                        "labels": {c.INJECT_LABEL: c.INJECT_VALUE, "app": "web"}}}
    objects.pods_listed([pod])
    objects.secrets_listed([])
    assert objects.synced
    selector = parse_label_selector({"matchLabels": {"app": "web"}})
    assert [p.name for p in objects.pods(NS, selector)] == ["a"]
    left = copy.deepcopy(pod)
    left["metadata"]["labels"] = {"app": "web"}  # opted out: the selector's watch reports it gone
    objects.pod_event("MODIFIED", left)
    assert objects.pods(NS, selector) == []
    objects.pod_event("ADDED", pod)
    objects.pod_event("DELETED", pod)
    assert objects.pods(NS, selector) == []
    objects.reset()
    assert not objects.synced


async def test_a_pass_leaves_an_arriving_pod_to_its_first_issue_and_serves_it_after() -> None:
    cluster, clock = FakeCluster(), Clock()
    await _issued(cluster, clock)
    rec = await reconciler(cluster, clock)
    _synced(rec, cluster)
    rec.objects.pod_event("ADDED", cluster.add_pod(NS, "web-3", {"app": "web"}))
    rec.gate.arriving((NS, "web-3"))
    await rec.reconcile((NS, "web"))
    assert (NS, "web-web-3") not in cluster.secrets
    rec.gate.arrived((NS, "web-3"))  # its first issue did not issue (no token): the pass after it does
    await rec.reconcile((NS, "web"))
    assert (NS, "web-web-3") in cluster.secrets


async def test_a_certificate_just_written_is_counted_kept_by_the_next_pass_without_a_new_decision(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from mtls_operator.rules.plan import pod_info

    cluster, clock = FakeCluster(), Clock()
    identity = cluster.add_identity(NS, "web", WEB)
    rec = await reconciler(cluster, clock)
    _synced(rec, cluster)
    await rec.reconcile((NS, "web"))  # learns the spec; no pods yet
    for name in ("web-0", "web-1"):  # served by a pass
        rec.objects.pod_event("ADDED", cluster.add_pod(NS, name, {"app": "web"}))
    await rec.reconcile((NS, "web"))
    body = cluster.add_pod(NS, "web-2", {"app": "web"})  # served by a first issue
    rec.objects.pod_event("ADDED", body)
    assert await rec.issue_first((NS, "web"), (identity["metadata"]["uid"], 1), pod_info(body))
    for written in list(cluster.secrets.values()):  # the watch reports the writes back
        rec.objects.secret_event("ADDED", written)

    decided: list[str] = []
    decide = rec._decide
    monkeypatch.setattr(rec, "_decide", lambda job, pod, *rest: decided.append(pod.name) or decide(job, pod, *rest))
    writes = len(cluster.writes)
    await rec.reconcile((NS, "web"))
    assert decided == []  # every pod counted as kept by a look-up
    status = cluster.identities[(NS, "web")]["status"]
    assert (status["pods"], status["issued"]) == (3, 3)
    assert len(cluster.writes) == writes  # no Secret written

    # A Secret edited behind our back (a new version) is decided on again.
    edited = copy.deepcopy(cluster.secrets[(NS, "web-web-1")])
    edited["metadata"]["resourceVersion"] = "9999"
    rec.objects.secret_event("MODIFIED", edited)
    await rec.reconcile((NS, "web"))
    assert decided == ["web-1"]
