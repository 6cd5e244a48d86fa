"""Security policy for names in certificates: SPIFFE IDs and the DNS names an identity may claim.

Pure: no kopf, no kubernetes, no clock, no network (the Public Suffix List is the copy shipped in
the ``publicsuffixlist`` package). Also the home of the name-syntax checks that the spec and the
settings share (DNS-1123 labels and subdomains, SPIFFE trust domains), because this module sits
below both.

DNS policy (DESIGN.md "Policy"): an identity may only name DNS names that resolve inside the
cluster to its own namespace ``<ns>`` (cluster domain ``<cd>``):

- ``<svc>.<ns>.svc`` and ``<svc>.<ns>.svc.<cd>``, where ``<svc>`` is one label or ``*``;
- headless pod names ``<host>.<svc>.<ns>.svc`` and ``<host>.<svc>.<ns>.svc.<cd>``, where
  ``<host>`` is one label or ``*`` (``*.<svc>.<ns>.svc``: every pod behind a headless Service);
- short names: a single label (``payments``) and ``<x>.<ns>`` (``<x>`` a label or ``*``), unless
  the name or any suffix of it is on the Public Suffix List (``shop``, ``dev``, ``google.dev``,
  ``*.dev``: in namespace ``dev`` those are public domains anyone may register) or is a
  special-use name (:data:`SPECIAL_USE_NAMES`: ``localhost``, ``x.local``, ...). The cluster admin
  can turn short names off (``MTLS_ALLOW_SHORT_DNS_NAMES=false``);
- names matching a pattern the cluster admin allows for that namespace (:class:`AdminPattern`).

Why short names stay allowed by default: DESIGN.md's own example names ``payments``, and with the
two refusals above a short name can no longer name anything outside the cluster. What remains is
inherent to short names: they are relative to the client's namespace (``payments`` dialled from
namespace ``web`` means ``payments.web.svc``), so a client that dials a short name trusts every
namespace that may claim it. Clusters whose tenants distrust each other turn them off and use
``<svc>.<ns>.svc``, which only the namespace ``<ns>`` can ever hold.

Names in the cluster's own zones (anything ending in ``.svc`` or under ``<cd>``) are decided by the
first rule alone: no admin pattern can grant one, so no pattern can hand out another namespace's
Service names (the operator's webhook Service among them). Everything else is refused: other
namespaces, ``*.svc``, ``*.<cd>``, ``*``, extra labels (``a.b.c.<ns>.svc``), pod A records
(``1-2-3-4.<ns>.pod.<cd>``). Decisions where DESIGN.md is silent:

- the bare ``<ns>.svc`` and ``<ns>.svc.<cd>`` are refused: they name no Service and no client ever
  dials them, so asking for them is a mistake worth reporting;
- names compare case-insensitively (they are normalised to lower case);
- a trailing dot (``payments.shop.svc.``) is refused rather than stripped: certificates carry
  names without it, and silently rewriting a user's name would hide the mismatch.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from publicsuffixlist import PublicSuffixList

MAX_DNS_NAME_LENGTH = 253
MAX_LABEL_LENGTH = 63
MAX_TRUST_DOMAIN_LENGTH = 255
WILDCARD = "*"

_DNS_LABEL_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
# Kubernetes' own DNS-1123 subdomain rule (labels inside it are not length-limited there).
_DNS_SUBDOMAIN_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_TRUST_DOMAIN_RE = re.compile(r"[a-z0-9._-]+")
_SPIFFE_SEGMENT_RE = re.compile(r"[A-Za-z0-9._-]+")

# Special-use domain names (IANA registry, RFC 6761 and later) and names reserved for private use:
# they never name a Service, and a certificate for one would be honoured wherever that name is
# dialled (``localhost`` on every pod). Refused as single labels and as the end of a short name.
SPECIAL_USE_NAMES: Final = frozenset(
    {
        "localhost",  # RFC 6761
        "invalid",  # RFC 6761
        "test",  # RFC 6761
        "example",  # RFC 6761
        "local",  # RFC 6762, multicast DNS
        "onion",  # RFC 7686
        "home.arpa",  # RFC 8375
        "alt",  # RFC 9476
        "internal",  # ICANN, reserved for private use (2024)
    }
)
# The label under which cluster DNS serves Services (``<svc>.<ns>.svc``).
SERVICE_ZONE = "svc"


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


@functools.lru_cache(maxsize=4096)
def spiffe_id(trust_domain: str, namespace: str, service_account: str) -> str:
    """``spiffe://<td>/ns/<ns>/sa/<sa>``; ``ValueError`` if any part is empty or invalid.

    Cached: a pass asks it twice for each of an identity's pods, which share a few service accounts."""
    validate_trust_domain(trust_domain)
    _validate_path_segment("namespace", namespace)
    _validate_path_segment("service account", service_account)
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


