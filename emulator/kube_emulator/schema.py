"""Structural ``openAPIV3Schema`` processing of custom resources, as kube-apiserver does it.

On create and update of a custom resource the apiserver prunes unknown fields, applies defaults and
validates; :meth:`StructuralSchema.process` does the three in that order. The algorithms are ports of
``k8s.io/apiextensions-apiserver/pkg/apiserver/schema/{pruning,defaulting,listtype}`` and of the
kube-openapi validator (``k8s.io/kube-openapi/pkg/validation/validate``), including the order of
its checks and the wording of its errors as ``kubeOpenAPIResultToFieldErrors`` turns them into
``metav1.StatusCause`` entries.

Field paths follow the validator that reports them, as on a real cluster: schema errors use
kube-openapi's paths (``spec.dnsNames[2]``, map values ``spec.secretTemplate.labels.app``); list-type
errors use Kubernetes field paths (``spec.usages[1]``, map values ``status.x[key]``). anyOf, oneOf,
allOf and not failures are reported on the field ``<nil>``, as the apiserver does.

Not emulated: ``x-kubernetes-validations`` (CEL rules are accepted and ignored), validation
ratcheting on update, the implicit ``apiVersion``/``kind``/``metadata`` checks of
``x-kubernetes-embedded-resource`` objects, ``patternProperties``/``dependencies``, and the
more exotic string formats (isbn, creditcard, ssn, colors, bsonobjectid: accepted as valid).
Patterns are evaluated with Python ``re`` (the apiserver uses RE2; the common subset agrees).

Pure Python: no I/O, no kubernetes client.
"""

from __future__ import annotations

import base64
import binascii
import copy
import ipaddress
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

__all__ = [
    "FieldError",
    "StructuralSchema",
    "aggregate_message",
    "format_go_float",
    "go_json",
    "invalid_status",
]

_META_FIELDS = frozenset({"apiVersion", "kind", "metadata"})


# --------------------------------------------------------------------------------------------
# Go formatting of values, as the apiserver renders them in messages
# --------------------------------------------------------------------------------------------


def _shortest_digits(value: float) -> tuple[str, int]:
    """Shortest round-trip decimal digits of ``abs(value)`` and the decimal point position.

    ``value == 0.digits * 10**dp``; Python's ``repr`` and Go's ``strconv`` agree on the digits.
    """
    if value == 0:
        return "0", 1
    _, digit_tuple, exponent = Decimal(repr(abs(value))).as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(str(d) for d in digit_tuple)
    dp = len(digits) + exponent
    return digits.rstrip("0") or "0", dp


def _fmt_e(neg: bool, digits: str, dp: int) -> str:
    exp = dp - 1 if digits != "0" else 0
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    sign = "-" if exp < 0 else "+"
    return f"{'-' if neg else ''}{mantissa}e{sign}{abs(exp):02d}"


def _fmt_f(neg: bool, digits: str, dp: int) -> str:
    nd = len(digits)
    integer = digits[:dp] + "0" * max(dp - nd, 0) if dp > 0 and digits != "0" else "0"
    frac_len = max(nd - dp, 0)
    fraction = "".join(digits[dp + i] if 0 <= dp + i < nd else "0" for i in range(frac_len))
    text = integer + ("." + fraction if fraction else "")
    return ("-" if neg else "") + text


def format_go_float(value: float) -> str:
    """A float64 as Go's ``fmt`` prints it with ``%v`` (``256``, ``1.5``, ``1e+06``, ``1e-05``)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    neg = math.copysign(1.0, value) < 0
    digits, dp = _shortest_digits(value)
    exp = dp - 1
    if digits != "0" and (exp < -4 or exp >= 6):
        return _fmt_e(neg, digits, dp)
    return _fmt_f(neg, digits, dp)


def _json_float(value: float) -> str:
    """A float64 as Go's ``encoding/json`` writes it."""
    if not math.isfinite(value):
        raise ValueError(f"unsupported value: {value}")
    neg = value < 0
    digits, dp = _shortest_digits(value)
    magnitude = abs(value)
    if magnitude != 0 and (magnitude < 1e-6 or magnitude >= 1e21):
        text = _fmt_e(neg, digits, dp)
        return re.sub(r"e-0(\d)$", r"e-\1", text)
    return _fmt_f(neg, digits, dp)


