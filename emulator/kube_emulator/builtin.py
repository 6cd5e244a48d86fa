"""Per-resource defaults and validation on writes (what the apiserver's registry strategies do)."""

from __future__ import annotations

import base64
import datetime
import functools
import re
from collections.abc import Callable
from typing import Protocol

from kube_emulator import certificates, errors
from kube_emulator.errors import ApiError
from kube_emulator.resources import Obj, ResourceInfo
from kube_emulator.schema import FieldError, go_json, invalid_status
from kube_emulator.selectors import is_qualified_name, is_valid_label_value


class Registry(Protocol):
    """What a strategy reads from the store: declared here, so that the store imports the strategies
    and nothing here imports the store (no import cycle)."""

    def resources(self) -> list[ResourceInfo]: ...

    def _now(self) -> str: ...

    clock: Callable[[], datetime.datetime]


Strategy = Callable[[Registry, ResourceInfo, Obj, "Obj | None", "str | None"], None]
Cause = tuple[str, str, str]

_DATA_KEY = re.compile(r"[-._a-zA-Z0-9]+")  # used with fullmatch: "$" would allow a final "\n"
# apimachinery/pkg/api/validation.TotalAnnotationSizeLimitB: keys and values, in bytes.
TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024
# Pod spec fields that an update may change (the rest is immutable, as in the apiserver).
_POD_MUTABLE = ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds")


def admit(emulator: Registry, info: ResourceInfo, new: Obj, old: Obj | None, subresource: str | None) -> Obj:
    if info.crd is not None:
        return _admit_custom(info, new, old, subresource)
    strategy = _STRATEGIES.get((info.group, info.plural))
    if strategy is not None:
        strategy(emulator, info, new, old, subresource)
    return new


def before_admission(info: ResourceInfo, body: Obj) -> None:
    """What built-in admission plugins do before webhooks see a new object (ServiceAccount)."""
    if info.group == "" and info.plural == "pods":
        spec = body.get("spec")
        if isinstance(spec, dict):
            spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")


# --------------------------------------------------------------------------- object metadata
def _invalid_value(path: str, value: str, detail: str) -> FieldError:
    """``field.Invalid(path, value, detail)``."""
    return FieldError(path, "FieldValueInvalid", f"Invalid value: {go_json(value)}: {detail}")


def validate_labels_and_annotations(meta: Obj) -> list[FieldError]:
    """The label and annotation checks of ``ValidateObjectMeta`` (and of its update variant).

    Ports of ``v1validation.ValidateLabels`` and ``validation.ValidateAnnotations``: label keys and
    annotation keys (compared in lower case) are qualified names, label values valid label values,
    and the annotations (keys and values) at most 256 KiB in all. Go walks the maps in random order;
    keys are taken in sorted order here.
    """
    problems: list[FieldError] = []
    labels = meta.get("labels")
    if isinstance(labels, dict):
        for key in sorted(labels):
            problems.extend(_invalid_value("metadata.labels", key, msg) for msg in _qualified_name_problems(key))
            value = labels[key]
            if isinstance(value, str):
                problems.extend(_invalid_value("metadata.labels", value, msg) for msg in _label_value_problems(value))
    annotations = meta.get("annotations")
    if isinstance(annotations, dict):
        size = 0
        for key in sorted(annotations):
            problems.extend(
                _invalid_value("metadata.annotations", key, msg) for msg in _qualified_name_problems(key.lower())
            )
            value = annotations[key]
            size += _byte_len(key) + (_byte_len(value) if isinstance(value, str) else 0)
        if size > TOTAL_ANNOTATION_SIZE_LIMIT:
            problems.append(FieldError("metadata.annotations", "FieldValueTooLong",
                                       f"Too long: may not be more than {TOTAL_ANNOTATION_SIZE_LIMIT} bytes"))
    return problems


# Every object of a kind carries the same few label and annotation keys (and many the same values): their
# checks are pure functions of the text, so each distinct text is checked once (bounded caches).
@functools.lru_cache(maxsize=4096)
def _qualified_name_problems(key: str) -> tuple[str, ...]:
    return tuple(is_qualified_name(key))


@functools.lru_cache(maxsize=4096)
def _label_value_problems(value: str) -> tuple[str, ...]:
    return tuple(is_valid_label_value(value))


def _byte_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def invalid(info: ResourceInfo, name: str, problems: list[FieldError]) -> ApiError:
    """The 422 Invalid of ``apierrors.NewInvalid`` for ``problems``."""
    status = invalid_status(info.kind, info.group, name, problems)
    return ApiError(422, str(status.get("message", "")), "Invalid", status=status)


