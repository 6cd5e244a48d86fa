"""The emulated API server's state and semantics, without any networking: :class:`Emulator`.

Objects live in dicts keyed by storage (group, plural) → namespace → name; a stored object is
never changed in place (every write stores a new dict), so watch events and the history share
them without copies. Everything here runs on one thread: the event loop's of the server that
serves it, or the caller's when there is no server; the public helpers hop onto the loop when
called from another thread (see :class:`~kube_emulator.EmulatorThread`).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import datetime
import json
import secrets as _random
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

from kube_emulator import builtin, certificates, errors, patching
from kube_emulator.errors import ApiError
from kube_emulator.faults import FaultInjector
from kube_emulator.jsonenc import dumps_line
from kube_emulator.requestlog import RequestLog
from kube_emulator.resources import Obj, ResourceInfo, StoreKey, builtin_resources, version_priority
from kube_emulator.schema import FieldError, StructuralSchema
from kube_emulator.selectors import (
    FieldSelector,
    LabelSelector,
    SelectorError,
    is_dns1123_label,
    is_dns1123_subdomain,
    parse_field_selector,
    parse_label_selector,
)
from kube_emulator.tables import crd_columns

T = TypeVar("T")
ObjKey = tuple[StoreKey, str, str]  # (storage, namespace or "", name)

ADDED, MODIFIED, DELETED, BOOKMARK, ERROR = "ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"

DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")

_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"

PATCH_MERGE = "application/merge-patch+json"
PATCH_JSON = "application/json-patch+json"
PATCH_STRATEGIC = "application/strategic-merge-patch+json"
PATCH_APPLY = "application/apply-patch+yaml"


def _path_segment_problems(name: str) -> list[str]:
    """``path.IsValidPathSegmentName``."""
    if name in (".", ".."):
        return [f"may not be '{name}'"]
    return [f"may not contain '{bad}'" for bad in ("/", "%") if bad in name]


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def format_time(moment: datetime.datetime) -> str:
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class WatchEvent:
    """One change of one object; shared by the history and all watchers, encoded once per version and
    form (the whole object, or its metadata only), however many watchers stream it."""

    __slots__ = ("_cache", "obj", "prev", "rv", "type")

    def __init__(self, type: str, obj: Obj, prev: Obj | None, rv: int) -> None:
        self.type = type
        self.obj = obj
        self.prev = prev
        self.rv = rv
        self._cache: dict[tuple[int, bool], bytes] = {}

    def encode(self, info: ResourceInfo, *, metadata_only: bool = False) -> bytes:
        key = (id(info), metadata_only)
        line = self._cache.get(key)
        if line is None:
            shown = info.present(self.obj)
            line = encode_event(self.type, partial_metadata(shown) if metadata_only else shown)
            self._cache[key] = line
        return line


def partial_metadata(obj: Obj) -> Obj:
    """An object's metadata only, as a ``meta.k8s.io/v1`` ``PartialObjectMetadata``."""
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata", {})}


def encode_event(type: str, obj: Obj) -> bytes:
    return dumps_line({"type": type, "object": obj})


WatchItem = tuple[str, Obj, WatchEvent | None]  # (type, object as stored, shared event if unchanged)


class Watcher:
    """A subscription of one watch stream; events arrive in :attr:`queue` (None ends the stream)."""

    def __init__(
        self,
        info: ResourceInfo,
        namespace: str | None,
        labels: LabelSelector,
        fields: FieldSelector,
        *,
        filtered: bool,
    ) -> None:
        self.info = info
        self.namespace = namespace
        self.labels = labels
        self.fields = fields
        self._filtered = filtered
        self.queue: asyncio.Queue[WatchItem | None] = asyncio.Queue()

    def matches(self, obj: Obj) -> bool:
        meta = obj.get("metadata", {})
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        if not self._filtered:
            return True
        if not self.labels.empty and not self.labels.matches(meta.get("labels") or {}):
            return False
        return self.fields.matches(self.info.present(obj))

    def transform(self, event: WatchEvent) -> WatchItem | None:
        """The event as this watcher sees it: selectors turn updates into ADDED/DELETED."""
        if event.type == MODIFIED and event.prev is not None:
            now, before = self.matches(event.obj), self.matches(event.prev)
            if now and before:
                return (MODIFIED, event.obj, event)
            if now:
                return (ADDED, event.obj, None)
            if before:
                # Like the watch cache: the previous content, with the event's resource version.
                prev = dict(event.prev)
                prev["metadata"] = dict(prev.get("metadata", {}), resourceVersion=str(event.rv))
                return (DELETED, prev, None)
            return None
        if self.matches(event.obj):
            return (event.type, event.obj, event)
        return None

    def offer(self, event: WatchEvent) -> None:
        item = self.transform(event)
        if item is not None:
            self.queue.put_nowait(item)

    def close(self) -> None:
        self.queue.put_nowait(None)