def go_json(value: Any) -> str:
    """``json.Marshal`` of a JSON-like value: compact, map keys sorted, floats like Go."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _json_float(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        items = sorted((str(k), v) for k, v in value.items())
        return "{" + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{go_json(v)}" for k, v in items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(go_json(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def _bad_value(value: Any) -> str:
    """How ``field.Error.ErrorBody`` prints a bad value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_go_float(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return go_json(value)


def _go_quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


# --------------------------------------------------------------------------------------------
# Field errors and the 422 Status
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldError:
    """One ``metav1.StatusCause``: ``type`` is its reason, ``message`` the body without the path."""

    path: str
    type: str
    message: str

    def __str__(self) -> str:
        """``field.Error.Error()``: ``spec.duration: Invalid value: ...``."""
        return f"{self.path}: {self.message}"

    def as_cause(self) -> dict[str, Any]:
        cause: dict[str, Any] = {"reason": self.type, "message": self.message}
        if self.path:
            cause["field"] = self.path
        return cause


def _type_invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError(path, "FieldValueTypeInvalid", f"Invalid value: {_bad_value(value)}: {detail}")


def _invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError(path, "FieldValueInvalid", f"Invalid value: {_bad_value(value)}: {detail}")


def _required(path: str) -> FieldError:
    return FieldError(path, "FieldValueRequired", "Required value")


def _not_supported(path: str, value: Any, supported: Sequence[Any]) -> FieldError:
    message = f"Unsupported value: {_bad_value(value)}"
    if supported:
        quoted = ", ".join(_go_quote(v if isinstance(v, str) else go_json(v)) for v in supported)
        message += f": supported values: {quoted}"
    return FieldError(path, "FieldValueNotSupported", message)


def _too_long(path: str, maximum: int) -> FieldError:
    unit = "byte" if maximum == 1 else "bytes"
    return FieldError(path, "FieldValueTooLong", f"Too long: may not be more than {maximum} {unit}")


def _too_many(path: str, actual: int, maximum: int) -> FieldError:
    unit = "item" if maximum == 1 else "items"
    return FieldError(path, "FieldValueTooMany", f"Too many: {actual}: must have at most {maximum} {unit}")


def _duplicate(path: str, value: Any) -> FieldError:
    return FieldError(path, "FieldValueDuplicate", f"Duplicate value: {_bad_value(value)}")


# apiextensions-apiserver's hasBlockingErr: after one of these schema errors, the CEL rules
# (x-kubernetes-validations) are not evaluated, and this error (field path nil) says so.
_BLOCKING = frozenset({"FieldValueNotSupported", "FieldValueRequired", "FieldValueTooLong", "FieldValueTooMany",
                       "FieldValueTypeInvalid"})
_RULES_NOT_CHECKED = FieldError(
    "<nil>", "FieldValueInvalid", "Invalid value: null: some validation rules were not checked because the object "
    "was invalid; correct the existing errors to complete validation")


def _has_rules(schema: Any) -> bool:
    if isinstance(schema, dict):
        return "x-kubernetes-validations" in schema or any(_has_rules(value) for value in schema.values())
    if isinstance(schema, list):
        return any(_has_rules(item) for item in schema)
    return False


def aggregate_message(errors: Sequence[FieldError]) -> str:
    """``field.ErrorList.ToAggregate().Error()``: one error, or ``[a, b]`` without duplicates."""
    messages: list[str] = []
    for err in errors:
        text = str(err)
        if text not in messages:
            messages.append(text)
    if len(messages) == 1:
        return messages[0]
    return "[" + ", ".join(messages) + "]"


def invalid_status(kind: str, group: str, name: str, errors: Sequence[FieldError]) -> dict[str, Any]:
    """The ``metav1.Status`` of ``apierrors.NewInvalid``: code 422, reason ``Invalid``."""
    qualified = f"{kind}.{group}" if group else kind
    message = f"{qualified} {_go_quote(name)} is invalid"
    if errors:
        message += ": " + aggregate_message(errors)
    details: dict[str, Any] = {"name": name} if name else {}  # StatusDetails fields are omitempty
    if group:
        details["group"] = group
    details["kind"] = kind
    if errors:
        details["causes"] = [err.as_cause() for err in errors]
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "Invalid",
        "details": details,
        "code": 422,
    }


# --------------------------------------------------------------------------------------------
# Schema access helpers
# --------------------------------------------------------------------------------------------


