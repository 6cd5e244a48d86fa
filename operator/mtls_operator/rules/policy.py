"""Security policy for names in certificates: SPIFFE IDs and the DNS names an identity may claim.

Pure: no kopf, no kubernetes, no clock. Also the home of the name-syntax checks that the spec and
the settings share (DNS-1123 labels and subdomains, SPIFFE trust domains), because this module
sits below both.

DNS policy (DESIGN.md "Policy"). An identity in namespace ``<ns>`` may name:

- a single label, such as ``payments`` (except ``svc``, which is never a service name);
- ``<x>.<ns>``, ``<x>.<ns>.svc`` and ``<x>.<ns>.svc.<cluster-domain>``, where ``<x>`` is one
  label or the wildcard ``*``;
- any name matching a pattern the cluster admin allows (see :func:`validate_dns_pattern`).

Everything else is refused: other namespaces, ``*.svc``, ``*.cluster.local``, ``*``, names with
extra labels (``a.b.<ns>.svc``). Decisions where DESIGN.md is silent:

- the bare ``<ns>.svc`` and ``<ns>.svc.<cluster-domain>`` are refused: they name no service and
  no client ever dials them, so asking for them is a mistake worth reporting;
- names compare case-insensitively (they are normalised to lower case);
- a trailing dot (``payments.shop.svc.``) is refused rather than stripped: certificates carry
  names without it, and silently rewriting a user's name would hide the mismatch.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from mtls_operator.errors import PolicyError

MAX_DNS_NAME_LENGTH = 253
MAX_LABEL_LENGTH = 63
MAX_TRUST_DOMAIN_LENGTH = 255
WILDCARD = "*"

_DNS_LABEL_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
# Kubernetes' own DNS-1123 subdomain rule (labels inside it are not length-limited there).
_DNS_SUBDOMAIN_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_TRUST_DOMAIN_RE = re.compile(r"[a-z0-9._-]+")
_SPIFFE_SEGMENT_RE = re.compile(r"[A-Za-z0-9._-]+")

# Single labels that look harmless but name a cluster-wide domain level.
_RESERVED_SINGLE_LABELS = frozenset({"svc"})


def is_dns1123_label(value: str) -> bool:
    """A Kubernetes DNS-1123 label (namespace names): lower-case alphanumerics and '-', ≤ 63."""
    return len(value) <= MAX_LABEL_LENGTH and _DNS_LABEL_RE.fullmatch(value) is not None


def is_dns1123_subdomain(value: str) -> bool:
    """A Kubernetes DNS-1123 subdomain (most object names): labels joined by '.', ≤ 253."""
    return len(value) <= MAX_DNS_NAME_LENGTH and _DNS_SUBDOMAIN_RE.fullmatch(value) is not None


def dns_name_problem(name: str) -> str | None:
    """What is syntactically wrong with a DNS name for a certificate, or ``None`` if nothing.

    RFC 1123 labels (letters, digits, '-'; 1..63 characters; no leading or trailing '-'), at most
    253 characters, and an optional wildcard that must be the entire left-most label (``*.a.b``).
    Case is ignored.
    """
    if not name:
        return "it is empty"
    if len(name) > MAX_DNS_NAME_LENGTH:
        return f"it is longer than {MAX_DNS_NAME_LENGTH} characters"
    if name.endswith("."):
        return "remove the trailing dot"
    labels = name.lower().split(".")
    for index, label in enumerate(labels):
        if label == WILDCARD and index == 0:
            continue
        if WILDCARD in label:
            return "a wildcard '*' is only allowed as the entire left-most label, as in '*.shop.svc'"
        if not label:
            return "it has an empty label ('..' or a leading dot)"
        if len(label) > MAX_LABEL_LENGTH:
            return f"label {label!r} is longer than {MAX_LABEL_LENGTH} characters"
        if _DNS_LABEL_RE.fullmatch(label) is None:
            return f"label {label!r} must consist of letters, digits and '-', and start and end with a letter or digit"
    if labels[0] == WILDCARD and len(labels) == 1:
        return "a wildcard must be followed by a domain, as in '*.shop.svc'"
    return None


def validate_trust_domain(trust_domain: str) -> None:
    """Raise ``ValueError`` unless ``trust_domain`` follows the SPIFFE trust-domain rules."""
    if not trust_domain:
        raise ValueError("trust domain must not be empty")
    if len(trust_domain) > MAX_TRUST_DOMAIN_LENGTH:
        raise ValueError(f"trust domain must be at most {MAX_TRUST_DOMAIN_LENGTH} characters")
    if _TRUST_DOMAIN_RE.fullmatch(trust_domain) is None:
        raise ValueError("trust domain may contain only lower-case letters, digits, dots, dashes and underscores")


def _validate_path_segment(what: str, segment: str) -> None:
    if not segment:
        raise ValueError(f"{what} must not be empty")
    if segment in (".", "..") or _SPIFFE_SEGMENT_RE.fullmatch(segment) is None:
        raise ValueError(
            f"{what} {segment!r} is not a valid SPIFFE path segment "
            "(letters, digits, dots, dashes and underscores; not '.' or '..')"
        )


def spiffe_id(trust_domain: str, namespace: str, service_account: str) -> str:
    """``spiffe://<td>/ns/<ns>/sa/<sa>``; ``ValueError`` if any part is empty or invalid."""
    validate_trust_domain(trust_domain)
    _validate_path_segment("namespace", namespace)
    _validate_path_segment("service account", service_account)
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


