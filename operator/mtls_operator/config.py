"""Settings: one frozen dataclass read from ``MTLS_*`` at start-up, validated, failing fast.

Pure: the caller passes the environment (``os.environ``) and the CLI flags (``overrides``, keyed
by the same variable names, ``None`` meaning "flag not given"); a given flag wins over the
environment. A value that is empty or only whitespace counts as unset, so a chart may render
``value: ""`` for "use the default". Every bad value raises :class:`ConfigError` with one line
naming the variable, the value and what is allowed.

``MTLS_METRICS_PORT=0`` disables the metrics endpoint.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from types import MappingProxyType
from typing import Final, TypeVar

from mtls_operator import policy
from mtls_operator.constants import DEFAULT_CA_SECRET
from mtls_operator.errors import ConfigError
from mtls_operator.spec import MAX_DURATION, MIN_DURATION, format_duration, parse_duration

MAX_ISSUANCE_PER_SECOND: Final = 10_000.0
_PORT_RE = re.compile(r"[0-9]{1,5}")


@dataclass(frozen=True)
class Settings:
    trust_domain: str = "cluster.local"
    cluster_domain: str = "cluster.local"
    namespace: str = "mtls-system"
    ca_secret: str = DEFAULT_CA_SECRET
    default_duration: timedelta = timedelta(hours=24)
    max_issuance_per_second: float = 50.0
    allowed_dns_patterns: tuple[str, ...] = ()
    metrics_port: int = 9090

    @property
    def metrics_enabled(self) -> bool:
        return self.metrics_port != 0


ENV_TRUST_DOMAIN: Final = "MTLS_TRUST_DOMAIN"
ENV_CLUSTER_DOMAIN: Final = "MTLS_CLUSTER_DOMAIN"
ENV_NAMESPACE: Final = "MTLS_NAMESPACE"
ENV_CA_SECRET: Final = "MTLS_CA_SECRET"  # noqa: S105 -- a variable name, not a secret
ENV_DEFAULT_DURATION: Final = "MTLS_DEFAULT_DURATION"
ENV_MAX_ISSUANCE_PER_SECOND: Final = "MTLS_MAX_ISSUANCE_PER_SECOND"
ENV_ALLOWED_DNS_PATTERNS: Final = "MTLS_ALLOWED_DNS_PATTERNS"
ENV_METRICS_PORT: Final = "MTLS_METRICS_PORT"
ENV_VARS: Final = (
    ENV_TRUST_DOMAIN,
    ENV_CLUSTER_DOMAIN,
    ENV_NAMESPACE,
    ENV_CA_SECRET,
    ENV_DEFAULT_DURATION,
    ENV_MAX_ISSUANCE_PER_SECOND,
    ENV_ALLOWED_DNS_PATTERNS,
    ENV_METRICS_PORT,
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


def _namespace(value: str) -> str:
    if not policy.is_dns1123_label(value):
        raise ValueError(
            "must be a namespace name: at most 63 lower-case letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return value


def _ca_secret(value: str) -> str:
    if not policy.is_dns1123_subdomain(value):
        raise ValueError(
            "must be a Secret name: at most 253 lower-case letters, digits, '-' and '.', "
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


def _allowed_dns_patterns(value: str) -> tuple[str, ...]:
    patterns: list[str] = []
    for raw in value.split(","):
        pattern = raw.strip().lower()
        if not pattern:
            continue
        try:
            policy.validate_dns_pattern(pattern)
        except ValueError as error:
            raise ValueError(f"pattern {raw.strip()!r}: {error}") from None
        patterns.append(pattern)
    return tuple(dict.fromkeys(patterns))


def _metrics_port(value: str) -> int:
    port = int(value) if _PORT_RE.fullmatch(value) else -1
    if not 0 <= port <= 65535:
        raise ValueError("must be a TCP port 1..65535, or 0 to disable metrics")
    return port


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
    return Settings(
        trust_domain=read(ENV_TRUST_DOMAIN, _trust_domain, defaults.trust_domain),
        cluster_domain=read(ENV_CLUSTER_DOMAIN, _cluster_domain, defaults.cluster_domain),
        namespace=read(ENV_NAMESPACE, _namespace, defaults.namespace),
        ca_secret=read(ENV_CA_SECRET, _ca_secret, defaults.ca_secret),
        default_duration=read(ENV_DEFAULT_DURATION, _default_duration, defaults.default_duration),
        max_issuance_per_second=read(
            ENV_MAX_ISSUANCE_PER_SECOND, _max_issuance_per_second, defaults.max_issuance_per_second
        ),
        allowed_dns_patterns=read(ENV_ALLOWED_DNS_PATTERNS, _allowed_dns_patterns, defaults.allowed_dns_patterns),
        metrics_port=read(ENV_METRICS_PORT, _metrics_port, defaults.metrics_port),
    )
