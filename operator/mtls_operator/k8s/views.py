"""Typed views of the objects the controller reads: each API answer parsed once, at the edge.

The API returns JSON that anyone with write access may have shaped (a tenant writes its Secrets):
a view reads only what the operator looks at, with a type each, and never raises on odd input
(a missing or mistyped field reads as empty). The controller and the rules work on views, never
on raw ``metadata`` dicts; an identity keeps its ``body`` for the Events posted about it.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mtls_operator.k8s.api import JSON

_EMPTY: Mapping[str, Any] = {}


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else _EMPTY


def _strings(value: object) -> dict[str, str]:
    return {str(k): str(v) for k, v in _mapping(value).items()}


def _interned_strings(value: object) -> dict[str, str]:
    return {sys.intern(str(k)): sys.intern(str(v)) for k, v in _mapping(value).items()}


@dataclass(frozen=True)
class ObjectMeta:
    """The metadata the operator reads from any object."""

    name: str = ""
    namespace: str = ""
    uid: str = ""
    resource_version: str = ""
    generation: int | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    owner_pod_uid: str | None = None
    deleting: bool = False

    @classmethod
    def of(cls, body: Mapping[str, Any], *, shared: bool = False) -> ObjectMeta:
        """``shared``: the namespace and the label and annotation names and values interned (one copy of
        each string thousands of stored objects share)."""
        meta = _mapping(body.get("metadata"))
        generation = meta.get("generation")
        strings = _interned_strings if shared else _strings
        namespace = str(meta.get("namespace") or "")
        return cls(
            name=str(meta.get("name") or ""),
            namespace=sys.intern(namespace) if shared else namespace,
            uid=str(meta.get("uid") or ""),
            resource_version=str(meta.get("resourceVersion") or ""),
            generation=generation if isinstance(generation, int) and not isinstance(generation, bool) else None,
            labels=strings(meta.get("labels")),
            annotations=strings(meta.get("annotations")),
            owner_pod_uid=_owner_pod_uid(meta.get("ownerReferences")),
            deleting=bool(meta.get("deletionTimestamp")),
        )


def _owner_pod_uid(references: object) -> str | None:
    """The uid of the pod an object belongs to, from its ownerReferences (the first v1 Pod)."""
    if not isinstance(references, list):
        return None
    for ref in references:
        if isinstance(ref, Mapping) and ref.get("kind") == "Pod" and ref.get("apiVersion") == "v1":
            return str(ref.get("uid"))
    return None


@dataclass(frozen=True)
class _Stored:
    """An object with data (a Secret, a ConfigMap); what the rules read of it (``rules.plan.StoredSecret``)."""

    meta: ObjectMeta
    data: Mapping[str, Any]

    @property
    def name(self) -> str:
        return self.meta.name

    @property
    def labels(self) -> Mapping[str, str]:
        return self.meta.labels

    @property
    def annotations(self) -> Mapping[str, str]:
        return self.meta.annotations

    @property
    def owner_pod_uid(self) -> str | None:
        return self.meta.owner_pod_uid


@dataclass(frozen=True)
class SecretView(_Stored):
    """A Secret: its metadata and its ``data`` (base64 text, still undecoded: the rules decode it
    with a size cap per key)."""

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> SecretView:
        return cls(meta=ObjectMeta.of(body), data=_mapping(body.get("data")))

    @property
    def version(self) -> tuple[str, str]:
        """(uid, resourceVersion): what caches of this Secret's contents are keyed by."""
        return self.meta.uid, self.meta.resource_version


@dataclass(frozen=True)
class ConfigMapView(_Stored):
    @classmethod
    def of(cls, body: Mapping[str, Any]) -> ConfigMapView:
        return cls(meta=ObjectMeta.of(body), data=_mapping(body.get("data")))


@dataclass(frozen=True)
class IdentityView:
    """An MTLSIdentity: metadata, the raw spec (parsed by ``rules.spec``, which names bad fields),
    the status it carries, and the body (kopf's and the rules' identity parsing read it whole)."""

    meta: ObjectMeta
    spec: Mapping[str, Any]
    status: Mapping[str, Any]
    body: JSON

    @classmethod
    def of(cls, body: JSON) -> IdentityView:
        return cls(meta=ObjectMeta.of(body), spec=_mapping(body.get("spec")), status=_mapping(body.get("status")),
                   body=body)

    @property
    def version(self) -> tuple[str, str]:
        """(uid, generation): what the spec's caches are keyed by."""
        return self.meta.uid, str(self.meta.generation)