def _to_json(value: Any) -> Any:
    """A deep, mutable copy made of dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    return copy.deepcopy(value)


def _props(s: Mapping[str, Any]) -> Mapping[str, Any]:
    props = s.get("properties")
    return props if isinstance(props, Mapping) else {}


def _additional(s: Mapping[str, Any] | None) -> tuple[bool, Mapping[str, Any] | None]:
    """(present, schema): ``additionalProperties`` as a schema; ``true`` is present without one."""
    if s is None:
        return False, None
    ap = s.get("additionalProperties")
    if isinstance(ap, Mapping):
        return True, ap
    if ap is True:
        return True, None
    return False, None


def _items(s: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    if s is None:
        return None
    items = s.get("items")
    return items if isinstance(items, Mapping) else None


def _nullable(s: Mapping[str, Any]) -> bool:
    return bool(s.get("nullable", False))


def _has_default(s: Mapping[str, Any] | None) -> bool:
    return s is not None and s.get("default") is not None


def _types(s: Mapping[str, Any]) -> list[str]:
    if s.get("x-kubernetes-int-or-string"):
        return ["integer", "string"]
    t = s.get("type")
    if isinstance(t, str) and t:
        return [t]
    if isinstance(t, list):
        return [str(x) for x in t]
    return []


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return "unknown"


def _json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values; numbers compare by value, booleans only equal booleans."""
    ka, kb = _json_kind(a), _json_kind(b)
    numeric = ("integer", "number")
    if ka in numeric and kb in numeric:
        return bool(a == b)
    if ka != kb:
        return False
    if ka == "array":
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if ka == "object":
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    return bool(a == b)


def _deep_equal(a: Any, b: Any) -> bool:
    """``reflect.DeepEqual`` of decoded JSON: an integer (int64) never equals a float (float64)."""
    ka, kb = _json_kind(a), _json_kind(b)
    if ka != kb:
        return False
    if ka == "array":
        return len(a) == len(b) and all(_deep_equal(x, y) for x, y in zip(a, b, strict=True))
    if ka == "object":
        return a.keys() == b.keys() and all(_deep_equal(a[k], b[k]) for k in a)
    return bool(a == b)


# --------------------------------------------------------------------------------------------
# Pruning (pruning/algorithm.go)
# --------------------------------------------------------------------------------------------


def _prune(x: Any, s: Mapping[str, Any] | None, embedded_root: bool = False) -> None:
    if s is not None and s.get("x-kubernetes-preserve-unknown-fields"):
        _skip_prune(x, s, embedded_root)
        return
    if isinstance(x, dict):
        if s is None:
            x.clear()
            return
        embedded = embedded_root or bool(s.get("x-kubernetes-embedded-resource"))
        props = _props(s)
        present, ap = _additional(s)
        for key in list(x):
            if embedded and key in _META_FIELDS:
                continue
            if key in props:
                _prune(x[key], props[key])
            elif present:
                if ap is not None:
                    _prune(x[key], ap)
            else:
                del x[key]
    elif isinstance(x, list):
        items = _items(s)
        for value in x:
            _prune(value, items)


def _skip_prune(x: Any, s: Mapping[str, Any] | None, embedded_root: bool = False) -> None:
    if s is None:
        return
    if isinstance(x, dict):
        embedded = embedded_root or bool(s.get("x-kubernetes-embedded-resource"))
        props = _props(s)
        _, ap = _additional(s)
        for key in list(x):
            if embedded and key in _META_FIELDS:
                continue
            if key in props:
                _prune(x[key], props[key])
            elif ap is not None:
                _prune(x[key], ap)
    elif isinstance(x, list):
        items = _items(s)
        for value in x:
            _skip_prune(value, items)


# --------------------------------------------------------------------------------------------
# Defaulting (defaulting/prunenulls.go, defaulting/algorithm.go)
# --------------------------------------------------------------------------------------------


