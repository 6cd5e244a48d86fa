"""Output of ``kubectl mtls``: kubectl-style tables and text, or the same facts as JSON or YAML.

Pure: data in, text out; ``now`` is an argument (relative times such as ``in 7h59m``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import yaml

from mtls_operator.plugin.checks import CheckResult
from mtls_operator.plugin.facts import IdentityRow, urgency
from mtls_operator.rules.spec import format_duration
from mtls_operator.times import format_time

__all__ = ["FORMATS", "check_text", "dump", "fields_text", "relative", "status_data", "status_table", "table",
           "timestamp"]

FORMATS = ("table", "json", "yaml")


def timestamp(moment: datetime | None) -> str | None:
    return format_time(moment) if moment is not None else None


def relative(moment: datetime | None, now: datetime) -> str:
    """``in 7h59m``, ``3m ago``, ``-`` for none; whole minutes from an hour on (seconds are noise there)."""
    if moment is None:
        return "-"
    delta = moment - now
    size = abs(delta)
    if size >= timedelta(hours=1):
        size -= timedelta(seconds=size.seconds % 60, microseconds=size.microseconds)
    return f"in {format_duration(size)}" if delta >= timedelta(0) else f"{format_duration(size)} ago"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Columns padded to their widest cell and three spaces apart, as ``kubectl get`` prints them."""
    lines = [list(headers), *([str(cell) for cell in row] for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    return "\n".join("   ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
                     for line in lines)


def dump(data: Any, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2)
    if fmt == "yaml":
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip("\n")
    raise ValueError(f"unknown output format {fmt!r}; one of {', '.join(FORMATS)}")


def status_data(rows: Sequence[IdentityRow], now: datetime) -> dict[str, Any]:
    return {"items": [{
        "namespace": row.namespace,
        "name": row.name,
        "urgency": urgency(row, now).label,
        "ready": row.ready,
        "reason": row.reason,
        "pods": row.pods,
        "issued": row.issued,
        "earliestExpiry": timestamp(row.earliest_expiry),
        "nextRenewal": timestamp(row.next_renewal),
        "caGenerations": dict(row.ca_generations),
        "rotationPhase": row.rotation_phase,
        "delivery": row.delivery,
        "podCertificatePods": row.pod_certificate_pods,
    } for row in rows]}


def status_table(rows: Sequence[IdentityRow], now: datetime, *, all_namespaces: bool) -> str:
    if not rows:
        return "No identities found."
    headers = [*(["NAMESPACE"] if all_namespaces else []), "NAME", "READY", "PODS", "ISSUED", "EARLIEST-EXPIRY",
               "NEXT-RENEWAL", "CA", "ROTATION", "DELIVERY", "URGENCY"]
    lines = [[*([row.namespace] if all_namespaces else []), row.name, row.ready, str(row.pods), str(row.issued),
              relative(row.earliest_expiry, now), relative(row.next_renewal, now), row.ca_text, row.rotation_phase,
              _delivery_text(row), urgency(row, now).label] for row in rows]
    return table(headers, lines)


def _delivery_text(row: IdentityRow) -> str:
    """``Secret``, or ``PodCertificate(N)`` with how many pods the kubelet serves (their keys never leave
    the node, so ISSUED and the expiry columns, read from Secrets, do not count them)."""
    if row.delivery == "Secret" and not row.pod_certificate_pods:
        return "Secret"
    return f"{row.delivery}({row.pod_certificate_pods})"


def check_text(results: Sequence[CheckResult]) -> str:
    lines = []
    for result in results:
        lines.append(f"{result.level.symbol} {result.name}: {result.message}")
        if result.hint and result.level.value != "ok":
            lines.append(f"    hint: {result.hint}")
    failed = sum(1 for r in results if r.level.value == "fail")
    warned = sum(1 for r in results if r.level.value == "warn")
    lines.append("")
    lines.append(f"{len(results) - failed - warned} ok, {warned} warning(s), {failed} failure(s)")
    return "\n".join(lines)


def fields_text(pairs: Iterable[tuple[str, object]]) -> str:
    """``Key:  value`` lines as ``kubectl describe`` aligns them; nested lists indent below their key."""
    items = list(pairs)
    width = max((len(key) for key, _ in items), default=0) + 2
    lines: list[str] = []
    for key, value in items:
        if isinstance(value, list):
            lines.append(f"{key}:")
            lines.extend(f"  {entry}" for entry in value)
        elif isinstance(value, Mapping):
            lines.append(f"{key}:")
            lines.extend(f"  {k}: {v}" for k, v in value.items())
        else:
            lines.append(f"{(key + ':').ljust(width)}{value}")
    return "\n".join(lines)
