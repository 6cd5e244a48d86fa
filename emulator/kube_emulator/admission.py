"""Admission webhooks: the emulator calls Mutating/ValidatingWebhookConfigurations as kube-apiserver does.

Every create, update (PUT) and patch over HTTP is admitted in the apiserver's order:

- create: the URL's namespace is set on the object (400 on a mismatch) and the namespace must exist
  (404, or 403 while it terminates); the built-in ServiceAccount default of pods; the mutating
  webhooks, *before* the name is generated, so for a ``generateName`` create the review has no
  ``request.name`` and ``object.metadata.name`` is absent (webhooks cannot rely on pod names); then
  BeforeCreate (the name generated, uid, defaults, the resource's own validation, 422); the
  validating webhooks, which see the generated name and uid; and only then 409 for a taken name.
- update and patch (``operation: UPDATE``, ``oldObject`` set): the patch is applied first (every
  patch type), the mutating webhooks see the result, then preconditions (409 for a stale
  resourceVersion), defaults and validation, then the validating webhooks. When the object
  changed while the webhooks were called, everything is done again on the newer object, like the
  apiserver's GuaranteedUpdate. An apply patch of an absent object is a CREATE.
- subresource writes (``/status``) reach only the webhooks whose rules name the subresource
  (``pods/status``, ``*/status``, ``*/*``), with ``subResource`` set in the review.

Which webhooks: configurations in name order, webhooks in their order. A webhook is called when one
of its ``rules`` matches (operations, apiGroups, apiVersions, resources with ``*`` and
``resource/subresource``, ``scope``), its ``namespaceSelector`` matches the labels of the object's
namespace (a Namespace is matched on its own labels; cluster-scoped objects always match) and its
``objectSelector`` matches the new or, on an update, the old object. Webhook configurations
themselves are never sent to webhooks.

How: an ``admission.k8s.io/v1`` AdmissionReview is POSTed over HTTPS with ``?timeout=<n>s`` to
``clientConfig.url``, or for ``clientConfig.service`` to the address given with
:meth:`~kube_emulator.Emulator.route_service`; the server's certificate is verified against
``caBundle`` (system roots without it) for the URL's host, or ``<service>.<namespace>.svc``.
Mutating webhooks run one after the other, each seeing the patches before it; validating ones run
in parallel and the first failure in configuration order is answered. ``timeoutSeconds`` (default
10, at most 30) bounds each call: the emulator never waits longer on a webhook.

Answers, as the apiserver gives them:

- a failing call (refused connection, TLS failure, timeout, an HTTP status outside 200-206, a body that is
  not an AdmissionReview v1, a wrong ``response.uid``, ``patch`` without ``patchType`` or with
  another than ``JSONPatch``, a patch from a validating webhook, an unrouted service) is 500
  ``Internal error occurred: failed calling webhook "<name>": ...`` under ``failurePolicy: Fail``
  (the default) and is skipped (and logged) under ``Ignore``;
- a denial is the webhook's Status with the message ``admission webhook "<name>" denied the request:
  <message>`` and its ``code`` (400 when it gives none or one below 400);
- a ``patch`` that is not a JSON patch or does not apply is 500 whatever the ``failurePolicy``;
- the ``warnings`` of every called webhook (also of a denying one) are ``Warning: 299 - "<text>"``
  response headers, each text once: kubectl prints them (``Warning: <text>``); the ``kubernetes``
  Python client does not, its ``*_with_http_info`` calls return them in the headers;
- a dry-run request (``dryRun=All``) is sent with ``dryRun: true`` to webhooks whose
  ``sideEffects`` is None or NoneOnDryRun, and refused (400) when a matching webhook declares others.

Simplified: DELETE and CONNECT are not admitted, nor are the in-process helpers of
:class:`~kube_emulator.Emulator` (they write directly); only AdmissionReview ``v1`` is
sent (a webhook that accepts only v1beta1 fails); ``matchPolicy`` is always Exact (no conversion
to an equivalent version); ``matchConditions`` (CEL), ``reinvocationPolicy`` and
``auditAnnotations`` are ignored; objects reach the mutating webhooks without the scheme defaults
a real apiserver applies when it decodes them (a pod's ``restartPolicy``, ``dnsPolicy``...: the
emulator sets its few defaults in BeforeCreate, after them); configurations are stored
unvalidated (a bad selector fails the requests it is evaluated for with 500); warnings have no
size limit; the user is always ``system:admin`` (groups ``system:masters``, ``system:authenticated``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import json
import logging
import ssl
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import aiohttp
import yarl

from kube_emulator import builtin, errors, patching
from kube_emulator.errors import ApiError
from kube_emulator.resources import Obj, ResourceInfo
from kube_emulator.selectors import LabelSelector, SelectorError, parse_label_selector

if TYPE_CHECKING:
    from kube_emulator.store import Emulator

logger = logging.getLogger("kube_emulator")

CREATE, UPDATE = "CREATE", "UPDATE"
ADMISSION_GROUP = "admissionregistration.k8s.io"
REVIEW_API_VERSION = "admission.k8s.io/v1"
DEFAULT_TIMEOUT_SECONDS = 10
MAX_TIMEOUT_SECONDS = 30
_USER_INFO = {"username": "system:admin", "groups": ["system:masters", "system:authenticated"]}
_MAX_SSL_CONTEXTS = 64  # one per caBundle; bounded, since tests create many CAs


class Warnings:
    """The warnings for one response, each text once, in the order the webhooks gave them."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def add(self, text: str) -> None:
        if text and text not in self.texts:
            self.texts.append(text)

    def extend(self, other: Warnings) -> None:
        for text in other.texts:
            self.add(text)

    @property
    def headers(self) -> list[str]:
        """``Warning`` header values: ``299 - "<text>"`` (RFC 9111), as the apiserver writes them."""
        # A header value cannot carry control characters; the quoted string escapes " and \.
        printable = ("".join(c if c.isprintable() else " " for c in text) for text in self.texts)
        return ['299 - "{}"'.format(text.replace("\\", "\\\\").replace('"', '\\"')) for text in printable]


