"""HTTP serving of an :class:`Emulator`: the Kubernetes REST API on 127.0.0.1, hosted by kmock.

kmock's ``Server`` does the HTTP serving (an aiohttp low-level server). Its ``RawHandler``
would parse every request into a ``kmock.Request``, append it to an unbounded list and match it
against every declared reaction; :class:`_Handler` overrides ``__call__`` to go straight to
:class:`HttpApi` instead, so nothing grows per request except the bounded request log.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import contextlib
import json
import logging
import math
import os
import pathlib
import threading
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple, Self

import aiohttp.web
import attrs
import kmock
import yaml

from kube_emulator import builtin, discovery, errors, protobuf
from kube_emulator.admission import Admission, Warnings
from kube_emulator.errors import ApiError
from kube_emulator.jsonenc import dumps
from kube_emulator.resources import Obj, ResourceInfo
from kube_emulator.selectors import SelectorError, parse_field_selector, parse_label_selector
from kube_emulator.store import (
    BOOKMARK,
    ERROR,
    PATCH_APPLY,
    PATCH_JSON,
    Emulator,
    Watcher,
    WatchItem,
    encode_event,
    partial_metadata,
)
from kube_emulator.tables import Column, builtin_columns, default_columns, make_table

if TYPE_CHECKING:
    import kubernetes.client

logger = logging.getLogger("kube_emulator")

# The request log as JSON ({"reads", "writes", "counts": [{verb, resource, subresource, count}]}).
REQUEST_LOG_PATH = "/_emulator/requests"
JSON_TYPE = "application/json"
# The metadata-only forms (``Accept: application/json;as=<form>;g=meta.k8s.io;v=v1``): one object (a get,
# and each object of a watch stream) or a list.
METADATA = "PartialObjectMetadata"
METADATA_LIST = "PartialObjectMetadataList"


def _namespaced_name(obj: Obj) -> tuple[str, str]:
    return obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


class Route(NamedTuple):
    group: str
    version: str
    plural: str
    namespace: str | None
    name: str | None
    subresource: str | None
    watch: bool


def parse_path(path: str) -> Route | tuple[str, str, str] | None:
    """A resource route, or ("discovery", group, version) for /api/v1 and /apis/g/v; None if unknown."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    if not rest:
        return ("discovery", group, version)
    watch = rest[0] == "watch"
    if watch:
        rest = rest[1:]
    namespace = None
    if rest and rest[0] == "namespaces" and len(rest) >= 3 and not (
        group == "" and len(rest) == 3 and rest[2] in ("status", "finalize")
    ):
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        return None
    return Route(group, version, rest[0], namespace, rest[1] if len(rest) > 1 else None,
                 rest[2] if len(rest) > 2 else None, watch)


def _json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> aiohttp.web.Response:
    return aiohttp.web.Response(body=dumps(body), status=status, content_type=JSON_TYPE,
                                headers=headers)


def _error_response(exc: ApiError) -> aiohttp.web.Response:
    return _json_response(exc.status, exc.code, exc.headers or None)


_partial = partial_metadata
# The kind of the items a watch stream's timer puts in its queue (see HttpApi._stream): no event's type.
_TICK = "tick"


def _go_type(info: ResourceInfo, *, listed: bool) -> str:
    """The Go type kube-apiserver names in a NotAcceptable message: its internal type for a built-in
    (``*core.Secret``, ``*apps.DeploymentList``), ``*unstructured.Unstructured`` for a custom resource."""
    if info.crd is not None:
        return "*unstructured.UnstructuredList" if listed else "*unstructured.Unstructured"
    package = info.group.split(".")[0] if info.group else "core"
    return f"*{package}.{info.kind}{'List' if listed else ''}"


def _not_acceptable(info: ResourceInfo, wants: str) -> ApiError:
    """kube-apiserver's answer to a metadata-only media type that does not fit the answer: the list type
    for one object, or the object type for a list."""
    if wants == METADATA_LIST:
        return ApiError(406, "you requested PartialObjectMetadataList, but the requested object is not a list "
                             f"({_go_type(info, listed=False)})", "NotAcceptable")
    return ApiError(406, "you requested PartialObjectMetadata, but the requested object is a list "
                         f"({_go_type(info, listed=True)})", "NotAcceptable")


