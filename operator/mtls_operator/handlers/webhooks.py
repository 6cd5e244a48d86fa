"""The admission webhooks, served by kopf on every replica (handler id = URL path).

- ``/inject-pod`` (mutating, pod CREATE): injects the pod's Secret volume (or, for an identity with
  ``delivery: PodCertificate``, its projected podCertificate volume) and mounts (injection.py);
- ``/validate-identity`` (validating, MTLSIdentity CREATE and UPDATE): refuses a spec the operator
  would refuse, with the same message, at ``kubectl apply`` time (admission.py).

The configurations that call them (``inject.mtls.dev``, ``identities.mtls.dev``) belong to the Helm
chart; the operator only keeps their caBundle current (controller/webhook_tls.py).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncGenerator, AsyncIterator, Collection
from contextvars import ContextVar
from typing import Any, cast

import aiohttp.web
import kopf

from mtls_operator import constants as c
from mtls_operator.config import Settings
from mtls_operator.controller.webhook_tls import ServingCertificate
from mtls_operator.errors import KubernetesAPIError
from mtls_operator.handlers.handlers import registry
from mtls_operator.handlers.runtime import Runtime
from mtls_operator.observability.logs import fields
from mtls_operator.rules.admission import identity_refusal, review_problem
from mtls_operator.rules.injection import SUFFIX_SPACE, InjectionError, inject, secret_name_suffix
from mtls_operator.rules.plan import IdentityRef

# The API server's code for an object that is well-formed but cannot be accepted.
_INVALID = 422

logger = logging.getLogger(__name__)

# A refusal is a normal answer, not an operator error: raised as kopf.AdmissionError, kopf logs it at
# ERROR as "failed permanently", which pages people. So a handler served through AdmissionServer puts
# its refusal here, the server turns it into the denial, and the refusal is logged once, at INFO.
_REFUSALS: ContextVar[list[str] | None] = ContextVar("mtls_admission_refusals", default=None)


def _refuse(message: str, *, what: str, namespace: str, identity: str | None = None, pod: str | None = None) -> None:
    """Refuse the request under review with ``message`` (HTTP 422, the API server shows it to the user)."""
    refusals = _REFUSALS.get()
    if refusals is None:  # not under AdmissionServer (kopf's own servers): kopf's way
        raise kopf.AdmissionError(message, code=_INVALID)
    refusals.append(message)
    logger.info("admission refused %s: %s", what, message,
                extra=fields(identity=identity, namespace=namespace, pod=pod, reason="AdmissionRefused"))


def _deny(response: Any, message: str) -> Any:
    """kopf's AdmissionReview response, turned into a denial with ``message``; nothing of it is applied."""
    payload = response["response"]
    payload["allowed"] = False
    payload["status"] = {"message": message, "code": _INVALID}
    payload.pop("patch", None)
    payload.pop("patchType", None)
    return response


class AdmissionServer(kopf.WebhookServer):
    """kopf's admission server, presenting the certificate a :class:`ServingCertificate` holds.

    Given no certificate files, kopf builds a self-signed certificate at start and loads it into the
    context (with ``certbuilder``, which we do not install). Handing it the certificate being served
    makes that load a no-op, whichever of kopf and our first issuance runs first.
    """

    def __init__(self, serving: ServingCertificate, *, port: int) -> None:
        super().__init__(addr="0.0.0.0", port=port, context=serving.context)  # noqa: S104 -- a Service routes to it
        self.serving = serving

    def build_certificate(  # type: ignore[override]
        self, hostnames: Collection[str], password: str | None = None
    ) -> tuple[bytes, bytes]:
        return self.serving.pem_pair()

    async def __call__(self, fn: kopf.WebhookFn) -> AsyncIterator[kopf.WebhookClientConfig]:
        stopping = asyncio.Event()

        # Any: kopf does not export its Request/Response types (TypedDicts of the AdmissionReview).
        async def checked(
            request: Any,
            *,
            webhook: str | None = None,
            headers: kopf.Headers | None = None,
            sslpeer: kopf.SSLPeer | None = None,
        ) -> Any:
            # kopf answers a review missing some keys with a 500 and a traceback in our log: refuse it
            # first, as the client's fault, saying what is missing.
            problem = review_problem(request)
            if problem is not None:
                raise aiohttp.web.HTTPBadRequest(reason=f"malformed AdmissionReview: {problem}")
            if stopping.is_set():
                # A connection whose handshake was under way when the server closed: answer (the
                # webhook's failurePolicy applies) and close it, or it would outlive the server.
                unavailable = aiohttp.web.HTTPServiceUnavailable(reason="the operator is stopping")
                unavailable.force_close()
                raise unavailable
            refusals: list[str] = []
            token = _REFUSALS.set(refusals)
            try:
                response = await fn(request, webhook=webhook, headers=headers, sslpeer=sslpeer)
            finally:
                _REFUSALS.reset(token)
            return _deny(response, refusals[0]) if refusals else response

        # kopf declares an AsyncIterator; it is an async generator, which we close ourselves.
        server = cast(AsyncGenerator[kopf.WebhookClientConfig, None], super().__call__(checked))
        try:
            # kopf yields once the server listens, then only sleeps: it watches certificate files, and we
            # give it none. So we sleep here instead, where its shutdown is ours to run.
            yield await anext(server)
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            # aiohttp gives up closing its connections when the task closing them is being cancelled,
            # which leaves their sockets open: close the server as if not cancelled, then stay cancelled.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            raise
        finally:
            stopping.set()
            await server.aclose()