def _schema_for_field(key: str, s: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    if s is None:
        return None
    props = _props(s)
    if key in props:
        sub = props[key]
        return sub if isinstance(sub, Mapping) else None
    return _additional(s)[1]


def _prune_nulls(x: Any, s: Mapping[str, Any] | None, skip: frozenset[str] = frozenset()) -> None:
    """Drop nulls of non-nullable fields that have no default (``PruneNonNullableNullsWithoutDefaults``)."""
    if isinstance(x, dict):
        for key in list(x):
            if key in skip:
                continue
            sub = _schema_for_field(key, s)
            if x[key] is None and sub is not None and not _nullable(sub) and not _has_default(sub):
                del x[key]
            else:
                _prune_nulls(x[key], sub)
    elif isinstance(x, list):
        items = _items(s)
        for value in x:
            _prune_nulls(value, items)


def _is_non_nullable_null(x: Any, s: Mapping[str, Any] | None) -> bool:
    return x is None and s is not None and not _nullable(s)


def _default(x: Any, s: Mapping[str, Any] | None, skip: frozenset[str] = frozenset()) -> None:
    if s is None:
        return
    if isinstance(x, dict):
        props = _props(s)
        for key, prop in props.items():
            if key in skip or not isinstance(prop, Mapping) or not _has_default(prop):
                continue
            if key not in x or _is_non_nullable_null(x[key], prop):
                x[key] = _to_json(prop["default"])
        _, ap = _additional(s)
        for key in list(x):
            if key in skip:
                continue
            if key in props:
                _default(x[key], props[key])
            elif ap is not None:
                if _is_non_nullable_null(x[key], ap):
                    x[key] = _to_json(ap.get("default"))
                _default(x[key], ap)
    elif isinstance(x, list):
        items = _items(s)
        for i in range(len(x)):
            if _is_non_nullable_null(x[i], items):
                assert items is not None
                x[i] = _to_json(items.get("default"))
            _default(x[i], items)


# --------------------------------------------------------------------------------------------
# Validation (kube-openapi validate + kubeOpenAPIResultToFieldErrors)
# --------------------------------------------------------------------------------------------

_UUID_RE = re.compile(r"^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$", re.IGNORECASE)
_UUID_VERSION_RE = {
    "uuid3": re.compile(r"^[0-9a-f]{8}-?[0-9a-f]{4}-?3[0-9a-f]{3}-?[0-9a-f]{4}-?[0-9a-f]{12}$", re.IGNORECASE),
    "uuid4": re.compile(r"^[0-9a-f]{8}-?[0-9a-f]{4}-?4[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$", re.IGNORECASE),
    "uuid5": re.compile(r"^[0-9a-f]{8}-?[0-9a-f]{4}-?5[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$", re.IGNORECASE),
}
_TIME_RE = re.compile(r"^([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?(z|[+-][0-9]{2}:[0-9]{2})$")
_MAC_RE = re.compile(
    r"^([0-9a-f]{2}([:-])[0-9a-f]{2}(\2[0-9a-f]{2}){4}(\2[0-9a-f]{2}){0,14}"
    r"|[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}(\.[0-9a-f]{4}){0,5})$",
    re.IGNORECASE,
)
_HOSTNAME_LABEL_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+$")
_URI_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*:|/)\S*$")
_GO_DURATION_RE = re.compile(r"^[-+]?(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+$|^[-+]?0$")
_HUMAN_DURATION_RE = re.compile(
    r"^[0-9]+\s*(ns|us|µs|ms|s|sec|secs|seconds?|m|min|mins|minutes?|h|hr|hrs|hours?"
    r"|d|day|days|w|wk|wks|weeks?)$"
)


_MULTILINE_FLAG_RE = re.compile(r"\(\?[a-zA-Z]*m")


def _go_pattern(pattern: str) -> str:
    """A Go (RE2) ``pattern`` for Python's ``re``, where the two differ on the end of the text.

    Outside multi-line mode, Go's ``$`` matches at the end of the text only, Python's also before a
    final newline, so ``^[a-z]+$`` would accept ``"abc\\n"``: ``$`` becomes ``\\Z`` here (and Go's
    ``\\z``, unknown to Python before 3.14, too).
    """
    multiline = _MULTILINE_FLAG_RE.search(pattern) is not None
    out: list[str] = []
    i, in_class = 0, False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            escaped = pattern[i + 1]
            out.append("\\Z" if escaped == "z" and not in_class else char + escaped)
            i += 2
            continue
        if in_class:
            if char == "[" and pattern.startswith("[:", i):  # [:alpha:] inside a class
                end = pattern.find(":]", i + 2)
                if end != -1:
                    out.append(pattern[i:end + 2])
                    i = end + 2
                    continue
            if char == "]":
                in_class = False
        elif char == "[":
            in_class = True
            out.append(char)
            i += 1
            for prefix in ("^", "]"):  # a "]" first in a class is literal
                if pattern.startswith(prefix, i):
                    out.append(prefix)
                    i += 1
            continue
        elif char == "$" and not multiline:
            char = "\\Z"
        out.append(char)
        i += 1
    return "".join(out)


def _is_date(text: str) -> bool:
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _is_date_time(text: str) -> bool:
    """strfmt ``IsDateTime``: an RFC 3339 date-time (``T``/``Z`` in either case, offset required)."""
    if len(text) < 4:
        return False
    parts = text.lower().split("t")
    if len(parts) != 2 or not _is_date(parts[0]):
        return False
    match = _TIME_RE.fullmatch(parts[1])
    if match is None:
        return False
    return match[1] <= "23" and match[2] <= "59" and match[3] <= "59"


def _is_hostname(text: str) -> bool:
    if not text or len(text) > 255:
        return False
    return all(_HOSTNAME_LABEL_RE.fullmatch(label) for label in text.rstrip(".").split("."))


def _is_ip(text: str, version: int) -> bool:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    return address.version == version or (version == 4 and "." in text)


def _is_cidr(text: str) -> bool:
    if "/" not in text:
        return False
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


def _is_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