def validate_dns_pattern(pattern: str) -> None:
    """Raise ``ValueError`` unless ``pattern`` is a well-formed admin DNS pattern.

    A pattern is a DNS name whose labels are literal RFC 1123 labels or ``*``; each ``*`` matches
    exactly one label of a name (``*.example.com`` allows ``api.example.com`` and
    ``*.example.com``, not ``a.b.example.com``). Partial wildcards (``api-*``) are refused, and so
    is a pattern made only of wildcards, which would allow any name of that many labels.
    """
    if not pattern:
        raise ValueError("a DNS pattern must not be empty")
    if len(pattern) > MAX_DNS_NAME_LENGTH:
        raise ValueError(f"a DNS pattern must be at most {MAX_DNS_NAME_LENGTH} characters")
    if pattern.endswith("."):
        raise ValueError("a DNS pattern must not end with a dot")
    labels = pattern.lower().split(".")
    for label in labels:
        if label == WILDCARD:
            continue
        if WILDCARD in label:
            raise ValueError(f"'*' must be a whole label, not part of {label!r}")
        if len(label) > MAX_LABEL_LENGTH or _DNS_LABEL_RE.fullmatch(label) is None:
            raise ValueError(
                f"label {label!r} must be '*' or 1..63 letters, digits and '-', "
                "starting and ending with a letter or digit"
            )
    if all(label == WILDCARD for label in labels):
        raise ValueError("a DNS pattern must contain at least one literal label, such as '*.example.com'")


def _matches_pattern(labels: Sequence[str], pattern: str) -> bool:
    pattern_labels = pattern.lower().split(".")
    if len(pattern_labels) != len(labels):
        return False
    # A name's own wildcard label covers every label, so only a pattern wildcard may match it.
    return all(p in (WILDCARD, n) for n, p in zip(labels, pattern_labels, strict=True))


def _namespace_suffixes(namespace: str, cluster_domain: str) -> tuple[tuple[str, ...], ...]:
    ns = namespace.lower()
    cluster = tuple(cluster_domain.lower().split("."))
    return ((ns,), (ns, "svc"), (ns, "svc", *cluster))


def dns_name_allowed(name: str, *, namespace: str, cluster_domain: str, allowed_patterns: Sequence[str] = ()) -> bool:
    """Whether an identity in ``namespace`` may put ``name`` in its certificates (module doc)."""
    if dns_name_problem(name) is not None:
        return False
    labels = name.lower().split(".")
    if len(labels) == 1:
        return labels[0] not in _RESERVED_SINGLE_LABELS
    for suffix in _namespace_suffixes(namespace, cluster_domain):
        if len(labels) == len(suffix) + 1 and tuple(labels[1:]) == suffix:
            return True
    return any(_matches_pattern(labels, pattern) for pattern in allowed_patterns)


def _allowed_summary(namespace: str, cluster_domain: str, allowed_patterns: Sequence[str]) -> str:
    summary = (
        f"allowed are single labels (such as 'payments'), <service>.{namespace}, "
        f"<service>.{namespace}.svc and <service>.{namespace}.svc.{cluster_domain}, "
        "where <service> is one label or '*'"
    )
    if allowed_patterns:
        summary += ", and names matching the admin patterns " + ", ".join(
            f"{pattern!r}" for pattern in allowed_patterns
        )
    return summary


def check_dns_names(
    names: Sequence[str],
    *,
    namespace: str,
    cluster_domain: str,
    allowed_patterns: Sequence[str] = (),
    field: str = "spec.dnsNames",
) -> None:
    """Raise ``PolicyError`` for the first name the policy refuses, with ``field[i]`` as its path."""
    for index, name in enumerate(names):
        if dns_name_allowed(
            name, namespace=namespace, cluster_domain=cluster_domain, allowed_patterns=allowed_patterns
        ):
            continue
        problem = dns_name_problem(name)
        if problem is not None:
            message = f"{name!r} is not a valid DNS name: {problem}"
        else:
            message = f"{name!r} is not allowed for an identity in namespace {namespace!r}: " + (
                _allowed_summary(namespace, cluster_domain, allowed_patterns)
            )
        raise PolicyError(f"{field}[{index}]", message)
