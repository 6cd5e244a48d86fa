"""Parse and validate an MTLSIdentity spec into a typed, frozen :class:`IdentitySpec`.

Pure: no kopf, no kubernetes, no clock. Every refusal is a :class:`SpecError` whose ``field`` is
the exact path of the offending value (``spec.dnsNames[2]``, ``spec.secretTemplate.labels[x]``)
and whose message says what is wrong and what is allowed; wrong types never surface as
``TypeError`` or ``KeyError``.

An explicit ``null`` is treated like an absent field, as the API server does for fields that are
not nullable. Map keys in paths use Kubernetes' ``field[key]`` notation.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from fractions import Fraction
from types import MappingProxyType
from typing import Any, Final

from mtls_operator.constants import IDENTITY_LABEL, MANAGED_BY_LABEL
from mtls_operator.errors import PolicyError, SpecError
from mtls_operator.models import KEY_SIZES, Delivery, KeyAlgorithm, KeySpec, Usage
from mtls_operator.pki.keystore import Pkcs12Profile
from mtls_operator.rules import policy

# --- durations -------------------------------------------------------------------------------

# Go-style durations restricted to hours, minutes and seconds, each at most once and in that order
# ("24h", "1h30m", "90m", "1.5h"). The CRD carries the same pattern (tests keep them in step);
# Kubernetes evaluates CRD patterns with RE2, hence no look-aheads and explicit anchors.
# At most 6 fractional digits: every duration is then a whole number of microseconds, so this
# parser and Kubernetes (nanoseconds) agree exactly on every bound.
DURATION_PATTERN: Final = r"^([0-9]+(\.[0-9]{1,6})?h)?([0-9]+(\.[0-9]{1,6})?m)?([0-9]+(\.[0-9]{1,6})?s)?$"
MAX_DURATION_TEXT_LENGTH: Final = 32
_DURATION_RE = re.compile(
    r"(?:(?P<h>[0-9]+(?:\.[0-9]{1,6})?)h)?(?:(?P<m>[0-9]+(?:\.[0-9]{1,6})?)m)?(?:(?P<s>[0-9]+(?:\.[0-9]{1,6})?)s)?"
)
_MICROSECONDS_PER_UNIT: Final = {"h": 3_600_000_000, "m": 60_000_000, "s": 1_000_000}
_DURATION_HINT: Final = (
    "use a Go-style duration of hours, minutes and seconds in that order, "
    "such as '24h', '1h30m', '90m' or '1.5h' (no days, no sign)"
)

MIN_DURATION: Final = timedelta(hours=1)
MAX_DURATION: Final = timedelta(hours=8760)
MIN_RENEW_BEFORE: Final = timedelta(minutes=1)
MAX_DNS_NAMES: Final = 100


def parse_duration(text: str) -> timedelta:
    """Parse a Go-style duration (``24h``, ``1h30m``, ``1.5h``); ``ValueError`` says what is allowed.

    Zero (``0h``) parses; callers enforce their own bounds. At most 6 fractional digits per unit,
    so the value is exact in microseconds.
    """
    if not isinstance(text, str):
        raise ValueError(f"a duration must be a string such as '24h', not {type(text).__name__}")
    if not text:
        raise ValueError(f"empty duration: {_DURATION_HINT}")
    if len(text) > MAX_DURATION_TEXT_LENGTH:
        raise ValueError(f"duration is longer than {MAX_DURATION_TEXT_LENGTH} characters: {_DURATION_HINT}")
    match = _DURATION_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"invalid duration {text!r}: {_DURATION_HINT}")
    microseconds = sum(
        (Fraction(match[unit]) * factor for unit, factor in _MICROSECONDS_PER_UNIT.items() if match[unit]),
        start=Fraction(0),
    )
    try:
        return timedelta(microseconds=int(microseconds))
    except OverflowError:
        raise ValueError(f"duration {text!r} is out of range") from None


def format_duration(td: timedelta) -> str:
    """``24h``, ``1h30m``, ``7h59m12s``, ``0s``: whole seconds (truncated), parseable back."""
    if td < timedelta(0):
        return "-" + format_duration(-td)
    seconds = td // timedelta(seconds=1)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    text = "".join(f"{value}{unit}" for value, unit in ((hours, "h"), (minutes, "m"), (seconds, "s")) if value)
    return text or "0s"


def default_renew_before(duration: timedelta) -> timedelta:
    """A third of ``duration``, truncated to whole seconds (cert-manager's default)."""
    return timedelta(seconds=(duration // 3) // timedelta(seconds=1))


# --- label selectors ---------------------------------------------------------------------------

SELECTOR_OPERATORS: Final = ("In", "NotIn", "Exists", "DoesNotExist")
_OPERATORS_WITH_VALUES: Final = frozenset({"In", "NotIn"})
_QUALIFIED_NAME_RE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_LABEL_VALUE_RE = _QUALIFIED_NAME_RE


def qualified_name_problem(key: str) -> str | None:
    """What is wrong with a label or annotation key (``[prefix/]name``), or ``None``."""
    prefix, slash, name = key.rpartition("/")
    if slash and not prefix:
        return "the prefix before '/' must not be empty"
    if prefix and not policy.is_dns1123_subdomain(prefix):
        return f"the prefix {prefix!r} must be a lower-case DNS subdomain such as 'example.com'"
    if not name:
        return "the name part must not be empty"
    if len(name) > policy.MAX_LABEL_LENGTH or _QUALIFIED_NAME_RE.fullmatch(name) is None:
        return (
            "the name part must be 1..63 characters of letters, digits, '-', '_' and '.', "
            "starting and ending with a letter or digit (optionally prefixed by a DNS subdomain and '/')"
        )
    return None


def label_value_problem(value: str) -> str | None:
    """What is wrong with a label value (empty, or ≤ 63 of ``[A-Za-z0-9._-]``), or ``None``."""
    if not value:
        return None
    if len(value) > policy.MAX_LABEL_LENGTH or _LABEL_VALUE_RE.fullmatch(value) is None:
        return (
            "a label value must be empty or 1..63 characters of letters, digits, '-', '_' and '.', "
            "starting and ending with a letter or digit"
        )
    return None


@dataclass(frozen=True)
class SelectorRequirement:
    """One ``matchExpressions`` entry; ``values`` sorted and deduplicated."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        if self.operator == "NotIn":
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        raise ValueError(f"unknown selector operator {self.operator!r}")

    def to_query(self) -> str:
        if self.operator == "In":
            return f"{self.key} in ({','.join(self.values)})"
        if self.operator == "NotIn":
            return f"{self.key} notin ({','.join(self.values)})"
        if self.operator == "Exists":
            return self.key
        if self.operator == "DoesNotExist":
            return f"!{self.key}"
        raise ValueError(f"unknown selector operator {self.operator!r}")


@dataclass(frozen=True)
class LabelSelector:
    """A Kubernetes LabelSelector; ``match_labels`` sorted by key, so equal selectors compare equal."""

    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[SelectorRequirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        # A loop over the labels, not all() over a generator: asked for every pod of an identity at every pass.
        for key, value in self.match_labels:
            if labels.get(key) != value:
                return False
        return not self.match_expressions or all(requirement.matches(labels) for requirement in self.match_expressions)

    def to_query(self) -> str:
        """The ``labelSelector`` query form: ``app=payments,tier in (a,b),!x``."""
        parts = [f"{key}={value}" for key, value in self.match_labels]
        parts.extend(requirement.to_query() for requirement in self.match_expressions)
        return ",".join(parts)


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a map"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def _path_part(key: object) -> str:
    """A map key or field name as it appears in a field path, kept to one printable line."""
    text = str(key)
    return text if text.isprintable() else repr(text)


def _refuse_unknown_fields(raw: Mapping[Any, Any], allowed: Sequence[str], path: str) -> None:
    for key in raw:
        if key not in allowed:
            raise SpecError(f"{path}.{_path_part(key)}", f"unknown field; allowed fields: {', '.join(allowed)}")


def _require_mapping(value: object, path: str, what: str) -> Mapping[Any, Any]:
    if not isinstance(value, Mapping):
        raise SpecError(path, f"must be {what}, not {_type_name(value)}")
    return value


def _require_list(value: object, path: str, what: str) -> list[Any] | tuple[Any, ...]:
    if not isinstance(value, list | tuple):
        raise SpecError(path, f"must be {what}, not {_type_name(value)}")
    return value


def _require_string(value: object, path: str, what: str) -> str:
    if not isinstance(value, str):
        raise SpecError(path, f"must be {what}, not {_type_name(value)}")
    return value


def _parse_string_map(raw: object, path: str, *, label_values: bool) -> dict[str, str]:
    """A map of label/annotation keys to string values; reserved keys are the caller's concern."""
    if raw is None:
        return {}
    mapping = _require_mapping(raw, path, "a map of keys to string values")
    result: dict[str, str] = {}
    for key, value in mapping.items():
        key_path = f"{path}[{_path_part(key)}]"
        if not isinstance(key, str):
            raise SpecError(key_path, f"keys must be strings, not {_type_name(key)}")
        problem = qualified_name_problem(key)
        if problem is not None:
            raise SpecError(key_path, f"invalid key {key!r}: {problem}")
        if not isinstance(value, str):
            raise SpecError(key_path, f"value must be a string (quote it), not {_type_name(value)}")
        if label_values:
            problem = label_value_problem(value)
            if problem is not None:
                raise SpecError(key_path, f"invalid value {value!r}: {problem}")
        result[key] = value
    return result


def _parse_requirement(raw: object, path: str) -> SelectorRequirement:
    item = _require_mapping(raw, path, "an object with key, operator and values")
    _refuse_unknown_fields(item, ("key", "operator", "values"), path)
    key = item.get("key")
    if key is None:
        raise SpecError(f"{path}.key", "required: the label key to test")
    key = _require_string(key, f"{path}.key", "a label key string")
    problem = qualified_name_problem(key)
    if problem is not None:
        raise SpecError(f"{path}.key", f"invalid label key {key!r}: {problem}")
    operator = item.get("operator")
    if operator is None:
        raise SpecError(f"{path}.operator", f"required: one of {', '.join(SELECTOR_OPERATORS)}")
    operator = _require_string(operator, f"{path}.operator", "a string")
    if operator not in SELECTOR_OPERATORS:
        raise SpecError(f"{path}.operator", f"unknown operator {operator!r}; allowed: {', '.join(SELECTOR_OPERATORS)}")
    raw_values = item.get("values")
    values: list[str] = []
    if raw_values is not None:
        for index, value in enumerate(_require_list(raw_values, f"{path}.values", "a list of strings")):
            value_path = f"{path}.values[{index}]"
            value = _require_string(value, value_path, "a string (quote it)")
            problem = label_value_problem(value)
            if problem is not None:
                raise SpecError(value_path, f"invalid value {value!r}: {problem}")
            values.append(value)
    if operator in _OPERATORS_WITH_VALUES and not values:
        raise SpecError(f"{path}.values", f"must list at least one value for operator {operator}")
    if operator not in _OPERATORS_WITH_VALUES and values:
        raise SpecError(f"{path}.values", f"must be empty for operator {operator}")
    return SelectorRequirement(key=key, operator=operator, values=tuple(sorted(set(values))))


def parse_label_selector(raw: Any, field: str = "spec.selector") -> LabelSelector:
    """Parse a LabelSelector; an empty one (select everything) is refused."""
    selector = _require_mapping(raw, field, "a label selector with matchLabels and/or matchExpressions")
    _refuse_unknown_fields(selector, ("matchLabels", "matchExpressions"), field)
    match_labels = _parse_string_map(selector.get("matchLabels"), f"{field}.matchLabels", label_values=True)
    requirements: list[SelectorRequirement] = []
    raw_expressions = selector.get("matchExpressions")
    if raw_expressions is not None:
        expressions = _require_list(raw_expressions, f"{field}.matchExpressions", "a list of requirements")
        requirements.extend(
            _parse_requirement(item, f"{field}.matchExpressions[{index}]") for index, item in enumerate(expressions)
        )
    if not match_labels and not requirements:
        raise SpecError(
            field,
            "must name at least one label in matchLabels or one expression in matchExpressions: "
            "an empty selector would select every pod in the namespace, which is refused",
        )
    return LabelSelector(match_labels=tuple(sorted(match_labels.items())), match_expressions=tuple(requirements))


# --- the identity spec -------------------------------------------------------------------------

SPEC_FIELDS: Final = (
    "selector",
    "serviceAccountName",
    "dnsNames",
    "usages",
    "privateKey",
    "duration",
    "renewBefore",
    "secretTemplate",
    "keystores",
    "delivery",
)
_SPEC_HASH_VERSION: Final = 1
_RESERVED_KEY_PREFIX: Final = "mtls.dev"


def _empty_map() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True)
class Pkcs12Keystore:
    """``spec.keystores.pkcs12`` with ``create: true``: where the password is, and the profile."""

    password_secret_name: str
    password_secret_key: str
    profile: Pkcs12Profile = Pkcs12Profile.MODERN_2023


@dataclass(frozen=True)
class IdentitySpec:
    """A validated MTLSIdentity spec. The maps are read-only and left out of the hash."""

    selector: LabelSelector
    service_account_name: str | None = None
    dns_names: tuple[str, ...] = ()
    usages: frozenset[Usage] = frozenset(Usage)
    private_key: KeySpec = field(default_factory=KeySpec)
    duration: timedelta = timedelta(hours=24)
    renew_before: timedelta = timedelta(hours=8)
    secret_labels: Mapping[str, str] = field(default_factory=_empty_map, hash=False)
    secret_annotations: Mapping[str, str] = field(default_factory=_empty_map, hash=False)
    # Not in the certificate hash: keystores are re-written from the Secret's key, never re-issued.
    pkcs12: Pkcs12Keystore | None = None
    # Not in the certificate hash either: it decides who holds the key, not what the certificate says.
    delivery: Delivery = Delivery.SECRET

    def __post_init__(self) -> None:
        if not timedelta(0) < self.renew_before < self.duration:
            raise ValueError(
                f"renew_before ({format_duration(self.renew_before)}) must be positive and shorter "
                f"than duration ({format_duration(self.duration)})"
            )

    def selects(self, labels: Mapping[str, str], service_account: str | None) -> bool:
        """Whether a pod with these labels, running as ``service_account``, is served."""
        if self.service_account_name is not None and service_account != self.service_account_name:
            return False
        return self.selector.matches(labels)

    def certificate_hash(self) -> str:
        """Short stable hash of everything that shapes the certificate (not selector/template)."""
        return _certificate_hash(self.dns_names, self.usages, self.private_key, self.duration, self.renew_before)


# Asked for every certificate issued, of a handful of specs: each worked out once.
@functools.lru_cache(maxsize=1024)
def _certificate_hash(dns_names: tuple[str, ...], usages: frozenset[Usage], private_key: KeySpec, duration: timedelta,
                      renew_before: timedelta) -> str:
    payload = {
        "version": _SPEC_HASH_VERSION,
        "dnsNames": sorted(dns_names),
        "usages": sorted(usage.value for usage in usages),
        "privateKey": {"algorithm": private_key.algorithm.value, "size": private_key.size},
        "durationMicroseconds": duration // timedelta(microseconds=1),
        "renewBeforeMicroseconds": renew_before // timedelta(microseconds=1),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _parse_service_account(raw: object) -> str | None:
    path = "spec.serviceAccountName"
    if raw is None:
        return None
    name = _require_string(raw, path, "a service account name")
    if not policy.is_dns1123_subdomain(name):
        raise SpecError(
            path,
            f"{name!r} is not a valid service account name: lower-case letters, digits, '-' and '.', "
            "starting and ending with a letter or digit, at most 253 characters",
        )
    return name


def _parse_dns_names(raw: object) -> list[str]:
    """Syntax only, lower-cased, in the user's order (indices stay the user's); policy comes later."""
    path = "spec.dnsNames"
    if raw is None:
        return []
    items = _require_list(raw, path, "a list of DNS names")
    if len(items) > MAX_DNS_NAMES:
        raise SpecError(path, f"has {len(items)} entries; at most {MAX_DNS_NAMES} DNS names are allowed")
    names: list[str] = []
    for index, item in enumerate(items):
        item_path = f"{path}[{index}]"
        name = _require_string(item, item_path, "a DNS name string")
        problem = policy.dns_name_problem(name)
        if problem is not None:
            raise SpecError(item_path, f"{name!r} is not a valid DNS name: {problem}")
        names.append(name.lower())
    return names


def _parse_usages(raw: object) -> frozenset[Usage]:
    path = "spec.usages"
    allowed = ", ".join(usage.value for usage in Usage)
    if raw is None:
        return frozenset(Usage)
    items = _require_list(raw, path, f"a list of usages ({allowed})")
    if not items:
        raise SpecError(path, f"must list at least one usage; allowed: {allowed}")
    usages: list[Usage] = []
    for index, item in enumerate(items):
        item_path = f"{path}[{index}]"
        text = _require_string(item, item_path, f"one of {allowed}")
        try:
            usage = Usage(text)
        except ValueError:
            raise SpecError(item_path, f"unknown usage {text!r}; allowed: {allowed}") from None
        if usage in usages:
            raise SpecError(item_path, f"duplicate usage {text!r}")
        usages.append(usage)
    return frozenset(usages)


def _describe_sizes(sizes: Sequence[int]) -> str:
    words = [str(size) for size in sizes]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def _parse_private_key(raw: object) -> KeySpec:
    path = "spec.privateKey"
    if raw is None:
        return KeySpec()
    key = _require_mapping(raw, path, "an object with algorithm and size")
    _refuse_unknown_fields(key, ("algorithm", "size"), path)
    allowed = ", ".join(algorithm.value for algorithm in KeyAlgorithm)
    algorithm = KeyAlgorithm.ECDSA
    raw_algorithm = key.get("algorithm")
    if raw_algorithm is not None:
        text = _require_string(raw_algorithm, f"{path}.algorithm", f"one of {allowed}")
        try:
            algorithm = KeyAlgorithm(text)
        except ValueError:
            raise SpecError(
                f"{path}.algorithm", f"unknown algorithm {text!r}; allowed (case-sensitive): {allowed}"
            ) from None
    sizes = KEY_SIZES[algorithm]
    raw_size = key.get("size")
    if raw_size is None:
        return KeySpec(algorithm=algorithm, size=sizes[0] if sizes else None)
    if not sizes:
        raise SpecError(f"{path}.size", f"{algorithm} keys have no size; remove spec.privateKey.size")
    if isinstance(raw_size, bool) or not isinstance(raw_size, int):
        raise SpecError(f"{path}.size", f"must be an integer; {algorithm} supports {_describe_sizes(sizes)}")
    if raw_size not in sizes:
        raise SpecError(
            f"{path}.size",
            f"{algorithm} does not support size {raw_size}; {algorithm} supports {_describe_sizes(sizes)}",
        )
    return KeySpec(algorithm=algorithm, size=raw_size)


# The key types the kubelet generates for a podCertificate projected volume (core/v1
# PodCertificateProjection.keyType), by the identity's key: RSA 2048 has none.
POD_CERTIFICATE_KEY_TYPES: Final = MappingProxyType({
    KeySpec(KeyAlgorithm.ECDSA, 256): "ECDSAP256",
    KeySpec(KeyAlgorithm.ECDSA, 384): "ECDSAP384",
    KeySpec(KeyAlgorithm.ED25519, None): "ED25519",
    KeySpec(KeyAlgorithm.RSA, 3072): "RSA3072",
    KeySpec(KeyAlgorithm.RSA, 4096): "RSA4096",
})


def _parse_delivery(raw: object, private_key: KeySpec, *, has_keystores: bool) -> Delivery:
    path = "spec.delivery"
    allowed = ", ".join(delivery.value for delivery in Delivery)
    if raw is None:
        return Delivery.SECRET
    text = _require_string(raw, path, f"one of {allowed}")
    try:
        delivery = Delivery(text)
    except ValueError:
        raise SpecError(path, f"unknown delivery {text!r}; allowed (case-sensitive): {allowed}") from None
    if delivery is Delivery.POD_CERTIFICATE and has_keystores:
        raise SpecError(
            "spec.keystores",
            "keystores are written into each pod's Secret, and with delivery: PodCertificate there is none "
            "(the kubelet holds the key); remove spec.keystores, or use delivery: Secret",
        )
    if delivery is Delivery.POD_CERTIFICATE and private_key not in POD_CERTIFICATE_KEY_TYPES:
        supported = ", ".join(str(key) for key in POD_CERTIFICATE_KEY_TYPES)
        raise SpecError(
            "spec.privateKey",
            f"{private_key} keys cannot be delivered as PodCertificate: the kubelet generates only "
            f"{', '.join(POD_CERTIFICATE_KEY_TYPES.values())}; choose one of {supported} (for example "
            "privateKey: {algorithm: RSA, size: 3072}), or delivery: Secret",
        )
    return delivery


def _parse_spec_duration(raw: object, path: str) -> timedelta:
    text = _require_string(raw, path, "a duration string such as '24h'")
    try:
        return parse_duration(text)
    except ValueError as error:
        raise SpecError(path, str(error)) from None


def _parse_durations(raw_duration: object, raw_renew_before: object, default: timedelta) -> tuple[timedelta, timedelta]:
    bounds = f"{format_duration(MIN_DURATION)}..{format_duration(MAX_DURATION)}"
    duration = default
    if raw_duration is not None:
        duration = _parse_spec_duration(raw_duration, "spec.duration")
        if not MIN_DURATION <= duration <= MAX_DURATION:
            raise SpecError("spec.duration", f"{raw_duration!r} is out of range; allowed: {bounds}")
    if raw_renew_before is None:
        return duration, default_renew_before(duration)
    renew_before = _parse_spec_duration(raw_renew_before, "spec.renewBefore")
    if renew_before < MIN_RENEW_BEFORE:
        raise SpecError(
            "spec.renewBefore",
            f"{raw_renew_before!r} is too short; it must be at least {format_duration(MIN_RENEW_BEFORE)} "
            f"and shorter than the duration ({format_duration(duration)})",
        )
    if renew_before >= duration:
        raise SpecError(
            "spec.renewBefore",
            f"{raw_renew_before!r} must be shorter than the duration ({format_duration(duration)}); "
            f"omit it for the default of a third ({format_duration(default_renew_before(duration))})",
        )
    return duration, renew_before


def is_reserved_key(key: str) -> bool:
    """Label/annotation keys the operator writes itself: managed-by and everything under mtls.dev."""
    prefix = key.rpartition("/")[0].lower()
    return key == MANAGED_BY_LABEL or prefix == _RESERVED_KEY_PREFIX or prefix.endswith("." + _RESERVED_KEY_PREFIX)


def _parse_secret_template(raw: object) -> tuple[Mapping[str, str], Mapping[str, str]]:
    path = "spec.secretTemplate"
    if raw is None:
        return _empty_map(), _empty_map()
    template = _require_mapping(raw, path, "an object with labels and annotations")
    _refuse_unknown_fields(template, ("labels", "annotations"), path)
    labels = _parse_string_map(template.get("labels"), f"{path}.labels", label_values=True)
    annotations = _parse_string_map(template.get("annotations"), f"{path}.annotations", label_values=False)
    for kind, mapping in (("labels", labels), ("annotations", annotations)):
        for key in mapping:
            if is_reserved_key(key):
                raise SpecError(
                    f"{path}.{kind}[{_path_part(key)}]",
                    f"{key!r} is reserved for the operator ({MANAGED_BY_LABEL} and every key under "
                    f"{_RESERVED_KEY_PREFIX}/); choose another key",
                )
    return MappingProxyType(labels), MappingProxyType(annotations)


# How many refused DNS names a policy message lists by name (the rest are counted).
MAX_LISTED_REFUSALS: Final = 5


class PolicyRefusal(PolicyError):
    """A valid spec that asks for more than the cluster's policy allows.

    ``allowed`` is the spec as the policy allows it: the refused DNS names left out, the duration
    cut to the admin's maximum. The reconciler issues that (so a tightened policy re-issues every
    certificate that carries a name no longer allowed) and reports the refusal on the status; the
    validating webhook refuses the write. ``field`` is the first refused field.
    """

    def __init__(
        self, field: str, message: str, *, allowed: IdentitySpec, refused_dns_names: tuple[str, ...], capped: bool
    ) -> None:
        super().__init__(field, message)
        self.allowed = allowed
        self.refused_dns_names = refused_dns_names
        self.capped = capped

    @property
    def outcome(self) -> str:
        """What the operator issues instead, for the status message."""
        names = self.refused_dns_names
        listed = ", ".join(repr(name) for name in names[:MAX_LISTED_REFUSALS])
        more = f" and {len(names) - MAX_LISTED_REFUSALS} more" if len(names) > MAX_LISTED_REFUSALS else ""
        without = f" without {listed}{more}" if names else ""
        cut = f" for {format_duration(self.allowed.duration)}" if self.capped else ""
        return f"certificates are issued{without}{cut}"


def _policy_refusal(
    spec: IdentitySpec,
    dns_names: Sequence[str],
    *,
    namespace: str,
    cluster_domain: str,
    allowed_dns_patterns: Sequence[policy.AdminPattern],
    allow_short_dns_names: bool,
    max_duration: timedelta,
) -> PolicyRefusal | None:
    """The refusal of what ``spec`` asks beyond the policy, or ``None`` when it asks nothing more.

    ``dns_names`` are the names as the user listed them (so indices are the user's).
    """
    refusals = policy.refused_dns_names(
        dns_names,
        namespace=namespace,
        cluster_domain=cluster_domain,
        allowed_patterns=allowed_dns_patterns,
        allow_short_names=allow_short_dns_names,
    )
    too_long = spec.duration > max_duration
    if not refusals and not too_long:
        return None
    # (field, text): a field names its own part of the message; the first is the exception's field.
    parts: list[tuple[str | None, str]] = [
        (f"spec.dnsNames[{refusal.index}]",
         f"{refusal.name!r} is not allowed for an identity in namespace {namespace!r}: {refusal.reason}")
        for refusal in refusals[:MAX_LISTED_REFUSALS]
    ]
    if len(refusals) > MAX_LISTED_REFUSALS:
        parts.append((None, f"{len(refusals) - MAX_LISTED_REFUSALS} more DNS names are refused"))
    if refusals:
        parts.append(
            (None, policy.allowed_dns_summary(namespace, cluster_domain, allowed_dns_patterns, allow_short_dns_names))
        )
    duration, renew_before = spec.duration, spec.renew_before
    if too_long:
        duration = max_duration
        if renew_before >= duration:
            renew_before = default_renew_before(duration)
        parts.append((
            "spec.duration",
            f"{format_duration(spec.duration)} is longer than the maximum the cluster admin allows "
            f"({format_duration(max_duration)}, MTLS_MAX_DURATION)",
        ))
    refused = {refusal.name for refusal in refusals}
    allowed = replace(
        spec,
        dns_names=tuple(name for name in spec.dns_names if name not in refused),
        duration=duration,
        renew_before=renew_before,
    )
    (first_field, first_text), *rest = parts
    message = "; ".join([first_text, *(f"{field}: {text}" if field else text for field, text in rest)])
    return PolicyRefusal(str(first_field), message, allowed=allowed,
                         refused_dns_names=tuple(dict.fromkeys(r.name for r in refusals)), capped=too_long)


# A Secret data key: what Kubernetes allows (validation.IsConfigMapKey).
_SECRET_KEY_RE = re.compile(r"[-._a-zA-Z0-9]+")
MAX_SECRET_KEY_LENGTH: Final = 253
PKCS12_PROFILES: Final = tuple(profile.value for profile in Pkcs12Profile)


def _parse_keystores(raw: object) -> Pkcs12Keystore | None:
    path = "spec.keystores"
    if raw is None:
        return None
    keystores = _require_mapping(raw, path, "an object with pkcs12")
    if "jks" in keystores:
        raise SpecError(
            f"{path}.jks",
            "JKS keystores are not offered: use pkcs12, which every JVM since Java 9 reads as its default "
            "keystore type (KeyStore.getInstance(\"PKCS12\"))",
        )
    _refuse_unknown_fields(keystores, ("pkcs12",), path)
    if keystores.get("pkcs12") is None:
        return None
    path = f"{path}.pkcs12"
    pkcs12 = _require_mapping(keystores["pkcs12"], path, "an object with create, passwordSecretRef and profile")
    _refuse_unknown_fields(pkcs12, ("create", "passwordSecretRef", "profile"), path)
    create = pkcs12.get("create")
    if not isinstance(create, bool):
        raise SpecError(f"{path}.create", f"required: true or false, not {_type_name(create)}")
    profile = Pkcs12Profile.MODERN_2023
    raw_profile = pkcs12.get("profile")
    if raw_profile is not None:
        text = _require_string(raw_profile, f"{path}.profile", f"one of {', '.join(PKCS12_PROFILES)}")
        try:
            profile = Pkcs12Profile(text)
        except ValueError:
            allowed = ", ".join(PKCS12_PROFILES)
            message = f"unknown profile {text!r}; allowed (case-sensitive): {allowed}"
            raise SpecError(f"{path}.profile", message) from None
    ref = pkcs12.get("passwordSecretRef")
    if ref is None:
        if not create:
            return None
        raise SpecError(
            f"{path}.passwordSecretRef",
            "required with create: true: name a Secret in this namespace and its key holding the password "
            "(a keystore is never written unencrypted)",
        )
    ref = _require_mapping(ref, f"{path}.passwordSecretRef", "an object with name and key")
    _refuse_unknown_fields(ref, ("name", "key"), f"{path}.passwordSecretRef")
    name = _require_string(ref.get("name"), f"{path}.passwordSecretRef.name", "a Secret name")
    if not policy.is_dns1123_subdomain(name):
        raise SpecError(f"{path}.passwordSecretRef.name",
                        f"{name!r} is not a valid Secret name: a lower-case DNS subdomain of at most 253 characters")
    key = _require_string(ref.get("key"), f"{path}.passwordSecretRef.key", "a key of that Secret")
    if len(key) > MAX_SECRET_KEY_LENGTH or _SECRET_KEY_RE.fullmatch(key) is None:
        raise SpecError(f"{path}.passwordSecretRef.key",
                        f"{key!r} is not a valid Secret key: 1..253 letters, digits, '-', '_' and '.'")
    if not create:
        return None
    return Pkcs12Keystore(password_secret_name=name, password_secret_key=key, profile=profile)


def parse_identity_spec(
    raw: Mapping[str, Any],
    *,
    namespace: str,
    cluster_domain: str = "cluster.local",
    allowed_dns_patterns: Sequence[policy.AdminPattern] = (),
    default_duration: timedelta = timedelta(hours=24),
    max_duration: timedelta = MAX_DURATION,
    allow_short_dns_names: bool = True,
) -> IdentitySpec:
    """Validate ``raw`` (the object's ``spec``) for an identity in ``namespace``.

    Raises :class:`SpecError` for a spec that is wrong as written, or :class:`PolicyRefusal` for a
    valid one that asks for DNS names the policy refuses or a duration above ``max_duration``
    (checked after everything else is valid; it carries the spec the policy allows). DNS names are
    lower-cased and deduplicated, keeping order.
    """
    spec = _require_mapping(raw, "spec", "an object")
    for key in spec:
        if key not in SPEC_FIELDS:
            raise SpecError(f"spec.{_path_part(key)}", f"unknown field; allowed fields: {', '.join(SPEC_FIELDS)}")
    raw_selector = spec.get("selector")
    if raw_selector is None:
        raise SpecError(
            "spec.selector",
            "required: a label selector for the pods to serve, such as matchLabels: {app: payments}",
        )
    selector = parse_label_selector(raw_selector, "spec.selector")
    service_account = _parse_service_account(spec.get("serviceAccountName"))
    dns_names = _parse_dns_names(spec.get("dnsNames"))
    usages = _parse_usages(spec.get("usages"))
    private_key = _parse_private_key(spec.get("privateKey"))
    duration, renew_before = _parse_durations(spec.get("duration"), spec.get("renewBefore"), default_duration)
    secret_labels, secret_annotations = _parse_secret_template(spec.get("secretTemplate"))
    pkcs12 = _parse_keystores(spec.get("keystores"))
    delivery = _parse_delivery(spec.get("delivery"), private_key, has_keystores=pkcs12 is not None)
    parsed = IdentitySpec(
        selector=selector,
        service_account_name=service_account,
        dns_names=tuple(dict.fromkeys(dns_names)),
        usages=usages,
        private_key=private_key,
        duration=duration,
        renew_before=renew_before,
        secret_labels=secret_labels,
        secret_annotations=secret_annotations,
        pkcs12=pkcs12,
        delivery=delivery,
    )
    refusal = _policy_refusal(
        parsed,
        dns_names,
        namespace=namespace,
        cluster_domain=cluster_domain,
        allowed_dns_patterns=allowed_dns_patterns,
        allow_short_dns_names=allow_short_dns_names,
        max_duration=max_duration,
    )
    if refusal is not None:
        raise refusal
    return parsed


# An identity's name is the ``mtls.dev/identity`` label value of every Secret it manages.
MAX_IDENTITY_NAME_LENGTH: Final = 63


def check_identity_name(name: str) -> None:
    """Raise :class:`SpecError` for an identity name that cannot be a label value (too long).

    Checked by the validating webhook at apply time and by the reconciler: one rule, one message.
    """
    if len(name) > MAX_IDENTITY_NAME_LENGTH:
        raise SpecError(
            "metadata.name",
            f"must be at most {MAX_IDENTITY_NAME_LENGTH} characters (it is the {IDENTITY_LABEL} label "
            f"of every Secret), not {len(name)}",
        )