def _flag(value: str | None) -> bool:
    return value is not None and value.lower() in ("true", "1")


def _not_found_url() -> ApiError:
    return ApiError(404, "the server could not find the requested resource", "NotFound")


class HttpApi:
    """The REST semantics: routing, faults, the request log, tables, watch streams."""

    def __init__(self, emulator: Emulator, *, bookmark_interval: float = 60.0) -> None:
        self.emulator = emulator
        self.bookmark_interval = bookmark_interval
        self.address = "127.0.0.1:0"
        self.admission = Admission(emulator)
        self._tasks: set[asyncio.Task[Any]] = set()
        # The last list's selection (sorted), by what selected it and the store's revision: the pages of a
        # list read while nothing changed reuse it, as an apiserver reads a page as one range of etcd
        # (selecting and sorting every object per page made a paged list quadratic in its size).
        self._last_selection: tuple[tuple[str, ...], list[Obj]] | None = None

    async def cancel_all(self) -> None:
        """End every request in flight (watch streams, delayed requests) for a quick shutdown."""
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    async def handle(self, request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            return await self._handle(request)
        except ApiError as exc:
            return _error_response(exc)
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as exc:
            logger.exception("The emulator failed on %s %s", request.method, request.path_qs)
            return _error_response(ApiError(500, f"emulator error: {exc!r}", "InternalError"))
        finally:
            if task is not None:
                self._tasks.discard(task)

    # ------------------------------------------------------------------------- routing
    async def _handle(self, request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        emulator = self.emulator
        path = request.path
        route = parse_path(path)
        if not isinstance(route, Route):
            emulator.requests.record_other()
            if request.method != "GET":
                raise ApiError(405, "the server does not allow this method on the requested resource",
                               "MethodNotAllowed")
            return self._discovery(request, route)
        info = emulator.lookup(route.group, route.version, route.plural)
        if info is None:
            emulator.requests.record_other()
            raise _not_found_url()
        method = request.method
        if route.name is None:
            verb = {"GET": "list", "POST": "create", "DELETE": "deletecollection"}.get(method)
            if verb == "list" and (route.watch or _flag(request.query.get("watch"))):
                verb = "watch"
        else:
            verb = {"GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method)
            if verb == "get" and (route.watch or _flag(request.query.get("watch"))):
                verb = "watch"
        status = 500
        try:
            if verb is None:
                raise ApiError(405, "the server does not allow this method on the requested resource",
                               "MethodNotAllowed")
            if info.namespaced is False and route.namespace is not None:
                raise _not_found_url()
            if route.subresource is not None and (route.subresource != "status" or not info.status_subresource):
                raise _not_found_url()
            drop = False
            if emulator.faults:
                fault = emulator.faults.take(verb, info.group, info.plural, route.namespace, route.name,
                                             route.subresource)
                if fault is not None:
                    if fault.delay:
                        await asyncio.sleep(fault.delay)
                    if fault.status is not None:
                        raise self._fault_error(fault.status, fault.retry_after, fault.message, info, route)
                    drop = fault.drop_watch
            response = await self._dispatch(request, verb, info, route, drop)
            status = response.status
            return response
        except ApiError as exc:
            status = exc.code
            raise
        finally:
            if verb != "watch" or status != 200:  # watches are recorded when their stream starts
                emulator.requests.record(verb or method.lower(), info.group, info.plural, route.subresource,
                                         route.namespace, route.name, status,
                                         user_agent=request.headers.get("User-Agent"))

    def _fault_error(
        self, code: int, retry_after: float | None, message: str | None, info: ResourceInfo, route: Route
    ) -> ApiError:
        name = route.name or ""
        if code == 409:
            return errors.conflict(info.plural, info.group, name)
        if code == 429:
            seconds = max(1, math.ceil(retry_after or 1))
            exc = ApiError(429, message or "Too many requests, please try again later.", "TooManyRequests",
                           errors.details(name, info.group, info.plural, retryAfterSeconds=seconds),
                           headers={"Retry-After": str(seconds)})
            return exc
        if code == 404:
            return errors.not_found(info.plural, info.group, name)
        headers = {"Retry-After": str(max(1, math.ceil(retry_after)))} if retry_after is not None else None
        return ApiError(code, message or f"injected fault ({code})", None,
                        errors.details(name, info.group, info.plural), headers=headers)

    def _discovery(self, request: aiohttp.web.BaseRequest, route: tuple[str, str, str] | None) -> aiohttp.web.Response:
        emulator = self.emulator
        path = request.path.rstrip("/")
        accept = request.headers.get("Accept", "")
        aggregated = "as=APIGroupDiscoveryList" in accept and "v=v2;" in accept.replace(" ", "") + ";"
        if route is not None:
            _, group, version = route
            doc = discovery.api_resource_list(emulator, group, version)
            if doc is None:
                raise _not_found_url()
            return _json_response(doc)
        if path in ("", "/"):
            return _json_response({"paths": ["/api", "/api/v1", "/apis", "/version", "/healthz", "/readyz",
                                             "/livez"]})
        if path == "/version":
            return _json_response(discovery.VERSION)
        if path == "/openapi/v3":
            return _json_response(discovery.openapi_v3_index(emulator))
        if path.startswith("/openapi/v3/"):
            doc = discovery.openapi_v3_group_version(emulator, path[len("/openapi/v3/"):])
            if doc is not None:
                return _json_response(doc)
        if path in ("/healthz", "/readyz", "/livez"):
            return aiohttp.web.Response(text="ok")
        if path == REQUEST_LOG_PATH:
            # Not a Kubernetes path: the request log, for benchmarks with the emulator in its own process.
            log = emulator.requests
            counts = [
                {"verb": verb, "resource": resource, "subresource": sub, "count": n}
                for (verb, resource, sub), n in sorted(log.counts().items())
            ]
            return _json_response({"reads": log.reads, "writes": log.writes, "counts": counts})
        if path == "/api":
            if aggregated:
                return self._aggregated(discovery.aggregated(emulator, legacy=True))
            return _json_response(discovery.api_versions(self.address))
        if path == "/apis":
            if aggregated:
                return self._aggregated(discovery.aggregated(emulator, legacy=False))
            return _json_response(discovery.api_group_list(emulator))
        if path.startswith("/apis/") and path.count("/") == 2:
            group_doc = discovery.api_group(emulator, path.split("/")[2])
            if group_doc is not None:
                return _json_response(group_doc)
        raise _not_found_url()

    @staticmethod
    def _aggregated(doc: Obj) -> aiohttp.web.Response:
        response = aiohttp.web.Response(body=dumps(doc))
        response.headers["Content-Type"] = discovery.AGGREGATED_V2
        return response

    # ------------------------------------------------------------------------ dispatch
    async def _dispatch(
        self, request: aiohttp.web.BaseRequest, verb: str, info: ResourceInfo, route: Route, drop: bool
    ) -> aiohttp.web.StreamResponse:
        emulator = self.emulator
        query = request.query
        dry_run = bool(query.get("dryRun"))
        strict = query.get("fieldValidation") == "Strict"
        if verb == "get":
            assert route.name is not None
            obj = emulator.read(info, route.namespace, route.name)
            return self._render(request, info, [obj], single=True)
        if verb == "list":
            return self._list(request, info, route)
        if verb == "watch":
            return await self._watch(request, info, route, drop)
        if verb in ("create", "update", "patch"):
            # Admission webhooks' warnings reach the client on success and on failure alike.
            warnings = Warnings()
            try:
                response = await self._write(request, verb, info, route, dry_run, strict, warnings)
            except ApiError as exc:
                response = _error_response(exc)
            for header in warnings.headers:
                response.headers.add("Warning", header)
            return response
        if verb == "delete":
            assert route.name is not None
            options = await self._delete_options(request)
            obj, gone = emulator._delete(info, route.namespace, route.name, options, dry_run=dry_run)
            if gone and info.plural not in ("pods", "services"):
                meta = obj["metadata"]
                return _json_response({
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                    "details": errors.details(meta["name"], info.group, info.plural, uid=meta.get("uid")),
                })
            return _json_response(info.present(obj))
        if verb == "deletecollection":
            options = await self._delete_options(request)
            labels, fields = self._selectors(request, info)
            deleted = []
            for obj in emulator.select(info, route.namespace, labels, fields):
                meta = obj["metadata"]
                with contextlib.suppress(ApiError):
                    final, _ = emulator._delete(info, meta.get("namespace"), meta["name"], options, dry_run=dry_run)
                    deleted.append(info.present(final))
            return _json_response({"kind": info.list_kind, "apiVersion": info.api_version,
                                   "metadata": {"resourceVersion": emulator.resource_version}, "items": deleted})
        raise ApiError(405, "the server does not allow this method on the requested resource", "MethodNotAllowed")

    @staticmethod
    def _strict(info: ResourceInfo, body: Any) -> None:
        """``fieldValidation=Strict``: unknown fields of custom resources are an error, not pruned."""
        unknown = builtin.unknown_fields(info, body) if isinstance(body, dict) else []
        if unknown:
            listed = ", ".join(f'unknown field "{field}"' for field in unknown)
            raise errors.bad_request(f"{info.kind} in version \"{info.version}\" cannot be handled as a "
                                     f"{info.kind}: strict decoding error: {listed}")

    async def _write(
        self, request: aiohttp.web.BaseRequest, verb: str, info: ResourceInfo, route: Route, dry_run: bool,
        strict: bool, warnings: Warnings,
    ) -> aiohttp.web.Response:
        """Create, update or patch, through admission (admission.py)."""
        field_manager = request.query.get("fieldManager")
        if verb == "create":
            if route.subresource is not None:
                raise _not_found_url()
            body = await self._body(request)
            if strict:
                self._strict(info, body)
            obj = await self.admission.create(info, route.namespace, body, dry_run=dry_run,
                                              field_manager=field_manager, warnings=warnings)
            return _json_response(info.present(obj), 201)
        assert route.name is not None
        if verb == "update":
            body = await self._body(request)
            if strict:
                self._strict(info, body)
            obj = await self.admission.update(info, route.namespace, route.name, body, route.subresource,
                                              dry_run=dry_run, field_manager=field_manager, warnings=warnings)
            return _json_response(info.present(obj))
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        body = await self._body(request, yaml_ok=content_type == PATCH_APPLY)
        if strict and content_type != PATCH_JSON:
            self._strict(info, body)
        obj, created = await self.admission.patch(info, route.namespace, route.name, content_type, body,
                                                  route.subresource, dry_run=dry_run, field_manager=field_manager,
                                                  warnings=warnings)
        return _json_response(info.present(obj), 201 if created else 200)

    async def _body(self, request: aiohttp.web.BaseRequest, *, yaml_ok: bool = False) -> Any:
        raw = await request.read()
        content_type = request.headers.get("Content-Type", "")
        if "protobuf" in content_type:
            try:
                return protobuf.decode(raw)
            except protobuf.ProtobufError as exc:
                raise ApiError(415, f"the body of the request was in an unknown format ({exc}) - accepted media "
                               "types include: application/json, application/yaml", "UnsupportedMediaType") from None
        if "cbor" in content_type:
            raise ApiError(415, f"the body of the request was in an unknown format - accepted media types "
                           f"include: application/json, application/yaml (got {content_type})",
                           "UnsupportedMediaType")
        if not raw:
            raise errors.bad_request("the body of the request is empty")
        try:
            return json.loads(raw)
        except ValueError:
            if not (yaml_ok or "yaml" in content_type):
                raise errors.bad_request("the body of the request is not valid JSON") from None
        try:
            return yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise errors.bad_request(f"the body of the request is not valid YAML: {exc}") from None

    async def _delete_options(self, request: aiohttp.web.BaseRequest) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if request.can_read_body:
            raw = await request.read()
            if raw.strip():
                content_type = request.headers.get("Content-Type", "")
                if "protobuf" in content_type or "cbor" in content_type:
                    raise ApiError(415, "the body of the request was in an unknown format", "UnsupportedMediaType")
                try:
                    body = json.loads(raw)
                except ValueError:
                    raise errors.bad_request("the DeleteOptions are not valid JSON") from None
                if isinstance(body, dict):
                    options.update(body)
        for key in ("propagationPolicy", "gracePeriodSeconds", "orphanDependents"):
            if key in request.query:
                value: Any = request.query[key]
                if key == "orphanDependents":
                    value = _flag(value)
                options[key] = value
        return options

    def _selectors(self, request: aiohttp.web.BaseRequest, info: ResourceInfo) -> tuple[Any, Any]:
        try:
            labels = parse_label_selector(request.query.get("labelSelector"))
            fields = parse_field_selector(request.query.get("fieldSelector"))
        except SelectorError as exc:
            raise errors.bad_request(str(exc)) from None
        if info.crd is not None:
            unsupported = sorted(fields.fields - {"metadata.name", "metadata.namespace"})
            if unsupported:
                raise errors.bad_request(f'field label not supported: {unsupported[0]}')
        return labels, fields

    # -------------------------------------------------------------------------- reading
    def _wants(self, request: aiohttp.web.BaseRequest) -> str | None:
        accept = request.headers.get("Accept", "")
        if "as=Table" in accept:
            return "Table"
        if "as=PartialObjectMetadataList" in accept:
            return METADATA_LIST
        if "as=PartialObjectMetadata" in accept:
            return METADATA
        return None

    def _columns(self, info: ResourceInfo) -> list[Column]:
        if info.columns is not None:
            return info.columns
        if info.crd is not None:
            return default_columns()
        return builtin_columns(info.plural)

    def _table(self, request: aiohttp.web.BaseRequest, info: ResourceInfo, objects: list[Obj],
               continue_token: str = "") -> Obj:
        include = request.query.get("includeObject") or "Metadata"
        table = make_table([info.present(o) for o in objects], self._columns(info), now=self.emulator.clock(),
                           resource_version=self.emulator.resource_version, include_object=include)
        if continue_token:
            table.setdefault("metadata", {})["continue"] = continue_token
        return table

    def _render(self, request: aiohttp.web.BaseRequest, info: ResourceInfo, objects: list[Obj], *,
                single: bool) -> aiohttp.web.Response:
        wants = self._wants(request)
        if wants == "Table":
            return _json_response(self._table(request, info, objects))
        obj = info.present(objects[0])
        if wants == METADATA_LIST:
            raise _not_acceptable(info, wants)
        if wants == METADATA:
            return _json_response(_partial(obj))
        return _json_response(obj)

    def _list(self, request: aiohttp.web.BaseRequest, info: ResourceInfo, route: Route) -> aiohttp.web.Response:
        emulator = self.emulator
        labels, fields = self._selectors(request, info)
        if self._wants(request) == METADATA:
            raise _not_acceptable(info, METADATA)
        selection = (info.group, info.plural, route.namespace or "", request.query.get("labelSelector", ""),
                     request.query.get("fieldSelector", ""), emulator.resource_version)
        if self._last_selection is not None and self._last_selection[0] == selection:
            objects = self._last_selection[1]
        else:
            objects = emulator.select(info, route.namespace, labels, fields)
            self._last_selection = (selection, objects)
        continue_token = ""
        start = request.query.get("continue")
        if start:
            try:
                after = json.loads(base64.urlsafe_b64decode(start.encode()))
                key = (str(after["ns"]), str(after["name"]))
            except (ValueError, KeyError, TypeError):
                raise ApiError(400, "continue key is not valid", "BadRequest") from None
            # ``select`` sorts by (namespace, name): the page starts right after the continue key.
            objects = objects[bisect.bisect_right(objects, key, key=_namespaced_name):]
        remaining = 0
        limit_text = request.query.get("limit")
        if limit_text:
            try:
                limit = int(limit_text)
            except ValueError:
                raise errors.bad_request(f"invalid limit: {limit_text!r}") from None
            if 0 < limit < len(objects):
                last = objects[limit - 1]["metadata"]
                remaining = len(objects) - limit
                objects = objects[:limit]
                continue_token = base64.urlsafe_b64encode(dumps(
                    {"ns": last.get("namespace", ""), "name": last["name"]})).decode()
        wants = self._wants(request)
        if wants == "Table":
            return _json_response(self._table(request, info, objects, continue_token))
        meta: Obj = {"resourceVersion": emulator.resource_version}
        if continue_token:
            meta["continue"] = continue_token
            meta["remainingItemCount"] = remaining
        if wants == METADATA_LIST:
            items: list[Obj] = [_partial(o) for o in objects]
            return _json_response({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                                   "metadata": meta, "items": items})
        return _json_response({"kind": info.list_kind, "apiVersion": info.api_version, "metadata": meta,
                               "items": [info.present(o) for o in objects]})

    # --------------------------------------------------------------------------- watching
    async def _watch(
        self, request: aiohttp.web.BaseRequest, info: ResourceInfo, route: Route, drop: bool
    ) -> aiohttp.web.StreamResponse:
        emulator = self.emulator
        query = request.query
        labels, fields = self._selectors(request, info)
        if route.name is not None:  # a watch on one object: /watch/.../name or ?watch=1 on it
            fields = parse_field_selector(",".join(filter(None, [str(fields), f"metadata.name={route.name}"])))
        send_initial = _flag(query.get("sendInitialEvents"))
        bookmarks = _flag(query.get("allowWatchBookmarks"))
        timeout: float | None = None
        if query.get("timeoutSeconds"):
            try:
                timeout = float(query["timeoutSeconds"])
            except ValueError:
                raise errors.bad_request("invalid timeoutSeconds") from None
        form = self._wants(request)
        response = aiohttp.web.StreamResponse(status=200, headers={"Content-Type": JSON_TYPE,
                                                                   "Cache-Control": "no-cache, private"})
        try:
            watcher, _ = emulator.watch(info, route.namespace, labels, fields, query.get("resourceVersion"),
                                        send_initial_events=send_initial)
        except ApiError as exc:
            if exc.code != 410:
                raise
            # Like the apiserver: a 200 stream with one ERROR event carrying the 410 Status.
            emulator.requests.record("watch", info.group, info.plural, None, route.namespace, route.name, 410)
            await response.prepare(request)
            await response.write(encode_event(ERROR, exc.status))
            await response.write_eof()
            return response
        emulator.requests.record("watch", info.group, info.plural, None, route.namespace, route.name, 200)
        try:
            await response.prepare(request)
            if form == METADATA_LIST:
                # kube-apiserver cannot turn a watch event's one object into a list: the stream ends at
                # the first event (a bookmark too), unwritten, and nothing tells the client why.
                await self._end_at_first_event(watcher, timeout, bookmarks)
                return response
            initial = watcher.queue.qsize()
            if initial:
                await self._drain(response, watcher, form, initial)
            if send_initial:
                await response.write(self._bookmark(info, form, initial_end=True))
            if drop:
                if request.transport is not None:
                    request.transport.abort()
                return response
            await self._stream(response, watcher, form, timeout, bookmarks)
        finally:
            emulator.unwatch(watcher)
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
        return response

    async def _end_at_first_event(self, watcher: Watcher, duration: float | None, bookmarks: bool) -> None:
        waits = [t for t in (duration, self.bookmark_interval if bookmarks else None) if t is not None]
        if not watcher.queue.empty():
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(waits) if waits else None):
                await watcher.queue.get()

    async def _stream(self, response: aiohttp.web.StreamResponse, watcher: Watcher, form: str | None,
                      duration: float | None, bookmarks: bool) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + duration if duration is not None else None
        next_bookmark = loop.time() + self.bookmark_interval if bookmarks else None
        queue = watcher.queue
        # The stream wakes for its deadline and bookmarks by a tick put in its queue by one timer, armed for
        # the earliest of the two, rather than a timeout around every wait for an event (a timer per event).
        tick: WatchItem | None = None
        timer: asyncio.TimerHandle | None = None
        armed_for: float | None = None
        try:
            while True:
                now = loop.time()
                if deadline is not None and now >= deadline:
                    return
                if next_bookmark is not None and now >= next_bookmark and queue.empty():
                    await response.write(self._bookmark(watcher.info, form))
                    next_bookmark = now + self.bookmark_interval
                wake = min((t for t in (deadline, next_bookmark) if t is not None), default=None)
                if wake is not None and (tick is None or armed_for != wake):
                    if timer is not None:
                        timer.cancel()
                    tick = (_TICK, {}, None)
                    timer, armed_for = loop.call_at(wake, queue.put_nowait, tick), wake
                item = await queue.get()
                if item is None:
                    return
                if item[0] == _TICK:
                    if item is tick:
                        tick = timer = None
                    continue
                chunks = [self._encode(watcher, item, form)]
                while not queue.empty() and len(chunks) < 1000:
                    more = queue.get_nowait()
                    if more is None:
                        await response.write(b"".join(chunks))
                        return
                    if more[0] == _TICK:
                        if more is tick:
                            tick = timer = None
                        continue
                    chunks.append(self._encode(watcher, more, form))
                await response.write(b"".join(chunks))
        finally:
            if timer is not None:
                timer.cancel()

    async def _drain(self, response: aiohttp.web.StreamResponse, watcher: Watcher, form: str | None,
                     count: int) -> None:
        chunks = []
        for _ in range(count):
            item = watcher.queue.get_nowait()
            if item is None:
                break
            chunks.append(self._encode(watcher, item, form))
            if len(chunks) >= 1000:
                await response.write(b"".join(chunks))
                chunks = []
        if chunks:
            await response.write(b"".join(chunks))

    def _encode(self, watcher: Watcher, item: WatchItem, form: str | None) -> bytes:
        """One event line: the object, its Table row, or (``PartialObjectMetadata``) its metadata only,
        as the apiserver streams for an ``Accept: ...;as=PartialObjectMetadata`` watch."""
        kind, obj, event = item
        info = watcher.info
        if form == METADATA:
            if event is not None:
                return event.encode(info, metadata_only=True)
            return encode_event(kind, _partial(info.present(obj)))
        if form == "Table":
            shown = make_table([info.present(obj)], self._columns(info), now=self.emulator.clock(),
                               resource_version=str(obj["metadata"].get("resourceVersion", "")))
            return encode_event(kind, shown)
        if event is not None:
            return bytes(event.encode(info))
        return encode_event(kind, info.present(obj))

    def _bookmark(self, info: ResourceInfo, form: str | None, *, initial_end: bool = False) -> bytes:
        meta: Obj = {"resourceVersion": self.emulator.resource_version}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        if form == METADATA:
            return encode_event(BOOKMARK, _partial({"metadata": meta}))
        return encode_event(BOOKMARK, {"kind": info.kind, "apiVersion": info.api_version, "metadata": meta})


@attrs.define(kw_only=True)
class _Handler(kmock.RawHandler):
    """kmock's raw handler, short-circuited: no per-request kmock.Request, no unbounded request list."""

    api: HttpApi

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        return await self.api.handle(raw_request)


@attrs.mutable
class _Server(kmock.Server):
    """kmock.Server without its client session and DNS interceptor (process-global; not needed)."""

    async def __aenter__(self) -> Self:
        if self._managed_server is not None:
            raise RuntimeError("The server can be started/entered only once.")
        self._managed_server = self._server_cls(self.handler, host=self._host, port=self._port)
        await self._managed_server.__aenter__()
        self.handler.servers.append(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.handler.servers.remove(self)
        assert self._managed_server is not None
        await self._managed_server.__aexit__(exc_type, exc_value, traceback)
        self._managed_server = None


def kubeconfig_document(url: str, *, namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "mtls-emulator", "cluster": {"server": url}}],
        "users": [{"name": "mtls-emulator", "user": {"token": "emulator"}}],
        "contexts": [{"name": "mtls-emulator",
                      "context": {"cluster": "mtls-emulator", "user": "mtls-emulator", "namespace": namespace}}],
        "current-context": "mtls-emulator",
        "preferences": {},
    }


def _write_kubeconfig(url: str, path: str | os.PathLike[str], namespace: str) -> pathlib.Path:
    target = pathlib.Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(kubeconfig_document(url, namespace=namespace), sort_keys=False))
    return target


