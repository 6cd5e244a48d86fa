"""Log output: readable text for people, or one JSON object per line for log pipelines (``MTLS_LOG_FORMAT``).

JSON lines carry ``time`` (RFC 3339, UTC, microseconds), ``level``, ``logger``, ``message`` and, where the
line is about one, ``identity``, ``namespace``, ``pod`` and ``reason``: from the ``extra`` of our own log
calls (:func:`fields`), or from the object kopf logs about. Both formats pass every message through
:func:`redact`: PEM never reaches a log line, whatever a caller or a library put in it.

No kopf, no kubernetes: kopf's per-object records are read through their ``k8s_ref`` attribute only.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final, TextIO

from mtls_operator.config import LOG_FORMATS
from mtls_operator.times import format_micro_time

__all__ = ["FIELDS", "LOG_FORMATS", "JSONFormatter", "TextFormatter", "configure_logging", "fields", "redact"]

FIELDS: Final = ("identity", "namespace", "pod", "reason")

# A PEM block (certificate, key of any kind, CSR), or what is left of one cut short; and the same in
# base64, as a Secret's ``data`` holds it ("-----BEGIN" encodes to "LS0tLS1CRUdJTi").
_PEM: Final = re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?(?:-----END [A-Z0-9 ]+-----|\Z)|LS0tLS1CRUdJTi[A-Za-z0-9+/=]*",
                         re.DOTALL)
_TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def redact(text: str) -> str:
    """``text`` with every PEM block (plain or base64) replaced by ``[PEM redacted]``."""
    return _PEM.sub("[PEM redacted]", text) if "-----BEGIN " in text or "LS0tLS1CRUdJTi" in text else text


def fields(*, identity: str | None = None, namespace: str | None = None, pod: str | None = None,
           reason: str | None = None) -> dict[str, str]:
    """The ``extra`` of a log call about an identity or a pod: what JSON lines carry as their own keys."""
    given = {"identity": identity, "namespace": namespace, "pod": pod, "reason": reason}
    return {f"mtls_{key}": value for key, value in given.items() if value}


def _record_fields(record: logging.LogRecord) -> dict[str, str]:
    found = {key: str(getattr(record, f"mtls_{key}")) for key in FIELDS if getattr(record, f"mtls_{key}", None)}
    ref = getattr(record, "k8s_ref", None)
    if isinstance(ref, Mapping):
        if ref.get("namespace"):
            found.setdefault("namespace", str(ref["namespace"]))
        if ref.get("name"):
            kind = {"MTLSIdentity": "identity", "Pod": "pod"}.get(str(ref.get("kind")))
            if kind:
                found.setdefault(kind, str(ref["name"]))
    return found


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(_TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JSONFormatter(logging.Formatter):
    """One JSON object per line; the keys of :data:`FIELDS` only where the line is about one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": format_micro_time(datetime.fromtimestamp(record.created, UTC)),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        line.update(_record_fields(record))
        if record.exc_info:
            line["error"] = redact(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False)


def configure_logging(log_format: str, *, verbose: bool = False, stream: TextIO | None = None) -> logging.Handler:
    """One handler on the root logger, in ``log_format``; returns it (tests remove it again)."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JSONFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    return handler