def causes_of(exc: ApiError) -> list[FieldError] | None:
    """The field errors of a 422 Invalid (None for any other error)."""
    details = exc.status.get("details")
    if exc.code != 422 or exc.reason != "Invalid" or not isinstance(details, dict):
        return None
    causes = details.get("causes")
    if not isinstance(causes, list):
        return None
    return [FieldError(str(c.get("field", "")), str(c.get("reason", "")), str(c.get("message", "")))
            for c in causes if isinstance(c, dict)]


def _raise(info: ResourceInfo, new: Obj, causes: list[Cause]) -> None:
    if causes:
        raise errors.invalid(info.kind, info.group, str(new.get("metadata", {}).get("name", "")), causes)


# --------------------------------------------------------------------------- custom resources
def unknown_fields(info: ResourceInfo, obj: Obj) -> list[str]:
    """The fields of ``obj`` that the CRD schema does not know (pruning would drop them)."""
    if info.schema is None or not isinstance(obj, dict):
        return []
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
    pruned = info.schema.prune(body)
    found: list[str] = []
    _diff(body, pruned, "", found)
    return found


def _diff(before: object, after: object, path: str, found: list[str]) -> None:
    if isinstance(before, dict) and isinstance(after, dict):
        for key, value in before.items():
            child = f"{path}.{key}" if path else str(key)
            if key not in after:
                found.append(child)
            else:
                _diff(value, after[key], child, found)
    elif isinstance(before, list) and isinstance(after, list):
        for index, (value, kept) in enumerate(zip(before, after, strict=False)):
            _diff(value, kept, f"{path}[{index}]", found)


def _admit_custom(info: ResourceInfo, new: Obj, old: Obj | None, subresource: str | None) -> Obj:
    schema = info.schema
    if schema is None:
        return new
    keep: Obj = {k: new[k] for k in ("apiVersion", "kind", "metadata") if k in new}
    new, problems = schema.process(new)
    new.update(keep)
    if problems:
        raise invalid(info, str(new.get("metadata", {}).get("name", "")), problems)
    return new