# The formats the apiserver keeps in CRD schemas (apiextensions ``supportedFormats``); every other
# format is stripped before validation, so it neither checks strings nor affects the type check.
# Names are normalized like strfmt's registry does ("date-time" is "datetime").
_SUPPORTED_FORMATS = frozenset(
    {
        "bsonobjectid", "uri", "email", "hostname", "ipv4", "ipv6", "cidr", "mac", "uuid", "uuid3",
        "uuid4", "uuid5", "isbn", "isbn10", "isbn13", "creditcard", "ssn", "hexcolor", "rgbcolor",
        "byte", "password", "date", "duration", "datetime",
    }
)  # fmt: skip


def _supported_format(fmt: Any) -> str:
    """The normalized format if the apiserver supports it, else "" (stripped)."""
    if not isinstance(fmt, str):
        return ""
    normalized = fmt.replace("-", "").replace("_", "").lower()
    return normalized if normalized in _SUPPORTED_FORMATS else ""


def _check_format(fmt: str, text: str) -> bool:
    """Whether ``text`` is valid for a supported, normalized format (exotic ones always are)."""
    checks: dict[str, Callable[[str], bool]] = {
        "datetime": _is_date_time,
        "date": _is_date,
        "byte": _is_base64,
        "uuid": lambda t: bool(_UUID_RE.fullmatch(t)),
        "uuid3": lambda t: bool(_UUID_VERSION_RE["uuid3"].fullmatch(t)),
        "uuid4": lambda t: bool(_UUID_VERSION_RE["uuid4"].fullmatch(t)),
        "uuid5": lambda t: bool(_UUID_VERSION_RE["uuid5"].fullmatch(t)),
        "ipv4": lambda t: _is_ip(t, 4),
        "ipv6": lambda t: _is_ip(t, 6),
        "cidr": _is_cidr,
        "mac": lambda t: bool(_MAC_RE.fullmatch(t)),
        "hostname": _is_hostname,
        "email": lambda t: bool(_EMAIL_RE.fullmatch(t)),
        "uri": lambda t: bool(_URI_RE.fullmatch(t)),
        "duration": lambda t: bool(_GO_DURATION_RE.fullmatch(t) or _HUMAN_DURATION_RE.fullmatch(t)),
    }
    check = checks.get(fmt)
    return True if check is None else check(text)


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _field(name: str) -> str:
    """The StatusCause field for a kube-openapi error name (``.spec`` -> ``spec``; root -> ``<nil>``)."""
    if not name or name == ".":
        return "<nil>"
    return name[1:] if name.startswith(".") else name


def _child(path: str, key: str) -> str:
    """A property's kube-openapi path."""
    return f"{path}.{key}" if path else key


def _fewest(results: list[list[FieldError]]) -> list[FieldError]:
    """The errors of the alternative that came closest (the first with the fewest errors)."""
    best = results[0]
    for result in results[1:]:
        if len(result) < len(best):
            best = result
    return best


def _composite(message: str) -> FieldError:
    """anyOf/oneOf/allOf/not failures: not field errors in kube-openapi, so the field is ``<nil>``."""
    return FieldError("<nil>", "FieldValueInvalid", f'Invalid value: "": {message}')


