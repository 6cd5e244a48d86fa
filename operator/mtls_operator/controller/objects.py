"""The opted-in pods and managed pod Secrets, as the watches report them: what a pass reads instead of the API.

A pass used to list an identity's pods and Secrets (with their keys) every time it ran: O(identity
size) of API work and parsing per pass, and a pass per event. Now the pod watch and the metadata-only
Secret watch keep this store current (one list per resource type for the whole cluster at start and
after a lost watch, then events), and a pass reads the identity's pods and Secrets from memory. Per
pod it keeps a ``PodInfo`` (a few strings, the labels); per Secret its metadata only — never data —
from which ``rules.plan.read_secret_metadata`` reads the issued state and the bundle hash.

The reconciler writes through it: a Secret it created, updated or deleted is put here at once, so the
next pass does not act on the version before its own write (the watch reports that write a moment
later; events older than what is stored are dropped). Until both watches have listed (``synced``),
passes read the API as before.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from mtls_operator import constants as c
from mtls_operator.controller.cache import BoundedCache
from mtls_operator.k8s.views import ObjectMeta, SecretView
from mtls_operator.rules.plan import PodInfo, pod_info
from mtls_operator.rules.spec import LabelSelector

_NO_DATA: Mapping[str, Any] = {}


def _newer(candidate: str, stored: str) -> bool:
    """Whether a watched version may replace the stored one. resourceVersions are opaque; the API server
    (etcd revisions) and the emulator both hand out increasing integers, which this compares; anything
    else replaces what is stored."""
    try:
        return int(candidate) >= int(stored)
    except ValueError:
        return True


def metadata_view(body: Mapping[str, Any]) -> SecretView:
    """A Secret as the store keeps it: metadata, no data (whatever the body carried), with one copy of each
    string that thousands of Secrets share (label and annotation names, the namespace, the identity, the CA
    fingerprint, the bundle and spec hashes), not one per Secret."""
    return SecretView(meta=ObjectMeta.of(body, shared=True), data=_NO_DATA)


def stored_pod(body: Mapping[str, Any]) -> PodInfo:
    """A pod as the store keeps it: its ``PodInfo``, the strings thousands of pods share kept once."""
    return pod_info(body, shared=True)


def _interned(values: Mapping[str, str]) -> dict[str, str]:
    return {sys.intern(key): sys.intern(value) for key, value in values.items()}


def _compact(meta: ObjectMeta) -> SecretView:
    """A Secret the operator wrote, without data, its shared strings kept once (as ``metadata_view`` keeps them)."""
    return SecretView(meta=replace(meta, namespace=sys.intern(meta.namespace), labels=_interned(meta.labels),
                                   annotations=_interned(meta.annotations)), data=_NO_DATA)


class WatchedObjects:
    def __init__(self) -> None:
        self._pods: dict[str, dict[str, PodInfo]] = {}
        self._secrets: dict[str, dict[str, SecretView]] = {}
        self.pods_synced = False
        self.secrets_synced = False
        # How many times the Secrets were listed: each list's versions get their data checked once.
        self.secret_lists = 0
        self._synced_event = asyncio.Event()
        # Secret versions seen in a list (start-up, a lost watch): read from their annotations for the
        # first look, their data checked in the background (``Reconciler.verify_listed``).
        self._listed: BoundedCache[tuple[str, str], bool] = BoundedCache()
        # Uids of Secrets the operator deleted: a late event about them does not bring them back.
        self._deleted: BoundedCache[str, bool] = BoundedCache()

    @property
    def synced(self) -> bool:
        return self.pods_synced and self.secrets_synced

    async def wait_synced(self) -> None:
        """Until both watches have listed."""
        await self._synced_event.wait()

    def _listed_one(self) -> None:
        if self.synced:
            self._synced_event.set()

    def reset(self) -> None:
        """Forget everything (leadership lost: the watches stop, so what is here goes stale)."""
        self._pods.clear()
        self._secrets.clear()
        self.pods_synced = self.secrets_synced = False
        self._synced_event.clear()

    # Pods ------------------------------------------------------------------------------------------

    def pods_listed(self, bodies: Iterable[Mapping[str, Any]]) -> None:
        self.pods_stored(map(stored_pod, bodies))

    def pods_stored(self, pods: Iterable[PodInfo]) -> None:
        """A full list, each pod as ``stored_pod`` keeps it (the list's pages read one by one)."""
        store: dict[str, dict[str, PodInfo]] = {}
        for pod in pods:
            store.setdefault(pod.namespace, {})[pod.name] = pod
        self._pods = store
        self.pods_synced = True
        self._listed_one()

    def pod_event(self, kind: str, body: Mapping[str, Any]) -> bool:
        """Apply a watch event; returns whether anything a pass reads of the pod changed."""
        return self.pod_changed(kind, stored_pod(body))

    def pod_changed(self, kind: str, pod: PodInfo) -> bool:
        """``pod_event`` for a pod already read from its body by ``stored_pod`` (the pod watch reads each event's
        once)."""
        if kind == "DELETED" or not pod.opted_in:
            self._pods.get(pod.namespace, {}).pop(pod.name, None)
            return True
        return self._put_pod(pod)

    def _put_pod(self, pod: PodInfo) -> bool:
        by_name = self._pods.setdefault(pod.namespace, {})
        if by_name.get(pod.name) == pod:
            return False
        by_name[pod.name] = pod
        return True

    def pods(self, namespace: str, selector: LabelSelector) -> list[PodInfo]:
        """The opted-in pods of the namespace that the selector matches (what ``pod_query`` asks the API)."""
        return [pod for pod in self._pods.get(namespace, {}).values() if selector.matches(pod.labels)]

    def all_pods(self) -> Iterable[PodInfo]:
        for pods in self._pods.values():
            yield from pods.values()

    # Secrets ---------------------------------------------------------------------------------------

    def secrets_listed(self, bodies: Iterable[Mapping[str, Any]]) -> None:
        self.secrets_stored(map(metadata_view, bodies))

    def secrets_stored(self, secrets: Iterable[SecretView]) -> None:
        """A full list, each Secret as ``metadata_view`` keeps it (the list's pages read one by one)."""
        store: dict[str, dict[str, SecretView]] = {}
        for secret in secrets:
            self._listed.put(secret.version, True)
            store.setdefault(secret.meta.namespace, {})[secret.name] = secret
        self._secrets = store
        self.secrets_synced = True
        self.secret_lists += 1
        self._listed_one()

    def secret_event(self, kind: str, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata")
        if kind != "DELETED" and isinstance(meta, Mapping):
            stored = self._secrets.get(str(meta.get("namespace") or ""), {}).get(str(meta.get("name") or ""))
            if (stored is not None and stored.meta.resource_version == meta.get("resourceVersion")
                    and stored.meta.uid == meta.get("uid")):
                return  # this very version is stored: the operator's own write, reported back by the watch
        secret = metadata_view(body)
        namespace, name = secret.meta.namespace, secret.name
        if kind == "DELETED":
            self._deleted.pop(secret.meta.uid)
            stored = self._secrets.get(namespace, {}).get(name)
            if stored is not None and stored.meta.uid == secret.meta.uid:
                del self._secrets[namespace][name]
            return
        if secret.meta.uid in self._deleted:
            return
        self._put_secret(secret)

    def wrote(self, written: SecretView) -> SecretView:
        """A Secret the operator just created or updated (the API's answer to the write); returns it as kept."""
        kept = _compact(written.meta)
        self._put_secret(kept)
        return kept

    def deleted(self, secret: SecretView) -> None:
        self._deleted.put(secret.meta.uid, True)
        stored = self._secrets.get(secret.meta.namespace, {}).get(secret.name)
        if stored is not None and stored.meta.uid == secret.meta.uid:
            del self._secrets[secret.meta.namespace][secret.name]

    def _put_secret(self, secret: SecretView) -> None:
        by_name = self._secrets.setdefault(secret.meta.namespace, {})
        stored = by_name.get(secret.name)
        if (stored is not None and stored.meta.uid == secret.meta.uid
                and not _newer(secret.meta.resource_version, stored.meta.resource_version)):
            return  # a late event about a version before the operator's own write
        by_name[secret.name] = secret

    def secrets(self, namespace: str, identity: str) -> dict[str, SecretView]:
        """The identity's managed Secrets in the namespace, by name (what ``secrets_query`` asks the API)."""
        return {name: secret for name, secret in self._secrets.get(namespace, {}).items()
                if secret.labels.get(c.IDENTITY_LABEL) == identity}

    def all_secrets(self) -> Iterable[SecretView]:
        for secrets in self._secrets.values():
            yield from secrets.values()

    def listed(self, secret: SecretView) -> bool:
        """Whether this version of the Secret was seen in a list (not in an event, not written by us)."""
        return secret.version in self._listed