def selector_text(selector: Mapping[str, Any] | None) -> str:
    """A metav1.LabelSelector object (matchLabels, matchExpressions) as selector text."""
    if not selector:
        return ""
    terms = [f"{key}={value}" for key, value in sorted((selector.get("matchLabels") or {}).items())]
    for expression in selector.get("matchExpressions") or ():
        key, operator = expression.get("key", ""), expression.get("operator", "")
        values = ",".join(expression.get("values") or ())
        if operator == "In":
            terms.append(f"{key} in ({values})")
        elif operator == "NotIn":
            terms.append(f"{key} notin ({values})")
        elif operator == "Exists":
            terms.append(key)
        elif operator == "DoesNotExist":
            terms.append(f"!{key}")
        else:
            raise SelectorError(f'"{operator}" is not a valid label selector operator')
    return ",".join(terms)


@dataclasses.dataclass(frozen=True)
class _Attributes:
    """What admission knows of one write (the apiserver's ``admission.Attributes``)."""

    operation: str
    info: ResourceInfo
    namespace: str  # "" for cluster-scoped objects; a Namespace's own name for namespaces
    name: str  # "" while a generateName create has no name yet
    subresource: str
    obj: Obj
    old: Obj | None
    options: Obj
    dry_run: bool


@dataclasses.dataclass(frozen=True)
class _Response:
    """A verified ``AdmissionReview.response``."""

    allowed: bool
    patch: bytes
    warnings: tuple[str, ...]
    status: Obj


class _CallFailure(Exception):
    """The webhook could not be called or answered nonsense (``ErrCallingWebhook``): failurePolicy decides."""


