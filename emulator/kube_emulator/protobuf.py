"""Decoding of the few protobuf request bodies kubectl sends, so ``kubectl create ...`` works.

kubectl's typed clients send built-in objects as ``application/vnd.kubernetes.protobuf`` (the
``k8s\\x00`` envelope around a ``runtime.Unknown``) and never fall back to JSON on a 415. Only
Namespace, Secret, ConfigMap and ServiceAccount are decoded (``kubectl create namespace|secret|
configmap|serviceaccount``); other kinds get 415. Responses are always JSON, which those
clients accept.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Iterator
from typing import Any

MAGIC = b"k8s\x00"

# A schema maps a field number to (JSON name, type); types: "string", "bytes", "int", "bool",
# "time", "strings" (repeated string), "map" (string→string), "bmap" (string→bytes as base64),
# or a nested schema (dict) / [schema] for repeated messages.
Schema = dict[int, tuple[str, Any]]

_OWNER_REFERENCE: Schema = {
    1: ("kind", "string"), 3: ("name", "string"), 4: ("uid", "string"), 5: ("apiVersion", "string"),
    6: ("controller", "bool"), 7: ("blockOwnerDeletion", "bool"),
}
_OBJECT_META: Schema = {
    1: ("name", "string"), 2: ("generateName", "string"), 3: ("namespace", "string"),
    5: ("uid", "string"), 6: ("resourceVersion", "string"), 7: ("generation", "int"),
    8: ("creationTimestamp", "time"), 9: ("deletionTimestamp", "time"),
    10: ("deletionGracePeriodSeconds", "int"), 11: ("labels", "map"), 12: ("annotations", "map"),
    13: ("ownerReferences", [_OWNER_REFERENCE]), 14: ("finalizers", "strings"),
}
_OBJECT_REFERENCE: Schema = {
    1: ("kind", "string"), 2: ("namespace", "string"), 3: ("name", "string"), 4: ("uid", "string"),
    5: ("apiVersion", "string"), 6: ("resourceVersion", "string"), 7: ("fieldPath", "string"),
}
KINDS: dict[tuple[str, str], Schema] = {
    ("v1", "Namespace"): {
        1: ("metadata", _OBJECT_META), 2: ("spec", {1: ("finalizers", "strings")}),
        3: ("status", {1: ("phase", "string")}),
    },
    ("v1", "Secret"): {
        1: ("metadata", _OBJECT_META), 2: ("data", "bmap"), 3: ("type", "string"), 4: ("stringData", "map"),
        5: ("immutable", "bool"),
    },
    ("v1", "ConfigMap"): {
        1: ("metadata", _OBJECT_META), 2: ("data", "map"), 3: ("binaryData", "bmap"), 4: ("immutable", "bool"),
    },
    ("v1", "ServiceAccount"): {
        1: ("metadata", _OBJECT_META), 2: ("secrets", [_OBJECT_REFERENCE]),
        3: ("imagePullSecrets", [{1: ("name", "string")}]), 4: ("automountServiceAccountToken", "bool"),
    },
}


class ProtobufError(ValueError):
    """Not a protobuf body this emulator can read."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ProtobufError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int, Any]]:
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield number, wire, value
        elif wire == 2:
            length, pos = _varint(buf, pos)
            yield number, wire, buf[pos:pos + length]
            pos += length
        elif wire == 1:
            yield number, wire, int.from_bytes(buf[pos:pos + 8], "little")
            pos += 8
        elif wire == 5:
            yield number, wire, int.from_bytes(buf[pos:pos + 4], "little")
            pos += 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _map_entry(buf: bytes) -> tuple[str, bytes]:
    key, value = "", b""
    for number, _, raw in _fields(buf):
        if number == 1:
            key = bytes(raw).decode()
        elif number == 2:
            value = bytes(raw)
    return key, value


def decode_message(buf: bytes, schema: Schema) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for number, _, raw in _fields(buf):
        if number not in schema:
            continue
        name, kind = schema[number]
        if isinstance(kind, dict):
            result[name] = decode_message(raw, kind)
        elif isinstance(kind, list):
            result.setdefault(name, []).append(decode_message(raw, kind[0]))
        elif kind == "string":
            result[name] = bytes(raw).decode()
        elif kind == "bytes":
            result[name] = base64.b64encode(bytes(raw)).decode()
        elif kind == "int":
            result[name] = _signed(raw)
        elif kind == "bool":
            result[name] = bool(raw)
        elif kind == "strings":
            result.setdefault(name, []).append(bytes(raw).decode())
        elif kind in ("map", "bmap"):
            key, value = _map_entry(raw)
            result.setdefault(name, {})[key] = value.decode() if kind == "map" else base64.b64encode(value).decode()
        elif kind == "time":
            seconds = next((v for n, _, v in _fields(raw) if n == 1), 0)
            moment = datetime.datetime.fromtimestamp(_signed(seconds), datetime.UTC)
            result[name] = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {k: v for k, v in result.items() if v not in ("", {}, [])}


def decode(body: bytes) -> dict[str, Any]:
    """The JSON form of a ``k8s\\x00``-enveloped protobuf object (for the supported kinds)."""
    if not body.startswith(MAGIC):
        raise ProtobufError("not a Kubernetes protobuf envelope")
    type_meta: dict[str, Any] = {}
    raw = b""
    for number, _, value in _fields(body[len(MAGIC):]):
        if number == 1:
            type_meta = decode_message(value, {1: ("apiVersion", "string"), 2: ("kind", "string")})
        elif number == 2:
            raw = bytes(value)
    key = (str(type_meta.get("apiVersion", "")), str(type_meta.get("kind", "")))
    schema = KINDS.get(key)
    if schema is None:
        raise ProtobufError(f"protobuf bodies of {key[1] or 'this kind'} are not supported; send JSON")
    obj = decode_message(raw, schema)
    return {"apiVersion": key[0], "kind": key[1], **obj}
