"""A small in-memory cluster with the methods of ``k8s.Cluster`` the controller's parts call.

It keeps what the API server guarantees and the parts rely on: uids and resourceVersions, 409 on
a create of an existing name and on a stale resourceVersion, preconditioned deletes, merge patches
of Secrets and ConfigMaps, equality label selectors. ``fail`` makes the next calls of one method
raise, as an API server in trouble does.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from mtls_operator import constants as c
from mtls_operator.errors import ConflictError, KubernetesAPIError

JSON = dict[str, Any]
Key = tuple[str, str]


def _matches(labels: Mapping[str, str], selector: str) -> bool:
    for term in filter(None, selector.split(",")):
        name, _, value = term.partition("=")
        if "!" in name or " " in term:
            raise ValueError(f"the fake cluster knows equality selectors only, not {term!r}")
        if labels.get(name) != value:
            return False
    return True


def _merge(target: dict[str, Any], patch: Mapping[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


class FakeCluster:
    def __init__(self) -> None:
        self.identities: dict[Key, JSON] = {}
        self.pods: dict[Key, JSON] = {}
        self.secrets: dict[Key, JSON] = {}
        self.config_maps: dict[Key, JSON] = {}
        self.cluster_trust_bundles: dict[str, JSON] = {}
        # (group, version, resource) that discovery lists.
        self.served: set[tuple[str, str, str]] = set()
        self.events: list[dict[str, str]] = []
        self.status_writes: list[tuple[Key, JSON]] = []
        # Every write, in order: (verb, kind, namespace, name).
        self.writes: list[tuple[str, str, str, str]] = []
        self._failing: dict[str, KubernetesAPIError] = {}
        self._versions = itertools.count(1)
        self._uids = itertools.count(1)

    # Test set-up ------------------------------------------------------------------------------

    def fail(self, method: str, error: KubernetesAPIError | None = None) -> None:
        self._failing[method] = error or KubernetesAPIError(f"{method}: HTTP 503", status=503)

    def heal(self, method: str) -> None:
        self._failing.pop(method, None)

    def _check(self, method: str) -> None:
        if method in self._failing:
            raise self._failing[method]

    def _stamp(self, body: JSON, namespace: str) -> JSON:
        meta = body.setdefault("metadata", {})
        meta["namespace"] = namespace
        meta.setdefault("uid", f"uid-{next(self._uids)}")
        meta["resourceVersion"] = str(next(self._versions))
        return body

    def add_identity(self, namespace: str, name: str, spec: JSON, *, created: str = "2026-01-01T00:00:00Z") -> JSON:
        body = {"apiVersion": f"{c.GROUP}/{c.VERSION}", "kind": "MTLSIdentity",
                "metadata": {"name": name, "generation": 1, "creationTimestamp": created}, "spec": spec}
        self.identities[(namespace, name)] = self._stamp(body, namespace)
        return body

    def add_pod(self, namespace: str, name: str, labels: Mapping[str, str], *, account: str = "default") -> JSON:
        body = {"metadata": {"name": name, "labels": {c.INJECT_LABEL: c.INJECT_VALUE, **labels}},
                "spec": {"serviceAccountName": account}, "status": {"phase": "Running"}}
        self.pods[(namespace, name)] = self._stamp(body, namespace)
        return body

    def put_secret(self, namespace: str, body: JSON) -> JSON:
        """A Secret someone else wrote (a tenant, a person): stored as given, no write recorded."""
        stored = self._stamp(copy.deepcopy(body), namespace)
        self.secrets[(namespace, stored["metadata"]["name"])] = stored
        return copy.deepcopy(stored)

    # Identities -------------------------------------------------------------------------------

    async def get_identity(self, namespace: str, name: str) -> JSON | None:
        self._check("get_identity")
        found = self.identities.get((namespace, name))
        return copy.deepcopy(found) if found is not None else None

    async def list_identities(self, namespace: str) -> list[JSON]:
        return [copy.deepcopy(body) for (ns, _), body in sorted(self.identities.items()) if ns == namespace]

    async def patch_identity_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> JSON:
        self._check("patch_identity_status")
        body = self.identities[(namespace, name)]
        body["status"] = copy.deepcopy(dict(status))
        self.status_writes.append(((namespace, name), copy.deepcopy(dict(status))))
        return copy.deepcopy(body)

    async def post_identity_event(self, identity: Mapping[str, Any], *, type_: str, reason: str, message: str,
                                  now: datetime) -> None:
        self._check("post_identity_event")
        self.events.append({"name": identity["metadata"]["name"], "type": type_, "reason": reason,
                            "message": message})

    # Pods -------------------------------------------------------------------------------------

    async def list_pods(self, namespace: str, label_selector: str) -> list[JSON]:
        return [copy.deepcopy(body) for (ns, _), body in sorted(self.pods.items())
                if ns == namespace and _matches(body["metadata"].get("labels") or {}, label_selector)]

    # Secrets ----------------------------------------------------------------------------------

    async def get_secret(self, namespace: str, name: str) -> JSON | None:
        self._check("get_secret")
        found = self.secrets.get((namespace, name))
        return copy.deepcopy(found) if found is not None else None

    async def list_secrets(self, namespace: str, label_selector: str) -> list[JSON]:
        self._check("list_secrets")
        return [copy.deepcopy(body) for (ns, _), body in sorted(self.secrets.items())
                if ns == namespace and _matches(body["metadata"].get("labels") or {}, label_selector)]

    async def create_secret(self, namespace: str, body: Mapping[str, Any]) -> JSON:
        self._check("create_secret")
        name = body["metadata"]["name"]
        if (namespace, name) in self.secrets:
            raise ConflictError(f"POST secrets {name}: HTTP 409: already exists")
        stored = self._stamp(copy.deepcopy(dict(body)), namespace)
        self.secrets[(namespace, name)] = stored
        self.writes.append(("create", "Secret", namespace, name))
        return copy.deepcopy(stored)

    async def update_secret(self, namespace: str, name: str, patch: Mapping[str, Any], resource_version: str) -> JSON:
        self._check("update_secret")
        stored = self.secrets.get((namespace, name))
        if stored is None or stored["metadata"]["resourceVersion"] != resource_version:
            raise ConflictError(f"PATCH secrets {name}: HTTP 409: the object has been modified")
        _merge(stored, patch)
        stored["metadata"]["resourceVersion"] = str(next(self._versions))
        self.writes.append(("update", "Secret", namespace, name))
        return copy.deepcopy(stored)

    async def delete_secret(self, namespace: str, name: str, uid: str, resource_version: str | None = None) -> None:
        self._check("delete_secret")
        stored = self.secrets.get((namespace, name))
        if stored is None:
            return
        meta = stored["metadata"]
        if meta["uid"] != uid or (resource_version is not None and meta["resourceVersion"] != resource_version):
            raise ConflictError(f"DELETE secrets {name}: HTTP 409: precondition failed")
        del self.secrets[(namespace, name)]
        self.writes.append(("delete", "Secret", namespace, name))

    # ConfigMaps -------------------------------------------------------------------------------

    async def get_config_map(self, namespace: str, name: str) -> JSON | None:
        self._check("get_config_map")
        found = self.config_maps.get((namespace, name))
        return copy.deepcopy(found) if found is not None else None

    async def list_config_maps_everywhere(self, label_selector: str) -> list[JSON]:
        return [copy.deepcopy(body) for body in self.config_maps.values()
                if _matches(body["metadata"].get("labels") or {}, label_selector)]

    async def create_config_map(self, namespace: str, body: Mapping[str, Any]) -> JSON:
        name = body["metadata"]["name"]
        if (namespace, name) in self.config_maps:
            raise ConflictError(f"POST configmaps {name}: HTTP 409: already exists")
        stored = self._stamp(copy.deepcopy(dict(body)), namespace)
        self.config_maps[(namespace, name)] = stored
        self.writes.append(("create", "ConfigMap", namespace, name))
        return copy.deepcopy(stored)

    async def update_config_map(self, namespace: str, name: str, patch: Mapping[str, Any],
                                resource_version: str) -> JSON:
        stored = self.config_maps[(namespace, name)]
        if stored["metadata"]["resourceVersion"] != resource_version:
            raise ConflictError(f"PATCH configmaps {name}: HTTP 409: the object has been modified")
        _merge(stored, patch)
        stored["metadata"]["resourceVersion"] = str(next(self._versions))
        self.writes.append(("update", "ConfigMap", namespace, name))
        return copy.deepcopy(stored)

    # ClusterTrustBundles (cluster-scoped) and discovery -----------------------------------------------

    async def serves_resource(self, group: str, version: str, resource: str) -> bool:
        return (group, version, resource) in self.served

    async def get_cluster_trust_bundle(self, version: str, name: str) -> JSON | None:
        self._check("get_cluster_trust_bundle")
        found = self.cluster_trust_bundles.get(name)
        return copy.deepcopy(found) if found is not None else None

    async def create_cluster_trust_bundle(self, version: str, body: Mapping[str, Any]) -> JSON:
        name = body["metadata"]["name"]
        if name in self.cluster_trust_bundles:
            raise ConflictError(f"POST clustertrustbundles {name}: HTTP 409: already exists")
        stored = self._stamp(copy.deepcopy(dict(body)), "")
        self.cluster_trust_bundles[name] = stored
        self.writes.append(("create", "ClusterTrustBundle", "", name))
        return copy.deepcopy(stored)

    async def replace_cluster_trust_bundle(self, version: str, body: Mapping[str, Any]) -> JSON:
        name = body["metadata"]["name"]
        stored = self.cluster_trust_bundles.get(name)
        if stored is None or stored["metadata"]["resourceVersion"] != body["metadata"].get("resourceVersion"):
            raise ConflictError(f"PUT clustertrustbundles {name}: HTTP 409: the object has been modified")
        replaced = copy.deepcopy(dict(body))
        replaced["metadata"]["resourceVersion"] = str(next(self._versions))
        self.cluster_trust_bundles[name] = replaced
        self.writes.append(("update", "ClusterTrustBundle", "", name))
        return copy.deepcopy(replaced)

    async def post_event(self, involved: Mapping[str, Any], api_version: str, kind: str, *, type_: str, reason: str,
                         message: str, now: datetime) -> None:
        self.events.append({"name": involved["metadata"]["name"], "kind": kind, "type": type_, "reason": reason,
                            "message": message})

    async def list_secrets_everywhere(self, label_selector: str) -> list[JSON]:
        selector = ",".join(term for term in label_selector.split(",") if "=" in term)
        keys = [term for term in label_selector.split(",") if term and "=" not in term]
        return [copy.deepcopy(body) for body in self.secrets.values()
                if _matches(body["metadata"].get("labels") or {}, selector)
                and all(key in (body["metadata"].get("labels") or {}) for key in keys)]

    async def list_pods_everywhere(self, label_selector: str) -> list[JSON]:
        return [copy.deepcopy(body) for body in self.pods.values()
                if _matches(body["metadata"].get("labels") or {}, label_selector)]

    async def list_identities_everywhere(self) -> list[JSON]:
        return [copy.deepcopy(body) for body in self.identities.values()]