def _client_configuration(url: str) -> kubernetes.client.Configuration:
    import kubernetes.client

    config = kubernetes.client.Configuration()
    config.host = url
    config.api_key = {"authorization": "Bearer emulator"}
    return config


class _Endpoint:
    """What both ways of serving share: the emulator (with CRDs installed) and how to reach it."""

    def __init__(self, emulator: Emulator | None, crds: Iterable[Mapping[str, Any]]) -> None:
        self.emulator = emulator if emulator is not None else Emulator()
        for crd in crds:
            self.emulator.install_crd(crd)
        self.port = 0
        self.url = ""

    def write_kubeconfig(self, path: str | os.PathLike[str], *, namespace: str = "default") -> pathlib.Path:
        """Write a kubeconfig whose current context points at this server; returns its path."""
        if not self.url:
            raise RuntimeError("The server is not running.")
        return _write_kubeconfig(self.url, path, namespace)

    def client_configuration(self) -> kubernetes.client.Configuration:
        """A ``kubernetes.client.Configuration`` for this server."""
        if not self.url:
            raise RuntimeError("The server is not running.")
        return _client_configuration(self.url)


class EmulatorServer(_Endpoint):
    """Serves an :class:`Emulator` over HTTP on 127.0.0.1 on the current event loop.

    ``async with EmulatorServer() as server:`` then ``server.url``, ``server.write_kubeconfig(p)``.
    A synchronous client (the ``kubernetes`` package) must not be called directly from the same
    loop (it would block the loop that serves it): use ``asyncio.to_thread`` or
    :class:`EmulatorThread`.
    """

    def __init__(
        self,
        emulator: Emulator | None = None,
        *,
        port: int = 0,
        crds: Iterable[Mapping[str, Any]] = (),
        bookmark_interval: float = 60.0,
    ) -> None:
        super().__init__(emulator, crds)
        self._requested_port = port
        self._api = HttpApi(self.emulator, bookmark_interval=bookmark_interval)
        self._server: _Server | None = None

    async def __aenter__(self) -> Self:
        self.emulator.attach(asyncio.get_running_loop())
        handler = _Handler(api=self._api)
        server = _Server(handler, port=self._requested_port or None)
        try:
            await server.__aenter__()
        except BaseException:
            self.emulator.detach()
            raise
        self._server = server
        self.port = int(server.port)
        self.url = f"http://127.0.0.1:{self.port}"
        self._api.address = f"127.0.0.1:{self.port}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        server, self._server = self._server, None
        try:
            self.emulator.detach()  # ends the watch streams
            await self._api.cancel_all()
            await self._api.admission.close()
        finally:
            if server is not None:
                await server.__aexit__(exc_type, exc_value, traceback)


class EmulatorThread(_Endpoint):
    """The same as :class:`EmulatorServer`, on its own event loop in a daemon thread (sync code).

    ``with EmulatorThread() as server:``; the in-process helpers of ``server.emulator`` may be
    called from any thread (they run on the server's loop).
    """

    def __init__(
        self,
        emulator: Emulator | None = None,
        *,
        port: int = 0,
        crds: Iterable[Mapping[str, Any]] = (),
        bookmark_interval: float = 60.0,
    ) -> None:
        super().__init__(emulator, crds)
        self._port = port
        self._bookmark_interval = bookmark_interval
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._server: EmulatorServer | None = None

    def __enter__(self) -> Self:
        self._thread = threading.Thread(target=self._run, name="mtls-emulator", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            if not self._ready.is_set():
                self._error = exc
                self._ready.set()
            else:
                logger.exception("The emulator thread failed")

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with EmulatorServer(self.emulator, port=self._port,
                                  bookmark_interval=self._bookmark_interval) as server:
            self._server = server
            self.port = server.port
            self.url = server.url
            self._ready.set()
            await self._stop.wait()