class Admission:
    """Admits writes over HTTP: built-in admission, the mutating webhooks, then the validating webhooks.

    Each flow mirrors a kube-apiserver handler and touches the store only between its awaits; a write
    that no webhook intercepts never awaits, so it stays as atomic as without admission.
    """

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self._session: aiohttp.ClientSession | None = None
        self._contexts: dict[str, ssl.SSLContext] = {}

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------------------------ flows
    async def create(
        self, info: ResourceInfo, url_ns: str | None, body: Any, *, dry_run: bool, field_manager: str | None,
        warnings: Warnings,
    ) -> Obj:
        """POST (and an apply patch of an absent object): returns the stored (or dry-run) object."""
        emulator = self.emulator
        namespace = emulator._create_namespace(info, url_ns, body)
        builtin.before_admission(info, body)
        if not self._may_call_webhooks(info):
            # Nothing could intercept: the same steps without building what only webhooks would see.
            return emulator._commit_create(info, emulator._prepare_create(info, namespace, body), dry_run=dry_run)
        name = str(body["metadata"].get("name") or "")
        attrs = _Attributes(CREATE, info, _review_namespace(info, namespace, name), name, "", body, None,
                            _options("CreateOptions", field_manager, dry_run), dry_run)
        mutated = await self._mutate(attrs, warnings)
        new = emulator._prepare_create(info, namespace, mutated)
        # The validating webhooks see the generated name (rest.AdmissionToValidateObjectFunc).
        await self._validate(dataclasses.replace(attrs, name=name or str(new["metadata"]["name"]),
                                                 obj=info.present(new)), warnings)
        return emulator._commit_create(info, new, dry_run=dry_run)

    async def update(
        self, info: ResourceInfo, namespace: str | None, name: str, body: Any, subresource: str | None, *,
        dry_run: bool, field_manager: str | None, warnings: Warnings,
    ) -> Obj:
        """PUT: returns the stored (or dry-run) object."""
        emulator = self.emulator
        if not isinstance(body, dict):
            return emulator._update(info, namespace, name, body, subresource, dry_run=dry_run)  # a 400 or 404
        options = _options("UpdateOptions", field_manager, dry_run)
        while True:
            old = emulator.read(info, namespace, name)
            emulator._check_url_name(name, body.get("metadata"))
            if (info.crd is not None or not info.unconditional_update) and not (
                body.get("metadata") or {}
            ).get("resourceVersion"):
                # Custom resources (and some built-ins) allow no unconditional update (AllowUnconditionalUpdate).
                raise errors.invalid(info.plural, info.group, name, [(
                    "metadata.resourceVersion", "FieldValueInvalid",
                    "Invalid value: 0: must be specified for an update",
                )])
            stored = await self._update(info, namespace, name, patching.deep_copy(body), old, subresource, options,
                                        warnings)
            if stored is not None:
                return stored

    async def patch(
        self, info: ResourceInfo, namespace: str | None, name: str, content_type: str, patch: Any,
        subresource: str | None, *, dry_run: bool, field_manager: str | None, warnings: Warnings,
    ) -> tuple[Obj, bool]:
        """PATCH of any type: returns (the stored object, whether an apply patch created it)."""
        emulator = self.emulator
        options = _options("PatchOptions", field_manager, dry_run)
        while True:
            old = emulator._find(info, namespace, name)
            target = emulator._patched(info, name, content_type, patching.deep_copy(patch), subresource, old,
                                       field_manager)
            if old is None:
                created = await self.create(info, namespace, target, dry_run=dry_run, field_manager=field_manager,
                                            warnings=warnings)
                return created, True
            stored = await self._update(info, namespace, name, target, old, subresource, options, warnings)
            if stored is not None:
                return stored, False

    async def _update(
        self, info: ResourceInfo, namespace: str | None, name: str, new: Obj, old: Obj, subresource: str | None,
        options: Obj, warnings: Warnings,
    ) -> Obj | None:
        """Admit and store ``new`` over ``old``; None when ``old`` was replaced meanwhile (then retry)."""
        emulator = self.emulator
        dry_run = bool(options.get("dryRun"))
        if not self._may_call_webhooks(info):
            prepared = emulator._prepare_update(info, namespace, name, new, subresource, old)
            return emulator._commit_update(info, prepared, old, dry_run=dry_run)
        attrs = _Attributes(UPDATE, info, _review_namespace(info, namespace, name), name, subresource or "", new,
                            info.present(old), options, dry_run)
        mutated = await self._mutate(attrs, warnings)
        if emulator._find(info, namespace, name) is not old:
            return None
        prepared = emulator._prepare_update(info, namespace, name, mutated, subresource, old)
        await self._validate(dataclasses.replace(attrs, obj=info.present(prepared)), warnings)
        if emulator._find(info, namespace, name) is not old:
            return None
        return emulator._commit_update(info, prepared, old, dry_run=dry_run)

    # ------------------------------------------------------------------------- webhooks
    def _may_call_webhooks(self, info: ResourceInfo) -> bool:
        """Whether any webhook configuration is stored that could intercept a write of ``info``."""
        emulator = self.emulator
        if not emulator.admission_webhooks or info.group == ADMISSION_GROUP:
            return False  # webhooks never intercept their own configurations
        return any(any((emulator._objects.get((ADMISSION_GROUP, plural)) or {}).values())
                   for plural in ("mutatingwebhookconfigurations", "validatingwebhookconfigurations"))

    def _webhooks(self, plural: str, info: ResourceInfo) -> list[Obj]:
        emulator = self.emulator
        if not emulator.admission_webhooks or info.group == ADMISSION_GROUP:
            return []  # webhooks never intercept their own configurations
        configurations = emulator.select(emulator.resource(f"{ADMISSION_GROUP}/v1", plural), None)
        return [hook for config in configurations for hook in config.get("webhooks") or () if isinstance(hook, dict)]

    async def _mutate(self, attrs: _Attributes, warnings: Warnings) -> Obj:
        """Call the matching mutating webhooks in order; each sees (and is matched on) the patches before it."""
        obj = attrs.obj
        for webhook in self._webhooks("mutatingwebhookconfigurations", attrs.info):
            current = dataclasses.replace(attrs, obj=obj)
            if not self._matches(webhook, current):
                continue
            response = await self._call(webhook, current, warnings, mutating=True)
            if response is not None and response.patch:
                obj = _apply_patch(str(webhook.get("name", "")), obj, response.patch)
        return obj

    async def _validate(self, attrs: _Attributes, warnings: Warnings) -> None:
        hooks = [hook for hook in self._webhooks("validatingwebhookconfigurations", attrs.info)
                 if self._matches(hook, attrs)]
        if not hooks:
            return
        # In parallel, like the apiserver; the first failure in configuration order is answered, so
        # that the answer does not depend on which webhook is faster.
        own = [Warnings() for _ in hooks]
        results = await asyncio.gather(*(self._call(hook, attrs, hook_warnings, mutating=False)
                                         for hook, hook_warnings in zip(hooks, own, strict=True)),
                                       return_exceptions=True)
        for hook_warnings in own:
            warnings.extend(hook_warnings)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    def _matches(self, webhook: Obj, attrs: _Attributes) -> bool:
        if not any(_rule_matches(rule, attrs) for rule in webhook.get("rules") or () if isinstance(rule, dict)):
            return False
        namespaces = _selector(webhook, "namespaceSelector")
        # Cluster-scoped objects other than namespaces are never exempted by a namespaceSelector.
        if (not namespaces.empty and (attrs.namespace or _is_namespaces(attrs.info))
                and not namespaces.matches(self._namespace_labels(attrs))):
            return False
        objects = _selector(webhook, "objectSelector")
        return objects.empty or objects.matches(_labels(attrs.obj)) or (
            attrs.old is not None and objects.matches(_labels(attrs.old))
        )

    def _namespace_labels(self, attrs: _Attributes) -> Mapping[str, str]:
        if _is_namespaces(attrs.info) and not attrs.subresource:
            return _labels(attrs.obj)  # a Namespace being written is matched on its new labels
        emulator = self.emulator
        namespace = emulator._find(emulator.resource("v1", "namespaces"), None, attrs.namespace)
        if namespace is None:
            raise errors.not_found("namespaces", "", attrs.namespace)
        return _labels(namespace)

    async def _call(self, webhook: Obj, attrs: _Attributes, warnings: Warnings, *, mutating: bool) -> _Response | None:
        """Call one webhook: its verified response, or None when it failed and its failurePolicy is Ignore."""
        name = str(webhook.get("name", ""))
        try:
            if attrs.dry_run:
                side_effects = webhook.get("sideEffects")
                if side_effects is None:
                    raise _CallFailure("Webhook SideEffects is nil")
                if side_effects not in ("None", "NoneOnDryRun"):
                    raise errors.bad_request(f'admission webhook "{name}" does not support dry run')
            uid = str(uuid.uuid4())
            response = _verify(await self._post(webhook, _review(uid, attrs)), uid, mutating=mutating)
        except _CallFailure as exc:
            if webhook.get("failurePolicy", "Fail") == "Ignore":
                logger.warning("Failed calling webhook, failing open %s: %s", name, exc)
                return None
            message = f'failed calling webhook "{name}": {exc}'
            raise ApiError(500, f"Internal error occurred: {message}", "InternalError",
                           {"causes": [{"message": message}]}) from None
        for text in response.warnings:
            warnings.add(text)
        if not response.allowed:
            raise _denial(name, response.status)
        return response

    async def _post(self, webhook: Obj, review: Obj) -> Any:
        """POST the review; the parsed JSON answer. Every failure to get one is a :class:`_CallFailure`."""
        if "v1" not in (webhook.get("admissionReviewVersions") or ()):
            raise _CallFailure("could not create admission objects: webhook does not accept known AdmissionReview "
                               "versions (the emulator sends only v1)")
        timeout = _timeout_seconds(webhook)
        config = webhook.get("clientConfig") or {}
        shown, url, server_hostname = self._target(config, f"timeout={timeout}s")
        context = self._ssl_context(config.get("caBundle"))
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with asyncio.timeout(timeout):
                async with self._session.post(
                    url, json=review, ssl=context, server_hostname=server_hostname,
                    headers={"Host": yarl.URL(shown).raw_authority, "Accept": "application/json"},
                ) as resp:
                    status, text = resp.status, await resp.read()
        except TimeoutError:
            raise _CallFailure(f'failed to call webhook: Post "{shown}": context deadline exceeded') from None
        except (aiohttp.ClientError, OSError) as exc:
            raise _CallFailure(f'failed to call webhook: Post "{shown}": {_describe(exc, url)}') from None
        if not 200 <= status <= 206:  # what client-go's REST client accepts
            raise _CallFailure(f"failed to call webhook: the server responded with the status code {status}")
        try:
            return json.loads(text)
        except ValueError as exc:
            raise _CallFailure(f"failed to call webhook: the response is not JSON: {exc}") from None

    def _target(self, config: Mapping[str, Any], query: str) -> tuple[str, yarl.URL, str | None]:
        """(the URL the apiserver would call, the URL to connect to, the TLS server name if not the URL's)."""
        service = config.get("service")
        if isinstance(service, Mapping):
            namespace, name = str(service.get("namespace", "")), str(service.get("name", ""))
            port = int(service.get("port") or 443)
            path = str(service.get("path") or "")
            host = f"{name}.{namespace}.svc"
            shown = f"https://{host}:{port}{path}?{query}"
            address = self.emulator.service_endpoints.get((namespace, name, port))
            if address is None:
                raise _CallFailure(f'failed to call webhook: Post "{shown}": the emulator has no route to service '
                                   f'"{namespace}/{name}" port {port} (see Emulator.route_service)')
            return shown, yarl.URL(f"https://{address}{path}?{query}"), host
        url = yarl.URL(str(config.get("url") or ""))
        if url.scheme != "https" or not url.host:
            raise _CallFailure(f"webhook clientConfig needs an https url or a service, not {str(url)!r}")
        url = url.with_query(query)
        return str(url), url, None

    def _ssl_context(self, ca_bundle: Any) -> ssl.SSLContext:
        key = str(ca_bundle or "")
        context = self._contexts.get(key)
        if context is None:
            try:
                cadata = base64.b64decode(key, validate=True).decode() if key else None
                context = ssl.create_default_context(cadata=cadata)  # only the caBundle, or the system roots
            except (binascii.Error, UnicodeDecodeError, ssl.SSLError) as exc:
                raise _CallFailure(f"could not get REST client: unable to load caBundle: {exc}") from None
            if len(self._contexts) >= _MAX_SSL_CONTEXTS:
                self._contexts.clear()
            self._contexts[key] = context
        return context


