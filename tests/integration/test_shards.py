"""Sharded mode on the emulator: two shards, each a Deployment's worth of replicas with its own Lease,
each serving the namespaces its selector matches, one CA Secret that one shard rotates for all.

Shard a serves the namespaces labelled ``mtls.dev/shard=a``; shard b every other one
(``mtls.dev/shard notin (a)``, which also matches unlabelled namespaces). Which replica wrote what is
read from the emulator's request log (each replica names itself in its User-Agent).
"""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from typing import Any

from kube_emulator import Emulator, EmulatorServer, RequestLog
from mtls_operator import constants as c
from mtls_operator.config import Settings

from .conftest import NS, OPERATOR_NS, FakeClock, OperatorHandle, eventually, identity, operator_settings, pod
from .test_rotation import CA_SECRET, STEP, bundle_fingerprints, ca_annotations, ca_events, data, phase

SELECTORS = {"a": "mtls.dev/shard=a", "b": "mtls.dev/shard notin (a)"}
# Namespace -> the shard its labels put it in (NS, "shop", carries no label: shard b's).
NAMESPACES = {"team-a": "a", "team-b": "b", NS: "b"}
LEASE_DURATION = timedelta(seconds=3)
_AGENT = re.compile(r"^mtls-operator/\S+ \((?P<replica>[^)]+)\)$")


def shard_settings(shard: str, replica: int) -> Settings:
    return operator_settings(shard_namespace_selector=SELECTORS[shard], ca_rotation=shard == "a",
                             leader_election=True, lease_name=f"mtls-operator-{shard}", lease_duration=LEASE_DURATION,
                             pod_name=f"{shard}-{replica}", ca_propagation_delay=timedelta(0))


def in_namespace(body: dict[str, Any], namespace: str) -> dict[str, Any]:
    body["metadata"]["namespace"] = namespace
    return body


def pod_secrets(emulator: Emulator) -> dict[tuple[str, str], dict[str, Any]]:
    selector = f"{c.MANAGED_BY_LABEL}={c.MANAGER_NAME},{c.IDENTITY_LABEL}"
    return {(s["metadata"]["namespace"], s["metadata"]["name"]): s
            for s in emulator.list("v1", "secrets", None, label_selector=selector)}


def secret_writers(log: RequestLog, since: int = 0) -> dict[str, set[str]]:
    """Namespace -> the replicas that wrote (or tried to write) Secrets there, from the ``since``-th request."""
    writers: dict[str, set[str]] = {}
    for request in list(log.recent)[since:]:
        match = _AGENT.match(request.user_agent or "")
        if match and request.resource == "secrets" and request.verb in ("create", "update", "patch", "delete"):
            writers.setdefault(request.namespace or "", set()).add(match["replica"])
    return writers


def lease_holder(emulator: Emulator, shard: str) -> str | None:
    lease = emulator.get("coordination.k8s.io/v1", "leases", f"mtls-operator-{shard}", OPERATOR_NS) or {}
    return (lease.get("spec") or {}).get("holderIdentity")