# ------------------------------------------------------------------------------------ core/v1
def _namespace(emulator: Registry, info: ResourceInfo, new: Obj, old: Obj | None, sub: str | None) -> None:
    name = new["metadata"]["name"]
    new["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name
    if old is None:
        new["spec"] = {"finalizers": ["kubernetes"]}
        new["status"] = {"phase": "Active"}


def _secret(emulator: Registry, info: ResourceInfo, new: Obj, old: Obj | None, sub: str | None) -> None:
    causes: list[Cause] = []
    string_data = new.pop("stringData", None)
    data = new.get("data")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        causes.append(("data", "FieldValueTypeInvalid", "Invalid value: must be a map of base64 strings"))
        data = {}
    for value in data.values():
        offset = go_base64_error(value) if isinstance(value, str) else None
        if offset is not None:  # the body cannot be decoded: 400, before any validation
            raise errors.bad_request('Secret in version "v1" cannot be handled as a Secret: '
                                     f"illegal base64 data at input byte {offset}")
    for key, value in data.items():
        if not _DATA_KEY.fullmatch(key):
            causes.append((f"data[{key}]", "FieldValueInvalid",
                           f'Invalid value: "{key}": a valid config key must consist of alphanumeric '
                           "characters, '-', '_' or '.'"))
        if not isinstance(value, str):
            causes.append((f"data[{key}]", "FieldValueInvalid", "Invalid value: illegal base64 data"))
    if string_data is not None:
        if not isinstance(string_data, dict):
            causes.append(("stringData", "FieldValueTypeInvalid", "Invalid value: must be a map of strings"))
        else:
            for key, value in string_data.items():
                if not isinstance(value, str):
                    causes.append((f"stringData[{key}]", "FieldValueTypeInvalid", "Invalid value: must be a string"))
                    continue
                data[key] = base64.b64encode(value.encode()).decode()
    if data:
        new["data"] = data
    else:
        new.pop("data", None)
    stype = new.setdefault("type", "Opaque")
    if old is not None:
        if old.get("type", "Opaque") != stype:
            causes.append(("type", "FieldValueInvalid", f'Invalid value: "{stype}": field is immutable'))
        if old.get("immutable") and (old.get("data") != new.get("data") or not new.get("immutable")):
            causes.append(("data", "FieldValueForbidden", "Forbidden: field is immutable when `immutable` is set"))
    if stype == "kubernetes.io/tls":
        for key in ("tls.crt", "tls.key"):
            if key not in data:
                causes.append((f"data[{key}]", "FieldValueRequired", "Required value"))
    _raise(info, new, causes)


def _configmap(emulator: Registry, info: ResourceInfo, new: Obj, old: Obj | None, sub: str | None) -> None:
    causes: list[Cause] = []
    data = new.get("data") or {}
    if not isinstance(data, dict):
        causes.append(("data", "FieldValueTypeInvalid", "Invalid value: must be a map of strings"))
    else:
        for key, value in data.items():
            if not _DATA_KEY.fullmatch(key):
                causes.append((f"data[{key}]", "FieldValueInvalid", f'Invalid value: "{key}": invalid config key'))
            if not isinstance(value, str):
                causes.append((f"data[{key}]", "FieldValueTypeInvalid", "Invalid value: must be a string"))
    binary = new.get("binaryData") or {}
    if isinstance(binary, dict):
        for value in binary.values():
            offset = go_base64_error(value) if isinstance(value, str) else None
            if offset is not None:
                raise errors.bad_request('ConfigMap in version "v1" cannot be handled as a ConfigMap: '
                                         f"illegal base64 data at input byte {offset}")
        for key, value in binary.items():
            if not isinstance(value, str):
                causes.append((f"binaryData[{key}]", "FieldValueInvalid", "Invalid value: illegal base64 data"))
    if old is not None and old.get("immutable") and (
        old.get("data") != new.get("data") or old.get("binaryData") != new.get("binaryData")
        or not new.get("immutable")
    ):
        causes.append(("data", "FieldValueForbidden", "Forbidden: field is immutable when `immutable` is set"))
    _raise(info, new, causes)


def _pod(emulator: Registry, info: ResourceInfo, new: Obj, old: Obj | None, sub: str | None) -> None:
    if sub == "status":
        return
    causes: list[Cause] = []
    spec = new.get("spec")
    if not isinstance(spec, dict):
        _raise(info, new, [("spec", "FieldValueRequired", "Required value")])
        return
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        causes.append(("spec.containers", "FieldValueRequired", "Required value"))
    else:
        for index, container in enumerate(containers):
            if not isinstance(container, dict) or not container.get("name"):
                causes.append((f"spec.containers[{index}].name", "FieldValueRequired", "Required value"))
            elif not container.get("image"):
                causes.append((f"spec.containers[{index}].image", "FieldValueRequired", "Required value"))
    _raise(info, new, causes)
    if old is None:
        spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("dnsPolicy", "ClusterFirst")
        spec.setdefault("schedulerName", "default-scheduler")
        spec.setdefault("terminationGracePeriodSeconds", 30)
        new["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
        return
    if _pod_spec_without_mutable(old.get("spec") or {}) != _pod_spec_without_mutable(spec):
        _raise(info, new, [(
            "spec", "FieldValueForbidden",
            "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
            "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions "
            "to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it "
            "was previously negative)",
        )])


def _pod_spec_without_mutable(spec: Obj) -> Obj:
    result = {k: v for k, v in spec.items() if k not in _POD_MUTABLE}
    for field in ("containers", "initContainers"):
        if isinstance(result.get(field), list):
            result[field] = [
                {k: v for k, v in c.items() if k != "image"} if isinstance(c, dict) else c for c in result[field]
            ]
    return result


# -------------------------------------------------------------------------------------- CRDs
def _crd(emulator: Registry, info: ResourceInfo, new: Obj, old: Obj | None, sub: str | None) -> None:
    name = new["metadata"]["name"]
    spec = new.get("spec")
    causes: list[Cause] = []
    if not isinstance(spec, dict):
        _raise(info, new, [("spec", "FieldValueRequired", "Required value")])
        return
    group = spec.get("group")
    names = spec.get("names")
    if not isinstance(group, str) or not group:
        causes.append(("spec.group", "FieldValueRequired", "Required value"))
    elif "." not in group:
        causes.append(("spec.group", "FieldValueInvalid", f'Invalid value: "{group}": should be a domain with at '
                       "least one dot"))
    if not isinstance(names, dict) or not names.get("plural") or not names.get("kind"):
        causes.append(("spec.names", "FieldValueRequired", "Required value: plural and kind are required"))
        names = {}
    else:
        names.setdefault("singular", str(names["kind"]).lower())
        names.setdefault("listKind", f"{names['kind']}List")
        if isinstance(group, str) and name != f"{names['plural']}.{group}":
            causes.append(("metadata.name", "FieldValueInvalid",
                           f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group'))
    scope = spec.get("scope")
    if scope not in ("Namespaced", "Cluster"):
        causes.append(("spec.scope", "FieldValueNotSupported",
                       f'Unsupported value: "{scope}": supported values: "Cluster", "Namespaced"'))
    versions = spec.get("versions")
    if not isinstance(versions, list) or not versions:
        causes.append(("spec.versions", "FieldValueRequired", "Required value"))
        versions = []
    storage = [v for v in versions if isinstance(v, dict) and v.get("storage")]
    if versions and len(storage) != 1:
        causes.append(("spec.versions", "FieldValueInvalid", "Invalid value: must have exactly one version marked "
                       "as storage version"))
    for index, version in enumerate(versions):
        if not isinstance(version, dict) or not version.get("name"):
            causes.append((f"spec.versions[{index}].name", "FieldValueRequired", "Required value"))
            continue
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        if not isinstance(schema, dict):
            causes.append((f"spec.versions[{index}].schema.openAPIV3Schema", "FieldValueRequired",
                           "Required value: schemas are required"))
    if old is not None and (old.get("spec") or {}).get("scope") not in (None, scope):
        causes.append(("spec.scope", "FieldValueInvalid", "Invalid value: field is immutable"))
    for other in emulator.resources():
        if names and other.group == group and other.plural == names.get("plural") and other.crd != name:
            causes.append(("spec.names.plural", "FieldValueInvalid", "Invalid value: already in use"))
            break
    _raise(info, new, causes)
    spec.setdefault("conversion", {"strategy": "None"})
    for version in versions:
        version.setdefault("served", True)
    now = emulator._now()
    old_status = (old or {}).get("status") or {}
    old_conditions = {c.get("type"): c for c in old_status.get("conditions") or () if isinstance(c, dict)}

    def condition(kind: str, reason: str, message: str) -> Obj:
        since = old_conditions.get(kind, {}).get("lastTransitionTime", now)
        return {"type": kind, "status": "True", "reason": reason, "message": message, "lastTransitionTime": since}

    stored_versions = list(old_status.get("storedVersions") or ())
    for version in storage:
        if version["name"] not in stored_versions:
            stored_versions.append(version["name"])
    new["status"] = {
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "acceptedNames": {k: v for k, v in names.items() if k in (
            "plural", "singular", "kind", "listKind", "shortNames", "categories")},
        "storedVersions": stored_versions,
    }


def _is_base64(value: str) -> bool:
    return go_base64_error(value) is None


_B64_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
# Canonical standard base64 (what every well-behaved client sends): alphabet characters, then at most
# two "=", the whole a multiple of 4 long. With the length checked apart, exactly the inputs without CR
# or LF that the port below accepts (tests/emulator/test_emulator_base64.py compares the two).
_B64_CANONICAL = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def go_base64_error(value: str) -> int | None:
    """Where Go's ``base64.StdEncoding`` stops decoding ``value`` (its ``CorruptInputError``), or None.

    The apiserver decodes a Secret's ``data`` (a ``[]byte`` field) with it while reading the JSON
    body, and answers 400 with that offset. Canonical base64 is recognised at C speed (a regular
    expression); anything else goes through the port of encoding/base64's ``decodeQuantum``, which
    finds the offset: CR and LF are skipped, ``=`` pads only the third and fourth place of the last
    quantum, nothing may follow.
    """
    if not len(value) % 4 and _B64_CANONICAL.fullmatch(value) is not None:
        return None
    return _go_base64_error_port(value)


def _go_base64_error_port(value: str) -> int | None:
    """The character-by-character port of Go's decoder (see :func:`go_base64_error`)."""
    src = value.encode()
    si = 0
    while True:
        j = 0
        while j < 4:
            if si == len(src):
                if j == 0:
                    return None
                return si - j
            char = src[si]
            si += 1
            if char in _B64_ALPHABET:
                j += 1
                continue
            if char in b"\r\n":
                continue
            if char != ord("="):
                return si - 1
            if j in (0, 1):
                return si - 1
            if j == 2:
                while si < len(src) and src[si] in b"\r\n":
                    si += 1
                if si == len(src):
                    return len(src)
                if src[si] != ord("="):
                    return si - 1
                si += 1
            while si < len(src) and src[si] in b"\r\n":
                si += 1
            return si if si < len(src) else None


# ------------------------------------------------------------------------ certificates.k8s.io
def _pod_certificate_request(emulator: Registry, info: ResourceInfo, new: Obj, old: Obj | None,
                             sub: str | None) -> None:
    certificates.pod_certificate_request_strategy(emulator.clock, info, new, old, sub)


def _cluster_trust_bundle(emulator: Registry, info: ResourceInfo, new: Obj, old: Obj | None, sub: str | None) -> None:
    certificates.cluster_trust_bundle_strategy(new, old)


_STRATEGIES: dict[tuple[str, str], Strategy] = {
    ("", "namespaces"): _namespace,
    ("", "secrets"): _secret,
    ("", "configmaps"): _configmap,
    ("", "pods"): _pod,
    ("apiextensions.k8s.io", "customresourcedefinitions"): _crd,
    (certificates.GROUP, "podcertificaterequests"): _pod_certificate_request,
    (certificates.GROUP, "clustertrustbundles"): _cluster_trust_bundle,
}

