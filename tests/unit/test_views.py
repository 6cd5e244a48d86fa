"""views.py: objects parsed once at the edge; odd input reads as empty, never raises."""

from __future__ import annotations

from typing import Any

import pytest

from mtls_operator.k8s.views import ConfigMapView, IdentityView, ObjectMeta, SecretView


def test_a_secret_view_reads_what_the_operator_looks_at() -> None:
    body = {"metadata": {"name": "s", "namespace": "shop", "uid": "u", "resourceVersion": "9",
                         "labels": {"a": "b"}, "annotations": {"x": "y"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "uid": "rs"},
                                             {"apiVersion": "v1", "kind": "Pod", "uid": "pod-uid"}]},
            "data": {"tls.crt": "Zm9v"}}
    view = SecretView.of(body)
    assert (view.name, view.meta.namespace, view.version) == ("s", "shop", ("u", "9"))
    assert (dict(view.labels), dict(view.annotations)) == ({"a": "b"}, {"x": "y"})
    assert view.owner_pod_uid == "pod-uid"
    assert view.data == {"tls.crt": "Zm9v"}


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"metadata": None, "data": None},
        {"metadata": {"labels": ["a"], "annotations": "x", "ownerReferences": {"kind": "Pod"}}, "data": []},
        {"metadata": {"ownerReferences": ["junk", {"kind": "Pod", "apiVersion": "v2"}], "generation": "3"}},
    ],
)
def test_odd_input_reads_as_empty(body: dict[str, Any]) -> None:
    view = SecretView.of(body)
    assert (view.name, dict(view.labels), view.owner_pod_uid, dict(view.data)) == ("", {}, None, {})
    assert ObjectMeta.of(body).generation is None


def test_identity_and_configmap_views() -> None:
    identity = IdentityView.of({"metadata": {"name": "web", "uid": "u", "generation": 4,
                                             "deletionTimestamp": "2026-01-01T00:00:00Z"},
                                "spec": {"selector": {}}, "status": {"pods": 1}})
    assert (identity.version, identity.meta.deleting, identity.status) == (("u", "4"), True, {"pods": 1})
    assert ConfigMapView.of({"metadata": {"labels": {"k": "v"}}, "data": {"ca.crt": "x"}}).data == {"ca.crt": "x"}