# ------------------------------------------------------------------------------- helpers
def _is_namespaces(info: ResourceInfo) -> bool:
    return info.group == "" and info.plural == "namespaces"


def _review_namespace(info: ResourceInfo, namespace: str | None, name: str) -> str:
    """The review's namespace: a Namespace's own name for namespaces (as the apiserver's RequestInfo)."""
    if _is_namespaces(info):
        return name
    return (namespace or "") if info.namespaced else ""


def _options(kind: str, field_manager: str | None, dry_run: bool) -> Obj:
    options: Obj = {"kind": kind, "apiVersion": "meta.k8s.io/v1"}
    if dry_run:
        options["dryRun"] = ["All"]
    if field_manager:
        options["fieldManager"] = field_manager
    return options


def _labels(obj: Any) -> Mapping[str, str]:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    labels = meta.get("labels") if isinstance(meta, dict) else None
    return labels if isinstance(labels, dict) else {}


def _selector(webhook: Obj, field: str) -> LabelSelector:
    """A webhook's label selector; one that does not parse fails the request (500), as in the apiserver."""
    try:
        return parse_label_selector(selector_text(webhook.get(field)))
    except SelectorError as exc:
        raise ApiError(500, f'Internal error occurred: {field} of webhook "{webhook.get("name", "")}": {exc}',
                       "InternalError") from None