class Emulator:
    """The Kubernetes API server's state and request semantics; no network by itself.

    Serve it with :class:`~kube_emulator.EmulatorServer` (async) or
    :class:`~kube_emulator.EmulatorThread` (sync). The in-process helpers (:meth:`create`,
    :meth:`get`, :meth:`list`, :meth:`patch`, :meth:`delete`, :meth:`install_crd`) apply the same
    validation, metadata, garbage collection and watch events as HTTP requests, but are not
    counted in :attr:`requests` and never hit :attr:`faults`. They raise :class:`ApiError`.
    """

    def __init__(
        self,
        *,
        crds: Iterable[Mapping[str, Any]] = (),
        clock: Callable[[], datetime.datetime] | None = None,
        watch_history: int = 10000,
        admission_webhooks: bool = True,
    ) -> None:
        self.clock: Callable[[], datetime.datetime] = clock or utcnow
        self.watch_history = watch_history
        #: Call the stored Mutating/ValidatingWebhookConfigurations on HTTP creates and updates (admission.py).
        self.admission_webhooks = admission_webhooks
        #: Where admission webhooks' ``clientConfig.service`` is reached, (namespace, name, port) → "host:port";
        #: set with :meth:`route_service`.
        self.service_endpoints: dict[tuple[str, str, int], str] = {}
        self.faults = FaultInjector()
        self.requests = RequestLog()
        self._rv = 0
        self._resources: dict[tuple[str, str, str], ResourceInfo] = {}
        self._objects: dict[StoreKey, dict[str, dict[str, Obj]]] = {}
        self._uids: dict[str, ObjKey] = {}
        self._dependents: dict[str, set[ObjKey]] = {}
        self._history: dict[StoreKey, collections.deque[WatchEvent]] = {}
        self._evicted: dict[StoreKey, int] = {}
        self._watchers: dict[StoreKey, set[Watcher]] = {}
        self._terminating: set[str] = set()
        self._gc_owners: set[str] = set()
        self._gc_check: set[ObjKey] = set()
        self._gc_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._attached = 0
        for info in [*builtin_resources(), *certificates.certificate_resources()]:
            self._register(info)
        for ns in DEFAULT_NAMESPACES:
            self._create(self.resource("v1", "namespaces"), None, {"metadata": {"name": ns}})
        for crd in crds:
            self.install_crd(crd)

    def route_service(self, namespace: str, name: str, port: int, address: str) -> None:
        """Make port ``port`` of the Service ``namespace/name`` reachable at ``address`` ("127.0.0.1:8443").

        There is no cluster network: this is how an admission webhook registered with
        ``clientConfig.service`` (as a Helm chart renders it) is called. The emulator then posts to
        ``https://<address><service.path>`` and verifies the server's certificate against the
        ``caBundle`` for the name ``<name>.<namespace>.svc``, as kube-apiserver does. A webhook whose
        service is not routed fails like an unreachable one (its ``failurePolicy`` decides).
        """
        host, sep, local_port = address.rpartition(":")
        if not sep or not host or not local_port.isdigit():
            raise ValueError(f"expected host:port, not {address!r}")
        self.service_endpoints[(namespace, name, int(port))] = address

    # ------------------------------------------------------------------------------ threads
    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind to the event loop of the server that serves it (called by the servers)."""
        if self._loop is not None and self._loop is not loop:
            raise RuntimeError("This Emulator is already served on another event loop.")
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._attached += 1

    def detach(self) -> None:
        """Unbind from the loop (when its last server stops), ending all watch streams."""
        self._attached = max(0, self._attached - 1)
        if self._attached:
            return
        for watchers in self._watchers.values():
            for watcher in list(watchers):
                watcher.close()
        self._watchers.clear()
        self._run_gc()
        self._loop = None
        self._loop_thread = None

    def _sync(self, fn: Callable[[], T]) -> T:
        """Run on the serving loop's thread (waiting for it) when called from another thread."""
        loop = self._loop
        if loop is None or threading.get_ident() == self._loop_thread or not loop.is_running():
            result = fn()
            if loop is None:
                self._run_gc()
            return result
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return future.result(timeout=60)

    # --------------------------------------------------------------------------- resources
    def _register(self, info: ResourceInfo) -> None:
        self._resources[(info.group, info.version, info.plural)] = info
        self._objects.setdefault(info.store_key, {})

    @property
    def resource_version(self) -> str:
        return str(self._rv)

    def resources(self) -> list[ResourceInfo]:
        return list(self._resources.values())

    def groups(self) -> dict[str, list[str]]:
        """{group: [versions, preferred first]} of everything served."""
        found: dict[str, set[str]] = {}
        for info in self._resources.values():
            found.setdefault(info.group, set()).add(info.version)
        return {g: sorted(vs, key=version_priority) for g, vs in found.items()}

    def lookup(self, group: str, version: str, plural: str) -> ResourceInfo | None:
        return self._resources.get((group, version, plural))

    def resource(self, api_version: str, kind_or_plural: str) -> ResourceInfo:
        """The resource of an apiVersion by kind, plural, singular or short name."""
        group, _, version = api_version.rpartition("/")
        direct = self._resources.get((group, version, kind_or_plural))
        if direct is not None:
            return direct
        lowered = kind_or_plural.lower()
        for info in self._resources.values():
            if info.group == group and info.version == version and (
                info.kind == kind_or_plural or info.singular == lowered or lowered in info.short_names
            ):
                return info
        raise ApiError(404, f'the server doesn\'t have a resource type "{kind_or_plural}" in "{api_version}"')

    # ----------------------------------------------------------------------- reading
    def _find(self, info: ResourceInfo, namespace: str | None, name: str) -> Obj | None:
        bucket = self._objects.get(info.store_key, {}).get(namespace or "" if info.namespaced else "")
        return None if bucket is None else bucket.get(name)

    def _iter(self, info: ResourceInfo, namespace: str | None) -> Iterator[Obj]:
        buckets = self._objects.get(info.store_key, {})
        if info.namespaced and namespace is not None:
            yield from buckets.get(namespace, {}).values()
        else:
            for bucket in buckets.values():
                yield from bucket.values()

    def read(self, info: ResourceInfo, namespace: str | None, name: str) -> Obj:
        obj = self._find(info, namespace, name)
        if obj is None:
            raise errors.not_found(info.plural, info.group, name)
        return obj

    def select(
        self,
        info: ResourceInfo,
        namespace: str | None,
        labels: LabelSelector | None = None,
        fields: FieldSelector | None = None,
    ) -> list[Obj]:
        """The stored objects (not presented) matching, sorted by namespace and name like etcd."""
        result = []
        for obj in self._iter(info, namespace):
            if labels is not None and not labels.empty and not labels.matches(
                obj.get("metadata", {}).get("labels") or {}
            ):
                continue
            if fields is not None and not fields.matches(info.present(obj)):
                continue
            result.append(obj)
        result.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        return result

    # ----------------------------------------------------------------------- writing
    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def _emit(self, key: StoreKey, event: WatchEvent) -> None:
        history = self._history.get(key)
        if history is None:
            history = self._history[key] = collections.deque(maxlen=max(1, self.watch_history))
        if len(history) == history.maxlen:
            self._evicted[key] = history[0].rv
        history.append(event)
        for watcher in self._watchers.get(key, ()):
            watcher.offer(event)

    def _index(self, key: ObjKey, old: Obj | None, new: Obj | None) -> None:
        old_meta = old.get("metadata", {}) if old is not None else {}
        new_meta = new.get("metadata", {}) if new is not None else {}
        if old is not None and new is None:
            self._uids.pop(old_meta.get("uid", ""), None)
        if new is not None:
            self._uids[new_meta["uid"]] = key
        old_owners = {r.get("uid") for r in old_meta.get("ownerReferences") or () if isinstance(r, dict)}
        new_owners = {r.get("uid") for r in new_meta.get("ownerReferences") or () if isinstance(r, dict)}
        for uid in old_owners - new_owners:
            deps = self._dependents.get(uid)  # type: ignore[arg-type]
            if deps is not None:
                deps.discard(key)
                if not deps:
                    del self._dependents[uid]  # type: ignore[arg-type]
        for uid in new_owners - old_owners:
            if isinstance(uid, str):
                self._dependents.setdefault(uid, set()).add(key)
        if new_owners and not any(uid in self._uids for uid in new_owners):
            self._gc_check.add(key)  # every owner is absent: garbage from the start
            self._schedule_gc()

    def _store(self, info: ResourceInfo, new: Obj, old: Obj | None) -> Obj:
        """Store a new version (or nothing for a no-op update); returns what is stored."""
        meta = new["metadata"]
        if old is not None:
            meta["resourceVersion"] = old["metadata"]["resourceVersion"]
            if new == old:
                return old  # like etcd: an update that changes nothing writes nothing
        rv = self._next_rv()
        meta["resourceVersion"] = str(rv)
        namespace = meta.get("namespace", "") if info.namespaced else ""
        key = info.store_key
        self._objects.setdefault(key, {}).setdefault(namespace, {})[meta["name"]] = new
        self._index((key, namespace, meta["name"]), old, new)
        self._emit(key, WatchEvent(ADDED if old is None else MODIFIED, new, old, rv))
        return new

    def _remove(self, info: ResourceInfo, obj: Obj) -> Obj:
        """Really delete: the object is gone; dependents become garbage."""
        meta = obj["metadata"]
        namespace = meta.get("namespace", "") if info.namespaced else ""
        key = info.store_key
        buckets = self._objects.get(key, {})
        bucket = buckets.get(namespace, {})
        bucket.pop(meta["name"], None)
        if not bucket:
            buckets.pop(namespace, None)
        self._index((key, namespace, meta["name"]), obj, None)
        rv = self._next_rv()
        final = dict(obj)
        final["metadata"] = dict(meta, resourceVersion=str(rv))
        self._emit(key, WatchEvent(DELETED, final, None, rv))
        self._gc_owners.add(meta.get("uid", ""))
        if info.group == "" and info.plural == "namespaces":
            self._terminating.discard(meta["name"])
        if info.crd is None and info.group == "apiextensions.k8s.io":
            self._unregister_crd(final)
        self._schedule_gc()
        return final

    # ------------------------------------------------------------------ admission & metadata
    def _now(self) -> str:
        return format_time(self.clock())

    def _check_body(self, info: ResourceInfo, body: Any) -> Obj:
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request must be a JSON object")
        if info.to_internal is not None:
            body = info.to_internal(body)
        else:
            api_version, kind = body.get("apiVersion"), body.get("kind")
            if api_version not in (None, "", info.api_version) and not (
                info.crd is not None and str(api_version).startswith(f"{info.group}/")
            ):
                raise errors.bad_request(
                    f"the API version in the data ({api_version}) does not match the expected API version "
                    f"({info.api_version})"
                )
            if kind not in (None, "", info.kind):
                raise errors.bad_request(
                    f"the kind in the data ({kind}) does not match the expected kind ({info.kind})"
                )
            body["apiVersion"] = info.api_version
            body["kind"] = info.kind
        meta = body.get("metadata")
        if meta is None:
            meta = body["metadata"] = {}
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        for field in ("labels", "annotations"):
            value = meta.get(field)
            if value is not None and (
                not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values())
            ):
                raise errors.invalid(info.kind, info.group, str(meta.get("name", "")), [
                    (f"metadata.{field}", "FieldValueInvalid", "must be a map of strings to strings"),
                ])
        checked: Obj = body
        return checked

    def _check_namespace(self, info: ResourceInfo, url_ns: str | None, meta: Obj) -> str | None:
        if not info.namespaced:
            meta.pop("namespace", None)
            return None
        body_ns = meta.get("namespace")
        if url_ns is not None and body_ns not in (None, "", url_ns):
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        namespace = url_ns or body_ns or "default"
        meta["namespace"] = namespace
        return str(namespace)

    def _validate_name(self, info: ResourceInfo, name: Any, meta: Obj) -> None:
        """422 for a bad name, with the other problems of ``ValidateObjectMeta`` (labels, annotations)."""
        if not isinstance(name, str) or not name:
            problems = [FieldError("metadata.name", "FieldValueRequired",
                                   "Required value: name or generateName is required")]
        else:
            if info.plural == "events" and info.crd is None:
                messages = _path_segment_problems(name)
            elif info.group == certificates.GROUP and info.plural == "clustertrustbundles":
                messages = []  # ValidateClusterTrustBundleName needs the spec: the strategy checks it
            elif info.plural == "namespaces" and info.group == "":
                messages = is_dns1123_label(name)  # NameIsDNSLabel (ValidateNamespaceName)
            else:
                messages = is_dns1123_subdomain(name)  # NameIsDNSSubdomain, custom resources included
            quoted = json.dumps(name, ensure_ascii=False)
            problems = [FieldError("metadata.name", "FieldValueInvalid", f"Invalid value: {quoted}: {msg}")
                        for msg in messages]
        if problems:
            problems.extend(builtin.validate_labels_and_annotations(meta))
            raise builtin.invalid(info, str(name or ""), problems)

    def _require_namespace(self, info: ResourceInfo, namespace: str | None, name: str) -> None:
        if not info.namespaced or namespace is None:
            return
        ns = self._find(self.resource("v1", "namespaces"), None, namespace)
        if ns is None:
            raise errors.not_found("namespaces", "", namespace)
        if namespace in self._terminating:
            raise ApiError(
                403,
                f'{info.qualified} "{name}" is forbidden: unable to create new content in namespace '
                f"{namespace} because it is being terminated",
                "Forbidden",
                {"name": namespace, "kind": "namespaces",
                 "causes": [{"reason": "NamespaceTerminating", "field": "metadata.namespace",
                             "message": f"namespace {namespace} is being terminated"}]},
            )

    def _spec_changed(self, info: ResourceInfo, old: Obj, new: Obj) -> bool:
        skip = {"metadata", "apiVersion", "kind"}
        if info.status_subresource:
            skip.add("status")
        keys = (set(old) | set(new)) - skip
        return any(old.get(k) != new.get(k) for k in keys)

    def _admit(self, info: ResourceInfo, new: Obj, old: Obj | None, subresource: str | None) -> Obj:
        """Resource-specific defaults and validation (the registry strategies), with the metadata checks.

        Like a strategy's ``Validate``/``ValidateUpdate``, the labels and annotations are checked after the
        defaults, and their problems come first in one 422 with the resource's own.
        """
        name = str(new["metadata"].get("name", ""))
        try:
            admitted = builtin.admit(self, info, new, old, subresource)
        except ApiError as exc:
            others = builtin.causes_of(exc)
            problems = builtin.validate_labels_and_annotations(new["metadata"])
            if others is None or not problems:
                raise
            raise builtin.invalid(info, name, [*problems, *others]) from None
        problems = builtin.validate_labels_and_annotations(admitted["metadata"])
        if problems:
            raise builtin.invalid(info, name, problems)
        return admitted

    def _create(self, info: ResourceInfo, url_ns: str | None, body: Any, *, dry_run: bool = False) -> Obj:
        namespace = self._create_namespace(info, url_ns, body)
        return self._commit_create(info, self._prepare_create(info, namespace, body), dry_run=dry_run)

    # A create is three steps so that admission (admission.py) can call the webhooks between them,
    # in the create handler's order: the namespace, mutating admission, BeforeCreate (the name
    # generated, defaults, validation), validating admission, then the storage.
    def _create_namespace(self, info: ResourceInfo, url_ns: str | None, body: Any) -> str | None:
        """What the create handler does before admission: the URL's namespace onto the object (400 on a
        mismatch), then the NamespaceLifecycle plugin (404 for a missing namespace, 403 while it terminates)."""
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request must be a JSON object")
        meta = body.get("metadata")
        if meta is None:
            meta = body["metadata"] = {}
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        namespace = self._check_namespace(info, url_ns, meta)
        # Names are generated later, so the plugin names the object by its generateName (or "Unknown").
        self._require_namespace(info, namespace, str(meta.get("name") or meta.get("generateName") or "Unknown"))
        return namespace

    def _prepare_create(self, info: ResourceInfo, namespace: str | None, body: Any) -> Obj:
        """BeforeCreate: the generated name, system fields, the resource's defaults and validation."""
        new = self._check_body(info, body)
        meta = new["metadata"]
        self._check_namespace(info, namespace, meta)
        if not meta.get("name") and meta.get("generateName"):
            for _ in range(100):
                name = str(meta["generateName"]) + "".join(_random.choice(_GENERATE_ALPHABET) for _ in range(5))
                if self._find(info, namespace, name) is None:
                    break
            meta["name"] = name
        self._validate_name(info, meta.get("name"), meta)
        for field in ("deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "selfLink",
                      "resourceVersion"):
            meta.pop(field, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = self._now()
        if info.generation:
            meta["generation"] = 1
        else:
            meta.pop("generation", None)
        if info.status_subresource and info.crd is not None:
            new.pop("status", None)  # create cannot set the status of custom resources
        return self._admit(info, new, None, None)

    def _commit_create(self, info: ResourceInfo, new: Obj, *, dry_run: bool = False) -> Obj:
        meta = new["metadata"]
        name = meta["name"]
        # Like the registry's Store.Create: the object is validated first (BeforeCreate), and only
        # then does the storage refuse an existing name, so an invalid object is 422 even then.
        if self._find(info, meta.get("namespace"), name) is not None:
            raise errors.already_exists(info.plural, info.group, name)
        if dry_run:
            meta["resourceVersion"] = ""
            return new
        stored = self._store(info, new, None)
        if info.plural == "customresourcedefinitions" and info.group == "apiextensions.k8s.io":
            self._register_crd(stored)
        if info.plural == "namespaces" and info.group == "":
            self._namespace_created(stored)
        return stored

    def _update(
        self,
        info: ResourceInfo,
        namespace: str | None,
        name: str,
        body: Any,
        subresource: str | None,
        *,
        old: Obj | None = None,
        dry_run: bool = False,
    ) -> Obj:
        if old is None:
            old = self.read(info, namespace, name)
        new = self._prepare_update(info, namespace, name, body, subresource, old)
        return self._commit_update(info, new, old, dry_run=dry_run)

    @staticmethod
    def _check_url_name(name: str, meta: Any) -> None:
        """An update's body may not name another object than its URL (checked before admission too)."""
        if isinstance(meta, dict) and meta.get("name") not in (None, name):
            raise errors.bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})"
            )

    # An update is two steps so that admission (admission.py) can call the validating webhooks
    # between them, after BeforeUpdate (preconditions, defaults, validation) and before the storage.
    def _prepare_update(
        self, info: ResourceInfo, namespace: str | None, name: str, body: Any, subresource: str | None, old: Obj
    ) -> Obj:
        new = self._check_body(info, body)
        meta = new["metadata"]
        self._check_url_name(name, meta)
        self._check_namespace(info, namespace, meta)
        old_meta = old["metadata"]
        rv = meta.get("resourceVersion")
        if rv not in (None, "") and rv != old_meta["resourceVersion"]:
            raise errors.conflict(info.plural, info.group, name)
        uid = meta.get("uid")
        if uid not in (None, "") and uid != old_meta.get("uid"):
            raise errors.conflict(info.plural, info.group, name,
                                  f"Precondition failed: UID in precondition: {uid}, "
                                  f"UID in object meta: {old_meta.get('uid')}")
        if subresource == "status":
            # A status write changes the status only.
            status = new.get("status")
            new = dict(old)
            if status is None:
                new.pop("status", None)
            else:
                new["status"] = status
            new["metadata"] = meta = dict(old_meta)
        else:
            meta["name"] = name
            for field in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                          "generation"):
                if field in old_meta:
                    meta[field] = old_meta[field]
                else:
                    meta.pop(field, None)
            meta.pop("managedFields", None)
            meta.pop("selfLink", None)
            if info.status_subresource:
                if "status" in old:
                    new["status"] = old["status"]
                else:
                    new.pop("status", None)
            if old_meta.get("deletionTimestamp"):
                added = set(meta.get("finalizers") or ()) - set(old_meta.get("finalizers") or ())
                if added:
                    raise errors.invalid(info.kind, info.group, name, [(
                        "metadata.finalizers", "FieldValueForbidden",
                        f"Forbidden: no new finalizers can be added if the object is being deleted, "
                        f"found new finalizers {sorted(added)!r}",
                    )])
        new = self._admit(info, new, old, subresource)
        if info.generation and subresource != "status" and self._spec_changed(info, old, new):
            meta["generation"] = int(old_meta.get("generation") or 0) + 1
        return new

    def _commit_update(self, info: ResourceInfo, new: Obj, old: Obj, *, dry_run: bool = False) -> Obj:
        if dry_run:
            return new
        meta, old_meta = new["metadata"], old["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers") and not (
            info.group == "" and info.plural == "namespaces"
        ):
            meta["resourceVersion"] = old_meta["resourceVersion"]
            return self._remove(info, new)
        stored = self._store(info, new, old)
        if stored is not old and info.plural == "customresourcedefinitions" and info.group == "apiextensions.k8s.io":
            self._register_crd(stored)
        return stored

    def _patch(
        self,
        info: ResourceInfo,
        namespace: str | None,
        name: str,
        content_type: str,
        patch: Any,
        subresource: str | None,
        *,
        field_manager: str | None = None,
        dry_run: bool = False,
    ) -> tuple[Obj, bool]:
        """Apply a patch; returns (stored object, created) — apply patches create absent objects."""
        old = self._find(info, namespace, name)
        target = self._patched(info, name, content_type, patch, subresource, old, field_manager)
        if old is None:
            return self._create(info, namespace, target, dry_run=dry_run), True
        return self._update(info, namespace, name, target, subresource, old=old, dry_run=dry_run), False

    def _patched(
        self,
        info: ResourceInfo,
        name: str,
        content_type: str,
        patch: Any,
        subresource: str | None,
        old: Obj | None,
        field_manager: str | None,
    ) -> Obj:
        """``old`` with the patch applied, or the object an apply patch creates when ``old`` is None."""
        if content_type == PATCH_APPLY and not field_manager:
            raise ApiError(
                422, 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: '
                "is required for apply patch", "Invalid",
            )
        if old is None:
            if content_type == PATCH_APPLY and subresource is None:
                if not isinstance(patch, dict):
                    raise errors.bad_request("the apply patch must be an object")
                body: Obj = patching.deep_copy(patch)
                body.setdefault("metadata", {})["name"] = name
                return body
            raise errors.not_found(info.plural, info.group, name)
        current = patching.deep_copy(info.present(old))
        try:
            if content_type == PATCH_MERGE:
                if not isinstance(patch, dict):
                    raise errors.bad_request("a merge patch must be a JSON object")
                result = patching.merge_patch(current, patch)
            elif content_type == PATCH_JSON:
                result = patching.json_patch(current, patch)
            elif content_type == PATCH_STRATEGIC:
                if info.crd is not None:
                    raise ApiError(
                        415, "strategic merge patch is not supported for custom resources; use a merge patch",
                        "UnsupportedMediaType",
                    )
                result = patching.strategic_merge(current, patch)
            elif content_type == PATCH_APPLY:
                result = patching.apply_patch(current, patch)
            else:
                raise ApiError(415, f"the content type {content_type!r} is not supported for patches",
                               "UnsupportedMediaType")
        except patching.MalformedPatchError as exc:
            raise errors.bad_request(str(exc)) from None
        except patching.PatchError:
            # As kube-apiserver: NewGenericServerResponse(422), which keeps none of the patch error's text.
            raise ApiError(422, "the server rejected our request due to an error in our request", "Invalid") from None
        if not isinstance(result, dict):
            raise ApiError(422, "the patched document is not an object", "Invalid")
        # A resourceVersion the patch sets (or a JSON patch replaces) is a precondition, checked by _update.
        self._check_url_name(name, result.get("metadata"))
        return result

    def _delete(
        self,
        info: ResourceInfo,
        namespace: str | None,
        name: str,
        options: Mapping[str, Any] | None = None,
        *,
        dry_run: bool = False,
    ) -> tuple[Obj, bool]:
        """Delete (or mark for deletion); returns (object, gone)."""
        options = options or {}
        obj = self.read(info, namespace, name)
        meta = obj["metadata"]
        preconditions = options.get("preconditions") or {}
        # rest.BeforeDelete's checks: a conflict named by the object's Kind (not its resource).
        if preconditions.get("uid") not in (None, meta.get("uid")):
            raise errors.conflict(info.kind, info.group, name,
                                  f"the UID in the precondition ({preconditions['uid']}) does not match the UID in "
                                  f"record ({meta.get('uid')}). The object might have been deleted and then recreated")
        if preconditions.get("resourceVersion") not in (None, meta.get("resourceVersion")):
            raise errors.conflict(info.kind, info.group, name,
                                  f"the ResourceVersion in the precondition ({preconditions['resourceVersion']}) does "
                                  f"not match the ResourceVersion in record ({meta.get('resourceVersion')}). The "
                                  "object might have been modified")
        if dry_run:
            return obj, not meta.get("finalizers")
        policy = options.get("propagationPolicy")
        if policy is None and options.get("orphanDependents") is True:
            policy = "Orphan"
        uid = meta.get("uid", "")
        if policy == "Orphan":
            self._orphan_dependents(uid)
        is_namespace = info.group == "" and info.plural == "namespaces"
        if meta.get("finalizers") or is_namespace:
            if meta.get("deletionTimestamp"):
                return obj, False
            new = patching.deep_copy(obj)
            new_meta = new["metadata"]
            new_meta["deletionTimestamp"] = self._now()
            new_meta["deletionGracePeriodSeconds"] = 0
            if info.generation and "generation" in new_meta:
                new_meta["generation"] = int(new_meta["generation"]) + 1
            if is_namespace:
                new.setdefault("status", {})["phase"] = "Terminating"
            stored = self._store(info, new, obj)
            if is_namespace:
                self._terminate_namespace(name)
            return stored, False
        return self._remove(info, obj), True

    def _orphan_dependents(self, uid: str) -> None:
        for key in list(self._dependents.get(uid, ())):
            storage, namespace, name = key
            obj = self._objects.get(storage, {}).get(namespace, {}).get(name)
            info = self._info_for_storage(storage)
            if obj is None or info is None:
                continue
            new = patching.deep_copy(obj)
            refs = [r for r in new["metadata"].get("ownerReferences") or () if r.get("uid") != uid]
            if refs:
                new["metadata"]["ownerReferences"] = refs
            else:
                new["metadata"].pop("ownerReferences", None)
            self._store(info, new, obj)

    def _info_for_storage(self, storage: StoreKey) -> ResourceInfo | None:
        best: ResourceInfo | None = None
        for info in self._resources.values():
            if info.store_key == storage and info.to_external is None and (best is None or info.storage_version):
                best = info
        return best

    # ----------------------------------------------------------------- garbage collection
    def _schedule_gc(self) -> None:
        loop = self._loop
        if loop is None or self._gc_scheduled:
            return
        self._gc_scheduled = True
        if threading.get_ident() == self._loop_thread:
            loop.call_soon(self._run_gc)
        else:
            loop.call_soon_threadsafe(self._run_gc)

    def collect_garbage(self) -> None:
        """Run the garbage collector now (it otherwise runs in the background, on the next tick)."""
        self._sync(self._run_gc)

    def _run_gc(self) -> None:
        self._gc_scheduled = False
        for _ in range(1000):
            if not (self._gc_owners or self._gc_check or self._terminating):
                return
            owners, self._gc_owners = self._gc_owners, set()
            check, self._gc_check = self._gc_check, set()
            for uid in owners:
                check |= self._dependents.pop(uid, set())
            for storage, namespace, name in sorted(check):
                obj = self._objects.get(storage, {}).get(namespace, {}).get(name)
                info = self._info_for_storage(storage)
                if obj is None or info is None:
                    continue
                refs = [r for r in obj["metadata"].get("ownerReferences") or () if isinstance(r, dict)]
                alive = [r for r in refs if r.get("uid") in self._uids]
                if not refs or len(alive) == len(refs):
                    continue
                if alive:  # remove the dangling references only
                    new = patching.deep_copy(obj)
                    new["metadata"]["ownerReferences"] = alive
                    self._store(info, new, obj)
                else:
                    self._delete(info, namespace or None, name, {"propagationPolicy": "Background"})
            progressed = bool(owners or check)
            for ns in sorted(self._terminating):
                if not self._namespace_has_content(ns):
                    ns_info = self.resource("v1", "namespaces")
                    obj = self._find(ns_info, None, ns)
                    self._terminating.discard(ns)
                    if obj is not None and not obj["metadata"].get("finalizers"):
                        self._remove(ns_info, obj)
                        progressed = True
            if not progressed:
                return

    # --------------------------------------------------------------------- namespaces
    def _namespace_created(self, ns: Obj) -> None:
        # Like the service-account controller: every namespace has a "default" ServiceAccount.
        sa_info = self.resource("v1", "serviceaccounts")
        name = ns["metadata"]["name"]
        if self._find(sa_info, name, "default") is None:
            self._create(sa_info, name, {"metadata": {"name": "default"}})

    def _namespace_has_content(self, ns: str) -> bool:
        return any(buckets.get(ns) for buckets in self._objects.values())

    def _terminate_namespace(self, ns: str) -> None:
        self._terminating.add(ns)
        for storage, buckets in list(self._objects.items()):
            info = self._info_for_storage(storage)
            if info is None or not info.namespaced:
                continue
            for obj in list(buckets.get(ns, {}).values()):
                if not obj["metadata"].get("deletionTimestamp") or not obj["metadata"].get("finalizers"):
                    self._delete(info, ns, obj["metadata"]["name"], {"propagationPolicy": "Background"})
        self._schedule_gc()

    # ----------------------------------------------------------------------------- CRDs
    def _register_crd(self, crd: Obj) -> None:
        spec = crd["spec"]
        names = spec["names"]
        group = spec["group"]
        plural = names["plural"]
        for key in [k for k, info in self._resources.items() if info.crd == crd["metadata"]["name"]]:
            del self._resources[key]
        for version in spec["versions"]:
            if not version.get("served", True):
                continue
            schema_doc = (version.get("schema") or {}).get("openAPIV3Schema")
            columns = crd_columns(version.get("additionalPrinterColumns"))
            self._register(ResourceInfo(
                group=group, version=version["name"], plural=plural, singular=names["singular"],
                kind=names["kind"], namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                short_names=tuple(names.get("shortNames") or ()), categories=tuple(names.get("categories") or ()),
                status_subresource="status" in (version.get("subresources") or {}),
                generation=True, schema=StructuralSchema(schema_doc) if schema_doc else None,
                columns=columns, crd=crd["metadata"]["name"],
                storage_version=bool(version.get("storage")),
            ))

    def _unregister_crd(self, crd: Obj) -> None:
        name = crd["metadata"]["name"]
        infos = [info for info in self._resources.values() if info.crd == name]
        for info in infos:
            self._resources.pop((info.group, info.version, info.plural), None)
        if infos:
            storage = infos[0].store_key
            for bucket in list(self._objects.get(storage, {}).values()):
                for obj in list(bucket.values()):
                    self._remove(infos[0], obj)
            self._objects.pop(storage, None)
            self._history.pop(storage, None)
            self._evicted.pop(storage, None)
            for watcher in self._watchers.pop(storage, set()):
                watcher.close()

    # --------------------------------------------------------------------------- watches
    def watch(
        self,
        info: ResourceInfo,
        namespace: str | None,
        labels: LabelSelector,
        fields: FieldSelector,
        resource_version: str | None,
        *,
        send_initial_events: bool | None = None,
    ) -> tuple[Watcher, int]:
        """Subscribe; the initial (or replayed) events are already queued. Returns (watcher, rv).

        Raises ApiError(410) when the resource version is older than the kept history.
        """
        key = info.store_key
        filtered = not labels.empty or not fields.empty
        watcher = Watcher(info, namespace, labels, fields, filtered=filtered)
        since: int | None = None
        if resource_version not in (None, "", "0") and not send_initial_events:
            try:
                since = int(str(resource_version))
            except ValueError:
                raise errors.bad_request(f"invalid resource version: {resource_version!r}") from None
        if since is None:
            for obj in self.select(info, namespace, labels, fields):
                watcher.queue.put_nowait((ADDED, obj, None))
        else:
            if since < self._evicted.get(key, 0):
                raise ApiError(410, f"too old resource version: {since} ({self._evicted[key] + 1})", "Expired")
            for event in self._history.get(key, ()):
                if event.rv > since:
                    watcher.offer(event)
        self._watchers.setdefault(key, set()).add(watcher)
        return watcher, self._rv

    def unwatch(self, watcher: Watcher) -> None:
        watchers = self._watchers.get(watcher.info.store_key)
        if watchers is not None:
            watchers.discard(watcher)

    # ----------------------------------------------------------------- in-process helpers
    def _info_of(self, obj: Mapping[str, Any]) -> ResourceInfo:
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if not api_version or not kind:
            raise errors.bad_request("apiVersion and kind are required")
        return self.resource(str(api_version), str(kind))

    def create(self, obj: Mapping[str, Any], *, as_node: str | None = None) -> dict[str, Any]:
        """Create an object; its apiVersion and kind decide the resource.

        ``as_node``: create it as that node's kubelet (``system:node:<as_node>``) would, through the
        NodeRestriction admission plugin; modelled for PodCertificateRequests only (ValueError otherwise).
        """
        body = patching.deep_copy(dict(obj))

        def run() -> Obj:
            info = self._info_of(body)
            ns = (body.get("metadata") or {}).get("namespace") or ("default" if info.namespaced else None)
            if as_node is not None:
                if (info.group, info.plural) != (certificates.GROUP, "podcertificaterequests"):
                    raise ValueError(f"creating {info.qualified} as a node is not modelled")
                namespace = self._create_namespace(info, ns, body)
                certificates.node_restriction(self, as_node, str(namespace), body)
            return dict(patching.deep_copy(info.present(self._create(info, ns, body))))

        return self._sync(run)

    def get(
        self, api_version: str, kind_or_plural: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        def run() -> Obj | None:
            info = self.resource(api_version, kind_or_plural)
            obj = self._find(info, namespace, name)
            return None if obj is None else dict(patching.deep_copy(info.present(obj)))

        return self._sync(run)

    def list(
        self,
        api_version: str,
        kind_or_plural: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        def run() -> list[Obj]:
            info = self.resource(api_version, kind_or_plural)
            try:
                labels = parse_label_selector(label_selector)
                fields = parse_field_selector(field_selector)
            except SelectorError as exc:
                raise errors.bad_request(str(exc)) from None
            return [dict(patching.deep_copy(info.present(o))) for o in self.select(info, namespace, labels, fields)]

        return self._sync(run)

    def patch(
        self,
        api_version: str,
        kind_or_plural: str,
        name: str,
        namespace: str | None,
        merge_patch: Mapping[str, Any],
        *,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """A JSON merge patch; ``subresource="status"`` patches the status subresource."""
        body = patching.deep_copy(dict(merge_patch))

        def run() -> Obj:
            info = self.resource(api_version, kind_or_plural)
            stored, _ = self._patch(info, namespace, name, PATCH_MERGE, body, subresource)
            return dict(patching.deep_copy(info.present(stored)))

        return self._sync(run)

    def replace(self, obj: Mapping[str, Any], *, subresource: str | None = None) -> dict[str, Any]:
        """PUT semantics: a stale metadata.resourceVersion raises 409."""
        body = patching.deep_copy(dict(obj))

        def run() -> Obj:
            info = self._info_of(body)
            meta = body.get("metadata") or {}
            stored = self._update(info, meta.get("namespace"), meta.get("name", ""), body, subresource)
            return dict(patching.deep_copy(info.present(stored)))

        return self._sync(run)

    def delete(
        self,
        api_version: str,
        kind_or_plural: str,
        name: str,
        namespace: str | None = None,
        *,
        propagation_policy: str | None = None,
    ) -> None:
        def run() -> None:
            info = self.resource(api_version, kind_or_plural)
            options = {"propagationPolicy": propagation_policy} if propagation_policy else {}
            self._delete(info, namespace, name, options)

        self._sync(run)

    def install_crd(self, crd: Mapping[str, Any]) -> None:
        """Create (or replace) a CustomResourceDefinition; its resource is served at once."""
        body = patching.deep_copy(dict(crd))

        def run() -> None:
            info = self.resource("apiextensions.k8s.io/v1", "customresourcedefinitions")
            name = (body.get("metadata") or {}).get("name", "")
            if self._find(info, None, name) is None:
                self._create(info, None, body)
            else:
                body.get("metadata", {}).pop("resourceVersion", None)
                self._update(info, None, name, body, None)

        self._sync(run)
