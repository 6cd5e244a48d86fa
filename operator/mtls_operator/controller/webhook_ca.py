"""The admission webhooks' own CA, kept in the Secret ``<MTLS_NAMESPACE>/<MTLS_WEBHOOK_CA_SECRET>``.

Every replica reads it (:class:`WebhookCAStore`) to issue its serving certificate; whichever replica
finds it absent first creates it (a create that loses the race reads the winner's). The leader alone
rotates it (:class:`WebhookCARotation`, the rules in ``mtls_operator.rules.webhook_ca``) and publishes its
``ca.crt`` as the caBundle of both webhook configurations.

This CA is the operator's own business, apart from the CA that signs pod certificates: it is in no
pod's trust bundle, and that CA is never in the caBundle. A Secret deleted by hand is created again
(the webhooks are refused until the leader has published the new caBundle, at most one refresh
interval); a Secret broken by hand is reported and the CA loaded before keeps signing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from mtls_operator import constants as c
from mtls_operator.controller.loop import run_woken
from mtls_operator.errors import CAError, ConflictError, KubernetesAPIError, NotFoundError
from mtls_operator.k8s import JSON, Cluster
from mtls_operator.k8s.views import ObjectMeta
from mtls_operator.pki import CertificateAuthority, certs_to_pem, load_ca, merge_bundles
from mtls_operator.pki.serving import create_webhook_ca
from mtls_operator.rules.plan import b64text, secret_data
from mtls_operator.rules.webhook_ca import (
    NEXT_TLS_CRT,
    NEXT_TLS_KEY,
    WebhookCAPhase,
    WebhookCAState,
    WebhookCAStep,
    WebhookCAView,
    read_webhook_ca_state,
    webhook_ca_annotations,
    webhook_ca_step,
)
from mtls_operator.times import Clock

if TYPE_CHECKING:
    from mtls_operator.controller.webhook_tls import ServingCertificate, WebhookCABundle

logger = logging.getLogger(__name__)



class WebhookCAStore:
    """The webhook CA as its Secret says now, re-read at most once per refresh interval."""

    def __init__(
        self,
        cluster: Cluster,
        *,
        namespace: str,
        secret_name: str,
        clock: Clock,
        ca_duration: timedelta,
        refresh_interval: float = 30.0,
    ) -> None:
        self._cluster = cluster
        self.namespace = namespace
        self.secret_name = secret_name
        self._clock = clock
        self.ca_duration = ca_duration
        self.refresh_interval = refresh_interval
        self._ca: CertificateAuthority | None = None
        self._bundle = b""
        self._error: str | None = "the webhook CA has not been loaded yet"
        self._loaded_version: str | None = None
        self._last_refresh: float | None = None
        self._lock = asyncio.Lock()
        # What is wrong with the Secret while the CA loaded before keeps signing.
        self.problem: str | None = None
        self.state = WebhookCAState()
        # During a rotation: the CA in next.crt/next.key, when usable.
        self.next_ca: CertificateAuthority | None = None
        # The Secret as last read (the leader writes it guarded by its resourceVersion).
        self.secret: JSON | None = None

    # ``where``, ``current`` and the fields above have the shape of CAStore's on purpose, and no shared
    # base: the two CAs are kept apart (rules/webhook_ca.py), so no code path can hand one's CA to the
    # other's users.
    @property
    def where(self) -> str:
        return f"Secret {self.namespace}/{self.secret_name}"

    def current(self) -> CertificateAuthority:
        """The CA that signs serving certificates now; ``CAError`` with the reason when there is none."""
        if self._ca is None:
            raise CAError(self._error or "the webhook CA is unavailable")
        return self._ca

    @property
    def bundle_pem(self) -> bytes:
        """What the webhook configurations' caBundle must hold: the Secret's ``ca.crt`` (with the
        signing CA), both CAs during a rotation."""
        self.current()
        return self._bundle

    def invalidate(self) -> None:
        """Make the next ``ensure_fresh`` re-read the Secret."""
        self._last_refresh = None

    async def ensure_fresh(self) -> None:
        loop = asyncio.get_running_loop()
        async with self._lock:
            if (self._last_refresh is None or self._ca is None
                    or loop.time() - self._last_refresh >= self.refresh_interval):
                await self._refresh()
                self._last_refresh = loop.time()

    async def _refresh(self) -> None:
        try:
            secret = await self._cluster.get_secret(self.namespace, self.secret_name)
            if secret is None:
                secret = await self._create()
        except NotFoundError as exc:
            self._fail(f"cannot create the webhook CA in {self.where}: {exc} (does namespace {self.namespace} "
                       "exist?)")
            return
        except KubernetesAPIError as exc:
            if self._ca is not None:
                logger.warning("cannot re-read the webhook CA %s, keeping the one loaded: %s", self.where, exc)
                return
            self._fail(f"cannot read the webhook CA {self.where}: {exc}")
            return
        self.secret = secret
        version = ObjectMeta.of(secret).resource_version
        if self._ca is not None and version and version == self._loaded_version:
            return
        tls_crt, tls_key = secret_data(secret, c.TLS_CRT), secret_data(secret, c.TLS_KEY)
        if not tls_crt or not tls_key:
            self._unusable(f"the webhook CA {self.where} must hold tls.crt and tls.key (base64 PEM)", version)
            return
        now = self._clock()
        try:
            ca = await asyncio.to_thread(load_ca, tls_crt, tls_key, secret_data(secret, c.CA_CRT), now)
        except CAError as exc:
            self._unusable(f"the webhook CA in {self.where} is unusable: {exc}", version)
            return
        self.next_ca = None
        next_crt, next_key = secret_data(secret, NEXT_TLS_CRT), secret_data(secret, NEXT_TLS_KEY)
        if next_crt and next_key:
            with contextlib.suppress(CAError):  # the leader makes another (see webhook_ca_step)
                self.next_ca = await asyncio.to_thread(load_ca, next_crt, next_key, None, now)
        if self._ca is None or self._ca.fingerprint != ca.fingerprint:
            logger.info("webhook serving certificates are signed by CA %s from %s (expires %s)", ca.fingerprint,
                        self.where, ca.not_after.isoformat())
        self._ca = ca
        self._bundle = certs_to_pem(ca.trust)
        self.state = read_webhook_ca_state(ObjectMeta.of(secret).annotations)
        self.problem = None
        self._error = None
        self._loaded_version = version

    async def _create(self) -> JSON:
        now = self._clock()
        ca = await asyncio.to_thread(create_webhook_ca, now, self.ca_duration)
        state = WebhookCAState(phase=WebhookCAPhase.IDLE, since=now.replace(microsecond=0))
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": c.SECRET_TYPE_TLS,
            "metadata": {
                "name": self.secret_name,
                "namespace": self.namespace,
                "labels": {c.MANAGED_BY_LABEL: c.MANAGER_NAME},
                "annotations": {k: v for k, v in webhook_ca_annotations(state).items() if v is not None},
            },
            "data": {key: b64text(value) for key, value in ca.secret_data().items()},
        }
        try:
            created = await self._cluster.create_secret(self.namespace, body)
        except ConflictError:
            # Another replica got there first: use theirs.
            existing = await self._cluster.get_secret(self.namespace, self.secret_name)
            if existing is None:
                raise
            return existing
        logger.info("created the webhook CA %s in %s", ca.fingerprint, self.where)
        return created

    def _unusable(self, reason: str, version: str) -> None:
        held = self._ca
        if held is None or held.not_after <= self._clock():
            self._fail(reason)
            return
        if self.problem != reason:
            logger.error("%s; still signing serving certificates with %s: fix the Secret, or delete it for a "
                         "new webhook CA", reason, held.fingerprint)
        self.problem = reason
        self._loaded_version = version

    def _fail(self, reason: str) -> None:
        if self._error != reason:
            logger.error("%s", reason)
        self._error = reason
        self._ca = None
        self._loaded_version = None


class WebhookCARotation:
    """The leader's upkeep of the webhook CA: publish its caBundle, and rotate it (``webhook_ca_step``)."""

    def __init__(
        self,
        cluster: Cluster,
        store: WebhookCAStore,
        ca_bundle: WebhookCABundle,
        serving: ServingCertificate,
        *,
        clock: Clock,
        poll_interval: float = 5.0,
    ) -> None:
        self.cluster = cluster
        self.store = store
        self.ca_bundle = ca_bundle
        self.serving = serving
        self.clock = clock
        self.poll_interval = poll_interval
        self._last_message: str | None = None
        self._wake = asyncio.Event()

    @property
    def settle(self) -> timedelta:
        """How long the API servers get to load a new caBundle, and every replica (which re-reads the
        Secret once per refresh interval) to move its serving certificate: two refresh intervals."""
        return timedelta(seconds=2 * self.store.refresh_interval)

    def wake(self) -> None:
        """Look now (the Secret changed: e.g. ``mtls.dev/rotate`` was set)."""
        self._wake.set()

    async def run(self) -> None:
        await run_woken(self.step, self._wake, retry_delay=self.poll_interval, logger=logger, what="webhook CA")

    async def step(self) -> float:
        """Publish the caBundle and take one step of the rotation; seconds until the next look."""
        self.store.invalidate()
        await self.store.ensure_fresh()
        try:
            ca = self.store.current()
        except CAError:
            return self.poll_interval
        secret = self.store.secret
        if secret is None or self.store.problem:
            # Nothing moves while the Secret is broken: writing it would lose what a person put there.
            return self.poll_interval
        published = await self.ca_bundle.publish()
        state = self.store.state
        view = WebhookCAView(
            not_before=ca.cert.not_valid_before_utc,
            not_after=ca.not_after,
            next_ready=self.store.next_ca is not None,
            published=published,
            serving_moved=self.serving.state.ca_fingerprint == ca.fingerprint,
        )
        now = self.clock()
        if state.phase is WebhookCAPhase.IDLE and self.store.bundle_pem != certs_to_pem(ca.own_anchors):
            # ca.crt holds more than this CA (edited by hand): the API server must trust this CA alone.
            self._tell("webhook CA: ca.crt holds certificates other than the webhook CA's own: they leave the "
                       "caBundle")
            return await self._write(secret, replace(state, since=now.replace(microsecond=0)),
                                     {c.CA_CRT: certs_to_pem(ca.own_anchors)})
        decision = webhook_ca_step(state, view, now, self.settle)
        if decision.step is WebhookCAStep.WAIT:
            if state.phase is not WebhookCAPhase.IDLE:
                self._tell(f"webhook CA rotation, phase {state.phase}: {decision.message}")
                return max(0.5, min(self.poll_interval, decision.wait.total_seconds() or self.poll_interval))
            return max(1.0, min(self.store.refresh_interval, decision.wait.total_seconds()))
        self._tell(f"webhook CA rotation, phase {state.phase}: {decision.message}")
        stamp = now.replace(microsecond=0)
        if decision.step is WebhookCAStep.BEGIN:
            incoming = await asyncio.to_thread(create_webhook_ca, now, self.store.ca_duration)
            bundle = merge_bundles(ca.own_anchors, incoming.own_anchors)
            made = incoming.secret_data()
            data = {NEXT_TLS_CRT: made[c.TLS_CRT], NEXT_TLS_KEY: made[c.TLS_KEY], c.CA_CRT: certs_to_pem(bundle)}
            return await self._write(secret, WebhookCAState(phase=WebhookCAPhase.DISTRIBUTING, since=stamp), data)
        if decision.step is WebhookCAStep.SETTLED:
            if state.phase is WebhookCAPhase.DISTRIBUTING:
                return await self._write(secret, replace(state, settled_at=stamp), {})
            return await self._write(secret, replace(state, since=stamp), {})
        if decision.step is WebhookCAStep.SWITCH:
            incoming_ca = self.store.next_ca
            if incoming_ca is None:  # next_ready said otherwise a moment ago; look again
                return self.poll_interval
            signing = incoming_ca.secret_data()
            return await self._write(
                secret,
                WebhookCAState(phase=WebhookCAPhase.REISSUING, since=stamp),
                {c.TLS_CRT: signing[c.TLS_CRT], c.TLS_KEY: signing[c.TLS_KEY], NEXT_TLS_CRT: None, NEXT_TLS_KEY: None},
            )
        return await self._write(secret, WebhookCAState(phase=WebhookCAPhase.IDLE, since=stamp),
                                 {c.CA_CRT: certs_to_pem(ca.own_anchors)})

    async def _write(self, secret: JSON, state: WebhookCAState, data: Mapping[str, bytes | None]) -> float:
        """Write the Secret guarded by the version read, then let everything here follow at once."""
        patch: dict[str, Any] = {"metadata": {"annotations": webhook_ca_annotations(state)}}
        if data:
            patch["data"] = {key: (b64text(value) if value is not None else None) for key, value in data.items()}
        version = ObjectMeta.of(secret).resource_version
        try:
            await self.cluster.update_secret(self.store.namespace, self.store.secret_name, patch, version)
        except ConflictError:
            return 0.0  # someone wrote it between our read and write: look again at once
        before = self.store.state.phase
        self.store.invalidate()
        await self.store.ensure_fresh()
        if self.store.state.phase is not before:
            logger.info("webhook CA rotation: phase %s", self.store.state.phase)
        await self.ca_bundle.publish()
        await self.serving.refresh(self.store)
        return 0.0

    def _tell(self, message: str) -> None:
        """Log once per distinct message."""
        if message != self._last_message:
            self._last_message = message
            logger.info("%s", message)
