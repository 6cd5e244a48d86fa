"""What the emulator knows about an API resource (one group/version/plural), and the built-ins."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kube_emulator.schema import StructuralSchema
    from kube_emulator.tables import Column

Obj = dict[str, Any]
StoreKey = tuple[str, str]  # (group, plural) of the storage: all versions of a resource share it

ALL_VERBS: tuple[str, ...] = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclasses.dataclass(eq=False)
class ResourceInfo:
    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    status_subresource: bool = False
    generation: bool = False  # whether metadata.generation is maintained
    storage: StoreKey | None = None  # defaults to (group, plural)
    schema: StructuralSchema | None = None
    columns: list[Column] | None = None  # None: the built-in or default columns
    crd: str | None = None  # the CRD's name for custom resources
    storage_version: bool = True
    # False: an update (PUT) must name the resourceVersion it replaces (the strategy's AllowUnconditionalUpdate)
    unconditional_update: bool = True
    # Conversion between the stored shape and this version's shape (events.k8s.io/v1 events):
    to_external: Callable[[Obj], Obj] | None = None
    to_internal: Callable[[Obj], Obj] | None = None

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def store_key(self) -> StoreKey:
        return self.storage if self.storage is not None else (self.group, self.plural)

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def present(self, obj: Obj) -> Obj:
        """The stored object as this version shows it (no copy when nothing changes)."""
        if self.to_external is not None:
            return self.to_external(obj)
        if obj.get("apiVersion") != self.api_version or obj.get("kind") != self.kind:
            shown = dict(obj)
            shown["apiVersion"] = self.api_version
            shown["kind"] = self.kind
            return shown
        return obj


_VERSION_RE = re.compile(r"v([0-9]+)(?:(alpha|beta)([0-9]+))?")


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Sort key of Kubernetes versions, most preferred first: v2 > v1 > v1beta2 > v1alpha1 > foo."""
    match = _VERSION_RE.fullmatch(version)
    if match is None:
        return (3, 0, 0, version)
    major = int(match.group(1))
    stage = {None: 0, "beta": 1, "alpha": 2}[match.group(2)]
    minor = int(match.group(3) or 0)
    return (stage, -major, -minor, version)


# ------------------------------------------------------------------------- events.k8s.io/v1
_EVENT_FIELDS = [  # (core v1 name, events.k8s.io/v1 name)
    ("involvedObject", "regarding"),
    ("related", "related"),
    ("message", "note"),
    ("reason", "reason"),
    ("type", "type"),
    ("action", "action"),
    ("reportingComponent", "reportingController"),
    ("reportingInstance", "reportingInstance"),
    ("eventTime", "eventTime"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
]


def event_to_events_v1(obj: Obj) -> Obj:
    result: Obj = {"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": obj.get("metadata", {})}
    for core, new in _EVENT_FIELDS:
        if core in obj:
            result[new] = obj[core]
    if "series" in obj:
        result["series"] = obj["series"]
    return result


def event_from_events_v1(obj: Obj) -> Obj:
    result: Obj = {"apiVersion": "v1", "kind": "Event", "metadata": obj.get("metadata", {})}
    for core, new in _EVENT_FIELDS:
        if new in obj:
            result[core] = obj[new]
    if "series" in obj:
        result["series"] = obj["series"]
    return result


def builtin_resources() -> list[ResourceInfo]:
    """The built-in resources; all are stored only (no controllers run), see the package docs."""
    R = ResourceInfo
    return [
        R("", "v1", "namespaces", "namespace", "Namespace", False, ("ns",), status_subresource=True),
        R("", "v1", "nodes", "node", "Node", False, ("no",), status_subresource=True),
        R("", "v1", "pods", "pod", "Pod", True, ("po",), ("all",), status_subresource=True, generation=True),
        R("", "v1", "secrets", "secret", "Secret", True),
        R("", "v1", "configmaps", "configmap", "ConfigMap", True, ("cm",)),
        R("", "v1", "serviceaccounts", "serviceaccount", "ServiceAccount", True, ("sa",)),
        R("", "v1", "events", "event", "Event", True, ("ev",)),
        R("", "v1", "services", "service", "Service", True, ("svc",), ("all",), status_subresource=True),
        R("apps", "v1", "deployments", "deployment", "Deployment", True, ("deploy",), ("all",),
          status_subresource=True, generation=True),
        R("apps", "v1", "statefulsets", "statefulset", "StatefulSet", True, ("sts",), ("all",),
          status_subresource=True, generation=True),
        R("apps", "v1", "replicasets", "replicaset", "ReplicaSet", True, ("rs",), ("all",),
          status_subresource=True, generation=True),
        R("apps", "v1", "daemonsets", "daemonset", "DaemonSet", True, ("ds",), ("all",),
          status_subresource=True, generation=True),
        R("coordination.k8s.io", "v1", "leases", "lease", "Lease", True),
        R("events.k8s.io", "v1", "events", "event", "Event", True, ("ev",), storage=("", "events"),
          to_external=event_to_events_v1, to_internal=event_from_events_v1),
        R("apiextensions.k8s.io", "v1", "customresourcedefinitions", "customresourcedefinition",
          "CustomResourceDefinition", False, ("crd", "crds"), ("api-extensions",), status_subresource=True,
          generation=True),
        R("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations", "mutatingwebhookconfiguration",
          "MutatingWebhookConfiguration", False, (), ("api-extensions",), generation=True),
        R("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations",
          "validatingwebhookconfiguration", "ValidatingWebhookConfiguration", False, (), ("api-extensions",),
          generation=True),
        R("rbac.authorization.k8s.io", "v1", "roles", "role", "Role", True),
        R("rbac.authorization.k8s.io", "v1", "rolebindings", "rolebinding", "RoleBinding", True),
        R("rbac.authorization.k8s.io", "v1", "clusterroles", "clusterrole", "ClusterRole", False),
        R("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "clusterrolebinding", "ClusterRoleBinding",
          False),
    ]
