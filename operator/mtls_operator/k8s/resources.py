"""Typed operations on the few kinds the operator touches: pods, Secrets, ConfigMaps, identities, Events.

Each method is one API call. Secrets are only ever written with an optimistic-concurrency guard
(``resourceVersion`` on updates, a ``uid`` precondition on deletes), so a Secret that changed
hands between our read and our write is never clobbered.
"""

from __future__ import annotations

import secrets as random_tokens
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from mtls_operator.constants import GROUP, KIND, MANAGER_NAME, PLURAL, VERSION
from mtls_operator.errors import NotFoundError
from mtls_operator.k8s.api import JSON, MERGE_PATCH, KubeAPI, core_path, group_path
from mtls_operator.times import format_time

# Where the Mutating/ValidatingWebhookConfigurations live.
ADMISSION_GROUP = "admissionregistration.k8s.io"
# Where leader election's Lease lives.
LEASE_GROUP = "coordination.k8s.io"
# Where PodCertificateRequests and ClusterTrustBundles live.
CERTIFICATES_GROUP = "certificates.k8s.io"
CTB_GROUP = CERTIFICATES_GROUP


def _items(listing: JSON) -> list[JSON]:
    items = listing.get("items") or []
    return [item for item in items if isinstance(item, dict)]


class Cluster:
    """The operator's view of the cluster: what it reads and writes, and nothing more."""

    def __init__(self, api: KubeAPI) -> None:
        self.api = api

    # Identities ------------------------------------------------------------------------------

    async def get_identity(self, namespace: str, name: str) -> JSON | None:
        try:
            return await self.api.request("GET", group_path(GROUP, VERSION, PLURAL, namespace, name))
        except NotFoundError:
            return None

    async def list_identities(self, namespace: str) -> list[JSON]:
        return _items(await self.api.request("GET", group_path(GROUP, VERSION, PLURAL, namespace)))

    async def list_identities_everywhere(self) -> list[JSON]:
        return _items(await self.api.request("GET", group_path(GROUP, VERSION, PLURAL)))

    async def patch_identity_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> JSON:
        path = group_path(GROUP, VERSION, PLURAL, namespace, name) + "/status"
        return await self.api.request("PATCH", path, body={"status": dict(status)}, content_type=MERGE_PATCH)

    # Pods --------------------------------------------------------------------------------------

    async def list_pods(self, namespace: str, label_selector: str) -> list[JSON]:
        query = {"labelSelector": label_selector}
        return _items(await self.api.request("GET", core_path("pods", namespace), query=query))

    async def list_pods_everywhere(self, label_selector: str) -> list[JSON]:
        query = {"labelSelector": label_selector}
        return _items(await self.api.request("GET", core_path("pods"), query=query))

    async def get_pod(self, namespace: str, name: str) -> JSON | None:
        try:
            return await self.api.request("GET", core_path("pods", namespace, name))
        except NotFoundError:
            return None

    async def get_service_account(self, namespace: str, name: str) -> JSON | None:
        try:
            return await self.api.request("GET", core_path("serviceaccounts", namespace, name))
        except NotFoundError:
            return None

    async def get_node(self, name: str) -> JSON | None:
        try:
            return await self.api.request("GET", core_path("nodes", None, name))
        except NotFoundError:
            return None

    # PodCertificateRequests (certificates.k8s.io, v1 or v1beta1) ------------------------------------

    async def list_pod_certificate_requests(self, version: str, signer_name: str) -> JSON:
        """Every request addressed to ``signer_name``, cluster-wide (the listing, for its resourceVersion)."""
        query = {"fieldSelector": f"spec.signerName={signer_name}"}
        return await self.api.request("GET", group_path(CERTIFICATES_GROUP, version, "podcertificaterequests"),
                                      query=query)

    async def get_pod_certificate_request(self, version: str, namespace: str, name: str) -> JSON | None:
        """One request read again (None: it is gone): a listing of its namespace narrowed to its name by
        the ``metadata.name`` field selector, as ``kubectl wait`` reads one object. The signer's reads
        are all listings and its watch, so its RBAC is ``list`` and ``watch``, never ``get`` (which
        would show nothing ``list`` does not)."""
        listing = await self.api.request(
            "GET", group_path(CERTIFICATES_GROUP, version, "podcertificaterequests", namespace),
            query={"fieldSelector": f"metadata.name={name}"})
        for item in listing.get("items") or []:
            if isinstance(item, dict) and (item.get("metadata") or {}).get("name") == name:
                # A listing's items carry no apiVersion and kind.
                return {"apiVersion": f"{CERTIFICATES_GROUP}/{version}", "kind": "PodCertificateRequest", **item}
        return None

    async def update_pod_certificate_request_status(self, version: str, request: Mapping[str, Any],
                                                    status: Mapping[str, Any]) -> JSON:
        """Replace the request's status (the ``status`` subresource), as read: its ``resourceVersion`` makes
        a change since the read a ``ConflictError``."""
        metadata = request.get("metadata") or {}
        path = group_path(CERTIFICATES_GROUP, version, "podcertificaterequests", str(metadata.get("namespace")),
                          str(metadata.get("name"))) + "/status"
        body = {**dict(request), "apiVersion": f"{CERTIFICATES_GROUP}/{version}", "kind": "PodCertificateRequest",
                "status": dict(status)}
        return await self.api.request("PUT", path, body=body)

    # Secrets -------------------------------------------------------------------------------------

    async def get_secret(self, namespace: str, name: str) -> JSON | None:
        try:
            return await self.api.request("GET", core_path("secrets", namespace, name))
        except NotFoundError:
            return None

    async def list_secrets(self, namespace: str, label_selector: str) -> list[JSON]:
        query = {"labelSelector": label_selector}
        return _items(await self.api.request("GET", core_path("secrets", namespace), query=query))

    async def list_secrets_everywhere(self, label_selector: str) -> list[JSON]:
        query = {"labelSelector": label_selector}
        return _items(await self.api.request("GET", core_path("secrets"), query=query))

    async def list_secrets_page(self, label_selector: str, limit: int,
                                continue_token: str | None = None) -> tuple[list[JSON], str | None]:
        """One page of the Secrets of every namespace, and the token of the next (None: the last)."""
        query = {"labelSelector": label_selector, "limit": str(limit)}
        if continue_token:
            query["continue"] = continue_token
        listing = await self.api.request("GET", core_path("secrets"), query=query)
        token = (listing.get("metadata") or {}).get("continue")
        return _items(listing), str(token) if token else None

    async def create_secret(self, namespace: str, body: Mapping[str, Any]) -> JSON:
        """Create; raises ``ConflictError`` when the name is taken (by anyone)."""
        return await self.api.request("POST", core_path("secrets", namespace), body=dict(body))

    async def update_secret(self, namespace: str, name: str, patch: Mapping[str, Any], resource_version: str) -> JSON:
        """Merge-patch guarded by ``resource_version``: a concurrent change makes this a ``ConflictError``."""
        body = dict(patch)
        metadata = dict(body.get("metadata") or {})
        metadata["resourceVersion"] = resource_version
        body["metadata"] = metadata
        return await self.api.request(
            "PATCH", core_path("secrets", namespace, name), body=body, content_type=MERGE_PATCH
        )

    async def delete_secret(self, namespace: str, name: str, uid: str, resource_version: str | None = None) -> None:
        """Delete only the very Secret we read (``uid`` and, when given, ``resourceVersion``
        preconditions: a Secret changed since the read is a ``ConflictError``); gone already is fine."""
        preconditions = {"uid": uid}
        if resource_version:
            preconditions["resourceVersion"] = resource_version
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "preconditions": preconditions,
            "propagationPolicy": "Background",
        }
        try:
            await self.api.request("DELETE", core_path("secrets", namespace, name), body=body)
        except NotFoundError:
            return

    # ConfigMaps ----------------------------------------------------------------------------------

    async def get_config_map(self, namespace: str, name: str) -> JSON | None:
        try:
            return await self.api.request("GET", core_path("configmaps", namespace, name))
        except NotFoundError:
            return None

    async def list_config_maps_everywhere(self, label_selector: str) -> list[JSON]:
        query = {"labelSelector": label_selector}
        return _items(await self.api.request("GET", core_path("configmaps"), query=query))

    async def create_config_map(self, namespace: str, body: Mapping[str, Any]) -> JSON:
        return await self.api.request("POST", core_path("configmaps", namespace), body=dict(body))

    async def update_config_map(
        self, namespace: str, name: str, patch: Mapping[str, Any], resource_version: str
    ) -> JSON:
        body = dict(patch)
        body["metadata"] = {**dict(body.get("metadata") or {}), "resourceVersion": resource_version}
        return await self.api.request(
            "PATCH", core_path("configmaps", namespace, name), body=body, content_type=MERGE_PATCH
        )

    # Events --------------------------------------------------------------------------------------

    async def post_identity_event(
        self,
        identity: Mapping[str, Any],
        *,
        type_: str,
        reason: str,
        message: str,
        now: datetime,
    ) -> None:
        """A core/v1 Event on the identity, as ``kubectl describe mtlsid`` shows it."""
        await self.post_event(identity, f"{GROUP}/{VERSION}", KIND, type_=type_, reason=reason, message=message,
                              now=now)

    async def post_event(
        self,
        involved: Mapping[str, Any],
        api_version: str,
        kind: str,
        *,
        type_: str,
        reason: str,
        message: str,
        now: datetime,
    ) -> None:
        """A core/v1 Event on any namespaced object (an identity, the CA Secret)."""
        metadata = involved.get("metadata") or {}
        namespace = str(metadata.get("namespace") or "default")
        name = str(metadata.get("name") or "")
        stamp = format_time(now)
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{name}.{random_tokens.token_hex(8)}", "namespace": namespace},
            "involvedObject": {
                "apiVersion": api_version,
                "kind": kind,
                "name": name,
                "namespace": namespace,
                "uid": metadata.get("uid"),
                "resourceVersion": metadata.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            # The API server caps Event messages at 1 KiB.
            "message": message[:1024],
            "source": {"component": MANAGER_NAME},
            "reportingComponent": MANAGER_NAME,
            "reportingInstance": MANAGER_NAME,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        await self.api.request("POST", core_path("events", namespace), body=body)

    # Admission webhook configurations (cluster-scoped; the Helm chart creates them) -----------------

    async def get_webhook_configuration(self, kind: str, name: str) -> JSON | None:
        """``kind`` is the plural, ``mutatingwebhookconfigurations`` or ``validatingwebhookconfigurations``;
        ``None`` when the configuration does not exist."""
        try:
            return await self.api.request("GET", group_path(ADMISSION_GROUP, "v1", kind, None, name))
        except NotFoundError:
            return None

    async def update_webhooks(
        self, kind: str, name: str, webhooks: list[dict[str, Any]], resource_version: str
    ) -> JSON:
        """Replace the configuration's ``webhooks`` (a merge patch replaces the whole list), guarded by
        ``resource_version``: a concurrent change (a ``helm upgrade``) makes this a ``ConflictError``."""
        body = {"metadata": {"resourceVersion": resource_version}, "webhooks": webhooks}
        return await self.api.request(
            "PATCH", group_path(ADMISSION_GROUP, "v1", kind, None, name), body=body, content_type=MERGE_PATCH
        )

    # The leader-election Lease -------------------------------------------------------------------

    async def get_lease(self, namespace: str, name: str) -> JSON | None:
        try:
            return await self.api.request("GET", group_path(LEASE_GROUP, "v1", "leases", namespace, name))
        except NotFoundError:
            return None

    async def create_lease(self, namespace: str, name: str, spec: Mapping[str, Any]) -> JSON:
        """Create; raises ``ConflictError`` when another replica created it first."""
        body = {
            "apiVersion": f"{LEASE_GROUP}/v1",
            "kind": "Lease",
            "metadata": {"name": name, "namespace": namespace},
            "spec": dict(spec),
        }
        return await self.api.request("POST", group_path(LEASE_GROUP, "v1", "leases", namespace), body=body)

    async def replace_lease(self, lease: Mapping[str, Any], spec: Mapping[str, Any]) -> JSON:
        """Replace the Lease as read with a new ``spec``; its ``resourceVersion`` makes a write by anyone
        since the read a ``ConflictError``."""
        metadata = lease.get("metadata") or {}
        path = group_path(LEASE_GROUP, "v1", "leases", str(metadata.get("namespace")), str(metadata.get("name")))
        return await self.api.request("PUT", path, body={**dict(lease), "spec": dict(spec)})

    # ClusterTrustBundles (certificates.k8s.io v1 or v1beta1, cluster-scoped) -------------------------

    async def serves_resource(self, group: str, version: str, resource: str) -> bool:
        """Whether discovery lists ``resource`` in ``group/version`` (404: the version is not served)."""
        try:
            listing = await self.api.request("GET", f"/apis/{group}/{version}")
        except NotFoundError:
            return False
        resources = listing.get("resources") or []
        return any(isinstance(item, dict) and item.get("name") == resource for item in resources)

    async def get_cluster_trust_bundle(self, version: str, name: str) -> JSON | None:
        try:
            return await self.api.request("GET", group_path(CTB_GROUP, version, "clustertrustbundles", None, name))
        except NotFoundError:
            return None

    async def create_cluster_trust_bundle(self, version: str, body: Mapping[str, Any]) -> JSON:
        """Create; raises ``ConflictError`` when the name is taken."""
        return await self.api.request("POST", group_path(CTB_GROUP, version, "clustertrustbundles"), body=dict(body))

    async def replace_cluster_trust_bundle(self, version: str, body: Mapping[str, Any]) -> JSON:
        """Replace (PUT) the bundle as read with a new spec: its ``resourceVersion`` makes a write by anyone
        since the read a ``ConflictError``."""
        name = str((body.get("metadata") or {}).get("name"))
        return await self.api.request("PUT", group_path(CTB_GROUP, version, "clustertrustbundles", None, name),
                                      body=dict(body))
