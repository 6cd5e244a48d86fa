"""kubectl mtls reads pod Secrets' metadata only where that is all it needs (never their keys), and turns a
refused read into Unreadable (said as "could not tell"), a missing object into None."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from mtls_operator.errors import KubernetesAPIError, NotFoundError
from mtls_operator.plugin.cluster import METADATA_ONLY, PluginCluster, Unreadable


class FakeAPI:
    def __init__(self, answer: dict[str, Any] | Exception) -> None:
        self.answer = answer
        self.calls: list[tuple[str, str, Mapping[str, str] | None, str]] = []

    async def request(self, method: str, path: str, *, query: Mapping[str, str] | None = None, body: object = None,
                      content_type: str = "application/json", accept: str = "application/json") -> dict[str, Any]:
        self.calls.append((method, path, query, accept))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


async def test_status_and_renew_list_secret_metadata_only() -> None:
    api = FakeAPI({"items": [{"metadata": {"name": "payments-payments-0"}}]})
    found = await PluginCluster(api).managed_secrets("shop", "payments")  # type: ignore[arg-type]
    assert found == [{"metadata": {"name": "payments-payments-0"}}]
    (call,) = api.calls
    assert call == ("GET", "/api/v1/namespaces/shop/secrets",
                    {"labelSelector": "app.kubernetes.io/managed-by=mtls-operator,mtls.dev/identity=payments"},
                    METADATA_ONLY)
    assert "as=PartialObjectMetadataList" in METADATA_ONLY


async def test_every_namespace_and_every_identity() -> None:
    api = FakeAPI({"items": []})
    await PluginCluster(api).managed_secrets(None)  # type: ignore[arg-type]
    assert api.calls[0][1:3] == ("/api/v1/secrets",
                                 {"labelSelector": "app.kubernetes.io/managed-by=mtls-operator,mtls.dev/identity"})


async def test_missing_is_none_and_refused_is_unreadable() -> None:
    assert await PluginCluster(FakeAPI(NotFoundError("GET x: HTTP 404"))).get("/x") is None  # type: ignore[arg-type]
    forbidden = KubernetesAPIError("GET x: HTTP 403: secrets is forbidden", status=403, retryable=False)
    with pytest.raises(Unreadable, match="forbidden"):
        await PluginCluster(FakeAPI(forbidden)).get("/x")  # type: ignore[arg-type]
    with pytest.raises(Unreadable, match="forbidden"):
        await PluginCluster(FakeAPI(forbidden)).list_objects("/x")  # type: ignore[arg-type]
