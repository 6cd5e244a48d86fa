"""Forged PodCertificateRequests: a tenant who may create them (a node, or anyone an admin let) asks for a
certificate that is not its own. The API server's NodeRestriction judges only requests made by nodes; the
signer checks every request again against the live pod, service account and node, and paces them all
with the issuance rate limit. Each attack ends in a Denied condition and no certificate.

The limit of what a signer can know: a request carries no requester. Inside one namespace, whoever may
create PodCertificateRequests there and knows a running pod's UIDs (pod, service account, node) gets a
certificate for that pod's service account, as whoever may create pods there as that service account
does. Kubernetes grants create on podcertificaterequests to nodes only; do not grant it to tenants.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from kube_emulator import Emulator, EmulatorServer
from mtls_operator.rules import podcert as pc
from tests.integration.conftest import NS, FakeClock, OperatorHandle, eventually, identity, operator_settings
from tests.integration.test_pod_certificates import answered, condition, create_request, kubelet_world, request_status
from tests.unit.pcr_cases import kubelet_key

ATTACKER_NS = "attacker"


@pytest.fixture
async def signer(server: EmulatorServer, clock: FakeClock) -> AsyncIterator[OperatorHandle]:
    server.emulator.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ATTACKER_NS}})
    handle = OperatorHandle(server, clock, operator_settings(pod_certificates=True, max_issuance_per_second=5.0))
    await handle.start()
    try:
        yield handle
    finally:
        await handle.stop()


async def test_a_stale_or_guessed_pod_uid_is_denied(emulator: Emulator, signer: OperatorHandle) -> None:
    emulator.create(identity("web"))
    facts = kubelet_world(emulator)
    create_request(emulator, kubelet_key(), facts, pod_uid="00000000-0000-0000-0000-000000000000")
    status = await answered(emulator, "req-1")
    assert condition(status) == (pc.DENIED, pc.POD_MISMATCH)
    assert "certificateChain" not in status


async def test_a_request_from_another_node_is_denied(emulator: Emulator, signer: OperatorHandle) -> None:
    emulator.create(identity("web"))
    facts = kubelet_world(emulator)
    other = emulator.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-2"}})
    create_request(emulator, kubelet_key(), {**facts, "node": "node-2", "node_uid": other["metadata"]["uid"]})
    assert condition(await answered(emulator, "req-1")) == (pc.DENIED, pc.NODE_MISMATCH)


async def test_a_forged_node_uid_is_denied(emulator: Emulator, signer: OperatorHandle) -> None:
    emulator.create(identity("web"))
    facts = kubelet_world(emulator)
    create_request(emulator, kubelet_key(), {**facts, "node_uid": "forged"})
    assert condition(await answered(emulator, "req-1")) == (pc.DENIED, pc.NODE_MISMATCH)


async def test_a_forged_service_account_is_denied(emulator: Emulator, signer: OperatorHandle) -> None:
    """Asking as a more privileged service account of the namespace than the pod runs as."""
    emulator.create(identity("web"))
    facts = kubelet_world(emulator)
    admin = emulator.create({"apiVersion": "v1", "kind": "ServiceAccount",
                             "metadata": {"name": "admin", "namespace": NS}})
    create_request(emulator, kubelet_key(), {**facts, "account": "admin", "account_uid": admin["metadata"]["uid"]})
    assert condition(await answered(emulator, "req-1")) == (pc.DENIED, pc.SERVICE_ACCOUNT_MISMATCH)


async def test_a_pod_without_the_volume_gets_nothing(emulator: Emulator, signer: OperatorHandle) -> None:
    """A pod served by Secret (no podCertificate volume for this signer): its kubelet never asks, so a
    request for it is someone else's."""
    emulator.create(identity("web"))
    facts = kubelet_world(emulator, volumes=[])
    create_request(emulator, kubelet_key(), facts)
    assert condition(await answered(emulator, "req-1")) == (pc.DENIED, pc.NO_VOLUME)


async def test_a_request_for_a_pod_of_another_namespace_is_denied(emulator: Emulator, signer: OperatorHandle) -> None:
    """The attacker copies the victim pod's every fact into a request in its own namespace."""
    emulator.create(identity("web"))
    victim = kubelet_world(emulator)
    create_request(emulator, kubelet_key(), victim, namespace=ATTACKER_NS)
    status = await answered(emulator, "req-1", ATTACKER_NS)
    assert condition(status) == (pc.DENIED, pc.POD_NOT_FOUND)
    assert "certificateChain" not in status


async def test_a_flood_of_requests_is_paced_by_the_issuance_rate_limit(emulator: Emulator,
                                                                        signer: OperatorHandle) -> None:
    """Forty forged requests at once, with MTLS_MAX_ISSUANCE_PER_SECOND=5 (bursts of 5): each costs a
    token of the one rate limit Secrets use, before any lookup, so they are answered at that pace."""
    runtime = signer.runtime
    assert runtime.signer is not None
    assert runtime.signer.limiter is runtime.reconciler.issuer.limiter  # one cap for all issuance
    facts = kubelet_world(emulator)
    count = 40
    for number in range(count):
        create_request(emulator, kubelet_key(), {**facts, "pod_uid": f"forged-{number}"}, name=f"flood-{number}")

    def answered_now() -> int:
        return sum(1 for number in range(count) if request_status(emulator, f"flood-{number}"))

    started = time.monotonic()
    await eventually(answered_now, what="the first answer")
    await asyncio.sleep(1.0)
    elapsed = time.monotonic() - started
    # At most the burst, plus the rate for the time elapsed (and a token of slack for timing).
    assert answered_now() <= 5 + 5 * elapsed + 1
    assert answered_now() < count