def _rule_matches(rule: Mapping[str, Any], attrs: _Attributes) -> bool:
    """``rules.Matcher.Matches``: scope, operation, group, version, resource/subresource."""
    info = attrs.info
    cluster_scoped = _is_namespaces(info) or not attrs.namespace
    scope = rule.get("scope") or "*"
    if scope != "*" and scope != ("Cluster" if cluster_scoped else "Namespaced"):
        return False

    def has(field: str, value: str) -> bool:
        values = rule.get(field) or ()
        return "*" in values or value in values

    if not (has("operations", attrs.operation) and has("apiGroups", info.group) and has("apiVersions", info.version)):
        return False
    for resource in rule.get("resources") or ():
        plural, _, subresource = str(resource).partition("/")
        if plural in ("*", info.plural) and subresource in ("*", attrs.subresource):
            return True
    return False


def _timeout_seconds(webhook: Obj) -> int:
    value = webhook.get("timeoutSeconds")
    seconds = value if isinstance(value, int) and not isinstance(value, bool) else DEFAULT_TIMEOUT_SECONDS
    return min(max(seconds, 1), MAX_TIMEOUT_SECONDS)


def _review(uid: str, attrs: _Attributes) -> Obj:
    """The AdmissionReview v1 request; empty ``name``/``namespace``/``subResource`` are left out (omitempty)."""
    info = attrs.info
    kind = {"group": info.group, "version": info.version, "kind": info.kind}
    resource = {"group": info.group, "version": info.version, "resource": info.plural}
    request: Obj = {"uid": uid, "kind": kind, "resource": resource}
    if attrs.subresource:
        request["subResource"] = attrs.subresource
    request.update(requestKind=kind, requestResource=resource)
    if attrs.subresource:
        request["requestSubResource"] = attrs.subresource
    if attrs.name:
        request["name"] = attrs.name
    if attrs.namespace:
        request["namespace"] = attrs.namespace
    request.update(operation=attrs.operation, userInfo=_USER_INFO, object=attrs.obj, oldObject=attrs.old,
                   dryRun=attrs.dry_run, options=attrs.options)
    return {"kind": "AdmissionReview", "apiVersion": REVIEW_API_VERSION, "request": request}