class _Validator:
    """One pass of kube-openapi's ``SchemaValidator`` over a value, collecting field errors."""

    def validate(self, s: Mapping[str, Any], data: Any, path: str) -> list[FieldError]:
        errs: list[FieldError] = []
        self._node(s, data, path, errs)
        return errs

    def _node(self, s: Mapping[str, Any], data: Any, path: str, errs: list[FieldError]) -> None:
        types = _types(s)
        normalized_fmt = _supported_format(s.get("format"))
        fmt = str(s["format"]) if normalized_fmt else ""
        if data is None:
            if types and "null" not in types and not _nullable(s):
                errs.append(self._invalid_type(path, ",".join(types), "null"))
            self._enum(s, data, path, errs)
            return
        kind = _json_kind(data)
        if types or fmt:
            self._type(types, fmt, data, kind, path, errs)
        self._schema_props(s, data, path, errs)
        if kind == "string":
            self._string(s, data, path, errs)
            if fmt and not _check_format(normalized_fmt, data):
                errs.append(self._invalid_type(path, fmt, data))
        if kind in ("integer", "number"):
            self._number(s, data, path, errs)
        if kind == "array":
            self._array(s, data, path, errs)
        self._enum(s, data, path, errs)
        if kind == "object":
            self._object(s, data, path, errs)

    @staticmethod
    def _invalid_type(path: str, type_name: str, value: str) -> FieldError:
        detail = f"{path} in body must be of type {type_name}: {_go_quote(value)}"
        return _type_invalid(_field(path), value, detail)

    def _type(self, types: list[str], fmt: str, data: Any, kind: str, path: str, errs: list[FieldError]) -> None:
        data_format = {"integer": "int64", "number": "float64"}.get(kind, "")
        is_float_int = kind == "number" and float(data).is_integer() and "integer" in types
        is_int_float = kind == "integer" and "number" in types
        if (
            kind not in ("string", "array")
            and fmt
            and not (kind in types or data_format == fmt or is_float_int or is_int_float)
        ):
            errs.append(self._invalid_type(path, fmt, data_format))
            return
        if not ("number" in types or "integer" in types) and fmt and kind in ("string", "array"):
            return
        if not (kind in types or is_float_int or is_int_float):
            errs.append(self._invalid_type(path, ",".join(types), kind))

    def _string(self, s: Mapping[str, Any], data: str, path: str, errs: list[FieldError]) -> None:
        length = len(data)
        max_length = s.get("maxLength")
        if isinstance(max_length, int) and length > max_length:
            errs.append(_too_long(_field(path), max_length))
            return
        min_length = s.get("minLength")
        if isinstance(min_length, int) and length < min_length:
            errs.append(_invalid(_field(path), data, f"{path} in body should be at least {min_length} chars long"))
            return
        pattern = s.get("pattern")
        if isinstance(pattern, str) and pattern:
            try:
                matched = re.search(_go_pattern(pattern), data) is not None
            except re.error as err:
                detail = f"{path} in body should match '{pattern}, but pattern is invalid: {err}'"
                errs.append(_invalid(_field(path), data, detail))
                return
            if not matched:
                errs.append(_invalid(_field(path), data, f"{path} in body should match '{pattern}'"))

    def _number(self, s: Mapping[str, Any], data: int | float, path: str, errs: list[FieldError]) -> None:
        is_int = isinstance(data, int)

        def bound(value: float) -> str:
            return str(int(value)) if is_int else format_go_float(value)

        def limit(value: float) -> float:
            return float(int(value)) if is_int else value

        multiple_of = _num(s.get("multipleOf"))
        if multiple_of is not None:
            if multiple_of < 0:
                errs.append(
                    _invalid(
                        _field(path),
                        multiple_of,
                        f"factor MultipleOf declared for {path} must be positive: {format_go_float(multiple_of)}",
                    )
                )
            elif is_int and int(multiple_of) != 0:
                if int(data) % int(multiple_of) != 0:
                    detail = f"{path} in body should be a multiple of {int(multiple_of)}"
                    errs.append(_invalid(_field(path), data, detail))
            elif multiple_of != 0:
                mult = (1 / multiple_of * data) if multiple_of < 1 else (data / multiple_of)
                if not float(mult).is_integer():
                    detail = f"{path} in body should be a multiple of {format_go_float(multiple_of)}"
                    errs.append(_invalid(_field(path), data, detail))
        minimum = _num(s.get("minimum"))
        if minimum is not None:
            exclusive = bool(s.get("exclusiveMinimum"))
            low = limit(minimum)
            if (not exclusive and data < low) or (exclusive and data <= low):
                words = "greater than" if exclusive else "greater than or equal to"
                errs.append(_invalid(_field(path), data, f"{path} in body should be {words} {bound(minimum)}"))
        maximum = _num(s.get("maximum"))
        if maximum is not None:
            exclusive = bool(s.get("exclusiveMaximum"))
            high = limit(maximum)
            if (not exclusive and data > high) or (exclusive and data >= high):
                words = "less than" if exclusive else "less than or equal to"
                errs.append(_invalid(_field(path), data, f"{path} in body should be {words} {bound(maximum)}"))

    def _array(self, s: Mapping[str, Any], data: Sequence[Any], path: str, errs: list[FieldError]) -> None:
        items = _items(s)
        if items is not None:
            for i, value in enumerate(data):
                self._node(items, value, f"{path}[{i}]", errs)
        size = len(data)
        min_items = s.get("minItems")
        if isinstance(min_items, int) and size < min_items:
            errs.append(_invalid(_field(path), size, f"{path} in body should have at least {min_items} items"))
        max_items = s.get("maxItems")
        if isinstance(max_items, int) and size > max_items:
            errs.append(_too_many(_field(path), size, max_items))
        if s.get("uniqueItems"):
            seen: list[Any] = []
            for value in data:
                if any(_deep_equal(value, other) for other in seen):
                    errs.append(_invalid(_field(path), "", f"{path} in body shouldn't contain duplicates"))
                    break
                seen.append(value)

    def _enum(self, s: Mapping[str, Any], data: Any, path: str, errs: list[FieldError]) -> None:
        enum = s.get("enum")
        if not isinstance(enum, list) or not enum:
            return
        if data is not None and any(v is not None and _json_equal(data, v) for v in enum):
            return
        errs.append(_not_supported(_field(path), data, enum))

    def _object(self, s: Mapping[str, Any], data: Mapping[str, Any], path: str, errs: list[FieldError]) -> None:
        size = len(data)
        min_props = s.get("minProperties")
        if isinstance(min_props, int) and size < min_props:
            detail = f"{path} in body should have at least {min_props} properties"
            errs.append(_invalid(_field(path), size, detail))
            return
        max_props = s.get("maxProperties")
        if isinstance(max_props, int) and size > max_props:
            errs.append(_too_many(_field(path), size, max_props))
            return
        props = _props(s)
        ap = s.get("additionalProperties")
        if ap is False:
            for key in sorted(data):
                if key not in props:
                    detail = f"{path}.{key} in body is a forbidden property"
                    errs.append(_invalid(_field(path), key, detail))
        elif isinstance(ap, Mapping):
            for key in sorted(data):
                if key not in props:
                    self._node(ap, data[key], f"{path}.{key}", errs)
        for key in sorted(props):
            if key in data and isinstance(props[key], Mapping):
                self._node(props[key], data[key], _child(path, key), errs)
        required = s.get("required")
        if isinstance(required, list):
            for key in required:
                if key not in data:
                    errs.append(_required(_field(f"{path}.{key}")))

    def _alternatives(self, s: Mapping[str, Any], keyword: str) -> list[Mapping[str, Any]]:
        value = s.get(keyword)
        if not isinstance(value, list):
            return []
        return [sub for sub in value if isinstance(sub, Mapping)]

    def _schema_props(self, s: Mapping[str, Any], data: Any, path: str, errs: list[FieldError]) -> None:
        quoted = _go_quote(path)
        any_of = self._alternatives(s, "anyOf")
        if any_of:
            results = [self.validate(sub, data, path) for sub in any_of]
            if not any(not r for r in results):
                errs.append(_composite(f"{quoted} must validate at least one schema (anyOf)"))
                errs.extend(_fewest(results))
        one_of = self._alternatives(s, "oneOf")
        if one_of:
            results = [self.validate(sub, data, path) for sub in one_of]
            valid = sum(1 for r in results if not r)
            if valid != 1:
                extra = "Found none valid" if valid == 0 else f"Found {valid} valid alternatives"
                errs.append(_composite(f"{quoted} must validate one and only one schema (oneOf). {extra}"))
                if valid == 0:
                    errs.extend(_fewest(results))
        all_of = self._alternatives(s, "allOf")
        if all_of:
            results = [self.validate(sub, data, path) for sub in all_of]
            for result in results:
                errs.extend(result)
            valid = sum(1 for r in results if not r)
            if valid != len(all_of):
                extra = ". None validated" if valid == 0 else ""
                errs.append(_composite(f"{quoted} must validate all the schemas (allOf){extra}"))
        not_schema = s.get("not")
        if isinstance(not_schema, Mapping) and not self.validate(not_schema, data, path):
            errs.append(_composite(f"{quoted} must not validate the schema (not)"))