# The package's own copy of the list, read at import (about 0.2 s): at start-up, never as a stall of
# the event loop in the middle of a webhook call. accept_unknown=False: a label the list does not
# know (``corp``, ``mesh``) is not taken for a TLD; only the list's own entries make a name public.
_PUBLIC_SUFFIXES: Final = PublicSuffixList(accept_unknown=False)


def public_suffix(name: str) -> str | None:
    """The longest suffix of ``name`` on the Public Suffix List (ICANN and private sections), or ``None``.

    ``google.dev`` -> ``dev``; ``x.github.io`` -> ``github.io``; ``payments`` -> ``None``.
    """
    return _PUBLIC_SUFFIXES.publicsuffix(name.lower())


def is_public_suffix(name: str) -> bool:
    """Whether ``name`` itself is a public suffix (``com``, ``co.uk``, ``github.io``)."""
    return bool(_PUBLIC_SUFFIXES.is_public(name.lower()))


def special_use_suffix(name: str) -> str | None:
    """The special-use name that ``name`` is or ends in (``localhost``, ``x.local`` -> ``local``), or ``None``."""
    labels = name.lower().split(".")
    for start in range(len(labels)):
        suffix = ".".join(labels[start:])
        if suffix in SPECIAL_USE_NAMES:
            return suffix
    return None


def pod_dns_names(hostname: str, subdomain: str, namespace: str, cluster_domain: str) -> tuple[str, str]:
    """The headless names of a pod with ``spec.hostname`` and ``spec.subdomain`` (a StatefulSet pod).

    ``<hostname>.<subdomain>.<ns>.svc`` and the same under the cluster domain: the names cluster DNS
    gives that one pod behind the headless Service ``<subdomain>``. ``ValueError`` names the field
    when either is not a DNS-1123 label (the API server enforces it; an emulator or an old object
    may not).
    """
    for field, value in (("spec.hostname", hostname), ("spec.subdomain", subdomain)):
        if not is_dns1123_label(value):
            raise ValueError(
                f"{field} {value!r} is not a DNS label (at most 63 lower-case letters, digits and '-', "
                "starting and ending with a letter or digit), so the pod has no headless DNS name"
            )
    name = f"{hostname}.{subdomain}.{namespace}.{SERVICE_ZONE}"
    return name, f"{name}.{cluster_domain}"


# --- admin patterns ----------------------------------------------------------------------------


def validate_dns_pattern(pattern: str) -> None:
    """Raise ``ValueError`` unless ``pattern`` is a well-formed admin DNS pattern.

    A pattern is a DNS name of at least two labels whose labels are literal RFC 1123 labels or
    ``*``; each ``*`` matches exactly one label of a name (``*.example.com`` allows
    ``api.example.com`` and ``*.example.com``, not ``a.b.example.com``). Refused: partial wildcards
    (``api-*``), a wildcard as the right-most label, single labels (those are short names, see the
    module doc), and a pattern whose literal part right of its last ``*`` is a public suffix
    (``*.com``, ``api.*.co.uk``, ``github.io``): it would hand out domains of the whole Internet.
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
    if len(labels) == 1:
        raise ValueError(
            "a DNS pattern needs at least two labels, such as 'api.example.com' "
            "(single labels are short names: MTLS_ALLOW_SHORT_DNS_NAMES governs them)"
        )
    if labels[-1] == WILDCARD:
        raise ValueError("the right-most label must be literal, as in '*.example.com'")
    literal = ".".join(labels[len(labels) - labels[::-1].index(WILDCARD):] if WILDCARD in labels else labels)
    if is_public_suffix(literal):
        raise ValueError(
            f"{literal!r} is a public suffix (Public Suffix List): the pattern would allow domains that "
            "belong to others; name a domain of your own, such as '*.example.com'"
        )


def _could_match(pattern_labels: Sequence[str], name_labels: Sequence[str]) -> bool:
    """Whether some name fits both: same length, and every literal label of one equals the other's."""
    return len(pattern_labels) == len(name_labels) and all(
        WILDCARD in (p, n) or p == n for p, n in zip(pattern_labels, name_labels, strict=True)
    )


def _is_namespace_short_zone(label: str) -> bool:
    """Whether ``<x>.<label>`` can be a namespace's short name: ``label`` is neither public nor special-use."""
    return special_use_suffix(label) is None and public_suffix(label) is None


