"""Everything the handlers share, built once at start-up and reached through kopf's ``memo``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes import client as k8s_client

from mtls_operator import __version__
from mtls_operator import constants as c
from mtls_operator.config import Settings
from mtls_operator.controller.ca_store import CAStore
from mtls_operator.controller.cluster_trust_bundle import ClusterTrustBundlePublisher
from mtls_operator.controller.leader import LeaderElector
from mtls_operator.controller.podcert import PodCertificateSigner
from mtls_operator.controller.reconciler import IdentityKey, Reconciler
from mtls_operator.controller.rotation import RotationController
from mtls_operator.controller.webhook_ca import WebhookCARotation, WebhookCAStore
from mtls_operator.controller.webhook_tls import ServingCertificate, WebhookCABundle
from mtls_operator.controller.workqueue import RateLimiter, WorkQueue
from mtls_operator.k8s import Cluster, KubeAPI, core_path
from mtls_operator.k8s.watch import SecretWatch
from mtls_operator.observability.metrics import Metrics
from mtls_operator.rules.plan import IdentityRef, pod_info, serving_identity
from mtls_operator.times import Clock


def wall_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    settings: Settings
    api: KubeAPI
    reconciler: Reconciler
    queue: WorkQueue[IdentityKey]
    metrics: Metrics
    identities: dict[IdentityKey, IdentityRef] = field(default_factory=dict)
    # (uid, generation) last queued per identity: spec changes need work, status writes do not.
    generations: dict[IdentityKey, tuple[str, object]] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None
    secret_watch: SecretWatch | None = None
    watch_timeout: int = 60
    # Admission webhooks (None when MTLS_WEBHOOK_PORT=0): this replica's serving certificate, the
    # webhook CA it comes from, and the leader's upkeep of that CA and the configurations' caBundle.
    serving: ServingCertificate | None = None
    webhook_ca: WebhookCAStore | None = None
    webhook_ca_bundle: WebhookCABundle | None = None
    webhook_ca_rotation: WebhookCARotation | None = field(init=False, default=None)
    # The signer's ClusterTrustBundle (None unless MTLS_POD_CERTIFICATES=true).
    cluster_trust_bundle: ClusterTrustBundlePublisher | None = field(init=False, default=None)
    rotation: RotationController = field(init=False)
    # How often the rotation controller looks while a rotation is under way (tests shorten it).
    rotation_poll: float = 5.0
    clock: Clock = wall_clock
    # High availability: the replicas' election (None with MTLS_LEADER_ELECTION=false: this one leads).
    elector: LeaderElector | None = None
    # The pod webhook's lookups past the watch's view (see handlers/webhooks.py, LOOKUP_RATE).
    identity_lookups: RateLimiter = field(default_factory=lambda: RateLimiter(5.0, burst=10.0))
    # The PodCertificateRequest signer (None unless MTLS_POD_CERTIFICATES=true): the leader's.
    signer: PodCertificateSigner | None = None

    def __post_init__(self) -> None:
        self.reconciler.ca_store.listeners.append(self._ca_changed)
        self.rotation = RotationController(
            self.reconciler.cluster, self.reconciler.ca_store, self.settings, clock=self.clock,
            on_change=self._ca_changed, poll_interval=self.rotation_poll,
            idle_interval=max(self.rotation_poll, self.reconciler.ca_store.refresh_interval),
        )
        if self.settings.pod_certificates:
            ca_store = self.reconciler.ca_store
            self.cluster_trust_bundle = ClusterTrustBundlePublisher(
                self.reconciler.cluster, ca_store, self.settings.pod_certificate_signer, clock=self.clock,
                interval=max(self.rotation_poll, ca_store.refresh_interval))
            self.rotation.cluster_trust_bundle = self.cluster_trust_bundle
        if self.serving is not None and self.webhook_ca is not None:
            self.webhook_ca_bundle = WebhookCABundle(self.reconciler.cluster, self.webhook_ca,
                                                     self.settings.webhook_configuration)
            self.webhook_ca_rotation = WebhookCARotation(
                self.reconciler.cluster, self.webhook_ca, self.webhook_ca_bundle, self.serving, clock=self.clock,
                poll_interval=self.rotation_poll,
            )

    async def issue_first(self, body: Mapping[str, Any]) -> None:
        """A pod just created: its first certificate now (the leader only), then a pass for the status."""
        if not self.leading:
            return
        pod = pod_info(body)
        owner = serving_identity(pod, [ref for key, ref in self.identities.items() if key[0] == pod.namespace])
        if owner is None:
            return
        key = (owner.namespace, owner.name)
        version = self.generations.get(key)
        if version is not None and await self.reconciler.issue_first(key, version, pod):
            self.queue.add(key)

    def _ca_changed(self) -> None:
        for key in self.identities:
            self.queue.add(key)
        if self.cluster_trust_bundle is not None:
            self.cluster_trust_bundle.wake()

    @classmethod
    def build(
        cls,
        settings: Settings,
        configuration: k8s_client.Configuration,
        clock: Clock,
        *,
        retry_delay: float,
        ca_refresh_interval: float,
        watch_timeout: int,
        serving: ServingCertificate | None = None,
    ) -> Runtime:
        # The User-Agent names the replica, so the API server's audit log tells who wrote what.
        api = KubeAPI.from_configuration(
            configuration, user_agent=f"{c.MANAGER_NAME}/{__version__} ({settings.holder_identity})"
        )
        cluster = Cluster(api)
        metrics = Metrics()
        ca_store = CAStore(
            cluster,
            namespace=settings.namespace,
            secret_name=settings.ca_secret,
            clock=clock,
            refresh_interval=ca_refresh_interval,
            metrics=metrics,
            ca_duration=settings.ca_duration,
        )
        limiter = RateLimiter(settings.max_issuance_per_second)
        reconciler = Reconciler(cluster, settings, ca_store, clock=clock, limiter=limiter, retry_delay=retry_delay,
                                metrics=metrics)
        queue: WorkQueue[IdentityKey] = WorkQueue(reconciler.reconcile)
        webhook_ca = WebhookCAStore(
            cluster, namespace=settings.namespace, secret_name=settings.webhook_ca_secret, clock=clock,
            ca_duration=settings.ca_duration, refresh_interval=ca_refresh_interval,
        ) if serving else None
        elector = LeaderElector(
            cluster, namespace=settings.namespace, name=settings.lease_name, identity=settings.holder_identity,
            lease_duration=settings.lease_duration, metrics=metrics,
        ) if settings.leader_election else None
        # Pod certificates sign with the same CA, under the same identities and the same rate limit.
        signer = PodCertificateSigner(
            cluster, settings, ca_store, reconciler.index, limiter=limiter, metrics=metrics, clock=clock,
            watch_timeout=watch_timeout,
        ) if settings.pod_certificates else None
        return cls(settings=settings, api=api, reconciler=reconciler, queue=queue, metrics=metrics,
                   watch_timeout=watch_timeout, serving=serving, webhook_ca=webhook_ca, clock=clock,
                   rotation_poll=min(5.0, ca_refresh_interval), elector=elector, signer=signer)

    def start(self) -> None:
        """Start the metrics endpoint (first: a port in use fails start-up) and the background work."""
        if self.settings.metrics_enabled:
            self.metrics.serve(self.settings.metrics_port)
        self.task = asyncio.create_task(self._run(), name="mtls-operator runtime")

    def _start_secret_watch(self) -> None:
        loop = asyncio.get_running_loop()

        def from_watch_thread(kind: str, metadata: Mapping[str, Any] | None) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed while the operator stops
                loop.call_soon_threadsafe(self._secret_changed, kind, metadata)

        self.secret_watch = SecretWatch(
            self.api.api_client,
            core_path("secrets"),
            f"{c.MANAGED_BY_LABEL}={c.MANAGER_NAME}",
            from_watch_thread,
            timeout_seconds=self.watch_timeout,
        )
        self.secret_watch.start()

    def _stop_secret_watch(self) -> None:
        if self.secret_watch is not None:
            self.secret_watch.stop()
            self.secret_watch = None

    def _secret_changed(self, kind: str, metadata: Mapping[str, Any] | None) -> None:
        """A managed Secret deleted or edited behind our back is repaired now, not at the next renewal."""
        if metadata is None:
            keys = list(self.identities)
        elif (metadata.get("namespace"), metadata.get("name")) == (self.settings.namespace, self.settings.ca_secret):
            self.rotation.wake()  # e.g. mtls.dev/rotate was just set
            return
        elif (metadata.get("namespace"), metadata.get("name")) == (self.settings.namespace,
                                                                   self.settings.webhook_ca_secret):
            if self.webhook_ca_rotation is not None:
                self.webhook_ca_rotation.wake()
            return
        else:
            key = (str(metadata.get("namespace")), str((metadata.get("labels") or {}).get(c.IDENTITY_LABEL)))
            keys = [key] if key in self.identities else []
            name = str(metadata.get("name"))
            if kind == "DELETED":
                self.reconciler.gate.vanished((key[0], name))
            elif self.reconciler.writer.wrote(key[0], name, str(metadata.get("resourceVersion"))):
                return  # our own write coming back
        for key in keys:
            self.queue.add(key)

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for work in self._replica_work():
                group.create_task(work)
            group.create_task(self._lead_when_elected())

    def _replica_work(self) -> list[Coroutine[Any, Any, None]]:
        """What every replica runs, leading or not (the admission webhooks are served by all)."""
        if self.serving is None or self.webhook_ca is None:
            return []
        return [self.serving.keep_fresh(self.webhook_ca)]

    @property
    def leading(self) -> bool:
        """Whether this replica is the one that issues now."""
        return self.elector is None or self.elector.leading

    async def _lead_when_elected(self) -> None:
        """Lead (issue, renew, rotate) only while this replica is the elected one."""
        if self.elector is None:
            self.metrics.leadership(True)
            await self._lead()
        else:
            await self.elector.run(self._lead)

    async def _lead(self) -> None:
        """Everything only the leader does; cancelled as a whole when leadership is lost."""
        self._start_secret_watch()
        try:
            # A new leader knows nothing of the schedule: every identity is looked at once.
            for key in self.identities:
                self.queue.add(key)
            async with asyncio.TaskGroup() as group:
                for work in self._leader_work():
                    group.create_task(work)
        finally:
            self._stop_secret_watch()

    def _leader_work(self) -> list[Coroutine[Any, Any, None]]:
        work = [self.queue.run(), self._watch_ca(), self.rotation.run()]
        if self.webhook_ca_rotation is not None:
            work.append(self.webhook_ca_rotation.run())
        if self.signer is not None:
            work.append(self.signer.run())
        if self.cluster_trust_bundle is not None:
            work.append(self.cluster_trust_bundle.run())
        return work

    async def _watch_ca(self) -> None:
        """Re-read the CA periodically; its listener requeues every identity when it changed."""
        ca_store = self.reconciler.ca_store
        while True:
            await asyncio.sleep(ca_store.refresh_interval)
            await ca_store.ensure_fresh()

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None
        await asyncio.to_thread(self.metrics.close)
        self.api.close()
