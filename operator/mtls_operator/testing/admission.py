"""Admission webhooks: the emulator calls Mutating/ValidatingWebhookConfigurations on CREATE.

Like the apiserver: every matching mutating webhook (configurations by name, webhooks in order)
gets an ``admission.k8s.io/v1`` AdmissionReview over HTTPS (``clientConfig.url``, verified with
``caBundle``), its JSONPatch is applied, then the validating webhooks are asked. A denial
answers the apiserver's "admission webhook ... denied the request" Status; a webhook that cannot
be called fails the request (500) unless its ``failurePolicy`` is ``Ignore``.

Simplified: only CREATE requests over HTTP are admitted (no UPDATE, DELETE or CONNECT, and the
in-process helpers bypass admission); ``clientConfig.service`` cannot be reached (there is no
cluster network), so such webhooks count as failing; ``matchConditions`` (CEL),
``reinvocationPolicy`` and ``sideEffects`` are ignored; ``matchPolicy`` is always Exact.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import ssl
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import aiohttp

from mtls_operator.testing import patching
from mtls_operator.testing.errors import ApiError
from mtls_operator.testing.resources import Obj, ResourceInfo
from mtls_operator.testing.selectors import SelectorError, parse_label_selector

if TYPE_CHECKING:
    from mtls_operator.testing.store import Emulator


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
    return ",".join(terms)


def _selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    text = selector_text(selector)
    if not text:
        return True
    try:
        return parse_label_selector(text).matches(labels)
    except SelectorError:
        return False


def _rule_matches(rule: Mapping[str, Any], info: ResourceInfo, operation: str) -> bool:
    def has(field: str, value: str) -> bool:
        values = rule.get(field) or ()
        return "*" in values or value in values

    scope = rule.get("scope", "*")
    if (scope == "Namespaced" and not info.namespaced) or (scope == "Cluster" and info.namespaced):
        return False
    return (has("operations", operation) and has("apiGroups", info.group) and has("apiVersions", info.version)
            and has("resources", info.plural))


class WebhookCaller:
    """Calls the admission webhooks the emulator stores, from the serving event loop."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _webhooks(self, plural: str, info: ResourceInfo, obj: Obj, namespace: str | None) -> list[Obj]:
        emulator = self.emulator
        found = []
        config_info = emulator.lookup("admissionregistration.k8s.io", "v1", plural)
        if config_info is None:
            return []
        ns_labels: Mapping[str, str] = {}
        if info.namespaced and namespace:
            ns_obj = emulator._find(emulator.resource("v1", "namespaces"), None, namespace)
            ns_labels = (ns_obj or {}).get("metadata", {}).get("labels") or {}
        labels = obj.get("metadata", {}).get("labels") or {}
        for config in emulator.select(config_info, None):
            for webhook in config.get("webhooks") or ():
                if not any(_rule_matches(r, info, "CREATE") for r in webhook.get("rules") or ()):
                    continue
                if info.namespaced and not _selects(webhook.get("namespaceSelector"), ns_labels):
                    continue
                if not _selects(webhook.get("objectSelector"), labels):
                    continue
                found.append(webhook)
        return found

    async def admit_create(self, info: ResourceInfo, namespace: str | None, obj: Obj) -> Obj:
        """Run the mutating then the validating webhooks on an object being created."""
        if info.group == "admissionregistration.k8s.io":
            return obj  # webhooks never intercept their own configurations
        for webhook in self._webhooks("mutatingwebhookconfigurations", info, obj, namespace):
            response = await self._call(webhook, info, namespace, obj)
            if response is not None and response.get("patch"):
                obj = self._apply_patch(webhook, obj, response)
        for webhook in self._webhooks("validatingwebhookconfigurations", info, obj, namespace):
            await self._call(webhook, info, namespace, obj)
        return obj

    @staticmethod
    def _apply_patch(webhook: Obj, obj: Obj, response: Obj) -> Obj:
        name = webhook.get("name", "")
        try:
            ops = json.loads(base64.b64decode(response["patch"]))
            patched = patching.json_patch(patching.deep_copy(obj), ops)
        except (binascii.Error, ValueError) as exc:
            raise ApiError(500, f'Internal error occurred: admission webhook "{name}" returned an invalid '
                           f"patch: {exc}", "InternalError") from None
        if not isinstance(patched, dict):
            raise ApiError(500, f'Internal error occurred: admission webhook "{name}" returned an invalid patch',
                           "InternalError")
        return patched

    async def _call(self, webhook: Obj, info: ResourceInfo, namespace: str | None, obj: Obj) -> Obj | None:
        name = str(webhook.get("name", ""))
        meta = obj.get("metadata", {})
        review = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": str(uuid.uuid4()),
                "kind": {"group": info.group, "version": info.version, "kind": info.kind},
                "resource": {"group": info.group, "version": info.version, "resource": info.plural},
                "requestKind": {"group": info.group, "version": info.version, "kind": info.kind},
                "requestResource": {"group": info.group, "version": info.version, "resource": info.plural},
                "name": meta.get("name", ""),
                "namespace": namespace or "",
                "operation": "CREATE",
                "userInfo": {"username": "system:admin", "groups": ["system:masters", "system:authenticated"]},
                "object": obj,
                "oldObject": None,
                "dryRun": False,
                "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
            },
        }
        try:
            response = await self._post(webhook, review)
        except ApiError:
            raise
        except Exception as exc:
            if webhook.get("failurePolicy", "Fail") == "Ignore":
                return None
            raise ApiError(500, f'Internal error occurred: failed calling webhook "{name}": {exc}',
                           "InternalError") from None
        if not response.get("allowed", False):
            status = dict(response.get("status") or {})
            code = int(status.get("code") or 400)
            code = max(code, 400)
            message = f'admission webhook "{name}" denied the request'
            message += f": {status['message']}" if status.get("message") else " without explanation"
            raise ApiError(code, message, str(status.get("reason") or "") or None)
        return response

    async def _post(self, webhook: Obj, review: Obj) -> Obj:
        config = webhook.get("clientConfig") or {}
        url = config.get("url")
        if not url:
            raise ConnectionError("clientConfig.service cannot be reached from the emulator; use clientConfig.url")
        context: ssl.SSLContext | bool = True
        if config.get("caBundle"):
            context = ssl.create_default_context(cadata=base64.b64decode(config["caBundle"]).decode())
        if self._session is None:
            self._session = aiohttp.ClientSession()
        timeout = float(webhook.get("timeoutSeconds") or 10)
        async with asyncio.timeout(timeout), self._session.post(url, json=review, ssl=context) as resp:
            if resp.status != 200:
                raise ConnectionError(f"the webhook answered HTTP {resp.status}")
            body = await resp.json(content_type=None)
        response = body.get("response") if isinstance(body, dict) else None
        if not isinstance(response, dict):
            raise ValueError("the webhook's answer has no AdmissionReview response")
        return response
