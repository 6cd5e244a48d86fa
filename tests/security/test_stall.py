"""One tenant's expensive certificates must not stall the operator's API calls for everyone.

Key generation for RSA runs in worker threads (an RSA 4096 key takes seconds of CPU;
controller/signing.py); ECDSA and Ed25519 keys take well under a millisecond and are made on the
loop. A tenant chooses the key type of its identities and how many pods they have, so it can keep
every signing thread busy. The API calls (the Lease renewal that keeps leadership, the CA Secret,
every other tenant's reads and writes) must not wait behind that work.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
from typing import Any

import pytest

from mtls_operator import constants as c
from mtls_operator.controller import issuer as issuer_module
from mtls_operator.models import KeySpec

from .conftest import OPERATOR_NS, Bench

API = f"{c.GROUP}/{c.VERSION}"
# The work queue's workers, each on one identity, and the pods a pass serves at once.
PASSES = 4
PODS = issuer_module.ISSUE_CONCURRENCY
# The signing pool's size (controller/signing.py): one thread per core.
SIGNING_THREADS = os.cpu_count() or 1
# A liveness guard, not a speed target: on the shared pool the call below never returns until released.
DEADLINE = 30.0


def _identity(name: str) -> dict[str, Any]:
    return {"apiVersion": API, "kind": c.KIND, "metadata": {"name": name, "namespace": "attacker"},
            "spec": {"selector": {"matchLabels": {"app": name}}, "privateKey": {"algorithm": "RSA", "size": 4096}}}


def _pod(name: str, app: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "attacker",
                         "labels": {"app": app, c.INJECT_LABEL: c.INJECT_VALUE}},
            "spec": {"containers": [{"name": "app", "image": "x"}]}, "status": {"phase": "Running"}}


async def test_key_generation_of_one_tenant_never_holds_up_the_api_calls(
    bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_issue = issuer_module.issue_leaf
    release = threading.Event()
    started = threading.Semaphore(0)

    def slow_issue(ca: Any, request: Any, now: Any) -> Any:
        # As an RSA 4096 key on a loaded machine (privateKey is the tenant's to choose): the thread is
        # busy until the test lets it go; the key made then is the default ECDSA one, for speed.
        started.release()
        release.wait(DEADLINE * 2)
        return real_issue(ca, dataclasses.replace(request, key=KeySpec()), now)

    monkeypatch.setattr(issuer_module, "issue_leaf", slow_issue)
    names = [f"slow{index}" for index in range(PASSES)]
    for name in names:
        bench.emulator.create(_identity(name))
        for index in range(PODS):
            bench.emulator.create(_pod(f"{name}-{index}", name))
    passes = [asyncio.create_task(bench.reconciler.reconcile(("attacker", name))) for name in names]
    try:
        for _ in range(min(SIGNING_THREADS, PASSES * PODS)):
            assert await _acquired(started)
        # Every signing thread is generating a key now. The Lease and the CA are still reachable.
        lease = await asyncio.wait_for(bench.cluster.get_lease(OPERATOR_NS, "mtls-operator"), DEADLINE)
        assert lease is None
        ca_secret = await asyncio.wait_for(bench.cluster.get_secret(OPERATOR_NS, bench.settings.ca_secret),
                                           DEADLINE)
        assert ca_secret is not None
    finally:
        release.set()
        await asyncio.gather(*passes)
    assert len(bench.emulator.list("v1", "secrets", "attacker")) == PASSES * PODS


async def _acquired(started: threading.Semaphore) -> bool:
    """Wait on the loop (not in a thread: the pool is what is being filled) for one more key generation."""
    for _ in range(int(DEADLINE * 100)):
        if started.acquire(blocking=False):
            return True
        await asyncio.sleep(0.01)
    return False
