"""The CA rotation controller: starts rotations and moves them through their phases (rotation.py).

Runs on the leader only. Every step re-reads the CA Secret and writes it with optimistic
concurrency, so a restart (or a new leader) resumes the phase the Secret records. Each phase
change is logged, posted as an Event on the CA Secret and mirrored on every identity's status.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from mtls_operator import constants as c
from mtls_operator.config import Settings
from mtls_operator.controller.ca_store import NEXT_TLS_CRT, NEXT_TLS_KEY, PUBLISHED_CRT, CAStore
from mtls_operator.controller.cluster_trust_bundle import ClusterTrustBundlePublisher
from mtls_operator.controller.loop import run_woken
from mtls_operator.controller.objects import WatchedObjects
from mtls_operator.errors import CAError, ConflictError, KubernetesAPIError, PKIError
from mtls_operator.k8s import JSON, Cluster
from mtls_operator.k8s.views import ConfigMapView, ObjectMeta, SecretView
from mtls_operator.pki import (
    CertificateAuthority,
    certs_to_pem,
    create_self_signed_ca,
    fingerprint,
    merge_bundles,
    parse_pem_certificates,
)
from mtls_operator.rules import podcert
from mtls_operator.rules.plan import (
    PodInfo,
    b64text,
    bundle_hash,
    data_value,
    pod_info,
    secret_data,
    secret_name_for_pod,
)
from mtls_operator.rules.podcert import HeldByKubelets
from mtls_operator.rules.rotation import (
    ORIGIN_GENERATED,
    ORIGIN_SUPPLIED,
    Fleet,
    Phase,
    RotationState,
    Step,
    auto_rotation_due,
    enter,
    expiry_warning_due,
    next_step,
    read_rotation,
    rotation_annotations,
    stall_bound,
    stalled,
)
from mtls_operator.rules.spec import format_duration
from mtls_operator.times import Clock, format_time

logger = logging.getLogger(__name__)

# Foreign objects remembered as reported (then forgotten, to bound memory; reported again at worst).
FOREIGN_REPORTED_LIMIT = 10_000



class RotationController:
    def __init__(
        self,
        cluster: Cluster,
        ca_store: CAStore,
        settings: Settings,
        *,
        clock: Clock,
        on_change: Callable[[], None],
        poll_interval: float = 5.0,
        idle_interval: float = 60.0,
        objects: WatchedObjects | None = None,
    ) -> None:
        self.cluster = cluster
        # The pods and Secrets the watches keep: once synced, the count walks memory, not the API.
        self.objects = objects
        self.ca_store = ca_store
        self.settings = settings
        self.clock = clock
        self.on_change = on_change
        self.poll_interval = poll_interval
        self.idle_interval = idle_interval
        self._last_message: str | None = None
        # The last wait reported, so a standing wait is logged once, not every poll.
        self._last_wait: str | None = None
        # Objects carrying the operator's labels that it did not write for a live pod or identity:
        # reported once each, never counted.
        self._foreign_reported: set[str] = set()
        self._wake = asyncio.Event()
        # Whether the last look found a rotation under way: the passes that write its objects then wake
        # this controller when they end (``pass_ended``), so a phase moves on when its last write is in
        # the store, not at the next poll.
        self.under_way = False
        # The signer's ClusterTrustBundle, with pod certificates on: waited for like a trust ConfigMap.
        self.cluster_trust_bundle: ClusterTrustBundlePublisher | None = None
        # The certificates.k8s.io version serving PodCertificateRequests, once asked (pod certificates on).
        self._pcr_version: str | None = None

    @property
    def where(self) -> str:
        return self.ca_store.where

    def wake(self) -> None:
        """Look now (the CA Secret changed: a rotation may have been asked for)."""
        self._wake.set()

    def pass_ended(self) -> None:
        """An identity's pass has ended: its writes are in the store, so a phase under way may be complete."""
        if self.under_way:
            self._wake.set()

    async def run(self) -> None:
        await run_woken(self.step, self._wake, retry_delay=self.poll_interval, logger=logger, what="CA rotation")

    async def step(self) -> float:
        """One look at the CA Secret: start, advance or finish a rotation; seconds until the next look."""
        await self.ca_store.ensure_fresh()
        secret = await self.cluster.get_secret(self.ca_store.namespace, self.ca_store.secret_name)
        if secret is None:
            return self.poll_interval  # the CA store reports and recovers a missing CA
        try:
            ca = self.ca_store.current()
        except CAError:
            return self.poll_interval
        state = read_rotation(ObjectMeta.of(secret).annotations)
        self.under_way = state.phase is not Phase.IDLE
        now = self.clock()
        if self.ca_store.problem:
            # Nothing moves while the Secret is broken: writing it would lose what the person put there.
            await self._tell(secret, "Warning", "CASecretInvalid",
                             f"{self.ca_store.problem}; still signing with the CA loaded before, {ca.fingerprint}: "
                             "fix the Secret (or restore it) to resume", now)
            return self.poll_interval
        try:
            if state.phase is Phase.IDLE:
                return await self._idle(secret, state, ca, now)
            return await self._advance(secret, state, ca, now)
        except ConflictError:
            # Someone wrote the Secret between our read and write: look again at once.
            self.ca_store.invalidate()
            return 0.0

    # Idle: whether to start ----------------------------------------------------------------------

    async def _idle(self, secret: JSON, state: RotationState, ca: CertificateAuthority, now: datetime) -> float:
        labels = ObjectMeta.of(secret).labels
        origin = state.origin or (
            ORIGIN_GENERATED if labels.get(c.MANAGED_BY_LABEL) == c.MANAGER_NAME else ORIGIN_SUPPLIED
        )
        state = replace(state, origin=origin)
        replacement = self.ca_store.replacement
        if replacement is not None:
            return await self._begin(secret, state, ca, replacement, ORIGIN_SUPPLIED, now,
                                     f"the CA in {self.where} was replaced by {replacement.fingerprint}")
        if state.signing_fingerprint and state.signing_fingerprint != ca.fingerprint:
            return await self._adopt(secret, state, ca, now)
        if self.ca_store.next_ca is not None:
            return await self._begin(secret, state, ca, self.ca_store.next_ca, ORIGIN_SUPPLIED, now,
                                     f"a next CA was put in {NEXT_TLS_CRT} and {NEXT_TLS_KEY}")
        if self.ca_store.next_error:
            await self._tell(secret, "Warning", "NextCAUnusable", self.ca_store.next_error, now)
        not_before = ca.cert.not_valid_before_utc
        if state.rotate_requested:
            if origin == ORIGIN_GENERATED:
                return await self._begin_generated(secret, state, ca, now, "rotation requested (mtls.dev/rotate)")
            await self._write(secret, replace(state, rotate_requested=False), {})
            await self._tell(
                secret, "Warning", "RotationRefused",
                f"rotation requested, but the CA {ca.fingerprint} was supplied by you and the operator does not "
                f"replace it with one of its own: put the new CA in {NEXT_TLS_CRT} and {NEXT_TLS_KEY}", now)
            return self.idle_interval
        if origin == ORIGIN_GENERATED and auto_rotation_due(not_before, ca.not_after, now):
            return await self._begin_generated(
                secret, state, ca, now, f"the CA reached 2/3 of its lifetime (it expires {format_time(ca.not_after)})")
        if origin == ORIGIN_SUPPLIED and expiry_warning_due(ca.not_after, now):
            warning = (f"the CA {ca.fingerprint} expires {format_time(ca.not_after)} and was supplied by you, so the "
                       f"operator cannot renew it: put its successor in {NEXT_TLS_CRT} and {NEXT_TLS_KEY} of "
                       f"{self.where}")
            if self.ca_store.warning != warning:
                self.ca_store.warning = warning
                await self._tell(secret, "Warning", "CAExpiringSoon", warning, now)
                self.on_change()
        elif self.ca_store.warning is not None:
            self.ca_store.warning = None
            self.on_change()
        expected = replace(state, phase=Phase.IDLE, signing_fingerprint=ca.fingerprint, signing_not_after=ca.not_after,
                           next_fingerprint=None, next_not_after=None, previous_fingerprint=None,
                           previous_not_after=None, settled_at=None, next_origin=None, since=state.since or now)
        bundle = self.ca_store.bundle_pem
        unrecorded = secret_data(secret, PUBLISHED_CRT) != bundle
        if unrecorded or rotation_annotations(expected) != rotation_annotations(read_rotation(_annotations(secret))):
            # ``published.crt`` is written with every ca.crt; here it catches up with a ca.crt a person
            # edited, or one written before the record existed.
            await self._write(secret, expected, {PUBLISHED_CRT: bundle} if unrecorded else {})
        if self.ca_store.stalled is not None:
            self.ca_store.stalled = None
            self.on_change()
        if origin == ORIGIN_GENERATED:
            due = not_before + (ca.not_after - not_before) * (2 / 3)
            return max(1.0, min(self.idle_interval, (due - now).total_seconds()))
        return self.idle_interval

    async def _begin_generated(
        self, secret: JSON, state: RotationState, ca: CertificateAuthority, now: datetime, why: str
    ) -> float:
        incoming = await asyncio.to_thread(create_self_signed_ca, now, validity=self.settings.ca_duration)
        return await self._begin(secret, state, ca, incoming, ORIGIN_GENERATED, now, why)

    async def _begin(
        self,
        secret: JSON,
        state: RotationState,
        ca: CertificateAuthority,
        incoming: CertificateAuthority,
        incoming_origin: str,
        now: datetime,
        why: str,
    ) -> float:
        """Distributing: the new CA joins the bundle; the current one keeps signing (restored if replaced)."""
        bundle = merge_bundles(parse_pem_certificates(self.ca_store.bundle_pem), incoming.own_anchors)
        current = ca.secret_data()
        data = {
            c.TLS_CRT: current[c.TLS_CRT],
            c.TLS_KEY: current[c.TLS_KEY],
            c.CA_CRT: certs_to_pem(bundle),
            NEXT_TLS_CRT: certs_to_pem((incoming.cert, *incoming.chain)),
            NEXT_TLS_KEY: incoming.secret_data()[c.TLS_KEY],
        }
        # Each transition names every field it sets (here and in ``_adopt``, alike in shape): a reader sees
        # the whole state of the phase entered in one place.
        new_state = replace(
            enter(state, Phase.DISTRIBUTING, now),
            signing_fingerprint=ca.fingerprint,
            signing_not_after=ca.not_after,
            next_fingerprint=incoming.fingerprint,
            next_not_after=incoming.not_after,
            previous_fingerprint=None,
            previous_not_after=None,
            next_origin=incoming_origin,
            rotate_requested=False,
        )
        await self._write(secret, new_state, data)
        await self._tell(secret, "Normal", "RotationStarted",
                         f"CA rotation started: {why}. Phase Distributing: the new CA {incoming.fingerprint} "
                         f"(expires {format_time(incoming.not_after)}) joins the trust bundle; {ca.fingerprint} keeps "
                         "signing until every pod trusts the new one", now)
        return 0.0

    async def _adopt(self, secret: JSON, state: RotationState, ca: CertificateAuthority, now: datetime) -> float:
        """The CA was replaced while no operator ran: the old key is gone, so the new CA must sign at once.

        The old CA stays trusted until no leaf of it is left. It is found in the operator's own record
        (``published.crt``, and ca.crt) in the CA Secret, never in objects of tenant namespaces: a trust
        ConfigMap or pod Secret there is writable by the tenant, and trusting it would let one tenant
        put its own CA into every namespace's bundle. Pods that do not yet hold the new CA may refuse
        new peers until their files update.
        """
        recorded: list[Any] = []
        for pem in (secret_data(secret, PUBLISHED_CRT), self.ca_store.published):
            if pem:
                try:
                    recorded.extend(parse_pem_certificates(pem))
                except PKIError as exc:
                    logger.warning("CA rotation: %s of %s is unreadable: %s", PUBLISHED_CRT, self.where, exc)
        bundle = merge_bundles(ca.own_anchors, parse_pem_certificates(self.ca_store.bundle_pem), recorded)
        known = {fingerprint(cert) for cert in bundle}
        new_state = replace(
            enter(state, Phase.REISSUING, now),
            signing_fingerprint=ca.fingerprint,
            signing_not_after=ca.not_after,
            previous_fingerprint=state.signing_fingerprint,
            previous_not_after=state.signing_not_after,
            next_fingerprint=None,
            next_not_after=None,
            origin=ORIGIN_SUPPLIED,
            next_origin=None,
        )
        await self._write(secret, new_state, {c.CA_CRT: certs_to_pem(bundle)})
        lost = "" if state.signing_fingerprint in known else (
            f"; the certificate of {state.signing_fingerprint} was not in the operator's record, so its leaves "
            "are not trusted by peers holding the new bundle until they are re-issued")
        await self._tell(secret, "Warning", "CAReplaced",
                         f"the CA in {self.where} was replaced by {ca.fingerprint} while the operator was not "
                         f"running, so {state.signing_fingerprint} could not keep signing: phase Reissuing, the old "
                         f"CA stays in the trust bundle until none of its certificates is left{lost}. Replace a CA "
                         f"while the operator runs, or put it in {NEXT_TLS_CRT}/{NEXT_TLS_KEY}, for a rotation "
                         "without that window", now)
        return 0.0

    # Under way: advance ----------------------------------------------------------------------------

    async def _advance(self, secret: JSON, state: RotationState, ca: CertificateAuthority, now: datetime) -> float:
        replacement = self.ca_store.replacement
        if replacement is not None:
            await self._tell(secret, "Warning", "CAReplacedDuringRotation",
                             f"tls.crt/tls.key of {self.where} were replaced by {replacement.fingerprint} "
                             f"during a rotation (phase {state.phase}); the rotation goes on and will overwrite them. "
                             f"Put a CA of your own in {NEXT_TLS_CRT}/{NEXT_TLS_KEY} once the phase is Idle", now)
        bundle_pem = self.ca_store.bundle_pem
        previous = state.previous_fingerprint if state.phase is Phase.REISSUING else None
        fleet, laggards = await self._fleet(bundle_pem, previous)
        delay = self.settings.ca_propagation_delay
        decision = next_step(state, fleet, now, delay)
        await self._report_stall(secret, state, decision, fleet, laggards, delay, now)
        if decision.step is Step.WAIT:
            message = f"phase {state.phase}: {decision.message}" + (f" ({', '.join(laggards)})" if laggards else "")
            if message != self._last_wait:
                self._last_wait = message
                logger.info("CA rotation: %s", message)
            if decision.wait > timedelta(0):
                return max(0.5, min(self.poll_interval, decision.wait.total_seconds()))
            return self.poll_interval
        self._last_wait = None
        if decision.step is Step.SETTLED:
            await self._write(secret, replace(state, settled_at=now.replace(microsecond=0)), {})
            await self._tell(secret, "Normal", "RotationSettled",
                             f"phase {state.phase}: {decision.message}; next step after {format_duration(delay)}",
                             now)
            # With no propagation delay the next step is due now (``settled_at`` is truncated to the second).
            return min(self.poll_interval, decision.wait.total_seconds())
        if decision.step is Step.SWITCH:
            return await self._switch(secret, state, ca, now, decision.message)
        if decision.step is Step.RETIRE:
            bundle = certs_to_pem(ca.own_anchors)
            await self._write(secret, enter(state, Phase.RETIRING, now), {c.CA_CRT: bundle})
            await self._tell(secret, "Normal", "RotationRetiring",
                             f"phase Retiring: {decision.message} (CA {state.previous_fingerprint})", now)
            return 0.0
        finished = replace(enter(state, Phase.IDLE, now), previous_fingerprint=None, previous_not_after=None)
        await self._write(secret, finished, {})
        await self._tell(secret, "Normal", "RotationComplete",
                         f"CA rotation complete: {ca.fingerprint} signs (expires {format_time(ca.not_after)}) "
                         "and is the only CA in the trust bundle", now)
        return 0.0

    async def _report_stall(
        self, secret: JSON, state: RotationState, decision: Any, fleet: Fleet, laggards: list[str],
        delay: timedelta, now: datetime,
    ) -> None:
        """Past its bound, a waiting phase says what it waits for: on the CA Secret (an Event) and on
        every identity (the CertificateAuthority condition). It goes on waiting: moving on would break
        trust for the pods it waits for."""
        bound = stall_bound(fleet.objects, self.settings.max_issuance_per_second, delay)
        message: str | None = None
        if stalled(state, decision, bound, now):
            waited = format_duration(now - state.since) if state.since else "?"
            message = (f"CA rotation phase {state.phase} has waited {waited} (more than {format_duration(bound)}): "
                       f"{decision.message}" + (f" ({', '.join(laggards)})" if laggards else ""))
        if message != self.ca_store.stalled:
            self.ca_store.stalled = message
            if message is not None:
                await self._tell(secret, "Warning", "RotationStalled", message, now)
            self.on_change()

    async def _switch(
        self, secret: JSON, state: RotationState, ca: CertificateAuthority, now: datetime, why: str
    ) -> float:
        incoming = self.ca_store.next_ca
        if incoming is None or incoming.fingerprint != state.next_fingerprint:
            problem = self.ca_store.next_error or (
                f"the next CA {state.next_fingerprint} is no longer in {NEXT_TLS_CRT}/{NEXT_TLS_KEY}")
            await self._tell(secret, "Warning", "RotationStuck",
                             f"cannot switch signing: {problem}; restore it, or remove the next CA and its "
                             "annotations to cancel", now)
            return self.poll_interval
        new_state = replace(
            enter(state, Phase.REISSUING, now),
            signing_fingerprint=incoming.fingerprint,
            signing_not_after=incoming.not_after,
            previous_fingerprint=ca.fingerprint,
            previous_not_after=ca.not_after,
            next_fingerprint=None,
            next_not_after=None,
            origin=state.next_origin or ORIGIN_SUPPLIED,
            next_origin=None,
        )
        signing = incoming.secret_data()
        data = {c.TLS_CRT: signing[c.TLS_CRT], c.TLS_KEY: signing[c.TLS_KEY], NEXT_TLS_CRT: None,
                NEXT_TLS_KEY: None}
        await self._write(secret, new_state, data)
        await self._tell(secret, "Normal", "RotationReissuing",
                         f"phase Reissuing: {why}; {incoming.fingerprint} signs now and every certificate of "
                         f"{ca.fingerprint} is renewed (at most {self.settings.max_issuance_per_second:g}/s)", now)
        return 0.0

    async def _fleet(self, bundle_pem: bytes, previous: str | None) -> tuple[Fleet, list[str]]:
        """Count pod Secrets, trust ConfigMaps and the ClusterTrustBundle behind the bundle, and leaves of
        the previous CA.

        Only what the operator wrote counts: the pod Secret of a live opted-in pod and an existing
        identity (under that pod's Secret name, not being deleted), trust ConfigMaps in namespaces with
        an identity. Anything else carrying its labels
        (a tenant may label its own objects so) is reported once and ignored, or any tenant could
        hold every rotation, and the CA's expiry, hostage.
        """
        managed = f"{c.MANAGED_BY_LABEL}={c.MANAGER_NAME}"
        secrets, live_pods = await self._secrets_and_pods(managed)
        identities = {_namespaced_name(body) for body in await self.cluster.list_identities_everywhere()}
        namespaces = {namespace for namespace, _ in identities}
        config_maps = [
            cm for cm in map(ConfigMapView.of, await self.cluster.list_config_maps_everywhere(managed))
            if cm.name == c.TRUST_BUNDLE_CONFIGMAP and cm.meta.namespace in namespaces
        ]
        ours = []
        foreign = []
        for secret in secrets:
            identity = (secret.meta.namespace, str(secret.labels.get(c.IDENTITY_LABEL)))
            pod = live_pods.get(secret.owner_pod_uid or "")
            if pod is not None and identity in identities and _is_pod_secret(secret, identity[1], pod):
                ours.append(secret)
            else:
                foreign.append(f"Secret {secret.meta.namespace}/{secret.name}")
        await self._report_foreign(foreign)
        bundle_text = bundle_pem.decode("ascii")
        current_hash = bundle_hash(bundle_pem)
        stale = 0
        old_leaves = 0
        laggards: dict[str, int] = {}
        for secret in ours:
            if secret.data:
                behind = data_value(secret.data, c.CA_CRT)[0] != bundle_pem
            else:  # metadata only: the hash the operator recorded with the ca.crt it wrote
                behind = secret.annotations.get(c.BUNDLE_HASH_ANNOTATION) != current_hash
            old = previous is not None and secret.annotations.get(c.CA_FINGERPRINT_ANNOTATION) == previous
            stale += behind
            old_leaves += old
            if behind or old:
                where = f"{secret.meta.namespace}/{secret.labels.get(c.IDENTITY_LABEL)}"
                laggards[where] = laggards.get(where, 0) + 1
        for config_map in config_maps:
            if config_map.data.get(c.CA_CRT) != bundle_text:
                stale += 1
                where = f"ConfigMap {config_map.meta.namespace}/{c.TRUST_BUNDLE_CONFIGMAP}"
                laggards[where] = laggards.get(where, 0) + 1
        bundles = 0
        if self.cluster_trust_bundle is not None:
            carries = await self.cluster_trust_bundle.carries(bundle_pem)
            if carries is not None:
                bundles = 1
                if not carries:
                    stale += 1
                    laggards[f"ClusterTrustBundle {self.cluster_trust_bundle.name}"] = 1
        held = HeldByKubelets()
        if previous is not None and self.settings.pod_certificates:
            held = await self._held_by_kubelets(list(live_pods.values()))
            if held.count:
                shown = ", ".join(held.pods[:3]) + (f" and {held.count - 3} more" if held.count > 3 else "")
                laggards[f"pod certificates held by kubelets: {shown}"] = held.count
        named = [f"{where}: {count}" for where, count in sorted(laggards.items(), key=lambda item: -item[1])[:5]]
        fleet = Fleet(objects=len(ours) + len(config_maps) + bundles, stale_bundle=stale,
                      leaves_of_previous=old_leaves, held_by_kubelets=held.count, refresh_by=held.refresh_by)
        return fleet, named

    async def _secrets_and_pods(self, managed: str) -> tuple[list[SecretView], dict[str, PodInfo]]:
        """Every pod Secret (labelled with an identity) and every live opted-in pod by uid: from the watched
        store once it is synced (Secrets metadata-only), else listed from the API with their data."""
        if self.objects is not None and self.objects.synced:
            secrets = [secret for secret in self.objects.all_secrets() if c.IDENTITY_LABEL in secret.labels]
            return secrets, {pod.uid: pod for pod in self.objects.all_pods()}
        listed = await self.cluster.list_secrets_everywhere(f"{managed},{c.IDENTITY_LABEL}")
        pods = await self.cluster.list_pods_everywhere(f"{c.INJECT_LABEL}={c.INJECT_VALUE}")
        return list(map(SecretView.of, listed)), {info.uid: info for info in map(pod_info, pods)}

    async def _held_by_kubelets(self, pods: list[PodInfo]) -> HeldByKubelets:
        """Pod certificates of the previous CA that live pods hold: their kubelet replaces them at their
        beginRefreshAt (the operator cannot sooner), and the old CA stays trusted until then."""
        if self._pcr_version is None:
            for version in podcert.VERSIONS:
                if await self.cluster.serves_resource(podcert.GROUP, version, podcert.RESOURCE):
                    self._pcr_version = version
                    break
            else:
                return HeldByKubelets()
        signer = self.settings.pod_certificate_signer
        listing = await self.cluster.list_pod_certificate_requests(self._pcr_version, signer)
        requests = [item for item in listing.get("items") or [] if isinstance(item, dict)]
        return podcert.held_by_kubelets(requests, pods, signer, self.ca_store.current().cert, self.clock())

    async def _report_foreign(self, foreign: list[str]) -> None:
        new = sorted(set(foreign) - self._foreign_reported)
        if not new:
            return
        self._foreign_reported.update(new)
        if len(self._foreign_reported) > FOREIGN_REPORTED_LIMIT:
            self._foreign_reported = set(new)
        shown = ", ".join(new[:10]) + (f" and {len(new) - 10} more" if len(new) > 10 else "")
        message = (f"ignored by the CA rotation: {shown} carry the operator's labels but belong to no live opted-in "
                   "pod of an existing identity (not written by the operator, or left behind)")
        logger.warning("CA rotation: %s", message)
        secret = await self.cluster.get_secret(self.ca_store.namespace, self.ca_store.secret_name)
        if secret is not None:
            await self._tell(secret, "Warning", "ForeignObjectsIgnored", message, self.clock())

    # Writing -----------------------------------------------------------------------------------------

    async def _write(self, secret: JSON, state: RotationState, data: Mapping[str, bytes | None]) -> None:
        if data.get(c.CA_CRT) is not None:
            # The operator's own record of every bundle it publishes (see ``_adopt``).
            data = {**data, PUBLISHED_CRT: data[c.CA_CRT]}
        patch: dict[str, Any] = {"metadata": {"annotations": rotation_annotations(state)}}
        if data:
            patch["data"] = {key: (b64text(value) if value is not None else None) for key, value in data.items()}
        await self.cluster.update_secret(self.ca_store.namespace, self.ca_store.secret_name, patch,
                                         ObjectMeta.of(secret).resource_version)
        if state.phase is not read_rotation(_annotations(secret)).phase:
            logger.info("CA rotation: phase %s (signing %s)", state.phase, state.signing_fingerprint)
        self.ca_store.invalidate()
        await self.ca_store.ensure_fresh()
        self.on_change()

    async def _tell(self, secret: JSON, type_: str, reason: str, message: str, now: datetime) -> None:
        """Log and post an Event on the CA Secret, once per distinct message."""
        if message == self._last_message:
            return
        self._last_message = message
        (logger.warning if type_ == "Warning" else logger.info)("CA rotation: %s", message)
        try:
            await self.cluster.post_event(secret, "v1", "Secret", type_=type_, reason=reason, message=message,
                                          now=now)
        except KubernetesAPIError as exc:
            logger.warning("could not post event %s: %s", reason, exc)


def _is_pod_secret(secret: SecretView, identity: str, pod: PodInfo) -> bool:
    """Whether ``secret`` is the one the operator writes for ``pod`` of ``identity``: in the pod's
    namespace, under the pod's Secret name, and not being deleted. A tenant can give a Secret of its own
    the labels and an ownerReference to a live pod of its own, and a finalizer keeps it, terminating,
    after the identity's pass deletes it: counted, it would hold a phase for ever."""
    if secret.meta.deleting or secret.meta.namespace != pod.namespace:
        return False
    try:
        return secret.name == secret_name_for_pod(identity, pod)
    except ValueError:
        return False


def _namespaced_name(body: JSON) -> tuple[str, str]:
    meta = ObjectMeta.of(body)
    return meta.namespace, meta.name


def _annotations(secret: JSON) -> dict[str, str]:
    return dict(ObjectMeta.of(secret).annotations)

