"""Settings: one frozen dataclass read from ``MTLS_*`` at start-up, validated, failing fast.

Pure: the caller passes the environment (``os.environ``) and the CLI flags (``overrides``, keyed
by the same variable names, ``None`` meaning "flag not given"); a given flag wins over the
environment. A value that is empty or only whitespace counts as unset, so a chart may render
``value: ""`` for "use the default". Every bad value raises :class:`ConfigError` with one line
naming the variable, the value and what is allowed.

``MTLS_ALLOWED_DNS_PATTERNS`` is ``ns1,ns2:pattern,pattern;...`` (policy.parse_admin_patterns);
``MTLS_MAX_DURATION`` caps what identities may ask for (at least ``MTLS_DEFAULT_DURATION``).
``MTLS_METRICS_PORT=0`` disables the metrics endpoint, ``MTLS_WEBHOOK_PORT=0`` the admission
webhooks, ``MTLS_HEALTH_PORT=0`` the liveness endpoint; ``MTLS_LEADER_ELECTION=false`` makes this
process issue without holding the Lease (one replica only).

Sharding: ``MTLS_SHARD_NAMESPACE_SELECTOR`` (a label selector over Namespaces, in the API's query
form) makes this operator serve only the namespaces it matches — the API server evaluates it; each
shard is a Deployment with its own ``MTLS_LEASE_NAME``; ``MTLS_CA_ROTATION=false`` on every shard
but one leaves the shared CA Secret's rotation to that one.
"""

from __future__ import annotations

import math
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from types import MappingProxyType
from typing import Final, TypeVar

from mtls_operator.constants import DEFAULT_CA_SECRET, DEFAULT_WEBHOOK_CA_SECRET
from mtls_operator.errors import ConfigError
from mtls_operator.rules import policy
from mtls_operator.rules.podcert import DEFAULT_SIGNER_NAME, signer_name_problem
from mtls_operator.rules.spec import (
    MAX_DURATION,
    MIN_DURATION,
    format_duration,
    label_value_problem,
    parse_duration,
    qualified_name_problem,
)

MAX_ISSUANCE_PER_SECOND: Final = 10_000.0
# MTLS_LOG_FORMAT: text for people, json (one object per line) for log pipelines (observability/logs.py).
LOG_FORMATS: Final = ("text", "json")
_PORT_RE = re.compile(r"[0-9]{1,5}")


@dataclass(frozen=True)
class Settings:
    trust_domain: str = "cluster.local"
    cluster_domain: str = "cluster.local"
    namespace: str = "mtls-system"
    ca_secret: str = DEFAULT_CA_SECRET
    default_duration: timedelta = timedelta(hours=24)
    max_issuance_per_second: float = 50.0
    # DNS policy (policy.py): admin patterns for the namespaces they name, whether short names
    # (single labels, <svc>.<ns>) are allowed, and the longest certificate an identity may ask for.
    allowed_dns_patterns: tuple[policy.AdminPattern, ...] = ()
    allow_short_dns_names: bool = True
    max_duration: timedelta = MAX_DURATION
    metrics_port: int = 9090
    # CA rotation: how long the kubelet gets to put a new trust bundle into every pod's files
    # before signing switches to the new CA; and the lifetime of a CA the operator creates.
    ca_propagation_delay: timedelta = timedelta(minutes=2)
    ca_duration: timedelta = timedelta(hours=8760)
    # Admission webhooks (served by every replica): port, the Service in front of them (the
    # serving certificate's DNS names), the name of both webhook configurations whose caBundle
    # the operator keeps equal to the webhook CA's bundle, and the Secret of that CA (in
    # ``namespace``; created by the operator, apart from the CA that signs pod certificates).
    webhook_port: int = 9443
    webhook_service: str = "mtls-operator-webhook"
    webhook_configuration: str = "mtls-operator"
    webhook_ca_secret: str = DEFAULT_WEBHOOK_CA_SECRET
    # High availability: one replica issues, the holder of this coordination.k8s.io Lease.
    leader_election: bool = True
    lease_name: str = "mtls-operator"
    lease_duration: timedelta = timedelta(seconds=15)
    pod_name: str = ""
    # kopf's liveness endpoint (http://0.0.0.0:PORT/healthz).
    health_port: int = 8080
    # Log lines as text for people, or one JSON object per line for log pipelines (logs.py).
    log_format: str = "text"
    # Sharding: the namespaces this operator serves, a label selector over Namespaces ("" = all), and
    # whether its leader drives the rotations of the shared CAs (exactly one shard must).
    shard_namespace_selector: str = ""
    ca_rotation: bool = True
    # Pod certificates (Kubernetes 1.35+): sign PodCertificateRequests addressed to this signer and
    # publish the trust bundle as its ClusterTrustBundle. Off unless asked for.
    pod_certificates: bool = False
    pod_certificate_signer: str = DEFAULT_SIGNER_NAME

    @property
    def sharded(self) -> bool:
        return bool(self.shard_namespace_selector)

    @property
    def metrics_enabled(self) -> bool:
        return self.metrics_port != 0

    @property
    def webhooks_enabled(self) -> bool:
        return self.webhook_port != 0

    @property
    def holder_identity(self) -> str:
        """Who holds the Lease: the pod name (downward API), else host and process."""
        return self.pod_name or f"{socket.gethostname()}-{os.getpid()}"


