"""Identities a tenant writes: a broken one never wins a conflict, a huge message never loses its Event."""

from __future__ import annotations

import contextlib
from typing import Any

from mtls_operator import constants as c
from mtls_operator.errors import KubernetesAPIError
from mtls_operator.rules.plan import MAX_MESSAGE_LENGTH

from .conftest import Bench

NS = "shop"
API = f"{c.GROUP}/{c.VERSION}"


def _identity(name: str, created: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": API, "kind": c.KIND,
            "metadata": {"name": name, "namespace": NS, "creationTimestamp": created},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, **spec}}


def _pod(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "labels": {"app": "web", c.INJECT_LABEL: c.INJECT_VALUE}},
            "spec": {"serviceAccountName": "default", "containers": [{"name": "app", "image": "x"}]},
            "status": {"phase": "Running"}}


def _ready(bench: Bench, name: str) -> dict[str, Any]:
    status = bench.emulator.get(API, c.PLURAL, name, NS)["status"]
    return next(cond for cond in status["conditions"] if cond["type"] == "Ready")


async def test_an_older_identity_with_an_invalid_spec_takes_no_pod_from_a_working_one(bench: Bench) -> None:
    # Older, but its renewBefore is longer than its duration: it can never issue anything.
    bench.emulator.create(_identity("squatter", "2020-01-01T00:00:00Z", duration="1h", renewBefore="2h"))
    bench.emulator.create(_identity("web", "2026-01-01T00:00:00Z"))
    bench.emulator.create(_pod("web-0"))
    await bench.reconciler.reconcile((NS, "squatter"))
    await bench.reconciler.reconcile((NS, "web"))
    assert _ready(bench, "squatter")["reason"] == "InvalidSpec"
    assert _ready(bench, "web")["reason"] == "Issued"
    assert bench.emulator.get("v1", "secrets", "web-web-0", NS) is not None


async def test_a_status_message_as_long_as_the_users_input_is_bounded(bench: Bench) -> None:
    # A pod annotation of 100 KB, quoted by the "not a valid Secret name" message: longer than the
    # status schema allows, so the status write would fail and the identity would say nothing.
    bench.emulator.create(_identity("web", "2026-01-01T00:00:00Z"))
    body = _pod("web-0")
    body["metadata"]["annotations"] = {c.SECRET_NAME_ANNOTATION: "Not-A-Name" * 10_000}
    bench.emulator.create(body)
    await bench.reconciler.reconcile((NS, "web"))
    ready = _ready(bench, "web")
    assert ready["reason"] == "IssuanceFailed"
    assert len(ready["message"]) <= MAX_MESSAGE_LENGTH
    assert ready["message"].endswith("…")


async def test_the_event_is_posted_even_when_the_status_write_fails(bench: Bench) -> None:
    bench.emulator.create(_identity("web", "2026-01-01T00:00:00Z", duration="1h", renewBefore="2h"))
    failing = bench.emulator.faults.add(verb="patch", resource="mtlsidentities", subresource="status", status=500,
                                        count=None)
    with contextlib.suppress(KubernetesAPIError):
        await bench.reconciler.reconcile((NS, "web"))  # the queue retries it
    events = [event for event in bench.emulator.list("v1", "events", NS) if event["reason"] == "InvalidSpec"]
    assert len(events) == 1
    bench.emulator.faults.remove(failing)
    await bench.reconciler.reconcile((NS, "web"))
    assert _ready(bench, "web")["reason"] == "InvalidSpec"