# --------------------------------------------------------------------------------------------
# List types (listtype/validation.go), with Kubernetes field paths
# --------------------------------------------------------------------------------------------


def _fp_child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _set_key(value: Any) -> tuple[str, str]:
    """A key under which equal list-set items collide (Go compares int64 and float64 apart)."""
    kind = _json_kind(value)
    if kind in ("object", "array"):
        return "compound", go_json(value)
    return kind, go_json(value)


def _non_unique(values: Sequence[Any]) -> list[int]:
    """Indices of the second appearance of each repeated value (``validateListSet``)."""
    counts: dict[tuple[str, str], int] = {}
    result: list[int] = []
    for i, value in enumerate(values):
        key = _set_key(value)
        counts[key] = counts.get(key, 0) + 1
        if counts[key] == 2:
            result.append(i)
    return result


_UNSPECIFIED = object()


def _list_sets_and_maps(s: Mapping[str, Any] | None, obj: Any, path: str) -> Iterator[FieldError]:
    if s is None:
        return
    if isinstance(obj, list):
        yield from _list_array(s, obj, path)
    elif isinstance(obj, Mapping):
        _, ap = _additional(s)
        if ap is not None:
            for key in sorted(obj):
                yield from _list_sets_and_maps(ap, obj[key], f"{path}[{key}]")
        props = _props(s)
        for key in sorted(obj):
            if key in props and isinstance(props[key], Mapping):
                yield from _list_sets_and_maps(props[key], obj[key], _fp_child(path, key))


