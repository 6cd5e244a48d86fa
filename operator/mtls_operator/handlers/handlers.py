"""The kopf handlers. Each is a few lines: events only route work to the coalescing queue.

Identity events mark identities dirty (pod events come from the runtime's lean pod watch, outside
kopf: there are thousands of pods and a handful of identities); the queue's workers reconcile them one at a time
per identity, so a burst of pod events costs one reconcile, not one per event. The only handler
with a finalizer is identity deletion, so that an identity's Secrets never outlive it even when
the operator was down while it was deleted.
"""

from __future__ import annotations

import asyncio
from typing import Any

import kopf

from mtls_operator import constants as c
from mtls_operator.errors import ConfigError, KubernetesAPIError
from mtls_operator.handlers.runtime import Runtime, wall_clock
from mtls_operator.k8s.config import bearer_token
from mtls_operator.rules.plan import identity_ref

registry = kopf.OperatorRegistry()

# How long the deletion handler waits for the worker's clean-up before handing back to kopf's retry.
_CLEANUP_POLLS = 50
_CLEANUP_POLL_INTERVAL = 0.1


def _runtime(memo: kopf.Memo) -> Runtime:
    runtime: Runtime = memo["runtime"]
    return runtime


@kopf.on.login(registry=registry, id="login")
def login(memo: kopf.Memo, **_: Any) -> kopf.ConnectionInfo:
    configuration = memo["kube_configuration"]
    scheme, token = bearer_token(configuration)
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        scheme=scheme,
        token=token,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )


@kopf.on.startup(registry=registry, id="start-reconciler")
async def start(memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    runtime = Runtime.build(
        memo["settings"],
        memo["kube_configuration"],
        memo.get("clock") or wall_clock,
        retry_delay=memo.get("retry_delay", 15.0),
        ca_refresh_interval=memo.get("ca_refresh_interval", 30.0),
        watch_timeout=memo.get("watch_timeout", 60),
        serving=memo.get("serving_certificate"),
        prefetch=memo.get("list_prefetch"),
    )
    try:
        runtime.start()
    except ConfigError as exc:
        await runtime.stop()
        raise kopf.PermanentError(str(exc)) from exc
    memo["runtime"] = runtime
    logger.info("reconciler started; CA in Secret %s/%s", runtime.settings.namespace, runtime.settings.ca_secret)


@kopf.on.cleanup(registry=registry, id="stop-reconciler")
async def stop(memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime | None = memo.get("runtime")
    if runtime is not None:
        await runtime.stop()


# The health endpoint answers {"role": ...}: which replica issues, at a glance. A follower is healthy
# too, so this never fails (kopf caches probe results for 10 seconds).
@kopf.on.probe(registry=registry, id="role")
async def role(memo: kopf.Memo, **_: Any) -> str:
    runtime: Runtime | None = memo.get("runtime")
    if runtime is None:
        return "starting"
    return "leader" if runtime.leading else "follower"


# The event handlers are async on purpose: they only touch the queue and in-memory maps, which
# belong to the event loop (kopf runs sync handlers in a thread pool).
@kopf.on.event(c.GROUP, c.VERSION, c.PLURAL, registry=registry, id="identity-changed")
async def identity_changed(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    runtime = _runtime(memo)
    ref = runtime.reconciler.index.identity_ref(body)
    key = (ref.namespace, ref.name)
    if event["type"] == "DELETED":
        runtime.identities.pop(key, None)
        runtime.generations.pop(key, None)
        # One last pass finds it gone and cleans up: its Secrets and metric series must not outlive
        # it even when its finalizer never ran (removed by hand, or deleted before kopf added it).
        runtime.queue.add(key)
        _requeue_namespace(runtime, ref.namespace)  # a pod it served may now go to another identity
        return
    runtime.identities[key] = ref
    metadata = body.get("metadata", {})
    # Our own status writes come back as events too: only spec changes (or first sight, or a new
    # object under an old name) need work.
    seen = (ref.uid, metadata.get("generation"))
    if runtime.generations.get(key) != seen or metadata.get("deletionTimestamp"):
        runtime.generations[key] = seen
        # Selectors decide conflicts between identities: the namespace's others may be affected.
        _requeue_namespace(runtime, ref.namespace)


def _requeue_namespace(runtime: Runtime, namespace: str) -> None:
    for key in runtime.identities:
        if key[0] == namespace:
            runtime.queue.add(key)


@kopf.on.delete(c.GROUP, c.VERSION, c.PLURAL, registry=registry, id="identity-cleanup")
async def identity_deleted(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """Hold the finalizer until the identity's Secrets are gone.

    The deleting itself is done by the queue's worker, serialised with any reconcile of this
    identity still running, so no Secret can be created after the clean-up.
    """
    runtime = _runtime(memo)
    ref = identity_ref(body)
    key = (ref.namespace, ref.name)
    runtime.queue.add(key)
    remaining = 0
    for _attempt in range(_CLEANUP_POLLS):
        await asyncio.sleep(_CLEANUP_POLL_INTERVAL)
        try:
            remaining = await runtime.reconciler.managed_secret_count(key)
        except KubernetesAPIError as exc:
            raise kopf.TemporaryError(f"cannot list the identity's Secrets: {exc}", delay=5) from exc
        if not remaining:
            break
    if remaining:
        raise kopf.TemporaryError(f"waiting for {remaining} Secret(s) of this identity to be deleted", delay=1)
    logger.info("identity deleted: its Secrets are gone")