ENV_TRUST_DOMAIN: Final = "MTLS_TRUST_DOMAIN"
ENV_CLUSTER_DOMAIN: Final = "MTLS_CLUSTER_DOMAIN"
ENV_NAMESPACE: Final = "MTLS_NAMESPACE"
ENV_CA_SECRET: Final = "MTLS_CA_SECRET"  # noqa: S105 -- a variable name, not a secret
ENV_DEFAULT_DURATION: Final = "MTLS_DEFAULT_DURATION"
ENV_MAX_ISSUANCE_PER_SECOND: Final = "MTLS_MAX_ISSUANCE_PER_SECOND"
ENV_ALLOWED_DNS_PATTERNS: Final = "MTLS_ALLOWED_DNS_PATTERNS"
ENV_METRICS_PORT: Final = "MTLS_METRICS_PORT"
ENV_ALLOW_SHORT_DNS_NAMES: Final = "MTLS_ALLOW_SHORT_DNS_NAMES"
ENV_MAX_DURATION: Final = "MTLS_MAX_DURATION"
ENV_CA_PROPAGATION_DELAY: Final = "MTLS_CA_PROPAGATION_DELAY"
ENV_CA_DURATION: Final = "MTLS_CA_DURATION"
ENV_WEBHOOK_PORT: Final = "MTLS_WEBHOOK_PORT"
ENV_WEBHOOK_SERVICE: Final = "MTLS_WEBHOOK_SERVICE"
ENV_WEBHOOK_CONFIGURATION: Final = "MTLS_WEBHOOK_CONFIGURATION"
ENV_WEBHOOK_CA_SECRET: Final = "MTLS_WEBHOOK_CA_SECRET"  # noqa: S105 -- a variable name, not a secret
ENV_LEADER_ELECTION: Final = "MTLS_LEADER_ELECTION"
ENV_LEASE_NAME: Final = "MTLS_LEASE_NAME"
ENV_LEASE_DURATION: Final = "MTLS_LEASE_DURATION"
ENV_POD_NAME: Final = "MTLS_POD_NAME"
ENV_HEALTH_PORT: Final = "MTLS_HEALTH_PORT"
ENV_LOG_FORMAT: Final = "MTLS_LOG_FORMAT"
ENV_SHARD_NAMESPACE_SELECTOR: Final = "MTLS_SHARD_NAMESPACE_SELECTOR"
ENV_CA_ROTATION: Final = "MTLS_CA_ROTATION"
ENV_POD_CERTIFICATES: Final = "MTLS_POD_CERTIFICATES"
ENV_POD_CERTIFICATE_SIGNER: Final = "MTLS_POD_CERTIFICATE_SIGNER"
ENV_VARS: Final = (
    ENV_TRUST_DOMAIN,
    ENV_CLUSTER_DOMAIN,
    ENV_NAMESPACE,
    ENV_CA_SECRET,
    ENV_DEFAULT_DURATION,
    ENV_MAX_ISSUANCE_PER_SECOND,
    ENV_ALLOWED_DNS_PATTERNS,
    ENV_METRICS_PORT,
    ENV_ALLOW_SHORT_DNS_NAMES,
    ENV_MAX_DURATION,
    ENV_CA_PROPAGATION_DELAY,
    ENV_CA_DURATION,
    ENV_WEBHOOK_PORT,
    ENV_WEBHOOK_SERVICE,
    ENV_WEBHOOK_CONFIGURATION,
    ENV_WEBHOOK_CA_SECRET,
    ENV_LEADER_ELECTION,
    ENV_LEASE_NAME,
    ENV_LEASE_DURATION,
    ENV_POD_NAME,
    ENV_HEALTH_PORT,
    ENV_LOG_FORMAT,
    ENV_SHARD_NAMESPACE_SELECTOR,
    ENV_CA_ROTATION,
    ENV_POD_CERTIFICATES,
    ENV_POD_CERTIFICATE_SIGNER,
)