def _pattern_scope_problem(labels: Sequence[str], namespaces: frozenset[str] | None, cluster_domain: str) -> str | None:
    """Why a pattern, valid in itself, would reach names that belong to a namespace it is not for."""
    cluster = cluster_domain.lower().split(".")
    under_cluster = len(labels) >= len(cluster) and _could_match(labels[-len(cluster):], cluster)
    if labels[-1] == SERVICE_ZONE or under_cluster:
        return (
            f"it could match in-cluster names (*.svc, *.{cluster_domain}), which belong to the namespace they "
            "name, the operator's webhook Service among them; identities get their own namespace's names "
            "without any pattern"
        )
    # '<x>.<y>' is, inside the cluster, the short name of Service <x> in namespace <y> (the resolver's
    # search path tries '<x>.<y>.svc.<cd>' first): only namespace <y> may hold it.
    if len(labels) == 2 and _is_namespace_short_zone(labels[1]) and (namespaces is None or namespaces - {labels[1]}):
        return (
            f"it matches '<x>.{labels[1]}', which inside the cluster is the short name of a Service in "
            f"namespace {labels[1]!r}; scope it to that namespace only ('{labels[1]}:{'.'.join(labels)}') "
            "or use a longer domain"
        )
    return None


@dataclass(frozen=True)
class AdminPattern:
    """A DNS pattern the cluster admin allows, for some namespaces (``None``: every namespace).

    Written ``shop,payments:*.example.com`` (scoped) or ``*.example.com`` (every namespace: only
    for names that no namespace owns alone). Build them with :func:`parse_admin_patterns`, which
    refuses patterns that could reach another namespace's names.
    """

    pattern: str
    namespaces: frozenset[str] | None = None

    def applies_to(self, namespace: str) -> bool:
        return self.namespaces is None or namespace in self.namespaces

    def matches(self, labels: Sequence[str]) -> bool:
        pattern_labels = self.pattern.split(".")
        if len(pattern_labels) != len(labels):
            return False
        # A name's own wildcard label covers every label, so only a pattern wildcard may match it.
        return all(p in (WILDCARD, n) for n, p in zip(labels, pattern_labels, strict=True))

    def __str__(self) -> str:
        if self.namespaces is None:
            return self.pattern
        return f"{','.join(sorted(self.namespaces))}:{self.pattern}"


def parse_admin_patterns(value: str, *, cluster_domain: str) -> tuple[AdminPattern, ...]:
    """Parse ``MTLS_ALLOWED_DNS_PATTERNS``; ``ValueError`` with one line naming the bad entry.

    Entries are separated by ``;``. An entry ``ns1,ns2:pattern1,pattern2`` allows the patterns to
    identities in those namespaces; an entry without ``:`` (the older syntax, ``*.example.com,
    api.corp.internal``) allows them to every namespace and is accepted only when that cannot
    reach a namespace's own names. Patterns are lower-cased; duplicates are merged.
    """
    found: dict[tuple[str, frozenset[str] | None], None] = {}
    for raw_entry in value.split(";"):
        entry = raw_entry.strip()
        if not entry:
            continue
        scope_text, colon, patterns_text = entry.rpartition(":")
        namespaces: frozenset[str] | None = None
        if colon:
            if ":" in scope_text:
                raise ValueError(f"entry {entry!r} has more than one ':'; write 'ns1,ns2:pattern1,pattern2'")
            names = [name.strip() for name in scope_text.split(",") if name.strip()]
            if not names:
                raise ValueError(f"entry {entry!r} names no namespace before ':'")
            for name in names:
                if not is_dns1123_label(name):
                    raise ValueError(f"entry {entry!r}: {name!r} is not a namespace name")
            namespaces = frozenset(names)
        patterns = [text.strip().lower() for text in patterns_text.split(",") if text.strip()]
        if not patterns:
            raise ValueError(f"entry {entry!r} names no pattern")
        for pattern in patterns:
            try:
                validate_dns_pattern(pattern)
            except ValueError as error:
                raise ValueError(f"pattern {pattern!r}: {error}") from None
            problem = _pattern_scope_problem(pattern.split("."), namespaces, cluster_domain)
            if problem is not None:
                where = "every namespace" if namespaces is None else "namespaces " + ",".join(sorted(namespaces))
                raise ValueError(f"pattern {pattern!r} (for {where}): {problem}")
            found[(pattern, namespaces)] = None
    return tuple(AdminPattern(pattern, namespaces) for pattern, namespaces in found)


# --- the DNS policy ----------------------------------------------------------------------------


def _in_cluster_refusal(labels: Sequence[str], namespace: str, cluster: Sequence[str]) -> str | None:
    """For a name in the cluster's zones: why it is not one of the namespace's own names, or ``None``."""
    if labels[-1] == SERVICE_ZONE:
        before = labels[:-1]
    elif len(labels) > len(cluster) and labels[-len(cluster) - 1] == SERVICE_ZONE:
        before = labels[: -len(cluster) - 1]
    else:
        return (
            f"under the cluster domain only Service names (<service>.<namespace>.svc.{'.'.join(cluster)}) "
            "may be named, not pod A records or other cluster names"
        )
    if not before:
        return "it is the cluster's Service domain itself, not a Service name"
    if before[-1] == WILDCARD:
        return "a wildcard cannot stand for the namespace: an identity may only name its own namespace's Services"
    if before[-1] != namespace:
        return f"it names namespace {before[-1]!r}: an identity may only name its own namespace's Services"
    if len(before) == 1:
        return "it names no Service: write <service>." + ".".join(labels)
    if len(before) > 3:
        return "it has too many labels: at most <host>.<service> before the namespace"
    return None


