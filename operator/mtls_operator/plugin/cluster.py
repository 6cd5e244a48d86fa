"""The plugin's reads and writes, through the project's API client, as the user (their kubeconfig, their RBAC).

A read the user may not make (403) is reported by the caller as "could not tell", never guessed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mtls_operator import constants as c
from mtls_operator.errors import KubernetesAPIError, NotFoundError
from mtls_operator.k8s import JSON, KubeAPI, core_path, group_path
from mtls_operator.k8s.api import MERGE_PATCH

__all__ = ["OperatorRef", "PluginCluster", "Unreadable"]

# Lists of metadata only (what kubectl get -o name asks for): names, labels and annotations, never a
# Secret's data, so listing pod Secrets does not bring their private keys to the user's machine.
METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"


@dataclass(frozen=True)
class OperatorRef:
    """Where the operator keeps its objects (the chart's defaults; flags override them)."""

    namespace: str = "mtls-system"
    ca_secret: str = c.DEFAULT_CA_SECRET
    # The admission webhooks' own CA: what their caBundle must hold (never the pods' CA).
    webhook_ca_secret: str = c.DEFAULT_WEBHOOK_CA_SECRET
    lease: str = "mtls-operator"
    webhook_configuration: str = "mtls-operator"
    service_account: str = "mtls-operator"


class Unreadable(Exception):
    """The user may not read something (or the API failed): the message says what and why.

    ``status`` is the HTTP status, None when the API server did not answer at all."""

    def __init__(self, message: str, status: int | None) -> None:
        super().__init__(message)
        self.status = status


class PluginCluster:
    def __init__(self, api: KubeAPI) -> None:
        self.api = api

    async def get(self, path: str) -> JSON | None:
        """The object, or None when it does not exist; Unreadable when it cannot be read."""
        try:
            return await self.api.request("GET", path)
        except NotFoundError:
            return None
        except KubernetesAPIError as exc:
            raise Unreadable(str(exc), exc.status) from None

    async def list_objects(self, path: str, label_selector: str | None = None, *,
                           metadata_only: bool = False) -> list[JSON]:
        query = {"labelSelector": label_selector} if label_selector else None
        accept = METADATA_ONLY if metadata_only else "application/json"
        try:
            listing = await self.api.request("GET", path, query=query, accept=accept)
        except KubernetesAPIError as exc:
            raise Unreadable(str(exc), exc.status) from None
        return [item for item in listing.get("items") or [] if isinstance(item, dict)]

    async def merge_patch(self, path: str, patch: Mapping[str, Any]) -> JSON:
        return await self.api.request("PATCH", path, body=patch, content_type=MERGE_PATCH)

    async def create(self, path: str, body: Mapping[str, Any], *, dry_run: bool = False) -> JSON:
        return await self.api.request("POST", path, body=body, query={"dryRun": "All"} if dry_run else None)

    # What the commands read -----------------------------------------------------------------------

    async def identities(self, namespace: str | None) -> list[JSON]:
        return await self.list_objects(group_path(c.GROUP, c.VERSION, c.PLURAL, namespace))

    async def managed_secrets(self, namespace: str | None, identity: str | None = None) -> list[JSON]:
        """The pod Secrets' metadata (their annotations say everything ``status`` and ``renew`` need)."""
        selector = f"{c.MANAGED_BY_LABEL}={c.MANAGER_NAME}"
        selector += f",{c.IDENTITY_LABEL}={identity}" if identity else f",{c.IDENTITY_LABEL}"
        return await self.list_objects(core_path("secrets", namespace), selector, metadata_only=True)

    async def ca_secret(self, ref: OperatorRef) -> JSON | None:
        return await self.get(core_path("secrets", ref.namespace, ref.ca_secret))