async def test_two_shards_split_the_namespaces_take_over_and_rotate_together(
    server: EmulatorServer, emulator: Emulator, clock: FakeClock
) -> None:
    emulator.requests = RequestLog(recent_size=1_000_000)  # every request of the test, in order
    for namespace, shard in NAMESPACES.items():
        if namespace != NS:
            emulator.create({"apiVersion": "v1", "kind": "Namespace",
                             "metadata": {"name": namespace, "labels": {"mtls.dev/shard": shard}}})
        emulator.create(in_namespace(identity("app"), namespace))
        for index in range(2):
            emulator.create(in_namespace(pod(f"app-{index}", "app"), namespace))
    replicas = {name: OperatorHandle(server, clock, shard_settings(name[0], int(name[2])))
                for name in ("a-0", "b-0", "b-1")}
    try:
        await asyncio.gather(*(handle.start() for handle in replicas.values()))

        # Every namespace is served, by exactly one shard: the one its labels name, and by that shard's
        # Lease holder only.
        await eventually(lambda: len(pod_secrets(emulator)) == 6, within=30, what="6 pod Secrets")
        leader_b = await eventually(lambda: lease_holder(emulator, "b"), what="shard b's Lease holder")
        assert lease_holder(emulator, "a") == "a-0"
        expected = {namespace: {"a-0" if shard == "a" else leader_b} for namespace, shard in NAMESPACES.items()}
        assert {ns: w for ns, w in secret_writers(emulator.requests).items() if ns != OPERATOR_NS} == expected
        assert replicas["a-0"].runtime.shard is not None
        assert replicas["a-0"].runtime.shard.namespaces == {"team-a"}

        # Shard b's leader stops (a rolling update): its other replica takes the shard's Lease over and
        # serves shard b's namespaces; shard a is not involved.
        follower_b = "b-1" if leader_b == "b-0" else "b-0"
        await replicas.pop(leader_b).stop()
        await eventually(lambda: lease_holder(emulator, "b") == follower_b, what="the takeover of shard b")
        since = len(emulator.requests.recent)
        emulator.create(in_namespace(pod("app-2", "app"), "team-b"))
        await eventually(lambda: ("team-b", "app-app-2") in pod_secrets(emulator), within=15,
                         what="the new pod's Secret")
        assert secret_writers(emulator.requests, since) == {"team-b": {follower_b}}

        # A CA rotation: shard a drives it, shard b follows; every pod of both ends on the new CA.
        old = ca_annotations(emulator)["mtls.dev/ca-fingerprint"]
        rotation_started = len(emulator.requests.recent)
        emulator.patch("v1", "secrets", CA_SECRET, OPERATOR_NS,
                       {"metadata": {"annotations": {"mtls.dev/rotate": "true"}}})
        await eventually(lambda: phase(emulator) != "Idle", what="the rotation's start")
        for _ in range(400):
            if phase(emulator) == "Idle":
                break
            clock.advance(STEP)
            await asyncio.sleep(0.05)
        new = ca_annotations(emulator)["mtls.dev/ca-fingerprint"]
        assert phase(emulator) == "Idle"
        assert new != old
        assert bundle_fingerprints(data(emulator.get("v1", "secrets", CA_SECRET, OPERATOR_NS) or {}, c.CA_CRT)) == {
            new}

        def all_on_new_ca() -> bool:
            return all(s["metadata"]["annotations"][c.CA_FINGERPRINT_ANNOTATION] == new
                       and bundle_fingerprints(data(s, c.CA_CRT)) == {new} for s in pod_secrets(emulator).values())

        await eventually(all_on_new_ca, within=15, what="every pod Secret of both shards on the new CA")
        assert len(pod_secrets(emulator)) == 7
        await eventually(lambda: "RotationComplete" in ca_events(emulator), what="the RotationComplete Event")
        assert ca_events(emulator).count("RotationStarted") == 1
        assert ca_events(emulator).count("RotationComplete") == 1
        # Only shard a wrote the CA Secret during the rotation (shard b's leaders read it; at the very
        # start any shard may create it, the others' creates answered 409).
        assert secret_writers(emulator.requests, rotation_started).get(OPERATOR_NS) == {"a-0"}
        all_writers = secret_writers(emulator.requests)
        assert all_writers["team-a"] == {"a-0"}
        assert all_writers[NS] | all_writers["team-b"] <= {"b-0", "b-1"}

        # A namespace relabelled into shard a moves there: shard a serves it from then on, shard b lets go.
        emulator.patch("v1", "namespaces", "team-b", None, {"metadata": {"labels": {"mtls.dev/shard": "a"}}})
        shard_b = replicas[follower_b].runtime.shard
        assert shard_b is not None
        await eventually(lambda: "team-b" not in shard_b.namespaces, what="shard b letting team-b go")
        await eventually(lambda: replicas["a-0"].runtime.serves("team-b"), what="shard a taking team-b")
        since = len(emulator.requests.recent)
        emulator.create(in_namespace(pod("app-3", "app"), "team-b"))
        await eventually(lambda: ("team-b", "app-app-3") in pod_secrets(emulator), within=15,
                         what="the moved namespace's new Secret")
        assert secret_writers(emulator.requests, since) == {"team-b": {"a-0"}}
    finally:
        await asyncio.gather(*(handle.stop() for handle in replicas.values()))