def _short_name_refusal(name: str, allow_short_names: bool) -> str | None:
    if not allow_short_names:
        return (
            "short names (single labels and <service>.<namespace>) are turned off by the cluster admin "
            "(MTLS_ALLOW_SHORT_DNS_NAMES=false); use <service>.<namespace>.svc"
        )
    special = special_use_suffix(name)
    if special is not None:
        return f"{special!r} is a special-use domain name (RFC 6761 and later), never a Service"
    suffix = public_suffix(name)
    if suffix is not None:
        return (
            f"{suffix!r} is a public suffix (Public Suffix List), so {name!r} can name hosts outside the "
            "cluster; use <service>.<namespace>.svc"
        )
    return None


def dns_name_refusal(
    name: str,
    *,
    namespace: str,
    cluster_domain: str,
    allowed_patterns: Sequence[AdminPattern] = (),
    allow_short_names: bool = True,
) -> str | None:
    """Why an identity in ``namespace`` may not put ``name`` in its certificates, or ``None`` (module doc)."""
    problem = dns_name_problem(name)
    if problem is not None:
        return f"it is not a valid DNS name: {problem}"
    labels = name.lower().split(".")
    ns = namespace.lower()
    cluster = cluster_domain.lower().split(".")
    if labels[-1] == SERVICE_ZONE or labels[-len(cluster):] == cluster:
        # The cluster's own zones: only the built-in rule decides, never a pattern.
        return _in_cluster_refusal(labels, ns, cluster)
    # '<x>.<y>' is namespace <y>'s short name inside the cluster: patterns never grant another's.
    foreign_short = len(labels) == 2 and labels[1] != ns and _is_namespace_short_zone(labels[1])
    if not foreign_short and any(p.applies_to(ns) and p.matches(labels) for p in allowed_patterns):
        return None
    if len(labels) == 1 or (len(labels) == 2 and labels[1] == ns):
        return _short_name_refusal(".".join(labels), allow_short_names)
    if foreign_short:
        return f"inside the cluster it is the short name of a Service in namespace {labels[1]!r}"
    return "it is outside the cluster and no admin pattern allows it for this namespace"


def dns_name_allowed(
    name: str,
    *,
    namespace: str,
    cluster_domain: str,
    allowed_patterns: Sequence[AdminPattern] = (),
    allow_short_names: bool = True,
) -> bool:
    """Whether an identity in ``namespace`` may put ``name`` in its certificates (module doc)."""
    return (
        dns_name_refusal(
            name,
            namespace=namespace,
            cluster_domain=cluster_domain,
            allowed_patterns=allowed_patterns,
            allow_short_names=allow_short_names,
        )
        is None
    )


def allowed_dns_summary(
    namespace: str, cluster_domain: str, allowed_patterns: Sequence[AdminPattern], allow_short_names: bool = True
) -> str:
    """What an identity in ``namespace`` may name, for messages."""
    summary = (
        f"allowed are <service>.{namespace}.svc[.{cluster_domain}] and the headless pod names "
        f"<host>.<service>.{namespace}.svc[.{cluster_domain}] (the left-most label may be '*')"
    )
    if allow_short_names:
        summary += f", and short names (<service>, <service>.{namespace}) that are not public or special-use names"
    else:
        summary += " (short names are turned off)"
    patterns = [str(p) for p in allowed_patterns if p.applies_to(namespace)]
    if patterns:
        summary += ", and names matching the admin patterns " + ", ".join(f"{p!r}" for p in patterns)
    return summary


@dataclass(frozen=True)
class DnsRefusal:
    """One DNS name the policy refuses: where it is in the list, and why."""

    index: int
    name: str
    reason: str


def refused_dns_names(
    names: Iterable[str],
    *,
    namespace: str,
    cluster_domain: str,
    allowed_patterns: Sequence[AdminPattern] = (),
    allow_short_names: bool = True,
) -> tuple[DnsRefusal, ...]:
    """Every name of ``names`` the policy refuses, with its index in ``names``."""
    refusals = []
    for index, name in enumerate(names):
        reason = dns_name_refusal(
            name,
            namespace=namespace,
            cluster_domain=cluster_domain,
            allowed_patterns=allowed_patterns,
            allow_short_names=allow_short_names,
        )
        if reason is not None:
            refusals.append(DnsRefusal(index, name, reason))
    return tuple(refusals)