def _verify(body: Any, uid: str, *, mutating: bool) -> _Response:
    """Decode the answer like the apiserver (wrong JSON types fail decoding), then ``VerifyAdmissionResponse``."""
    raw = body.get("response") if isinstance(body, dict) else None
    if isinstance(body, dict) and raw is None:
        raise _CallFailure("received invalid webhook response: webhook response was absent")
    if not isinstance(body, dict) or not isinstance(raw, dict):
        raise _CallFailure("failed to call webhook: the answer is not an AdmissionReview object")
    expected: dict[str, type | tuple[type, ...]] = {
        "uid": str, "allowed": bool, "patch": str, "patchType": str, "warnings": list, "status": dict,
    }
    for field, kind in expected.items():
        if raw.get(field) is not None and not isinstance(raw[field], kind):
            raise _CallFailure(f"failed to call webhook: cannot decode response.{field}: wrong JSON type")
    warnings = raw.get("warnings") or []
    if not all(isinstance(text, str) for text in warnings):
        raise _CallFailure("failed to call webhook: cannot decode response.warnings: wrong JSON type")
    try:
        patch = base64.b64decode(raw.get("patch") or "", validate=True)
    except binascii.Error as exc:
        raise _CallFailure(f"failed to call webhook: cannot decode response.patch: {exc}") from None
    if raw.get("uid") != uid:
        raise _CallFailure(f'received invalid webhook response: expected response.uid="{uid}", '
                           f'got "{raw.get("uid") or ""}"')
    if body.get("apiVersion") != REVIEW_API_VERSION or body.get("kind") != "AdmissionReview":
        raise _CallFailure(f"received invalid webhook response: expected webhook response of {REVIEW_API_VERSION}, "
                           f"Kind=AdmissionReview, got {body.get('apiVersion')}, Kind={body.get('kind')}")
    patch_type = raw.get("patchType")
    problem = None
    if not mutating and patch:
        problem = "validating webhook may not return response.patch"
    elif not mutating and patch_type is not None:
        problem = "validating webhook may not return response.patchType"
    elif patch and patch_type is None:
        problem = "webhook returned response.patch but not response.patchType"
    elif not patch and patch_type is not None:
        problem = "webhook returned response.patchType but not response.patch"
    if problem:
        raise _CallFailure(f"received invalid webhook response: {problem}")
    if patch and patch_type != "JSONPatch":
        raise _CallFailure(f'unsupported patch type "{patch_type}"')
    return _Response(allowed=bool(raw.get("allowed")), patch=patch, warnings=tuple(warnings),
                     status=dict(raw.get("status") or {}))


