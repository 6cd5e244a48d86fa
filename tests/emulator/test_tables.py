"""Server-side printing: Tables for ``kubectl get``, JSONPath and human durations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from kube_emulator.tables import (
    Column,
    JSONPathError,
    builtin_columns,
    crd_columns,
    default_columns,
    evaluate_jsonpath,
    human_duration,
    make_table,
)

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
CRD_PATH = Path(__file__).resolve().parents[2] / "crds" / "mtlsidentity.yaml"


def ago(**kwargs: float) -> str:
    return (NOW - timedelta(**kwargs)).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- human durations (duration.HumanDuration) -------------------------------------------------

H = 3600
D = 24 * H
Y = 365 * D


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        pytest.param(-2, "<invalid>", id="future"),
        pytest.param(-1.5, "0s", id="clock-skew-tolerated"),
        pytest.param(-1, "0s", id="minus-one"),
        pytest.param(0, "0s", id="zero"),
        pytest.param(0.9, "0s", id="truncates"),
        pytest.param(1, "1s", id="one-second"),
        pytest.param(70, "70s", id="70s"),
        pytest.param(119, "119s", id="under-2m"),
        pytest.param(120, "2m", id="2m"),
        pytest.param(190, "3m10s", id="3m10s"),
        pytest.param(599, "9m59s", id="9m59s"),
        pytest.param(600, "10m", id="10m"),
        pytest.param(70 * 60, "70m", id="70m"),
        pytest.param(179 * 60 + 59, "179m", id="179m"),
        pytest.param(3 * H, "3h", id="3h"),
        pytest.param(3 * H + 5 * 60, "3h5m", id="3h5m"),
        pytest.param(8 * H - 60, "7h59m", id="7h59m"),
        pytest.param(8 * H, "8h", id="8h"),
        pytest.param(47 * H, "47h", id="47h"),
        pytest.param(48 * H, "2d", id="2d"),
        pytest.param(49 * H, "2d1h", id="2d1h"),
        pytest.param(8 * D - H, "7d23h", id="7d23h"),
        pytest.param(8 * D + 2 * H, "8d", id="8d"),
        pytest.param(367 * D, "367d", id="367d"),
        pytest.param(2 * Y - D, "729d", id="729d"),
        pytest.param(2 * Y + 25 * H, "2y1d", id="2y1d"),
        pytest.param(3 * Y, "3y", id="3y"),
        pytest.param(8 * Y + 2 * H, "8y", id="8y"),
        pytest.param(20 * Y + 100 * D, "20y", id="20y"),
    ],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(timedelta(seconds=seconds)) == text


# --- JSONPath ---------------------------------------------------------------------------------

OBJ: dict[str, Any] = {
    "metadata": {
        "name": "payments",
        "creationTimestamp": "2026-01-01T11:00:00Z",
        "labels": {"app.kubernetes.io/name": "pay", "tier": "web"},
    },
    "spec": {"dnsNames": ["a", "b", "c"], "flag": True},
    "status": {
        "pods": 3,
        "ratio": 0.5,
        "conditions": [
            {"type": "Synced", "status": "False", "observedGeneration": 1},
            {"type": "Ready", "status": "True", "observedGeneration": 2},
        ],
    },
}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        pytest.param(".status.pods", [3], id="field"),
        pytest.param("{.status.pods}", [3], id="braces"),
        pytest.param("$.status.pods", [3], id="dollar"),
        pytest.param("{$.status.pods}", [3], id="braces-dollar"),
        pytest.param("status.pods", [3], id="no-leading-dot"),
        pytest.param(".metadata.creationTimestamp", ["2026-01-01T11:00:00Z"], id="timestamp"),
        pytest.param('.status.conditions[?(@.type=="Ready")].status', ["True"], id="filter-double-quotes"),
        pytest.param(".status.conditions[?(@.type=='Synced')].status", ["False"], id="filter-single-quotes"),
        pytest.param('.status.conditions[?(@.type!="Ready")].type', ["Synced"], id="filter-not-equal"),
        pytest.param(".status.conditions[?(@.observedGeneration>1)].type", ["Ready"], id="filter-number"),
        pytest.param(".status.conditions[?(@.observedGeneration)].type", ["Synced", "Ready"], id="filter-exists"),
        pytest.param('.status.conditions[?(@.type=="Gone")].status', [], id="filter-no-match"),
        pytest.param(".spec.dnsNames[0]", ["a"], id="index"),
        pytest.param(".spec.dnsNames[-1]", ["c"], id="negative-index"),
        pytest.param(".spec.dnsNames[5]", [], id="index-out-of-range"),
        pytest.param(".spec.dnsNames[0:2]", ["a", "b"], id="slice"),
        pytest.param(".spec.dnsNames[*]", ["a", "b", "c"], id="wildcard-list"),
        pytest.param(".status.conditions[*].type", ["Synced", "Ready"], id="wildcard-then-field"),
        pytest.param(".metadata.labels.*", ["pay", "web"], id="wildcard-map-sorted"),
        pytest.param(".metadata.labels['app.kubernetes.io/name']", ["pay"], id="bracket-key-with-dots"),
        pytest.param('.metadata["labels"].tier', ["web"], id="bracket-double-quotes"),
        pytest.param(".metadata.labels.app\\.kubernetes\\.io/name", ["pay"], id="escaped-dots"),
        pytest.param("..type", ["Synced", "Ready"], id="recursive"),
        pytest.param(".status.missing", [], id="missing"),
        pytest.param(".status.pods.deeper", [], id="through-scalar"),
        pytest.param(".spec.flag", [True], id="boolean"),
        pytest.param(".", [OBJ], id="root"),
    ],
)
def test_evaluate_jsonpath(expression: str, expected: list[Any]) -> None:
    assert evaluate_jsonpath(expression, OBJ) == expected


@pytest.mark.parametrize("expression", [".a[", ".a[x]", ".a[?(b)]", ".a[1:2:3:4]"])
def test_evaluate_jsonpath_malformed(expression: str) -> None:
    with pytest.raises(JSONPathError):
        evaluate_jsonpath(expression, OBJ)


# --- cells of CRD printer columns -------------------------------------------------------------


@pytest.mark.parametrize(
    ("column_type", "path", "value", "cell"),
    [
        pytest.param("string", ".v", "x", "x", id="string"),
        pytest.param("string", ".v", 3, "3", id="string-from-int"),
        pytest.param("string", ".v", True, "true", id="string-from-bool"),
        pytest.param("string", ".v", 1.5, "1.5", id="string-from-float"),
        pytest.param("string", ".v", {"b": 1, "a": [2]}, '{"a":[2],"b":1}', id="string-from-object"),
        pytest.param("string", ".v", None, None, id="string-null"),
        pytest.param("integer", ".v", 3, 3, id="integer"),
        pytest.param("integer", ".v", 3.9, 3, id="integer-from-float-truncates"),
        pytest.param("integer", ".v", "3", None, id="integer-from-string-is-null"),
        pytest.param("integer", ".v", True, None, id="integer-from-bool-is-null"),
        pytest.param("number", ".v", 2, 2.0, id="number"),
        pytest.param("boolean", ".v", False, False, id="boolean"),
        pytest.param("boolean", ".v", "false", None, id="boolean-from-string-is-null"),
        pytest.param("date", ".v", "2026-01-01T11:55:00Z", "5m", id="date-is-an-age"),
        pytest.param("date", ".v", "2026-01-01T13:55:00+02:00", "5m", id="date-with-offset"),
        pytest.param("date", ".v", "2026-01-01T11:59:59.5Z", "0s", id="date-fraction"),
        pytest.param("date", ".v", "2026-01-02T00:00:00Z", "<invalid>", id="date-in-future"),
        pytest.param("date", ".v", "yesterday", "<invalid>", id="date-unparsable"),
        pytest.param("date", ".v", "", "<unknown>", id="date-empty"),
        pytest.param("date", ".v", 5, None, id="date-not-string"),
        pytest.param("string", ".missing", "x", None, id="missing-is-null"),
        pytest.param("unknown-type", ".v", "x", None, id="unknown-type-is-null"),
    ],
)
def test_crd_cells(column_type: str, path: str, value: Any, cell: Any) -> None:
    column = Column("C", column_type, path)
    assert column.cell({"v": value}, NOW) == cell


def test_crd_columns_without_printer_columns_are_name_and_age() -> None:
    columns = crd_columns([])
    assert [(c.name, c.type, c.format) for c in columns] == [("Name", "string", "name"), ("Age", "date", "")]
    assert columns == default_columns()
    table = make_table([{"metadata": {"name": "x", "creationTimestamp": ago(hours=3)}}], columns, now=NOW)
    assert table["rows"][0]["cells"] == ["x", "3h"]


def test_crd_columns_definitions() -> None:
    columns = crd_columns(
        [
            {"name": "Ready", "type": "string", "jsonPath": ".status.ready"},
            {"name": "Extra", "type": "integer", "jsonPath": ".status.n", "priority": 1, "description": "d"},
        ]
    )
    assert [c.definition() for c in columns[1:]] == [
        {
            "name": "Ready",
            "type": "string",
            "format": "",
            "description": "Custom resource definition column (in JSONPath format): .status.ready",
            "priority": 0,
        },
        {"name": "Extra", "type": "integer", "format": "", "description": "d", "priority": 1},
    ]


def test_project_crd_table() -> None:
    if not CRD_PATH.exists():
        pytest.skip(f"{CRD_PATH} is not there yet")
    crd = yaml.safe_load(CRD_PATH.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v.get("storage")]
    columns = crd_columns(version.get("additionalPrinterColumns"))
    assert [c.name.upper() for c in columns] == ["NAME", "READY", "PODS", "ISSUED", "NEXT-RENEWAL", "AGE"]
    ready = {
        "metadata": {"name": "payments", "creationTimestamp": ago(minutes=150)},
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "pods": 3,
            "issued": 3,
            "nextRenewalTime": "2026-01-02T04:00:00Z",
        },
    }
    fresh = {"metadata": {"name": "orders", "creationTimestamp": ago(seconds=5)}}
    table = make_table([ready, fresh], columns, now=NOW, resource_version="42")
    assert [row["cells"] for row in table["rows"]] == [
        ["payments", "True", 3, 3, "2026-01-02T04:00:00Z", "150m"],
        ["orders", None, None, None, None, "5s"],
    ]
    assert table["metadata"] == {"resourceVersion": "42"}


# --- tables -----------------------------------------------------------------------------------

CM: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "bundle", "namespace": "shop", "uid": "u1", "creationTimestamp": ago(days=3)},
    "data": {"ca.crt": "..."},
}


@pytest.mark.parametrize(
    ("include_object", "row_object"),
    [
        pytest.param(
            "Metadata",
            {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": CM["metadata"]},
            id="metadata",
        ),
        pytest.param(
            "",
            {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": CM["metadata"]},
            id="empty-means-metadata",
        ),
        pytest.param("Object", CM, id="object"),
        pytest.param("None", None, id="none"),
    ],
)
def test_make_table(include_object: str, row_object: Any) -> None:
    table = make_table([CM], builtin_columns("configmaps"), now=NOW, include_object=include_object)
    assert table == {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": [
            {
                "name": "Name",
                "type": "string",
                "format": "name",
                "description": table["columnDefinitions"][0]["description"],
                "priority": 0,
            },
            {
                "name": "Data",
                "type": "string",
                "format": "",
                "description": "Data contains the configuration data.",
                "priority": 0,
            },
            {
                "name": "Age",
                "type": "string",
                "format": "",
                "description": table["columnDefinitions"][2]["description"],
                "priority": 0,
            },
        ],
        "rows": [{"cells": ["bundle", 1, "3d"], "object": row_object}],
    }
    assert table["columnDefinitions"][0]["description"].startswith("Name must be unique")


def test_make_table_row_objects_are_copies() -> None:
    table = make_table([CM], default_columns(), now=NOW, include_object="Object")
    table["rows"][0]["object"]["metadata"]["name"] = "changed"
    assert CM["metadata"]["name"] == "bundle"


def test_make_table_rejects_unknown_include_object() -> None:
    with pytest.raises(ValueError, match="includeObject"):
        make_table([CM], default_columns(), now=NOW, include_object="Everything")


def test_make_table_naive_now_is_utc() -> None:
    table = make_table([CM], default_columns(), now=NOW.replace(tzinfo=None))
    assert table["rows"][0]["cells"] == ["bundle", "3d"]


def test_empty_table_keeps_columns() -> None:
    table = make_table([], default_columns(), now=NOW, resource_version="9", continue_token="c")
    assert table["rows"] == []
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Age"]
    assert table["metadata"] == {"resourceVersion": "9", "continue": "c"}


# --- built-in printers ------------------------------------------------------------------------

POD = {
    "metadata": {"name": "web-0", "creationTimestamp": ago(days=2, hours=1)},
    "spec": {"containers": [{"name": "app"}, {"name": "proxy"}], "nodeName": "node-1"},
    "status": {
        "phase": "Running",
        "podIPs": [{"ip": "10.0.0.7"}],
        "containerStatuses": [
            {
                "name": "app",
                "ready": True,
                "state": {"running": {}},
                "restartCount": 2,
                "lastState": {"terminated": {"finishedAt": ago(minutes=4)}},
            },
            {"name": "proxy", "ready": True, "state": {"running": {}}, "restartCount": 0},
        ],
    },
}
CRASHING_POD = {
    "metadata": {"name": "web-1", "creationTimestamp": ago(seconds=30)},
    "spec": {"containers": [{"name": "app"}]},
    "status": {
        "phase": "Running",
        "containerStatuses": [{"name": "app", "ready": False, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}],
    },
}
TERMINATING_POD = {
    "metadata": {"name": "web-2", "creationTimestamp": ago(minutes=5), "deletionTimestamp": ago(seconds=1)},
    "spec": {"containers": [{"name": "app"}]},
    "status": {"phase": "Running"},
}
PENDING_POD = {"metadata": {"name": "web-3"}, "spec": {"containers": [{"name": "app"}]}, "status": {"phase": "Pending"}}
EXITED_POD = {
    "metadata": {"name": "job-0", "creationTimestamp": ago(hours=1)},
    "spec": {"containers": [{"name": "app"}]},
    "status": {"phase": "Failed", "containerStatuses": [{"name": "app", "state": {"terminated": {"exitCode": 3}}}]},
}
SECRET = {
    "metadata": {"name": "ca", "creationTimestamp": ago(seconds=59)},
    "type": "kubernetes.io/tls",
    "data": {"tls.crt": "", "tls.key": "", "ca.crt": ""},
}
NAMESPACE = {"metadata": {"name": "shop", "creationTimestamp": ago(days=400)}, "status": {"phase": "Active"}}
SERVICE_ACCOUNT = {"metadata": {"name": "default", "creationTimestamp": ago(hours=9)}, "secrets": [{"name": "t"}]}
LEASE = {
    "metadata": {"name": "mtls-operator", "creationTimestamp": ago(minutes=1)},
    "spec": {"holderIdentity": "pod-a"},
}
CRD = {"metadata": {"name": "mtlsidentities.mtls.dev", "creationTimestamp": "2026-01-01T10:00:00+01:00"}}
EVENT = {
    "metadata": {"name": "payments.1"},
    "involvedObject": {"kind": "MTLSIdentity", "name": "payments", "fieldPath": "spec.dnsNames"},
    "reason": "Issued",
    "type": "Normal",
    "message": "issued 3 certificates\n",
    "firstTimestamp": ago(minutes=30),
    "lastTimestamp": ago(minutes=2),
    "count": 4,
    "source": {"component": "mtls-operator", "host": "node-1"},
}
NEW_EVENT = {
    "metadata": {"name": "x.2"},
    "involvedObject": {"kind": "Pod"},
    "reason": "Started",
    "type": "Warning",
    "eventTime": "2026-01-01T11:59:50.123456Z",
    "reportingComponent": "kubelet",
}


@pytest.mark.parametrize(
    ("resource", "obj", "names", "cells"),
    [
        pytest.param(
            "pods",
            POD,
            ["Name", "Ready", "Status", "Restarts", "Age", "IP", "Node", "Nominated Node", "Readiness Gates"],
            ["web-0", "2/2", "Running", "2 (4m ago)", "2d1h", "10.0.0.7", "node-1", "<none>", "<none>"],
            id="pod-running",
        ),
        pytest.param(
            "pods",
            CRASHING_POD,
            None,
            ["web-1", "0/1", "CrashLoopBackOff", "0", "30s", "<none>", "<none>", "<none>", "<none>"],
            id="pod-crashing",
        ),
        pytest.param("pods", TERMINATING_POD, None, None, id="pod-terminating"),
        pytest.param(
            "pods",
            PENDING_POD,
            None,
            ["web-3", "0/1", "Pending", "0", "<unknown>", "<none>", "<none>", "<none>", "<none>"],
            id="pod-pending",
        ),
        pytest.param(
            "pods",
            EXITED_POD,
            None,
            ["job-0", "0/1", "ExitCode:3", "0", "60m", "<none>", "<none>", "<none>", "<none>"],
            id="pod-exited",
        ),
        pytest.param(
            "secrets",
            SECRET,
            ["Name", "Type", "Data", "Age"],
            ["ca", "kubernetes.io/tls", 3, "59s"],
            id="secret",
        ),
        pytest.param("namespaces", NAMESPACE, ["Name", "Status", "Age"], ["shop", "Active", "400d"], id="namespace"),
        pytest.param(
            "serviceaccounts",
            SERVICE_ACCOUNT,
            ["Name", "Secrets", "Age"],
            ["default", 1, "9h"],
            id="serviceaccount",
        ),
        pytest.param("leases", LEASE, ["Name", "Holder", "Age"], ["mtls-operator", "pod-a", "60s"], id="lease"),
        pytest.param(
            "customresourcedefinitions",
            CRD,
            ["Name", "Created At"],
            ["mtlsidentities.mtls.dev", "2026-01-01T09:00:00Z"],
            id="crd-created-at",
        ),
        pytest.param(
            "events",
            EVENT,
            ["Last Seen", "Type", "Reason", "Object", "Subobject", "Source", "Message", "First Seen", "Count", "Name"],
            [
                "2m",
                "Normal",
                "Issued",
                "mtlsidentity/payments",
                "spec.dnsNames",
                "mtls-operator, node-1",
                "issued 3 certificates",
                "30m",
                4,
                "payments.1",
            ],
            id="event",
        ),
        pytest.param(
            "events",
            NEW_EVENT,
            None,
            ["9s", "Warning", "Started", "pod", "", "kubelet", "", "9s", 1, "x.2"],
            id="event-new-api",
        ),
        pytest.param("deployments", POD, ["Name", "Age"], ["web-0", "2d1h"], id="other-resource-default"),
    ],
)
def test_builtin_columns(resource: str, obj: dict[str, Any], names: list[str] | None, cells: list[Any] | None) -> None:
    columns = builtin_columns(resource)
    if names is not None:
        assert [c.name for c in columns] == names
    row = make_table([obj], columns, now=NOW)["rows"][0]["cells"]
    if cells is not None:
        assert row == cells
    if obj is TERMINATING_POD:
        assert row[2] == "Terminating"


def test_builtin_wide_columns_have_priority() -> None:
    assert [c.name for c in builtin_columns("pods") if c.priority] == [
        "IP",
        "Node",
        "Nominated Node",
        "Readiness Gates",
    ]
    assert [c.name for c in builtin_columns("events") if not c.priority] == [
        "Last Seen",
        "Type",
        "Reason",
        "Object",
        "Message",
    ]
