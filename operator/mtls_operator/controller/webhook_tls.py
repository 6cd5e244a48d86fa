"""TLS for the admission webhooks: each replica's serving certificate, and the configurations' caBundle.

Every replica serves the webhooks (the Service picks any), so each issues its own serving
certificate from the webhook CA (controller/webhook_ca.py, a CA of their own: never the one that
signs pod certificates), in memory only (no Secret to leak or to race over), renews it like any
certificate and re-issues it when the webhook CA changes. The leader alone keeps every webhook's
``clientConfig.caBundle`` in the configurations the Helm chart created equal to the webhook CA
Secret's ``ca.crt``, which holds the old and the new webhook CA during its rotation, so the API
server trusts the serving certificates of every replica all through one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import sys
import tempfile
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Final

from mtls_operator.controller.webhook_ca import WebhookCAStore
from mtls_operator.errors import CAError, ConflictError, KubernetesAPIError, PKIError
from mtls_operator.k8s import Cluster
from mtls_operator.k8s.views import ObjectMeta
from mtls_operator.pki import IssuedLeaf
from mtls_operator.pki.serving import issue_serving_certificate, placeholder_serving_certificate
from mtls_operator.rules.admission import (
    ServingState,
    ca_bundle_text,
    serving_reissue_reason,
    webhooks_with_ca_bundle,
)
from mtls_operator.times import Clock

logger = logging.getLogger(__name__)


WEBHOOK_CONFIGURATION_KINDS: Final = ("mutatingwebhookconfigurations", "validatingwebhookconfigurations")
# A configuration changed between our read and our write (a helm upgrade): read again, this often.
_CONFLICT_RETRIES: Final = 3


class ServingCertificate:
    """The certificate the admission server presents, loaded into the server's ``SSLContext``.

    Until the webhook CA is readable it is a self-signed placeholder: the server can start (kopf needs the
    context then), and every call fails TLS verification, so the webhooks' failurePolicy applies.
    """

    def __init__(self, names: Sequence[str], *, clock: Clock, duration: timedelta) -> None:
        self.names = tuple(names)
        self._clock = clock
        self._duration = duration
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._leaf = placeholder_serving_certificate(self.names, clock())
        self.state = ServingState(self.names, self._leaf.not_before, self._leaf.not_after, None)
        load_key_pair(self.context, self._leaf)

    def pem_pair(self) -> tuple[bytes, bytes]:
        """The certificate chain and key being served (for kopf, which loads them at its start)."""
        return self._leaf.chain_pem, self._leaf.key_pem

    async def refresh(self, ca_store: WebhookCAStore) -> None:
        """Issue a new certificate when there is a reason to (CA now available or changed, renewal due)."""
        await ca_store.ensure_fresh()
        try:
            ca = ca_store.current()
        except CAError as exc:
            logger.debug("webhook serving certificate: no CA yet (%s)", exc)
            return
        now = self._clock()
        reason = serving_reissue_reason(self.state, ca_fingerprint=ca.fingerprint, names=self.names, now=now)
        if reason is None:
            return
        leaf = await asyncio.to_thread(issue_serving_certificate, ca, self.names, self._duration, now)
        # New handshakes use the new certificate; connections open now keep theirs.
        load_key_pair(self.context, leaf)
        self._leaf = leaf
        self.state = ServingState(self.names, leaf.not_before, leaf.not_after, ca.fingerprint)
        logger.info("webhook serving certificate issued (%s): serial %s, CA %s, expires %s", reason,
                    leaf.serial_hex, ca.fingerprint, leaf.not_after.isoformat())

    async def keep_fresh(self, ca_store: WebhookCAStore) -> None:
        """Refresh at every CA refresh interval, and at the renewal time if that comes sooner."""
        while True:
            try:
                await self.refresh(ca_store)
            except (PKIError, KubernetesAPIError) as exc:
                logger.warning("webhook serving certificate not renewed, retrying: %s", exc)
            until_renewal = (self.state.renew_at - self._clock()).total_seconds()
            await asyncio.sleep(max(0.0, min(ca_store.refresh_interval, until_renewal)))


def load_key_pair(context: ssl.SSLContext, leaf: IssuedLeaf) -> None:
    """Load the leaf's chain and key into ``context``; OpenSSL reads them only from a file."""
    with _private_file(leaf.chain_pem + leaf.key_pem) as path:
        context.load_cert_chain(path)


@contextlib.contextmanager
def _private_file(data: bytes) -> Iterator[str]:
    """A path to ``data`` that nobody else can read, gone when the block ends.

    On Linux a memory file (memfd): never on a disk, needs no writable directory (the chart's root
    filesystem is read-only), and disappears with its descriptor. Elsewhere a 0600 temporary file.
    """
    if sys.platform == "linux":
        descriptor = os.memfd_create("mtls-webhook-tls", os.MFD_CLOEXEC)
        try:
            _write_all(descriptor, data)
            yield f"/proc/self/fd/{descriptor}"
        finally:
            os.close(descriptor)
    else:
        descriptor, path = tempfile.mkstemp(prefix="mtls-webhook-", suffix=".pem")
        try:
            _write_all(descriptor, data)
            os.close(descriptor)
            yield path
        finally:
            os.unlink(path)


def _write_all(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view):]


class WebhookCABundle:
    """Keeps ``clientConfig.caBundle`` of every webhook in both configurations equal to the webhook CA
    Secret's ``ca.crt`` (run by the leader, at every step of the webhook CA's upkeep).

    The Helm chart creates the configurations without a caBundle; until they exist there is nothing
    to do (a debug line, another look at the next step).
    """

    def __init__(self, cluster: Cluster, ca_store: WebhookCAStore, configuration: str) -> None:
        self._cluster = cluster
        self._ca_store = ca_store
        self.configuration = configuration

    async def publish(self) -> bool:
        """One pass: write the webhook CA's bundle into each configuration whose caBundle differs.
        Whether every configuration that exists carries it now (a rotation waits for that)."""
        await self._ca_store.ensure_fresh()
        try:
            bundle = ca_bundle_text(self._ca_store.bundle_pem)
        except CAError as exc:
            logger.debug("webhook caBundle: no webhook CA yet (%s)", exc)
            return False
        published = True
        for kind in WEBHOOK_CONFIGURATION_KINDS:
            published &= await self._publish(kind, bundle)
        return published

    async def _publish(self, kind: str, bundle: str) -> bool:
        for attempt in range(1, _CONFLICT_RETRIES + 1):
            found = await self._cluster.get_webhook_configuration(kind, self.configuration)
            if found is None:
                logger.debug("webhook caBundle: %s %s does not exist (yet)", kind, self.configuration)
                return True
            webhooks = webhooks_with_ca_bundle(found, bundle)
            if webhooks is None:
                return True
            version = ObjectMeta.of(found).resource_version
            try:
                await self._cluster.update_webhooks(kind, self.configuration, webhooks, version)
            except ConflictError:
                if attempt == _CONFLICT_RETRIES:
                    raise
                continue
            logger.info("webhook caBundle of %s %s set to the webhook CA's bundle (%d webhook(s))", kind,
                        self.configuration, len(webhooks))
            return True
        return False