def _apply_patch(name: str, obj: Obj, patch: bytes) -> Obj:
    """A mutating webhook's JSON patch applied; one that does not decode or apply is a 500 whatever the policy."""
    try:
        patched = patching.json_patch(patching.deep_copy(obj), json.loads(patch))
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, PatchError, MalformedPatchError
        problem = str(exc)
    else:
        if isinstance(patched, dict):
            return patched
        problem = "the patched object is not a JSON object"
    raise ApiError(500, f'Internal error occurred: admission webhook "{name}" returned a patch that cannot be '
                   f"applied: {problem}", "InternalError")


def _denial(name: str, status: Obj) -> ApiError:
    """``webhookerrors.ToStatusErr``: the webhook's Status, its message prefixed, its code at least 400."""
    code = status.get("code")
    code = code if isinstance(code, int) and 400 <= code <= 599 else 400
    denied = f'admission webhook "{name}" denied the request'
    if status.get("message"):
        message = f"{denied}: {status['message']}"
    elif status.get("reason"):
        message = f"{denied}: {status['reason']}"
    else:
        message = f"{denied} without explanation"
    body: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message}
    if status.get("reason"):
        body["reason"] = str(status["reason"])
    if isinstance(status.get("details"), dict):
        body["details"] = status["details"]
    body["code"] = code
    return ApiError(code, message, status=body)


def _describe(exc: BaseException, url: yarl.URL) -> str:
    """A failed connection in the words of Go's net/http and crypto/tls (what kubectl users know)."""
    address = f"{url.host}:{url.port}"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        reason = getattr(exc.certificate_error, "verify_message", None) or exc.certificate_error
        return f"tls: failed to verify certificate: {reason}"
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"tls: {exc.os_error}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, ConnectionRefusedError):
            return f"dial tcp {address}: connect: connection refused"
        return f"dial tcp {address}: {exc.os_error}"
    return str(exc) or type(exc).__name__