def _list_array(s: Mapping[str, Any], obj: list[Any], path: str) -> Iterator[FieldError]:
    list_type = s.get("x-kubernetes-list-type")
    if list_type == "set":
        for i in _non_unique(obj):
            yield _duplicate(f"{path}[{i}]", obj[i])
    elif list_type == "map":
        yield from _list_map(s, obj, path)
    items = _items(s)
    if items is not None:
        for i, value in enumerate(obj):
            yield from _list_sets_and_maps(items, value, f"{path}[{i}]")


def _list_map(s: Mapping[str, Any], obj: list[Any], path: str) -> Iterator[FieldError]:
    for i, item in enumerate(obj):
        if item is not None and not isinstance(item, Mapping):
            yield _invalid(f"{path}[{i}]", item, "must be an object for an array of list-type map")
            return
    if len(obj) <= 1:
        return
    key_fields = [str(k) for k in s.get("x-kubernetes-list-map-keys") or []]
    if len(key_fields) == 1:
        key_field = key_fields[0]
        keys: list[Any] = []
        for item in obj:
            if item is None or key_field not in item:
                keys.append(_UNSPECIFIED)
            else:
                keys.append(item[key_field])
        tagged = [("\x00unspecified" if k is _UNSPECIFIED else k) for k in keys]
        for i in _non_unique(tagged):
            shown: dict[str, Any] = {} if keys[i] is _UNSPECIFIED else {key_field: keys[i]}
            yield _duplicate(f"{path}[{i}]", shown)
        return
    composite: list[dict[str, Any]] = []
    for item in obj:
        key_map: dict[str, Any] = {}
        if item is not None:
            for key_field in key_fields:
                if key_field in item:
                    key_map[key_field] = item[key_field]
        composite.append(key_map)
    for i in _non_unique(composite):
        yield _duplicate(f"{path}[{i}]", composite[i])


# --------------------------------------------------------------------------------------------
# The public wrapper
# --------------------------------------------------------------------------------------------


class StructuralSchema:
    """A CRD version's ``openAPIV3Schema`` (or a part of it, see :meth:`subschema`).

    ``path`` is the field path of the value the schema describes ("" for a whole object); it
    prefixes the paths of errors. ``root`` marks a whole-object schema: there ``apiVersion``,
    ``kind`` and ``metadata`` are neither pruned nor defaulted.
    """

    def __init__(self, schema: Mapping[str, Any], *, path: str = "", root: bool | None = None) -> None:
        self.schema: Mapping[str, Any] = schema
        self.path = path
        self.root = (path == "") if root is None else root

    def __repr__(self) -> str:
        return f"StructuralSchema(path={self.path!r}, type={self.schema.get('type')!r})"

    def prune(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of ``obj`` without the fields the schema does not specify."""
        result = _to_json(obj)
        _prune(result, self.schema, embedded_root=self.root)
        assert isinstance(result, dict)
        return result

    def apply_defaults(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of ``obj`` with defaults applied (and non-nullable nulls without a default dropped)."""
        result = _to_json(obj)
        skip = _META_FIELDS if self.root else frozenset()
        _prune_nulls(result, self.schema, skip)
        _default(result, self.schema, skip)
        assert isinstance(result, dict)
        return result

    def validate(self, obj: Mapping[str, Any]) -> list[FieldError]:
        """All schema errors of ``obj``: kube-openapi's first, then list-type duplicates; and, as the
        apiserver skips the CRD's CEL rules after a blocking error, the error that says so."""
        errors = _Validator().validate(self.schema, obj, self.path)
        errors.extend(_list_sets_and_maps(self.schema, obj, self.path))
        unique: list[FieldError] = []
        for err in errors:
            if err not in unique:
                unique.append(err)
        if self.root and _has_rules(self.schema) and any(err.type in _BLOCKING for err in unique):
            unique.append(_RULES_NOT_CHECKED)
        return unique

    def process(self, obj: Mapping[str, Any]) -> tuple[dict[str, Any], list[FieldError]]:
        """What the apiserver does on create and update: prune, then default, then validate."""
        result = self.apply_defaults(self.prune(obj))
        return result, self.validate(result)

    def subschema(self, *path: str) -> StructuralSchema | None:
        """The schema of a nested field (``subschema("status")``, ``subschema("spec", "privateKey")``).

        A name follows ``properties`` and then ``additionalProperties``; ``"[]"`` steps into
        ``items``. None when the schema does not describe that field.
        """
        current: Mapping[str, Any] | None = self.schema
        field_path = self.path
        for name in path:
            if current is None:
                return None
            if name == "[]":
                current = _items(current)
                field_path = f"{field_path}[*]"
            else:
                current = _schema_for_field(name, current)
                field_path = _child(field_path, name)
        if current is None:
            return None
        return StructuralSchema(current, path=field_path, root=False)
