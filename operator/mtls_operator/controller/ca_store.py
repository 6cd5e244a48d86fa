"""The signing CA, kept in the Secret ``<MTLS_NAMESPACE>/<MTLS_CA_SECRET>``.

On first start the operator creates a self-signed CA there (in the default Secret only: a Secret
named by the user must hold the user's CA); a CA the user put there instead (root or intermediate)
is only ever read. When the Secret is missing, malformed or unusable, the store
remembers why, every identity says so on its status, and the next refresh recovers by itself.

The Secret's ``ca.crt`` is the trust bundle: during a rotation it holds the old and the new CA's
anchors (see rotation.py), and its annotations say which phase the rotation is in. When a person
replaces ``tls.crt``/``tls.key`` while the operator holds the CA they replaced, the store keeps
signing with the one it holds and offers the new one as ``replacement``: the rotation controller
then rolls it in without breaking trust between running pods.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta

from mtls_operator import constants as c
from mtls_operator.errors import CAError, ConflictError, KubernetesAPIError, NotFoundError
from mtls_operator.k8s import JSON, Cluster
from mtls_operator.k8s.views import ObjectMeta
from mtls_operator.observability.metrics import Metrics
from mtls_operator.pki import CertificateAuthority, certs_to_pem, create_self_signed_ca, fingerprint, load_ca
from mtls_operator.rules.plan import b64text, secret_data
from mtls_operator.rules.rotation import (
    ORIGIN_GENERATED,
    RotationState,
    read_rotation,
    rotation_annotations,
)
from mtls_operator.times import Clock

NEXT_TLS_CRT = "next.crt"
NEXT_TLS_KEY = "next.key"
# The operator's own record of the trust bundle it last published to pods (a copy of the ca.crt it
# wrote). If a person replaces the CA, ca.crt included, while no operator runs, this is where the
# old CA is found again: never in objects of tenant namespaces, which anyone there may write.
PUBLISHED_CRT = "published.crt"

logger = logging.getLogger(__name__)



class CAStore:
    def __init__(
        self,
        cluster: Cluster,
        *,
        namespace: str,
        secret_name: str,
        clock: Clock,
        refresh_interval: float = 30.0,
        metrics: Metrics | None = None,
        ca_duration: timedelta = timedelta(hours=8760),
    ) -> None:
        self._cluster = cluster
        self.namespace = namespace
        self.secret_name = secret_name
        self._clock = clock
        self.refresh_interval = refresh_interval
        self._metrics = metrics if metrics is not None else Metrics()
        self._ca: CertificateAuthority | None = None
        self._error: str | None = "the CA has not been loaded yet"
        self._loaded_version: str | None = None
        self._last_refresh: float | None = None
        self._ever_loaded = False
        self._lock = asyncio.Lock()
        self.ca_duration = ca_duration
        self._bundle: bytes = b""
        self.rotation = RotationState()
        # A CA a person put in place of the one we sign with (see the module docstring).
        self.replacement: CertificateAuthority | None = None
        # The next CA during a rotation (``next.crt``/``next.key``), or a user's unusable one and why.
        self.next_ca: CertificateAuthority | None = None
        self.next_error: str | None = None
        # Set by the rotation controller: a CA we cannot renew that expires soon.
        self.warning: str | None = None
        # What is wrong with the CA Secret while we keep signing with the CA loaded before it broke.
        self.problem: str | None = None
        # The rotation phase has waited past its bound, and for what (set by the rotation controller).
        self.stalled: str | None = None
        # The CA Secret's ``published.crt``: the operator's record of the bundle it last published.
        self.published: bytes | None = None
        # Called when ``state`` changes on a refresh (the CA replaced, broken, fixed, rotated).
        self.listeners: list[Callable[[], None]] = []

    @property
    def where(self) -> str:
        return f"Secret {self.namespace}/{self.secret_name}"

    def current(self) -> CertificateAuthority:
        """The CA that signs now; ``CAError`` with the reason when there is none."""
        if self._ca is None:
            raise CAError(self._error or "the CA is unavailable")
        return self._ca

    @property
    def state(self) -> tuple[str | None, str | None, bytes, str, str | None, str | None, str | None]:
        """Changes whenever the CA is replaced, breaks or recovers, the bundle or the phase changes."""
        return (self._ca.fingerprint if self._ca else None, self._error, self._bundle, str(self.rotation.phase),
                self.warning, self.problem, self.stalled)

    @property
    def bundle_pem(self) -> bytes:
        """The trust bundle every peer should hold (PEM): the CA Secret's ``ca.crt``, old and new CA
        during a rotation."""
        self.current()
        return self._bundle

    @property
    def trusted_fingerprints(self) -> frozenset[str]:
        """Issuers whose leaves peers accept now: the bundle's anchors, the signing CA, and during a
        rotation the previous signing CA (an intermediate is not itself in the bundle)."""
        ca = self.current()
        names = {ca.fingerprint, *(fingerprint(cert) for cert in ca.trust)}
        if self.rotation.previous_fingerprint:
            names.add(self.rotation.previous_fingerprint)
        return frozenset(names)

    def invalidate(self) -> None:
        """Make the next ``ensure_fresh`` re-read the Secret (the rotation controller just wrote it)."""
        self._last_refresh = None
        self._loaded_version = None

    async def ensure_fresh(self) -> None:
        """Re-read the CA Secret if the last read is older than the refresh interval (or failed)."""
        loop = asyncio.get_running_loop()
        async with self._lock:
            stale = (
                self._last_refresh is None
                or self._loaded_version is None
                or self._ca is None
                or loop.time() - self._last_refresh >= self.refresh_interval
            )
            if stale:
                before = self.state
                await self._refresh()
                self._last_refresh = loop.time()
                if self.state != before:
                    # Whoever happened to refresh, every identity must look again.
                    for listener in self.listeners:
                        listener()

    async def _refresh(self) -> None:
        try:
            secret = await self._cluster.get_secret(self.namespace, self.secret_name)
            if secret is None:
                secret = await self._bootstrap()
                if secret is None:
                    return
        except NotFoundError as exc:
            self._fail(f"cannot create the CA in {self.where}: {exc} (does namespace {self.namespace} exist?)")
            return
        except KubernetesAPIError as exc:
            if self._ca is not None:
                # A passing API hiccup is no reason to stop signing with the CA we hold.
                logger.warning("cannot re-read the CA %s, keeping the one loaded: %s", self.where, exc)
                return
            self._fail(f"cannot read the CA {self.where}: {exc}")
            return
        version = ObjectMeta.of(secret).resource_version
        if self._ca is not None and version and version == self._loaded_version:
            return
        tls_crt = secret_data(secret, c.TLS_CRT)
        tls_key = secret_data(secret, c.TLS_KEY)
        if not tls_crt or not tls_key:
            self._unusable(f"the CA {self.where} must hold tls.crt and tls.key (base64 PEM)", version)
            return
        try:
            # Parsing, the key's checks and a probe signature: CPU work, off the event loop.
            ca = await asyncio.to_thread(load_ca, tls_crt, tls_key, secret_data(secret, c.CA_CRT), self._clock())
        except CAError as exc:
            self._unusable(f"the CA in {self.where} is unusable: {exc}", version)
            return
        self.problem = None
        self.published = secret_data(secret, PUBLISHED_CRT)
        annotations = ObjectMeta.of(secret).annotations
        rotation = read_rotation(annotations)
        held = self._ca
        if held is not None and held.fingerprint != ca.fingerprint and rotation.signing_fingerprint != ca.fingerprint:
            # A person put a new CA in place of the one we sign with. Switching now would hand new
            # pods certificates their peers do not trust yet: keep signing, let the rotation roll it in.
            if self.replacement is None or self.replacement.fingerprint != ca.fingerprint:
                logger.warning("the CA in %s was replaced by %s; rolling it in by rotation", self.where,
                               ca.fingerprint)
            self.replacement = ca
            self.rotation = rotation
            self._loaded_version = version
            return
        # Loaded before any state changes: no one sees the new CA without its next one.
        self.next_ca, self.next_error = await self._load_next(secret)
        self.replacement = None
        if self._ca is None or self._ca.fingerprint != ca.fingerprint:
            logger.info("signing with CA %s from %s (expires %s)", ca.fingerprint, self.where, ca.not_after)
        self._ca = ca
        self._bundle = certs_to_pem(ca.trust)
        self.rotation = rotation
        self._metrics.ca_loaded(ca.fingerprint, ca.not_after)
        self._metrics.ca_rotation(rotation.phase.number, self.next_ca.fingerprint if self.next_ca else None,
                                  self.next_ca.not_after if self.next_ca else None)
        self._error = None
        self._loaded_version = version
        self._ever_loaded = True

    async def _load_next(self, secret: JSON) -> tuple[CertificateAuthority | None, str | None]:
        """The next CA (``next.crt``/``next.key``) and ``None``, or ``None`` and why it is unusable."""
        next_crt = secret_data(secret, NEXT_TLS_CRT)
        next_key = secret_data(secret, NEXT_TLS_KEY)
        if not next_crt and not next_key:
            return None, None
        if not next_crt or not next_key:
            return None, f"the next CA in {self.where} needs both {NEXT_TLS_CRT} and {NEXT_TLS_KEY}"
        try:
            return await asyncio.to_thread(load_ca, next_crt, next_key, secret_data(secret, c.CA_CRT),
                                           self._clock()), None
        except CAError as exc:
            return None, f"the next CA in {self.where} ({NEXT_TLS_CRT}, {NEXT_TLS_KEY}) is unusable: {exc}"

    async def _bootstrap(self) -> JSON | None:
        """Create a CA on first start only; a CA that vanished later is reported, never replaced.

        Replacing it silently would re-issue every leaf under a CA that pods still holding the old
        bundle do not trust: exactly the outage CA rotation exists to avoid.
        """
        if self.secret_name != c.DEFAULT_CA_SECRET:
            # A name chosen by the user (MTLS_CA_SECRET, the chart's ca.existingSecret) means "my CA".
            self._fail(
                f"the CA {self.where} does not exist: create it with your CA (tls.crt, tls.key, and ca.crt for "
                f"an intermediate), or leave MTLS_CA_SECRET at {c.DEFAULT_CA_SECRET} for a CA the operator creates"
            )
            return None
        if self._ever_loaded:
            self._fail(
                f"the CA {self.where} was deleted; restore it from a backup (a new CA would break trust "
                "between running pods)"
            )
            return None
        earlier = await self._cluster.list_config_maps_everywhere(f"{c.MANAGED_BY_LABEL}={c.MANAGER_NAME}")
        namespaces = sorted({meta.namespace for meta in map(ObjectMeta.of, earlier)
                             if meta.name == c.TRUST_BUNDLE_CONFIGMAP})
        if namespaces:
            self._fail(
                f"the CA {self.where} is missing, but certificates of an earlier CA are in use (trust bundles in "
                f"namespaces {', '.join(namespaces)}); restore the CA Secret, or delete those "
                f"{c.TRUST_BUNDLE_CONFIGMAP} ConfigMaps to start over with a new CA"
            )
            return None
        return await self._create()

    async def _create(self) -> JSON:
        now = self._clock()
        ca = await asyncio.to_thread(create_self_signed_ca, now, validity=self.ca_duration)
        annotations = {key: value for key, value in rotation_annotations(
            RotationState(since=now, signing_fingerprint=ca.fingerprint, signing_not_after=ca.not_after,
                          origin=ORIGIN_GENERATED)
        ).items() if value is not None}
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": c.SECRET_TYPE_TLS,
            "metadata": {
                "name": self.secret_name,
                "namespace": self.namespace,
                "labels": {c.MANAGED_BY_LABEL: c.MANAGER_NAME},
                "annotations": annotations,
            },
            "data": {key: b64text(value) for key, value in {**ca.secret_data(),
                                                            PUBLISHED_CRT: ca.secret_data()[c.CA_CRT]}.items()},
        }
        try:
            created = await self._cluster.create_secret(self.namespace, body)
            logger.info("created a self-signed CA %s in %s", ca.fingerprint, self.where)
            return created
        except ConflictError:
            # Another replica (or the user) got there first: use theirs.
            existing = await self._cluster.get_secret(self.namespace, self.secret_name)
            if existing is None:
                raise
            return existing

    def _unusable(self, reason: str, version: str) -> None:
        """The Secret now holds something we cannot sign with. With a CA loaded before, keep signing
        with it (every pod keeps its trust) and say so; without one, there is no CA."""
        held = self._ca
        if held is None or held.not_after <= self._clock():
            self._fail(reason)
            return
        if self.problem != reason:
            logger.error("%s; still signing with the CA loaded before, %s", reason, held.fingerprint)
        self.problem = reason
        self._loaded_version = version

    def _fail(self, reason: str) -> None:
        if self._error != reason:
            logger.error("%s", reason)
        self._error = reason
        self._ca = None
        self._loaded_version = None
