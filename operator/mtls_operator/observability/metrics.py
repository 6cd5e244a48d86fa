"""Prometheus metrics (DESIGN.md, "Metrics"): the series, their labels, and the HTTP endpoint.

Names and labels are a contract with dashboards and alerts. Cardinality is bounded by identities,
never by pods: no series carries a pod name. Every :class:`Metrics` owns its own registry (never
prometheus_client's global one), so several operators can run in one process, as the tests do.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Iterable
from datetime import datetime
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from mtls_operator.config import ENV_METRICS_PORT
from mtls_operator.errors import ConfigError
from mtls_operator.rules.renewal import ReissueReason

__all__ = ["POD_STATES", "IssuanceError", "Metrics"]

# The `state` values of mtls_identity_pods.
SERVED = "served"
ISSUED = "issued"
FAILED = "failed"
POD_STATES = (SERVED, ISSUED, FAILED)


class IssuanceError(enum.StrEnum):
    """Why a certificate could not be issued or delivered: the ``reason`` of ``mtls_issuance_errors_total``."""

    # The identity's spec (or a pod's mtls.dev/secret-name annotation) can never work as written.
    INVALID_SPEC = "invalid-spec"
    # There is no usable CA to sign with.
    CA_UNAVAILABLE = "ca-unavailable"
    # Key generation, signing or the chain check of a new certificate failed.
    PKI = "pki"
    # The pod's Secret name is taken by a Secret that is not this identity's, or claimed by two pods.
    SECRET_CONFLICT = "secret-conflict"  # noqa: S105 -- a label value, not a credential
    # A Kubernetes API call failed (or raced: 409) while reading or writing.
    API = "api"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        identity = ["namespace", "identity"]
        self._startup = Gauge(
            "mtls_startup_seconds",
            "When each start-up phase ended, in seconds since the process started: imports, runtime (kopf up), "
            "lists (pods and Secrets), store, first_look (every identity's first pass over the store done).",
            ["phase"], registry=self.registry,
        )
        self._expiration = Gauge(
            "mtls_certificate_expiration_timestamp_seconds",
            "Earliest notAfter among the identity's current certificates (Unix time).",
            identity, registry=self.registry,
        )
        self._renewal = Gauge(
            "mtls_certificate_renewal_timestamp_seconds",
            "When the identity's next certificate renewal is due (Unix time; status.nextRenewalTime).",
            identity, registry=self.registry,
        )
        self._pods = Gauge(
            "mtls_identity_pods",
            "Pods of the identity by state: served (selected and served by it), issued (holding a valid "
            "current certificate), failed (served, but issuing or writing failed in the last pass).",
            [*identity, "state"], registry=self.registry,
        )
        self._issued = Counter(
            "mtls_certificates_issued",
            "Certificates issued and written to their pod's Secret, by why they were issued.",
            ["reason"], registry=self.registry,
        )
        self._errors = Counter(
            "mtls_issuance_errors",
            "Failures to issue or deliver a certificate, by reason.",
            ["reason"], registry=self.registry,
        )
        self._pod_requests = Counter(
            "mtls_pod_certificate_requests",
            "PodCertificateRequests answered by the signer, by the identity serving the pod (empty when none "
            "does), outcome (issued, denied, failed) and the condition's reason.",
            [*identity, "outcome", "reason"], registry=self.registry,
        )
        self._duration = Histogram(
            "mtls_issuance_duration_seconds",
            "Time to issue one certificate: key generation, signing and the chain check.",
            # ECDSA takes milliseconds, RSA-4096 key generation seconds: buckets for both.
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=self.registry,
        )
        self._ca_expiration = Gauge(
            "mtls_ca_expiration_timestamp_seconds",
            "notAfter of the CA that signs now, and of the next one during a rotation (Unix time), by "
            "SHA-256 fingerprint.",
            ["fingerprint"], registry=self.registry,
        )
        self._rotation_phase = Gauge(
            "mtls_ca_rotation_phase",
            "CA rotation phase: 0 Idle, 1 Distributing (new CA joins the bundle), 2 Reissuing (new CA "
            "signs, leaves renewed), 3 Retiring (old CA leaves the bundle).",
            registry=self.registry,
        )
        self._leader = Gauge(
            "mtls_leader",
            "1 on the replica that holds the leader-election Lease and issues, 0 on the others.",
            registry=self.registry,
        )
        # Known label values start at 0, so a rate() or an alert sees the series before the first event.
        for reason in ReissueReason:
            self._issued.labels(reason.value)
        for error in IssuanceError:
            self._errors.labels(error.value)
        # The series of mtls_pod_certificate_requests_total, so an identity's go with it.
        self._pod_request_series: set[tuple[str, str, str, str]] = set()
        self._ca_fingerprint: str | None = None
        self._next_ca_fingerprint: str | None = None
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    # What the reconciler and the CA store report ------------------------------------------------

    def certificate_signed(self, seconds: float) -> None:
        self._duration.observe(seconds)

    def certificate_issued(self, reason: ReissueReason) -> None:
        self._issued.labels(reason.value).inc()

    def pod_certificate_request(self, namespace: str, identity: str, outcome: str, reason: str) -> None:
        """One PodCertificateRequest answered; ``outcome`` is its condition in lower case."""
        self._pod_request_series.add((namespace, identity, outcome, reason))
        self._pod_requests.labels(namespace, identity, outcome, reason).inc()

    def issuance_error(self, reason: IssuanceError, count: int = 1) -> None:
        self._errors.labels(reason.value).inc(count)

    def identity_observed(
        self,
        namespace: str,
        identity: str,
        *,
        served: int,
        issued: int,
        failed: int,
        earliest_not_after: datetime | None,
        next_renewal: datetime | None,
    ) -> None:
        for state, count in ((SERVED, served), (ISSUED, issued), (FAILED, failed)):
            self._pods.labels(namespace, identity, state).set(count)
        _set_or_remove(self._expiration, (namespace, identity), earliest_not_after)
        _set_or_remove(self._renewal, (namespace, identity), next_renewal)

    def identity_removed(self, namespace: str, identity: str) -> None:
        """Drop every series of a deleted identity, so it leaves nothing stale behind."""
        for state in POD_STATES:
            self._pods.remove(namespace, identity, state)
        self._expiration.remove(namespace, identity)
        self._renewal.remove(namespace, identity)
        for labels in [labels for labels in self._pod_request_series if labels[:2] == (namespace, identity)]:
            self._pod_requests.remove(*labels)
            self._pod_request_series.discard(labels)

    def ca_loaded(self, fingerprint: str, not_after: datetime) -> None:
        """Only the CA that signs now has a series (the last one loaded, while none is usable)."""
        if self._ca_fingerprint is not None and self._ca_fingerprint != fingerprint:
            self._ca_expiration.remove(self._ca_fingerprint)
        self._ca_fingerprint = fingerprint
        self._ca_expiration.labels(fingerprint).set(not_after.timestamp())

    def ca_rotation(self, phase: int, next_fingerprint: str | None, next_not_after: datetime | None) -> None:
        """The rotation phase, and the incoming CA's expiry while it is in the bundle."""
        self._rotation_phase.set(phase)
        previous = self._next_ca_fingerprint
        if previous is not None and previous not in (next_fingerprint, self._ca_fingerprint):
            self._ca_expiration.remove(previous)
        self._next_ca_fingerprint = next_fingerprint
        if next_fingerprint is not None and next_not_after is not None:
            self._ca_expiration.labels(next_fingerprint).set(next_not_after.timestamp())

    def leadership(self, leading: bool) -> None:
        self._leader.set(1 if leading else 0)

    def startup_phase(self, phase: str, seconds: float) -> None:
        self._startup.labels(phase).set(round(seconds, 3))

    # The endpoint ---------------------------------------------------------------------------------

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:  # noqa: S104 -- Prometheus scrapes the pod IP
        """Serve ``/metrics`` on ``addr:port`` from a daemon thread; ``ConfigError`` if it cannot listen."""
        if self._server is not None:
            raise RuntimeError("the metrics endpoint is already being served")
        try:
            self._server, self._thread = start_http_server(port, addr=addr, registry=self.registry)
        except OSError as exc:
            raise ConfigError(
                f"{ENV_METRICS_PORT}={port}: cannot serve metrics on {addr}:{port}: {exc.strerror or exc} "
                "(choose another port, or 0 to disable metrics)"
            ) from None

    @property
    def port(self) -> int | None:
        """The port being served (useful when ``serve(0)`` picked one), or None."""
        return None if self._server is None else int(self._server.server_address[1])

    def close(self) -> None:
        """Stop serving (blocks up to half a second, the server's poll interval)."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join()


def _set_or_remove(gauge: Gauge, labels: Iterable[str], moment: datetime | None) -> None:
    if moment is None:
        gauge.remove(*labels)
    else:
        gauge.labels(*labels).set(moment.timestamp())