_T = TypeVar("_T")
_NO_OVERRIDES: Final[Mapping[str, str | None]] = MappingProxyType({})


def _trust_domain(value: str) -> str:
    policy.validate_trust_domain(value)
    return value


def _cluster_domain(value: str) -> str:
    if "*" in value:
        raise ValueError("must be a DNS name such as 'cluster.local', without wildcards")
    problem = policy.dns_name_problem(value)
    if problem is not None or value != value.lower():
        raise ValueError(
            "must be a lower-case DNS name such as 'cluster.local' (the kubelet's clusterDomain)"
            + (f": {problem}" if problem else "")
        )
    return value


# The validators below share a shape (check, else one ValueError saying what a valid value looks
# like) but not a rule: each message names its own syntax, which is what a user needs to read.
def _namespace(value: str) -> str:
    if not policy.is_dns1123_label(value):
        raise ValueError(
            "must be a namespace name: at most 63 lower-case letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return value


def _dns_subdomain_name(value: str) -> str:
    if not policy.is_dns1123_subdomain(value):
        raise ValueError(
            "must be an object name: at most 253 lower-case letters, digits, '-' and '.', "
            "starting and ending with a letter or digit"
        )
    return value


def _default_duration(value: str) -> timedelta:
    duration = parse_duration(value)
    if not MIN_DURATION <= duration <= MAX_DURATION:
        raise ValueError(f"must be between {format_duration(MIN_DURATION)} and {format_duration(MAX_DURATION)}")
    return duration


def _max_issuance_per_second(value: str) -> float:
    try:
        rate = float(value)
    except ValueError:
        raise ValueError(f"must be a number greater than 0 and at most {MAX_ISSUANCE_PER_SECOND:g}") from None
    if not math.isfinite(rate) or not 0 < rate <= MAX_ISSUANCE_PER_SECOND:
        raise ValueError(f"must be greater than 0 and at most {MAX_ISSUANCE_PER_SECOND:g}")
    return rate


def _allowed_dns_patterns(cluster_domain: str) -> Callable[[str], tuple[policy.AdminPattern, ...]]:
    def parse(value: str) -> tuple[policy.AdminPattern, ...]:
        return policy.parse_admin_patterns(value, cluster_domain=cluster_domain)

    return parse


def _port(what: str) -> Callable[[str], int]:
    def parse(value: str) -> int:
        port = int(value) if _PORT_RE.fullmatch(value) else -1
        if not 0 <= port <= 65535:
            raise ValueError(f"must be a TCP port 1..65535, or 0 to disable {what}")
        return port

    return parse


def _bounded_duration(low: timedelta, high: timedelta) -> Callable[[str], timedelta]:
    def parse(value: str) -> timedelta:
        duration = parse_duration(value)
        if not low <= duration <= high:
            raise ValueError(f"must be between {format_duration(low)} and {format_duration(high)}")
        return duration

    return parse


def _service_name(value: str) -> str:
    # Services are DNS-1035 labels: a label that starts with a letter.
    if not policy.is_dns1123_label(value) or not value[0].isalpha():
        raise ValueError(
            "must be a Service name: at most 63 lower-case letters, digits and '-', starting with a letter "
            "and ending with a letter or digit"
        )
    return value


def _boolean(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError("must be true or false")


def _pod_name(value: str) -> str:
    if not policy.is_dns1123_subdomain(value):
        raise ValueError("must be a pod name (set it from metadata.name with the downward API)")
    return value


def _log_format(value: str) -> str:
    lowered = value.lower()
    if lowered not in LOG_FORMATS:
        raise ValueError(f"must be one of {', '.join(LOG_FORMATS)}")
    return lowered


# One requirement of a label selector's query form: key, !key, key=value, key==value, key!=value,
# key in (v1,v2), key notin (v1,v2).
_REQUIREMENT_RE = re.compile(
    r"(?P<bang>!)?\s*(?P<key>[^\s=!(),]+)\s*"
    r"(?:(?P<op>==|!=|=)\s*(?P<value>[^\s=!(),]*)|\s(?P<set>in|notin)\s*\((?P<values>[^()]*)\))?"
)


def _namespace_selector(value: str) -> str:
    """A label selector in the API's query form (``mtls.dev/shard=a``, ``tier in (x,y),!legacy``)."""
    requirements: list[str] = []
    depth, start = 0, 0
    for index, char in enumerate(value + ","):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            requirements.append(value[start:index].strip())
            start = index + 1
    for requirement in requirements:
        match = _REQUIREMENT_RE.fullmatch(requirement)
        if not requirement or match is None or (match["bang"] and (match["op"] or match["set"])):
            raise ValueError(
                f"{requirement!r} is not a label selector requirement: use key=value, key!=value, key, !key, "
                "key in (a,b) or key notin (a,b), separated by commas"
            )
        values = [match["value"]] if match["op"] else [v.strip() for v in (match["values"] or "").split(",")]
        for problem in (qualified_name_problem(match["key"]), *(label_value_problem(v) for v in values if v)):
            if problem is not None:
                raise ValueError(f"{requirement!r}: {problem}")
    return ",".join(requirements)


def _signer_name(value: str) -> str:
    problem = signer_name_problem(value)
    if problem is not None:
        raise ValueError(f"a signer name {problem}")
    return value


def settings_from_env(env: Mapping[str, str], overrides: Mapping[str, str | None] = _NO_OVERRIDES) -> Settings:
    """Read and validate the settings; ``overrides`` (CLI flags) win over ``env``."""
    unknown = sorted(set(overrides) - set(ENV_VARS))
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(ENV_VARS)}")

    def read(name: str, parse: Callable[[str], _T], default: _T) -> _T:
        given = overrides.get(name)
        value = given if given is not None else env.get(name)
        if value is None or not value.strip():
            return default
        try:
            return parse(value.strip())
        except ValueError as error:
            raise ConfigError(f"{name}={value!r} is invalid: {error}") from None

    defaults = Settings()
    cluster_domain = read(ENV_CLUSTER_DOMAIN, _cluster_domain, defaults.cluster_domain)
    default_duration = read(ENV_DEFAULT_DURATION, _default_duration, defaults.default_duration)
    max_duration = read(ENV_MAX_DURATION, _default_duration, defaults.max_duration)
    if default_duration > max_duration:
        raise ConfigError(
            f"{ENV_MAX_DURATION}={format_duration(max_duration)!r} is invalid: it is shorter than "
            f"{ENV_DEFAULT_DURATION} ({format_duration(default_duration)}); the default must be within the maximum"
        )
    settings = Settings(
        trust_domain=read(ENV_TRUST_DOMAIN, _trust_domain, defaults.trust_domain),
        cluster_domain=cluster_domain,
        namespace=read(ENV_NAMESPACE, _namespace, defaults.namespace),
        ca_secret=read(ENV_CA_SECRET, _dns_subdomain_name, defaults.ca_secret),
        default_duration=default_duration,
        max_issuance_per_second=read(
            ENV_MAX_ISSUANCE_PER_SECOND, _max_issuance_per_second, defaults.max_issuance_per_second
        ),
        allowed_dns_patterns=read(
            ENV_ALLOWED_DNS_PATTERNS, _allowed_dns_patterns(cluster_domain), defaults.allowed_dns_patterns
        ),
        allow_short_dns_names=read(ENV_ALLOW_SHORT_DNS_NAMES, _boolean, defaults.allow_short_dns_names),
        max_duration=max_duration,
        metrics_port=read(ENV_METRICS_PORT, _port("metrics"), defaults.metrics_port),
        ca_propagation_delay=read(
            ENV_CA_PROPAGATION_DELAY,
            _bounded_duration(timedelta(0), timedelta(hours=24)),
            defaults.ca_propagation_delay,
        ),
        ca_duration=read(ENV_CA_DURATION, _bounded_duration(timedelta(hours=1), timedelta(hours=87600)),
                         defaults.ca_duration),
        webhook_port=read(ENV_WEBHOOK_PORT, _port("the admission webhooks"), defaults.webhook_port),
        webhook_service=read(ENV_WEBHOOK_SERVICE, _service_name, defaults.webhook_service),
        webhook_configuration=read(ENV_WEBHOOK_CONFIGURATION, _dns_subdomain_name, defaults.webhook_configuration),
        webhook_ca_secret=read(ENV_WEBHOOK_CA_SECRET, _dns_subdomain_name, defaults.webhook_ca_secret),
        leader_election=read(ENV_LEADER_ELECTION, _boolean, defaults.leader_election),
        lease_name=read(ENV_LEASE_NAME, _dns_subdomain_name, defaults.lease_name),
        lease_duration=read(ENV_LEASE_DURATION, _bounded_duration(timedelta(seconds=2), timedelta(minutes=10)),
                            defaults.lease_duration),
        pod_name=read(ENV_POD_NAME, _pod_name, defaults.pod_name),
        health_port=read(ENV_HEALTH_PORT, _port("the health endpoint"), defaults.health_port),
        log_format=read(ENV_LOG_FORMAT, _log_format, defaults.log_format),
        shard_namespace_selector=read(ENV_SHARD_NAMESPACE_SELECTOR, _namespace_selector,
                                      defaults.shard_namespace_selector),
        ca_rotation=read(ENV_CA_ROTATION, _boolean, defaults.ca_rotation),
        pod_certificates=read(ENV_POD_CERTIFICATES, _boolean, defaults.pod_certificates),
        pod_certificate_signer=read(ENV_POD_CERTIFICATE_SIGNER, _signer_name, defaults.pod_certificate_signer),
    )
    if settings.webhook_ca_secret == settings.ca_secret:
        # One Secret for both would put the webhooks' CA into every pod's trust bundle, and the pods' CA
        # into the API server's trust for the webhooks: exactly what two CAs keep apart.
        raise ConfigError(
            f"{ENV_WEBHOOK_CA_SECRET}={settings.webhook_ca_secret!r} is invalid: it must differ from "
            f"{ENV_CA_SECRET}, the CA that signs pod certificates"
        )
    return settings