def _runtime(memo: kopf.Memo) -> Runtime:
    runtime: Runtime = memo["runtime"]
    return runtime


@kopf.on.mutate("", "v1", "pods", operations={"CREATE"}, id=c.INJECT_HANDLER_ID, registry=registry)
async def inject_pod(
    body: kopf.Body, patch: kopf.Patch, warnings: list[str], memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    runtime = _runtime(memo)
    namespace = str(body.get("metadata", {}).get("namespace") or "")
    suffix = secret_name_suffix(secrets.randbelow(SUFFIX_SPACE))
    settings = runtime.settings
    signer = settings.pod_certificate_signer if settings.pod_certificates else None
    try:
        result = inject(body, namespace=namespace, identities=runtime.identities.values(), suffix=suffix,
                        signer=signer)
        if result.identity is None and result.warnings and _may_look_up(memo):
            # What the watch has told us may lag (a replica just started, an identity just applied):
            # before admitting a pod without its certificate, ask the API server.
            try:
                listed = await _listed(runtime, namespace)
            except KubernetesAPIError as exc:
                logger.warning("could not list the identities of namespace %s: %s", namespace, exc)
            else:
                result = inject(body, namespace=namespace, identities=listed, suffix=suffix, signer=signer)
    except InjectionError as exc:
        metadata = body.get("metadata", {})
        pod = str(metadata.get("name") or f"{metadata.get('generateName') or ''}*")
        _refuse(str(exc), what=f"pod {namespace}/{pod}", namespace=namespace, pod=pod)
        return
    warnings.extend(result.warnings)
    if result.identity is not None:
        injected = result.pod
        patch.fns.append(lambda raw: _become(raw, injected))
        logger.debug("injected %s for identity %s",
                     f"Secret {result.secret_name}" if result.secret_name else "a podCertificate volume",
                     result.identity)


# Lookups the pod webhook may make past the watch's view (``Runtime.identity_lookups``): anyone who
# reaches the webhook port can send reviews straight to it (the API server's fairness never sees
# them), and each lookup is a LIST under the operator's credentials. Past the budget the watch's view
# answers alone.
def _may_look_up(memo: kopf.Memo) -> bool:
    return _runtime(memo).identity_lookups.try_acquire()


async def _listed(runtime: Runtime, namespace: str) -> list[IdentityRef]:
    return [runtime.reconciler.index.identity_ref(body)
            for body in await runtime.reconciler.cluster.list_identities(namespace)]


def _become(raw: kopf.RawBody, pod: dict[str, Any]) -> None:
    """kopf's patch function: turn the pod kopf diffs against into ours (kopf derives the JSONPatch).

    ``pod`` is already a copy made for this request only, so it is handed over without another.
    """
    body = cast(dict[str, Any], raw)  # kopf's typing of what is a plain dict here
    body.clear()
    body.update(pod)


@kopf.on.validate(c.GROUP, c.VERSION, c.PLURAL, operations={"CREATE", "UPDATE"}, id=c.VALIDATE_HANDLER_ID,
                  registry=registry)
async def validate_identity(
    body: kopf.Body,
    subresource: str | None,
    memo: kopf.Memo,
    old: kopf.Body | None = None,
    operation: str | None = None,
    **_: Any,
) -> None:
    if subresource:
        return  # the status is the operator's to write
    settings: Settings = memo["settings"]
    metadata = body.get("metadata", {})
    refusal = identity_refusal(
        operation=operation or "",
        name=str(metadata.get("name") or ""),
        namespace=str(metadata.get("namespace") or ""),
        spec=body.get("spec"),
        old_spec=old.get("spec") if old is not None else None,
        deleting=bool(metadata.get("deletionTimestamp")),
        cluster_domain=settings.cluster_domain,
        allowed_dns_patterns=settings.allowed_dns_patterns,
        default_duration=settings.default_duration,
        max_duration=settings.max_duration,
        allow_short_dns_names=settings.allow_short_dns_names,
    )
    if refusal is not None:
        name, namespace = str(metadata.get("name") or ""), str(metadata.get("namespace") or "")
        _refuse(refusal, what=f"identity {namespace}/{name}", namespace=namespace, identity=name)

