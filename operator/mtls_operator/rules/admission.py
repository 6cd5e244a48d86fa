"""Pure rules of the admission webhooks: the serving certificate's names and renewal, the webhook
configurations' ``caBundle``, and which MTLSIdentity writes are refused at apply time.

No kopf, no kubernetes, no clock: the caller passes ``now`` and the objects it read.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from mtls_operator.constants import (
    GROUP,
    IDENTITIES_WEBHOOK_NAME,
    INJECT_HANDLER_ID,
    INJECT_LABEL,
    INJECT_VALUE,
    INJECT_WEBHOOK_NAME,
    PLURAL,
    VALIDATE_HANDLER_ID,
    VERSION,
)
from mtls_operator.errors import SpecError
from mtls_operator.rules.policy import AdminPattern
from mtls_operator.rules.renewal import renewal_time
from mtls_operator.rules.spec import MAX_DURATION, check_identity_name, format_duration, parse_identity_spec

# The serving certificate --------------------------------------------------------------------------


def serving_dns_names(service: str, namespace: str, cluster_domain: str) -> tuple[str, ...]:
    """Every name a client may use for the webhook Service; the API server uses the first,
    ``<service>.<namespace>.svc``, which therefore also becomes the common name."""
    return (
        f"{service}.{namespace}.svc",
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc.{cluster_domain}",
    )


@dataclass(frozen=True)
class ServingState:
    """The certificate the webhook server presents now."""

    names: tuple[str, ...]
    not_before: datetime
    not_after: datetime
    ca_fingerprint: str | None
    """The CA that signed it; ``None`` for the self-signed placeholder served until the CA loads."""

    @property
    def renew_at(self) -> datetime:
        return renewal_time(self.not_before, self.not_after, None)


def serving_reissue_reason(
    state: ServingState, *, ca_fingerprint: str, names: Sequence[str], now: datetime
) -> str | None:
    """Why the serving certificate must be issued again now (the first reason), or ``None``."""
    if state.ca_fingerprint is None:
        return "the CA is available: replacing the placeholder certificate"
    if state.ca_fingerprint != ca_fingerprint:
        return f"the signing CA changed to {ca_fingerprint}"
    if tuple(names) != state.names:
        return "the Service's DNS names changed"
    if now >= state.renew_at:
        left = format_duration(max(state.not_after - now, timedelta(0)))
        return f"renewing: the certificate expires in {left}"
    return None


# The webhook configurations ---------------------------------------------------------------------------

# The API server waits this long for an answer before the failurePolicy applies (its default is 10s).
WEBHOOK_TIMEOUT_SECONDS: Final = 5


def webhook_configurations(
    *, configuration: str, service: str, namespace: str, port: int = 443
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Mutating- and ValidatingWebhookConfiguration as the Helm chart renders them, without the
    caBundle the operator fills in. The demo, the tests and the benchmark register these.

    Pods: only those labelled ``mtls.dev/inject: "true"`` (objectSelector) outside kube-system and the
    operator's own namespace are sent, so nothing else ever depends on the operator; for them
    failurePolicy is Fail, since a pod admitted without its volume would never get its certificate
    mounted. Identities: failurePolicy Ignore (the chart's default, ``webhook.failurePolicy``): the
    operator writes identities too (kopf's finalizer and annotations), and those writes must not
    depend on its own webhook being up; the operator checks every spec again and refuses a bad one
    on the identity's status.
    """
    not_ours = {"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", namespace]}
    ]}

    def webhook(name: str, path: str, rule: dict[str, Any], failure_policy: str) -> dict[str, Any]:
        return {
            "name": name,
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": failure_policy,
            "timeoutSeconds": WEBHOOK_TIMEOUT_SECONDS,
            "clientConfig": {"service": {"namespace": namespace, "name": service, "path": path, "port": port}},
            "rules": [{**rule, "scope": "Namespaced"}],
        }

    inject = webhook(INJECT_WEBHOOK_NAME, f"/{INJECT_HANDLER_ID}",
                     {"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]},
                     "Fail")
    # Injection is idempotent: when a later webhook adds a container, being called again mounts it there too.
    inject["reinvocationPolicy"] = "IfNeeded"
    inject["objectSelector"] = {"matchLabels": {INJECT_LABEL: INJECT_VALUE}}
    inject["namespaceSelector"] = not_ours
    identities = webhook(IDENTITIES_WEBHOOK_NAME, f"/{VALIDATE_HANDLER_ID}",
                         {"operations": ["CREATE", "UPDATE"], "apiGroups": [GROUP], "apiVersions": [VERSION],
                          "resources": [PLURAL]}, "Ignore")
    api_version = "admissionregistration.k8s.io/v1"
    return (
        {"apiVersion": api_version, "kind": "MutatingWebhookConfiguration", "metadata": {"name": configuration},
         "webhooks": [inject]},
        {"apiVersion": api_version, "kind": "ValidatingWebhookConfiguration", "metadata": {"name": configuration},
         "webhooks": [identities]},
    )


# The webhook configurations' caBundle ---------------------------------------------------------------


def ca_bundle_text(bundle_pem: bytes) -> str:
    """``clientConfig.caBundle``: the trust bundle PEM, base64-encoded."""
    return base64.b64encode(bundle_pem).decode("ascii")


def webhooks_with_ca_bundle(configuration: Mapping[str, Any], ca_bundle: str) -> list[dict[str, Any]] | None:
    """The configuration's ``webhooks`` with every ``clientConfig.caBundle`` set to ``ca_bundle``, or
    ``None`` when all already carry it (nothing to write). Everything else is kept as it is."""
    webhooks = [copy.deepcopy(dict(hook)) for hook in configuration.get("webhooks") or [] if isinstance(hook, Mapping)]
    changed = False
    for hook in webhooks:
        client = hook.setdefault("clientConfig", {})
        if client.get("caBundle") != ca_bundle:
            client["caBundle"] = ca_bundle
            changed = True
    return webhooks if changed else None


# The AdmissionReview itself -------------------------------------------------------------------------------


def review_problem(review: object) -> str | None:
    """What makes ``review`` unanswerable as an ``admission.k8s.io/v1`` AdmissionReview request, or ``None``.

    The API server never sends such a thing; anyone else who does gets HTTP 400 saying what is missing.
    """
    if not isinstance(review, Mapping):
        return "the body must be a JSON object"
    request = review.get("request")
    if not isinstance(request, Mapping):
        return "request must be an object"
    for key in ("uid", "operation"):
        if not isinstance(request.get(key), str) or not request.get(key):
            return f"request.{key} must be a non-empty string"
    resource = request.get("resource")
    if not isinstance(resource, Mapping) or not all(isinstance(resource.get(k), str) for k in
                                                    ("group", "version", "resource")):
        return "request.resource must be an object with group, version and resource"
    if not isinstance(request.get("userInfo"), Mapping):
        return "request.userInfo must be an object"
    if not isinstance(request.get("object"), Mapping) and not isinstance(request.get("oldObject"), Mapping):
        return "request.object or request.oldObject must be an object"
    return None


# Identities at apply time -----------------------------------------------------------------------------


def identity_refusal(
    *,
    operation: str,
    name: str,
    namespace: str,
    spec: object,
    old_spec: object,
    deleting: bool,
    cluster_domain: str,
    allowed_dns_patterns: Sequence[AdminPattern],
    default_duration: timedelta,
    max_duration: timedelta = MAX_DURATION,
    allow_short_dns_names: bool = True,
) -> str | None:
    """The message (field path and rule) refusing an identity write, or ``None`` to admit it.

    The rules are the reconciler's own (``check_identity_name``, ``parse_identity_spec``). An update
    that leaves the spec as it was is admitted even when that spec breaks a rule (it predates the
    webhook, or the allowed DNS patterns changed since): refusing it would block the operator's own
    metadata writes (its finalizer) and the deletion of the very identity a user wants gone.
    """
    if operation not in ("CREATE", "UPDATE") or deleting:
        return None
    if operation == "UPDATE" and spec == old_spec:
        return None
    # An absent spec is an empty one ("spec.selector: required"); any other type is named by the parser.
    raw: Any = {} if spec is None else spec
    try:
        if operation == "CREATE":
            check_identity_name(name)
        parse_identity_spec(
            raw,
            namespace=namespace,
            cluster_domain=cluster_domain,
            allowed_dns_patterns=allowed_dns_patterns,
            default_duration=default_duration,
            max_duration=max_duration,
            allow_short_dns_names=allow_short_dns_names,
        )
    except SpecError as exc:
        return str(exc)
    return None
