"""Everything the handlers share, built once at start-up and reached through kopf's ``memo``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
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
from mtls_operator.controller.objects import metadata_view, stored_pod
from mtls_operator.controller.podcert import PodCertificateSigner
from mtls_operator.controller.prefetch import FRESH, POD_SELECTOR, SECRET_SELECTOR, ListPrefetch
from mtls_operator.controller.reconciler import IdentityKey, Reconciler
from mtls_operator.controller.retry import BackOff
from mtls_operator.controller.rotation import RotationController
from mtls_operator.controller.shard import NamespaceShard
from mtls_operator.controller.webhook_ca import WebhookCARotation, WebhookCAStore
from mtls_operator.controller.webhook_tls import ServingCertificate, WebhookCABundle
from mtls_operator.controller.workqueue import RateLimiter, WorkQueue
from mtls_operator.errors import KubernetesAPIError
from mtls_operator.k8s import Cluster, KubeAPI, core_path
from mtls_operator.k8s.views import SecretView
from mtls_operator.k8s.watch import RESYNC, ResourceWatch
from mtls_operator.observability.metrics import Metrics
from mtls_operator.observability.startup import StartupPhases
from mtls_operator.rules.plan import IdentityRef, PodInfo, serving_identity
from mtls_operator.times import Clock

logger = logging.getLogger(__name__)

# How often the leader looks whether the Secrets were listed again (their data to be checked).
VERIFY_INTERVAL = 5.0
# How long a pass waits for the watches' first lists before it reads the API itself.
STORE_WAIT = 10.0
# How soon the pass that reports a first issue runs: the issues of a burst are reported together.
STATUS_DELAY = 1.0


def wall_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    settings: Settings
    api: KubeAPI
    reconciler: Reconciler
    metrics: Metrics
    identities: dict[IdentityKey, IdentityRef] = field(default_factory=dict)
    # (uid, generation) last queued per identity: spec changes need work, status writes do not.
    generations: dict[IdentityKey, tuple[str, object]] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None
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
    queue: WorkQueue[IdentityKey] = field(init=False)
    # Sharding (MTLS_SHARD_NAMESPACE_SELECTOR): the namespaces this operator serves; None serves all.
    shard: NamespaceShard | None = field(init=False, default=None)
    # The PodCertificateRequest signer (None unless MTLS_POD_CERTIFICATES=true): the leader's.
    signer: PodCertificateSigner | None = None
    # The pods and Secrets listed while the process started (cli.py), for the first leadership's watches.
    prefetch: ListPrefetch | None = None
    # When each start-up phase ended; the identities whose pass over the watched store is done, until every
    # identity's is (the first full look).
    startup: StartupPhases = field(default_factory=StartupPhases)
    _looked: set[IdentityKey] | None = field(init=False, default_factory=set)
    _looked_changed: asyncio.Event = field(init=False, default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.queue = WorkQueue(self._reconcile)
        if self.settings.sharded:
            self.shard = NamespaceShard(self.settings.shard_namespace_selector, joined=self._namespace_joined,
                                        left=self._namespace_left)
        self.reconciler.ca_store.listeners.append(self._ca_changed)
        self.rotation = RotationController(
            self.reconciler.cluster, self.reconciler.ca_store, self.settings, clock=self.clock,
            on_change=self._ca_changed, poll_interval=self.rotation_poll,
            idle_interval=max(self.rotation_poll, self.reconciler.ca_store.refresh_interval),
            objects=self.reconciler.objects,
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

    def serves(self, namespace: str) -> bool:
        """Whether this operator's shard serves the namespace (always, unsharded)."""
        return self.shard is None or self.shard.serves(namespace)

    async def _reconcile(self, key: IdentityKey) -> float | BackOff | None:
        if self.shard is not None:
            await self.shard.ready.wait()
            if not self.shard.serves(key[0]):
                return None  # another shard's: its leader serves it
        objects = self.reconciler.objects
        if not objects.synced:
            # At start (and after a lost watch) a pass over the watches' store beats one over the API: the
            # store's lists are one per resource type, a pass's are per identity and carry every key.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(objects.wait_synced(), STORE_WAIT)
        over_store = objects.synced
        try:
            next_look = await self.reconciler.reconcile(key)
        finally:
            self.rotation.pass_ended()
        if over_store and self._looked is not None:
            self._looked.add(key)
            self._looked_changed.set()
        return next_look

    def _namespace_joined(self, namespace: str) -> None:
        for key in self.identities:
            if key[0] == namespace:
                self.queue.add(key)

    def _namespace_left(self, namespace: str) -> None:
        # Its identities are another shard's now: their metric series are that shard's to publish.
        for key in self.identities:
            if key[0] == namespace:
                self.metrics.identity_removed(*key)

    async def issue_first(self, pod: PodInfo) -> bool:
        """A pod just created: its first certificate now (the leader only), then a pass for the status.
        Returns whether it issued."""
        if not self.leading or not self.serves(pod.namespace):
            return False
        owner = serving_identity(pod, [ref for key, ref in self.identities.items() if key[0] == pod.namespace])
        if owner is None:
            return False
        key = (owner.namespace, owner.name)
        version = self.generations.get(key)
        if version is not None and await self.reconciler.issue_first(key, version, pod):
            self.queue.add(key, STATUS_DELAY)
            return True
        return False

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
        prefetch: ListPrefetch | None = None,
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
        return cls(settings=settings, api=api, reconciler=reconciler, metrics=metrics,
                   watch_timeout=watch_timeout, serving=serving, webhook_ca=webhook_ca, clock=clock,
                   rotation_poll=min(5.0, ca_refresh_interval), elector=elector, signer=signer, prefetch=prefetch)

    def start(self) -> None:
        """Start the metrics endpoint (first: a port in use fails start-up) and the background work."""
        if self.settings.metrics_enabled:
            self.metrics.serve(self.settings.metrics_port)
        self.task = asyncio.create_task(self._run(), name="mtls-operator runtime")
        self._phase_ended("runtime")
        if self.prefetch is not None:
            # A replica that does not lead soon lists again when it does: what was listed goes.
            asyncio.get_running_loop().call_later(FRESH, self.prefetch.discard)

    def _phase_ended(self, phase: str, at: float | None = None) -> None:
        if self.startup.end(phase, at):
            for name, seconds in self.startup.ended.items():
                self.metrics.startup_phase(name, seconds)

    def _lists_stored(self) -> None:
        if self.reconciler.objects.synced:
            self._phase_ended("lists")
            self._phase_ended("store")

    async def _report_first_look(self) -> None:
        """Once every identity had a pass over the watched store (its status and decisions made for all its
        pods and Secrets), log how long start-up took, phase by phase."""
        objects = self.reconciler.objects
        await objects.wait_synced()
        try:
            listed = await self.reconciler.cluster.list_identities_everywhere()
        except KubernetesAPIError as exc:
            logger.warning("listing the identities for the start-up report failed, none is made: %s", exc)
            return
        keys = set()
        for body in listed:
            meta = body.get("metadata") or {}
            key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
            if not meta.get("deletionTimestamp") and self.serves(key[0]):
                keys.add(key)
        while self._looked is not None and not keys <= self._looked:
            self._looked_changed.clear()
            await self._looked_changed.wait()
        self._looked = None
        self._phase_ended("first_look")
        logger.info("first full look at %d identities done; start-up: %s (seconds since the process started)",
                    len(keys), self.startup.summary())

    async def _watch_objects(self) -> None:
        """The pod and Secret watches; the first leadership's, at start-up, from the lists made while the process
        started (the passes wait for them as for the watches' own lists)."""
        listed = await self.prefetch.take() if self.prefetch is not None else None
        self.prefetch = None
        if listed is not None:
            self._phase_ended("lists", listed.done)
            logger.info("watching from the lists made while starting: %d pods, %d Secrets", len(listed.pods[1]),
                        len(listed.secrets[1]))
        async with asyncio.TaskGroup() as group:
            group.create_task(self._watch_secrets(listed.secrets if listed is not None else None))
            group.create_task(self._watch_pods(listed.pods if listed is not None else None))

    async def _watch_secrets(self, prefetched: tuple[str, list[SecretView]] | None = None) -> None:
        """Managed Secrets edited or deleted behind our back, metadata only (never their keys)."""
        objects = self.reconciler.objects

        def changed(kind: str, secret: Mapping[str, Any] | None) -> None:
            if secret is not None:
                objects.secret_event(kind, secret)
            if kind != "ADDED":  # created: by us (a first issue, a pass), or a clash the pass reports
                self._secret_changed(kind, secret.get("metadata") or {} if secret is not None else None)

        def listed(secrets: list[SecretView]) -> None:
            objects.secrets_stored(secrets)
            self._lists_stored()
            self._secret_changed(RESYNC, None)

        watch = ResourceWatch(self.api, core_path("secrets"), SECRET_SELECTOR, changed, metadata_only=True,
                              timeout_seconds=self.watch_timeout, on_list=listed, keep=metadata_view)
        await watch.run(prefetched)

    async def _watch_pods(self, prefetched: tuple[str, list[PodInfo]] | None = None) -> None:
        """Opted-in pods (a server-side label selector), outside kopf: a new pod gets its first certificate
        at once, any change routes its identities to the queue, a lost stream requeues every identity.

        kopf's per-event machinery costs more per pod than the rest of a first issue; identities stay
        with kopf. A pod whose labels stop matching arrives as DELETED with its new labels, which
        ``identities_for_pod`` still routes to the identity that served it.
        """
        first_issues: set[asyncio.Task[None]] = set()

        objects = self.reconciler.objects

        def changed(kind: str, body: Mapping[str, Any] | None) -> None:
            if body is None:
                self._ca_changed()  # RESYNC: every identity looks at its pods again
                return
            pod = stored_pod(body)  # once per event: the store, the first issue and the routing all read it
            if not objects.pod_changed(kind, pod):
                return  # a change of nothing a pass reads (the pod's status, its IP): no pass
            if kind == "ADDED" and self.reconciler.gate.first_issue_room():
                # A first issue (a task): only with room for one, else it would only route the pod to the pass.
                self.reconciler.gate.arriving((pod.namespace, pod.name))
                task = asyncio.create_task(self._pod_added(pod))
                first_issues.add(task)
                task.add_done_callback(first_issues.discard)
            else:
                self._route_pod(pod)

        def listed(pods: list[PodInfo]) -> None:
            objects.pods_stored(pods)
            self._lists_stored()
            self._ca_changed()  # every identity looks at its pods again

        watch = ResourceWatch(self.api, core_path("pods"), POD_SELECTOR, changed,
                              timeout_seconds=self.watch_timeout, on_list=listed, keep=stored_pod)
        try:
            await watch.run(prefetched)
        finally:
            for task in first_issues:
                task.cancel()

    async def _pod_added(self, pod: PodInfo) -> None:
        # A new pod (not one listed at start-up or after a lost watch): issue before the pass. Issued, the
        # pass only reports it: a burst's passes then come at most every STATUS_DELAY, not one per pod.
        issued = False
        try:
            issued = await self.issue_first(pod)
        finally:
            self.reconciler.gate.arrived((pod.namespace, pod.name))
            self._route_pod(pod, STATUS_DELAY if issued else 0.0)

    def _route_pod(self, pod: PodInfo, delay: float = 0.0) -> None:
        for key in self.reconciler.index.identities_for_pod(pod, self.identities):
            self.queue.add(key, delay)

    def _secret_changed(self, kind: str, metadata: Mapping[str, Any] | None) -> None:
        """A managed Secret deleted or edited behind our back is repaired now, not at the next renewal."""
        if kind == RESYNC or metadata is None:
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
        work = []
        if self.shard is not None:
            work.append(self.shard.run(self.api, timeout_seconds=self.watch_timeout))
        if self.serving is not None and self.webhook_ca is not None:
            work.append(self.serving.keep_fresh(self.webhook_ca))
        return work

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
        # A new leader knows nothing of the schedule: every identity is looked at once. What the watches
        # reported while it led before went stale meanwhile: passes read the API until they list again.
        self.reconciler.objects.reset()
        self.reconciler.gate.forget_arrivals()
        for key in self.identities:
            self.queue.add(key)
        if self._looked is not None:
            self._looked = set()  # the first look is this leadership's
        async with asyncio.TaskGroup() as group:
            for work in self._leader_work():
                group.create_task(work)

    def _leader_work(self) -> list[Coroutine[Any, Any, None]]:
        work = [self.queue.run(), self._watch_ca(), self._watch_objects(), self._verify_listed()]
        if self._looked is not None:
            work.append(self._report_first_look())
        # Sharded, one shard drives the rotations of the CAs all shards share (MTLS_CA_ROTATION); the
        # others follow the CA Secret (``_watch_ca`` and the Secret watch). The signer's
        # ClusterTrustBundle is cluster-wide too: the same shard keeps it, and answers the
        # PodCertificateRequests (cluster-wide as well, one signer name).
        if self.settings.ca_rotation:
            work.append(self.rotation.run())
            if self.webhook_ca_rotation is not None:
                work.append(self.webhook_ca_rotation.run())
            if self.cluster_trust_bundle is not None:
                work.append(self.cluster_trust_bundle.run())
            if self.signer is not None:
                work.append(self.signer.run())
        return work

    async def _verify_listed(self) -> None:
        """After each list of the Secrets (start-up, a lost watch), their data checked once in the background:
        passes read listed Secrets from their annotations (a fast first look), this finds any edited while
        nobody watched, and queues its identity for the repair."""
        objects = self.reconciler.objects
        checked = 0
        while True:
            await asyncio.sleep(VERIFY_INTERVAL)
            lists = objects.secret_lists
            if not objects.secrets_synced or lists == checked:
                continue
            # After the passes the list queued (the first look): the check's parsing never delays them.
            await self.queue.wait_idle()
            try:
                wrong = await self.reconciler.verify_listed(idle=self.queue.wait_idle)
            except KubernetesAPIError as exc:
                logger.warning("checking the listed Secrets' data failed, retrying: %s", exc)
                continue
            checked = lists
            for key in wrong:
                if key in self.identities:
                    self.queue.add(key)

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
        self.reconciler.issue_log.flush()  # the certificates issued in the last moment, logged
        await asyncio.to_thread(self.metrics.close)
        await self.api.close()
