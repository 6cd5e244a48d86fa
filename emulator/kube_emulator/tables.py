"""Server-side printing: ``meta.k8s.io/v1`` Tables for ``kubectl get``.

kubectl asks for ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io`` and prints the columns
the server chooses. This module builds those Tables the way kube-apiserver does:

- custom resources: the CRD's ``additionalPrinterColumns`` after a ``Name`` column, or ``Name`` and
  ``Age`` when the CRD has none (apiextensions ``tableconvertor`` and ``serveDefaultColumnsIfEmpty``);
  cells follow ``cellForJSONValue``: ``date`` columns become ages (``5m``, ``3h``; ``<unknown>``
  for an empty time, ``<invalid>`` for an unparsable one), ``integer`` cells are ints, a value that
  is missing or of the wrong type is a null cell (kubectl prints ``<none>``);
- a few built-in resources with the columns of ``pkg/printers/internalversion`` (generated "wide",
  as the apiserver does; kubectl hides ``priority`` > 0 columns unless ``-o wide``).

Column names are the server's (``Name``, ``Age``, ``Ready``); kubectl upper-cases them.

Pure Python: no I/O, no kubernetes client; the caller passes ``now``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from kube_emulator.schema import format_go_float, go_json

__all__ = [
    "INCLUDE_OBJECT_POLICIES",
    "CellFunction",
    "Column",
    "JSONPathError",
    "builtin_columns",
    "crd_columns",
    "created_at_columns",
    "default_columns",
    "evaluate_jsonpath",
    "human_duration",
    "jsonpath_text",
    "make_table",
    "name_column",
    "parse_timestamp",
]

NAME_DESCRIPTION = (
    "Name must be unique within a namespace. Is required when creating resources, although some "
    "resources may allow a client to request the generation of an appropriate name automatically. "
    "Name is primarily intended for creation idempotence and configuration definition. Cannot be "
    "updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
)
CREATION_TIMESTAMP_DESCRIPTION = (
    "CreationTimestamp is a timestamp representing the server time when this object was created. It "
    "is not guaranteed to be set in happens-before order across separate operations. Clients may not "
    "set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. "
    "Read-only. Null for lists. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
)


# --------------------------------------------------------------------------------------------
# Durations and timestamps
# --------------------------------------------------------------------------------------------


def human_duration(d: timedelta) -> str:
    """``k8s.io/apimachinery/pkg/util/duration.HumanDuration``: ~2-3 significant figures.

    ``<invalid>`` below -1s (a time in the future), ``0s`` for -1s..0s, then seconds below 2m,
    ``XmYs`` below 10m, minutes below 3h, ``XhYm`` below 8h, hours below 48h, ``XdYh`` below 8d,
    days below 2y, ``XyYd`` below 8y, years beyond.
    """
    total_us = d // timedelta(microseconds=1)
    sign = -1 if total_us < 0 else 1
    seconds = sign * (abs(total_us) // 1_000_000)  # int(d.Seconds()) truncates towards zero
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 60 * 2:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        s = seconds % 60
        return f"{minutes}m" if s == 0 else f"{minutes}m{s}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = seconds // 3600
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if dy == 0 else f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"


_RFC3339_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", re.ASCII)


def parse_timestamp(text: str) -> datetime | None:
    """An RFC 3339 time (as ``metav1.Time`` parses it), aware; None when it does not parse."""
    match = _RFC3339_RE.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(match[i]) for i in range(1, 7))
    fraction = match[7] or ""
    micro = int((fraction[1:] + "000000")[:6]) if fraction else 0
    offset = match[8]
    if offset in ("Z", "z"):
        tz = UTC
    else:
        sign = 1 if offset[0] == "+" else -1
        hours, minutes = int(offset[1:3]), int(offset[4:6])
        if hours > 23 or minutes > 59:
            return None
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        return datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)
    except ValueError:
        return None


def _aware(now: datetime) -> datetime:
    return now if now.tzinfo is not None else now.replace(tzinfo=UTC)


def _since(timestamp: Any, now: datetime) -> str:
    """``translateTimestampSince``: the age of a timestamp string, ``<unknown>`` when unset."""
    if not isinstance(timestamp, str) or not timestamp or timestamp == "null":
        return "<unknown>"
    parsed = parse_timestamp(timestamp)
    if parsed is None:
        return "<invalid>"
    return human_duration(_aware(now) - parsed)


# --------------------------------------------------------------------------------------------
# JSONPath (the subset printer columns and kubectl use)
# --------------------------------------------------------------------------------------------


class JSONPathError(ValueError):
    """A JSONPath expression that cannot be parsed."""


@dataclass(frozen=True)
class _Field:
    name: str


@dataclass(frozen=True)
class _Wildcard:
    pass


@dataclass(frozen=True)
class _Recursive:
    name: str | None  # None: every descendant


@dataclass(frozen=True)
class _Index:
    index: int


@dataclass(frozen=True)
class _Slice:
    start: int | None
    stop: int | None
    step: int | None


@dataclass(frozen=True)
class _Filter:
    left: tuple[Any, ...]  # steps from @
    op: str | None  # None: existence test
    right: tuple[str, Any]  # ("path", steps) or ("literal", value)


_Step = _Field | _Wildcard | _Recursive | _Index | _Slice | _Filter

_NAME_RE = re.compile(r"(?:\\.|[^.\[\]\\\s()=!<>])+")
_FILTER_OPS = ("==", "!=", "<=", ">=", "<", ">")


def _read_name(text: str, pos: int) -> tuple[str, int]:
    match = _NAME_RE.match(text, pos)
    if match is None:
        raise JSONPathError(f"unrecognized identifier at {pos} in {text!r}")
    return re.sub(r"\\(.)", r"\1", match.group(0)), match.end()


def _read_bracket(text: str, pos: int) -> tuple[str, int]:
    """The content of ``[...]`` starting after ``[``, honouring quotes and parentheses."""
    depth = 0
    quote = ""
    i = pos
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\":
                i += 2
                continue
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "]" and depth == 0:
            return text[pos:i], i + 1
        i += 1
    raise JSONPathError(f"unterminated [ in {text!r}")


def _unquote(text: str) -> str | None:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return None


def _parse_int(text: str) -> int | None:
    text = text.strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return None


def _parse_literal(text: str) -> Any:
    text = text.strip()
    quoted = _unquote(text)
    if quoted is not None:
        return quoted
    if text in ("true", "false"):
        return text == "true"
    if text == "null":
        return None
    try:
        return json.loads(text)
    except ValueError:
        raise JSONPathError(f"unrecognized filter operand {text!r}") from None


def _parse_filter(text: str) -> _Filter:
    inner = text.strip()
    if not (inner.startswith("?(") and inner.endswith(")")):
        raise JSONPathError(f"unrecognized filter {text!r}")
    expression = inner[2:-1].strip()
    # Find the operator outside quotes.
    quote = ""
    for i, char in enumerate(expression):
        if quote:
            if char == quote:
                quote = ""
            continue
        if char in "'\"":
            quote = char
            continue
        for op in _FILTER_OPS:
            if expression.startswith(op, i):
                left, right = expression[:i].strip(), expression[i + len(op) :].strip()
                return _Filter(_parse_relative(left), op, _parse_operand(right))
    return _Filter(_parse_relative(expression), None, ("literal", None))


def _parse_relative(text: str) -> tuple[Any, ...]:
    if not text.startswith("@"):
        raise JSONPathError(f"filter operand must start with @: {text!r}")
    return tuple(_parse_steps(text[1:]))


def _parse_operand(text: str) -> tuple[str, Any]:
    if text.startswith("@"):
        return ("path", _parse_relative(text))
    return ("literal", _parse_literal(text))


def _parse_bracket(content: str) -> _Step:
    stripped = content.strip()
    if stripped == "*":
        return _Wildcard()
    if stripped.startswith("?"):
        return _parse_filter(stripped)
    quoted = _unquote(stripped)
    if quoted is not None:
        return _Field(quoted)
    if ":" in stripped:
        parts = stripped.split(":")
        if len(parts) > 3:
            raise JSONPathError(f"invalid slice [{content}]")
        numbers = [_parse_int(p) if p.strip() else None for p in parts]
        if any(p.strip() and n is None for p, n in zip(parts, numbers, strict=True)):
            raise JSONPathError(f"invalid slice [{content}]")
        return _Slice(numbers[0], numbers[1], numbers[2] if len(numbers) > 2 else None)
    index = _parse_int(stripped)
    if index is None:
        raise JSONPathError(f"invalid array index [{content}]")
    return _Index(index)


def _parse_steps(text: str) -> list[_Step]:
    steps: list[_Step] = []
    pos = 0
    while pos < len(text):
        char = text[pos]
        if text.startswith("..", pos):
            pos += 2
            if pos < len(text) and text[pos] == "*":
                steps.append(_Recursive(None))
                pos += 1
            else:
                name, pos = _read_name(text, pos)
                steps.append(_Recursive(name))
        elif char == ".":
            pos += 1
            if pos >= len(text):
                break  # "." alone: the current object
            if text[pos] == "*":
                steps.append(_Wildcard())
                pos += 1
            elif text[pos] == "[":
                continue
            else:
                name, pos = _read_name(text, pos)
                steps.append(_Field(name))
        elif char == "[":
            content, pos = _read_bracket(text, pos + 1)
            steps.append(_parse_bracket(content))
        elif char.isspace():
            pos += 1
        else:
            name, pos = _read_name(text, pos)
            steps.append(_Field(name))
    return steps


def _parse_path(expression: str) -> list[_Step]:
    text = expression.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1].strip()
    if text.startswith("$"):
        text = text[1:]
    return _parse_steps(text)


def _descendants(value: Any) -> list[Any]:
    out: list[Any] = []
    if isinstance(value, Mapping):
        for key in sorted(value):
            out.append(value[key])
            out.extend(_descendants(value[key]))
    elif isinstance(value, list):
        for item in value:
            out.append(item)
            out.extend(_descendants(item))
    return out


def _compare(left: Any, op: str, right: Any) -> bool:
    numeric = (int, float)
    if isinstance(left, bool) or isinstance(right, bool):
        if op in ("==", "!="):
            same = isinstance(left, bool) and isinstance(right, bool) and left == right
            return same if op == "==" else not same
        return False
    if op in ("==", "!="):
        if isinstance(left, numeric) and isinstance(right, numeric):
            same = left == right
        else:
            same = type(left) is type(right) and left == right
        return bool(same) if op == "==" else not same
    if isinstance(left, numeric) and isinstance(right, numeric):
        pass
    elif not (isinstance(left, str) and isinstance(right, str)):
        return False
    if op == "<":
        return bool(left < right)
    if op == ">":
        return bool(left > right)
    if op == "<=":
        return bool(left <= right)
    return bool(left >= right)


def _apply(steps: Sequence[_Step], values: list[Any]) -> list[Any]:
    for step in steps:
        out: list[Any] = []
        for value in values:
            if isinstance(step, _Field):
                if isinstance(value, Mapping) and step.name in value:
                    out.append(value[step.name])
            elif isinstance(step, _Wildcard):
                if isinstance(value, Mapping):
                    out.extend(value[k] for k in sorted(value))
                elif isinstance(value, list):
                    out.extend(value)
            elif isinstance(step, _Recursive):
                candidates = [value, *_descendants(value)]
                if step.name is None:
                    out.extend(_descendants(value))
                else:
                    out.extend(c[step.name] for c in candidates if isinstance(c, Mapping) and step.name in c)
            elif isinstance(step, _Index):
                if isinstance(value, list) and -len(value) <= step.index < len(value):
                    out.append(value[step.index])
            elif isinstance(step, _Slice):
                if isinstance(value, list):
                    out.extend(value[step.start : step.stop : step.step])
            elif isinstance(value, list):
                out.extend(item for item in value if _filter_matches(step, item))
        values = out
    return values


def _filter_matches(step: _Filter, item: Any) -> bool:
    left = _apply(step.left, [item])
    if step.op is None:
        return bool(left)
    kind, operand = step.right
    right = _apply(operand, [item]) if kind == "path" else [operand]
    if not left or not right:
        return False
    return _compare(left[0], step.op, right[0])


def evaluate_jsonpath(expression: str, obj: Mapping[str, Any]) -> list[Any]:
    """The values a Kubernetes JSONPath selects in ``obj`` (missing keys select nothing).

    Supports ``.a.b``, ``['a.b']``, ``[0]``, ``[-1]``, ``[1:3]``, ``[*]``, ``.*``, ``..name`` and
    filters ``[?(@.type=="Ready")]`` (``== != < > <= >=``, or ``[?(@.x)]`` for existence); braces
    and a leading ``$`` are optional. Raises :class:`JSONPathError` on a malformed expression.
    """
    return _apply(_parse_path(expression), [obj])


def jsonpath_text(value: Any) -> str:
    """A JSONPath result as ``kubectl``/the printer writes it (strings raw, others as JSON/Go)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_go_float(value)
    return go_json(value)


# --------------------------------------------------------------------------------------------
# Columns
# --------------------------------------------------------------------------------------------

CellFunction = Callable[[Mapping[str, Any], datetime], Any]


@dataclass(frozen=True)
class Column:
    """A Table column: from a JSONPath (CRD printer columns), or ``compute(obj, now)`` (built-ins).

    ``compute`` returns the finished cell; JSONPath cells are converted per ``type`` as the
    apiextensions table convertor does.
    """

    name: str
    type: str
    json_path: str
    format: str = ""
    description: str = ""
    priority: int = 0
    compute: CellFunction | None = field(default=None, compare=False, repr=False)

    def definition(self) -> dict[str, Any]:
        """The ``TableColumnDefinition``."""
        return {
            "name": self.name,
            "type": self.type,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        }

    def cell(self, obj: Mapping[str, Any], now: datetime) -> Any:
        if self.compute is not None:
            return self.compute(obj, now)
        try:
            results = evaluate_jsonpath(self.json_path, obj)
        except JSONPathError:
            return None
        if not results:
            return None
        return _cell_for_json_value(self.type, results[0], now)


def _cell_for_json_value(column_type: str, value: Any, now: datetime) -> Any:
    """apiextensions ``cellForJSONValue`` (``string`` columns print any value as text)."""
    if value is None:
        return None
    if column_type == "string":
        return jsonpath_text(value)
    if column_type == "integer":
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            return int(value)
        return None
    if column_type == "number":
        if isinstance(value, bool):
            return None
        if isinstance(value, (int, float)):
            return float(value)
        return None
    if column_type == "boolean":
        return value if isinstance(value, bool) else None
    if column_type == "date":
        if isinstance(value, str):
            return _since(value, now)
        return None
    return None


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _name_cell(obj: Mapping[str, Any], now: datetime) -> Any:
    name = _metadata(obj).get("name")
    return name if isinstance(name, str) else ""


def _age_cell(obj: Mapping[str, Any], now: datetime) -> Any:
    return _since(_metadata(obj).get("creationTimestamp"), now)


def name_column() -> Column:
    """The ``Name`` column every Table starts with."""
    return Column("Name", "string", ".metadata.name", "name", NAME_DESCRIPTION, compute=_name_cell)


def _age_column() -> Column:
    """The ``Age`` column of built-in printers (a string cell: the age, already formatted)."""
    return Column("Age", "string", ".metadata.creationTimestamp", "", CREATION_TIMESTAMP_DESCRIPTION, compute=_age_cell)


def default_columns() -> list[Column]:
    """``Name`` and ``Age``: what the apiserver serves for a CRD without printer columns."""
    return [
        name_column(),
        Column("Age", "date", ".metadata.creationTimestamp", "", CREATION_TIMESTAMP_DESCRIPTION),
    ]


def _created_at_cell(obj: Mapping[str, Any], now: datetime) -> Any:
    stamp = _metadata(obj).get("creationTimestamp")
    parsed = parse_timestamp(stamp) if isinstance(stamp, str) else None
    if parsed is None:
        return "0001-01-01T00:00:00Z"
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def created_at_columns() -> list[Column]:
    """``Name`` and ``Created At``: the apiserver's default table convertor (e.g. CRDs themselves)."""
    return [
        name_column(),
        Column(
            "Created At",
            "date",
            ".metadata.creationTimestamp",
            "",
            CREATION_TIMESTAMP_DESCRIPTION,
            compute=_created_at_cell,
        ),
    ]


def crd_columns(printer_columns: Sequence[Mapping[str, Any]] | None) -> list[Column]:
    """The columns of a CRD version: ``Name``, then its ``additionalPrinterColumns``.

    Without printer columns: :func:`default_columns`. Descriptions default as the apiserver's do.
    """
    if not printer_columns:
        return default_columns()
    columns = [name_column()]
    for col in printer_columns:
        path = str(col.get("jsonPath", ""))
        description = str(col.get("description") or "")
        if not description:
            description = f"Custom resource definition column (in JSONPath format): {path}"
        priority = col.get("priority", 0)
        columns.append(
            Column(
                name=str(col.get("name", "")),
                type=str(col.get("type", "string")),
                json_path=path,
                format=str(col.get("format") or ""),
                description=description,
                priority=priority if isinstance(priority, int) and not isinstance(priority, bool) else 0,
            )
        )
    return columns


# --- built-in printers (pkg/printers/internalversion/printers.go) -----------------------------


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _count_keys(*paths: tuple[str, ...]) -> CellFunction:
    def cell(obj: Mapping[str, Any], now: datetime) -> Any:
        total = 0
        for path in paths:
            value = _get(obj, *path)
            if isinstance(value, (Mapping, list)):
                total += len(value)
        return total

    return cell


def _string_at(*path: str) -> CellFunction:
    def cell(obj: Mapping[str, Any], now: datetime) -> Any:
        value = _get(obj, *path)
        return value if isinstance(value, str) else ""

    return cell


def _pod_ready(obj: Mapping[str, Any], now: datetime) -> Any:
    total = len(_list(_get(obj, "spec", "containers")))
    ready = sum(
        1
        for status in _list(_get(obj, "status", "containerStatuses"))
        if isinstance(status, Mapping) and status.get("ready") and _get(status, "state", "running") is not None
    )
    return f"{ready}/{total}"


def _pod_status(obj: Mapping[str, Any], now: datetime) -> Any:
    phase = _get(obj, "status", "phase")
    phase = phase if isinstance(phase, str) else ""
    reason = phase
    status_reason = _get(obj, "status", "reason")
    if isinstance(status_reason, str) and status_reason:
        reason = status_reason
    has_running = False
    for status in reversed(_list(_get(obj, "status", "containerStatuses"))):
        if not isinstance(status, Mapping):
            continue
        waiting = _get(status, "state", "waiting")
        terminated = _get(status, "state", "terminated")
        if isinstance(waiting, Mapping) and waiting.get("reason"):
            reason = str(waiting["reason"])
        elif isinstance(terminated, Mapping) and terminated.get("reason"):
            reason = str(terminated["reason"])
        elif isinstance(terminated, Mapping):
            signal = terminated.get("signal") or 0
            reason = f"Signal:{signal}" if signal else f"ExitCode:{terminated.get('exitCode') or 0}"
        elif status.get("ready") and _get(status, "state", "running") is not None:
            has_running = True
    if reason == "Completed" and has_running:
        conditions = _list(_get(obj, "status", "conditions"))
        ready = any(
            isinstance(c, Mapping) and c.get("type") == "Ready" and c.get("status") == "True" for c in conditions
        )
        reason = "Running" if ready else "NotReady"
    if _metadata(obj).get("deletionTimestamp"):
        if status_reason == "NodeLost":
            reason = "Unknown"
        elif phase not in ("Succeeded", "Failed"):
            reason = "Terminating"
    return reason


def _pod_restarts(obj: Mapping[str, Any], now: datetime) -> Any:
    restarts = 0
    last: datetime | None = None
    for status in _list(_get(obj, "status", "containerStatuses")):
        if not isinstance(status, Mapping):
            continue
        count = status.get("restartCount")
        if isinstance(count, int) and not isinstance(count, bool):
            restarts += count
        finished = _get(status, "lastState", "terminated", "finishedAt")
        parsed = parse_timestamp(finished) if isinstance(finished, str) else None
        if parsed is not None and (last is None or parsed > last):
            last = parsed
    if restarts and last is not None:
        return f"{restarts} ({human_duration(_aware(now) - last)} ago)"
    return str(restarts)


def _or_none(*path: str) -> CellFunction:
    def cell(obj: Mapping[str, Any], now: datetime) -> Any:
        value = _get(obj, *path)
        return value if isinstance(value, str) and value else "<none>"

    return cell


def _pod_ip(obj: Mapping[str, Any], now: datetime) -> Any:
    ips = _list(_get(obj, "status", "podIPs"))
    ip = _get(ips[0], "ip") if ips else _get(obj, "status", "podIP")
    return ip if isinstance(ip, str) and ip else "<none>"


def _pod_readiness_gates(obj: Mapping[str, Any], now: datetime) -> Any:
    gates = _list(_get(obj, "spec", "readinessGates"))
    if not gates:
        return "<none>"
    conditions = {
        c.get("type"): c.get("status") for c in _list(_get(obj, "status", "conditions")) if isinstance(c, Mapping)
    }
    true = sum(1 for g in gates if isinstance(g, Mapping) and conditions.get(g.get("conditionType")) == "True")
    return f"{true}/{len(gates)}"


def _event_first_seen(obj: Mapping[str, Any], now: datetime) -> str:
    first = obj.get("firstTimestamp")
    if isinstance(first, str) and first:
        return _since(first, now)
    return _since(obj.get("eventTime"), now)


def _event_last_seen(obj: Mapping[str, Any], now: datetime) -> Any:
    series = obj.get("series")
    if isinstance(series, Mapping):
        return _since(series.get("lastObservedTime"), now)
    last = obj.get("lastTimestamp")
    if isinstance(last, str) and last:
        return _since(last, now)
    return _event_first_seen(obj, now)


def _event_object(obj: Mapping[str, Any], now: datetime) -> Any:
    kind = _get(obj, "involvedObject", "kind")
    name = _get(obj, "involvedObject", "name")
    kind = kind.lower() if isinstance(kind, str) else ""
    return f"{kind}/{name}" if isinstance(name, str) and name else kind


def _event_source(obj: Mapping[str, Any], now: datetime) -> Any:
    component = _get(obj, "source", "component") or obj.get("reportingComponent") or ""
    instance = _get(obj, "source", "host") or obj.get("reportingInstance") or ""
    return f"{component}, {instance}" if instance else str(component)


def _event_message(obj: Mapping[str, Any], now: datetime) -> Any:
    message = obj.get("message")
    return message.strip() if isinstance(message, str) else ""


def _event_count(obj: Mapping[str, Any], now: datetime) -> Any:
    series = obj.get("series")
    count = series.get("count") if isinstance(series, Mapping) else obj.get("count")
    if not isinstance(count, int) or isinstance(count, bool) or count == 0:
        return 1
    return count


def _col(name: str, description: str, compute: CellFunction, *, priority: int = 0, fmt: str = "") -> Column:
    return Column(name, "string", "", fmt, description, priority, compute=compute)


def builtin_columns(resource: str) -> list[Column]:
    """The columns kube-apiserver prints for a built-in resource (by plural name, e.g. ``pods``).

    Covers pods, secrets, configmaps, events, namespaces, serviceaccounts, leases and
    customresourcedefinitions; any other resource gets :func:`default_columns`.
    """
    name, age = name_column(), _age_column()
    if resource == "pods":
        return [
            name,
            _col("Ready", "The aggregate readiness state of this pod for accepting traffic.", _pod_ready),
            _col("Status", "The aggregate status of the containers in this pod.", _pod_status),
            _col(
                "Restarts",
                "The number of times the containers in this pod have been restarted and when "
                "the last container in this pod has restarted.",
                _pod_restarts,
            ),
            age,
            _col("IP", "IP address allocated to the pod.", _pod_ip, priority=1),
            _col(
                "Node",
                "NodeName is a request to schedule this pod onto a specific node.",
                _or_none("spec", "nodeName"),
                priority=1,
            ),
            _col(
                "Nominated Node",
                "nominatedNodeName is set only when this pod preempts other pods on the node.",
                _or_none("status", "nominatedNodeName"),
                priority=1,
            ),
            _col(
                "Readiness Gates",
                "If specified, all readiness gates will be evaluated for pod readiness.",
                _pod_readiness_gates,
                priority=1,
            ),
        ]
    if resource == "secrets":
        return [
            name,
            _col("Type", "Used to facilitate programmatic handling of secret data.", _string_at("type")),
            _col("Data", "Data contains the secret data.", _count_keys(("data",), ("stringData",))),
            age,
        ]
    if resource == "configmaps":
        return [
            name,
            _col("Data", "Data contains the configuration data.", _count_keys(("data",), ("binaryData",))),
            age,
        ]
    if resource == "namespaces":
        return [
            name,
            _col("Status", "The status of the namespace", _string_at("status", "phase")),
            age,
        ]
    if resource == "serviceaccounts":
        return [
            name,
            _col(
                "Secrets",
                "Secrets is a list of the secrets in the same namespace that pods running using "
                "this ServiceAccount are allowed to use.",
                _count_keys(("secrets",)),
            ),
            age,
        ]
    if resource == "leases":
        return [
            name,
            _col(
                "Holder",
                "holderIdentity contains the identity of the holder of a current lease.",
                _string_at("spec", "holderIdentity"),
            ),
            age,
        ]
    if resource == "events":
        return [
            _col(
                "Last Seen",
                "The time at which the most recent occurrence of this event was recorded.",
                _event_last_seen,
            ),
            _col(
                "Type",
                "Type of this event (Normal, Warning), new types could be added in the future",
                _string_at("type"),
            ),
            _col(
                "Reason",
                "This should be a short, machine understandable string that gives the reason for "
                "the transition into the object's current status.",
                _string_at("reason"),
            ),
            _col("Object", "The object that this event is about.", _event_object),
            _col(
                "Subobject",
                "If referring to a piece of an object instead of an entire object, this string "
                "should contain a valid JSON/Go field access statement.",
                _string_at("involvedObject", "fieldPath"),
                priority=1,
            ),
            _col(
                "Source",
                "The component reporting this event. Should be a short machine understandable string.",
                _event_source,
                priority=1,
            ),
            _col("Message", "A human-readable description of the status of this operation.", _event_message),
            _col("First Seen", "The time at which the event was first recorded.", _event_first_seen, priority=1),
            _col("Count", "The number of times this event has occurred.", _event_count, priority=1),
            Column("Name", "string", ".metadata.name", "name", NAME_DESCRIPTION, 1, compute=_name_cell),
        ]
    if resource == "customresourcedefinitions":
        return created_at_columns()
    return default_columns()


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------

INCLUDE_OBJECT_POLICIES = ("None", "Metadata", "Object")


def _row_object(obj: Mapping[str, Any], include_object: str) -> Any:
    if include_object == "None":
        return None
    if include_object == "Object":
        return json.loads(json.dumps(obj))
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": json.loads(json.dumps(_metadata(obj))),
    }


def make_table(
    objects: Sequence[Mapping[str, Any]],
    columns: Sequence[Column],
    *,
    now: datetime,
    resource_version: str = "",
    include_object: str = "Metadata",
    continue_token: str = "",
) -> dict[str, Any]:
    """A ``meta.k8s.io/v1`` Table of ``objects`` (a list's items, or one object).

    ``include_object`` is the ``includeObject`` query parameter: ``Metadata`` (default, also for
    "") puts a ``PartialObjectMetadata`` in each row, ``Object`` the whole object, ``None`` a null
    ``object`` (as the apiserver serializes it).
    """
    policy = include_object or "Metadata"
    if policy not in INCLUDE_OBJECT_POLICIES:
        raise ValueError(f"includeObject must be one of None, Metadata, Object, not {include_object!r}")
    metadata: dict[str, Any] = {}
    if resource_version:
        metadata["resourceVersion"] = resource_version
    if continue_token:
        metadata["continue"] = continue_token
    rows = [
        {"cells": [column.cell(obj, now) for column in columns], "object": _row_object(obj, policy)} for obj in objects
    ]
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": [column.definition() for column in columns],
        "rows": rows,
    }
