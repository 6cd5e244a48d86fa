"""An emulated Kubernetes API server for tests, the demo and a playground (on PyPI ``kmock``).

It serves real HTTP on 127.0.0.1, so kopf, the ``kubernetes`` client and ``kubectl`` reach it
through a kubeconfig exactly as they reach a cluster::

    async with EmulatorServer(crds=load_crds(Path("crds"))) as server:
        server.write_kubeconfig(tmp_path / "kubeconfig")
        ...                                          # kopf / kubernetes_asyncio / aiohttp

    with EmulatorThread(crds=crds) as server:             # for synchronous code
        api = kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(server.client_configuration()))

What it emulates, following the API conventions: object metadata (uid, resourceVersion,
generation, creationTimestamp, generateName, namespace from the URL; names checked on create (DNS
subdomains, custom resources included; DNS labels for namespaces), label keys and values and
annotation keys and total size on every write, with the apiserver's 422 messages (a create validates
before it answers 409 for an existing name); the
other ``ValidateObjectMeta`` checks, of ownerReferences and finalizer names, are not made); create/get/list/watch/
update/patch/delete/deletecollection; 409 on a stale resourceVersion or an existing name; JSON
merge patch, JSON patch (with ``test``); finalizers and deletionTimestamp; ownerReference garbage
collection (background, on the next loop tick); label and field selectors; watches from a
resourceVersion with 410 Gone past the kept history, bookmarks, ``timeoutSeconds``,
``sendInitialEvents``; CustomResourceDefinitions registered on creation with their
openAPIV3Schema enforced (prune, defaults, 422 with field paths), printer columns and a separate
``/status`` subresource; Tables for ``kubectl get``; namespaces (with the terminating phase);
admission webhooks (Mutating/ValidatingWebhookConfigurations are called over HTTPS on create,
update and patch in the apiserver's order, with its selectors, failure policies, timeouts, JSON
patches and ``Warning`` headers; ``clientConfig.service`` through :meth:`Emulator.route_service`;
``Emulator(admission_webhooks=False)`` only stores them); fault injection
(:attr:`Emulator.faults`) and a request log (:attr:`Emulator.requests`); certificates.k8s.io
PodCertificateRequests (with ``/status``) and ClusterTrustBundles at v1 and v1beta1 with kube-apiserver
1.37's validation, and NodeRestriction's checks for a request created ``as_node`` (``certificates.py``);
Nodes (stored only); a kubelet stand-in (:class:`Kubelet`, ``kubelet.py``) that gives the pods of a node
their pod certificates and trust bundles as their projected volumes would.

Simplified:

- strategic merge patch: a JSON merge patch plus merging of the usual keyed lists
  (containers, volumes, env, ports, conditions, ownerReferences... by their merge key) and the
  ``$patch``/``$deleteFromPrimitiveList`` directives; refused with 415 on custom resources,
  like the apiserver does;
- server-side apply: a strategic merge of the applied object onto the live one (or a create);
  ``fieldManager`` is required but no field ownership is tracked (no ``managedFields``, no
  conflicts, fields dropped from the applied configuration are not removed);
- deletion: pods are deleted at once (no kubelet, no grace period); ``Foreground`` propagation
  behaves like ``Background``; ``Orphan`` unlinks dependents at once (no ``orphan`` finalizer);
  deleting a CRD drops its objects at once, ignoring their finalizers;
- a no-op update (nothing changes) writes nothing, keeps the resourceVersion and sends no event,
  as etcd-backed storage does;
- lists are always served from the latest state (``resourceVersion``/``resourceVersionMatch``
  on lists are ignored; ``limit``/``continue`` page over the current state, not a snapshot);
- each resource keeps its last ``watch_history`` events (the watch cache); a watch from an
  older resourceVersion gets 410 Gone;
- secrets: ``stringData`` folds into ``data``; values must be base64 (400 with Go's decoder offset, read with the body);
  ``kubernetes.io/tls`` needs ``tls.crt`` and ``tls.key``; pods get the defaults the operator
  reads (``serviceAccountName: default``, ``status.phase: Pending``) and an immutable spec;
- every namespace gets a ``default`` ServiceAccount, as its controller does;
- events.k8s.io/v1 Events are the core/v1 Events converted (one storage, like the apiserver);
- admission webhooks (details in ``admission.py``): called for CREATE and UPDATE requests over
  HTTP (not DELETE or CONNECT, not the in-process helpers); a ``clientConfig.service`` is reached
  only where :meth:`Emulator.route_service` routes it (there is no cluster network), else it fails
  like an unreachable webhook; AdmissionReview v1 only; ``matchPolicy`` is always Exact;
  ``matchConditions`` (CEL) and ``reinvocationPolicy`` are ignored; the built-in admission before
  the webhooks is only the namespace checks and the ServiceAccount default of pods, so webhooks see
  pods without the scheme defaults a real apiserver has applied by then (``restartPolicy``,
  ``dnsPolicy``, ``imagePullPolicy``...; the emulator's few pod defaults come after them).

Checked against kube-apiserver: ``make e2e`` sends the same requests (the operator's, kubectl's and
the demo's, and their error cases) to the emulator and to a real kube-apiserver and diffs status
codes, reasons, field paths and messages (tests/e2e/test_parity.py). Known differences there:

- an update that changes a pod's immutable spec: kube-apiserver appends a diff of its internal (Go)
  pod spec to the message; the emulator has no internal types and gives the message without it;
- errors of one request are listed in a fixed order here; kube-apiserver lists an object's schema
  errors in Go map order, which varies from request to request (the test compares them sorted);
- messages follow Kubernetes 1.37; older releases format the values in field errors as Go did
  then (1.30: ``Invalid value: "null"`` for a nil, ``0x0`` for a zero resourceVersion).

Not emulated (do not trust it for these): authentication and RBAC (every request is allowed;
RBAC objects are only stored; so neither the ``sign`` permission a PodCertificateRequest status change
needs nor the ``attest`` permission of ClusterTrustBundles is checked; node restriction only for
in-process creates made ``as_node``), admission plugins other than webhooks (no quotas, limit ranges,
pod security, defaulting beyond the above), API priority and fairness, controllers (nothing
schedules or runs pods, no Deployment/StatefulSet/ReplicaSet/Job controllers, no endpoints, no
service IPs, no token or root-CA publishing), CEL (``x-kubernetes-validations``) and
validation ratcheting, CRD conversion webhooks (all versions share one storage, only
``apiVersion`` changes), ``selectableFields`` (CR field selectors: metadata.name and
metadata.namespace only), ``managedFields``, protobuf and CBOR (JSON only, except the
protobuf bodies of Namespace, Secret, ConfigMap and ServiceAccount that ``kubectl create`` sends;
other requests in another format get 415), OpenAPI schemas (``/openapi/v3`` lists only each
resource's PATCH operation, enough for kubectl to leave validation to the server with
``fieldValidation=Strict``, which rejects unknown fields of custom resources; no schemas, so no
``kubectl explain`` fields; ``/openapi/v2`` answers 404), aggregated API servers, subresources other than
``status`` (no logs, exec, scale, eviction, binding), resource quotas, limits, TLS and HTTP/2.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml

from kube_emulator.errors import ApiError
from kube_emulator.faults import Fault, FaultInjector
from kube_emulator.kubelet import Kubelet, VolumeNotReady
from kube_emulator.requestlog import LoggedRequest, RequestLog
from kube_emulator.resources import ResourceInfo
from kube_emulator.server import EmulatorServer, EmulatorThread, kubeconfig_document
from kube_emulator.store import Emulator

__all__ = [
    "ApiError",
    "Emulator",
    "EmulatorServer",
    "EmulatorThread",
    "Fault",
    "FaultInjector",
    "Kubelet",
    "LoggedRequest",
    "RequestLog",
    "ResourceInfo",
    "VolumeNotReady",
    "kubeconfig_document",
    "load_crds",
    "serve",
]


def load_crds(folder: Traversable | Path) -> list[dict[str, Any]]:
    """The CustomResourceDefinitions in a folder's ``*.yaml``/``*.yml`` files (a path or package data)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder of CRDs at {folder}")
    crds: list[dict[str, Any]] = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(entry.read_text(encoding="utf-8")):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                crds.append(doc)
    return crds


def serve(port: int = 0, kubeconfig: str = "emulator.kubeconfig", crds: list[dict[str, Any]] | None = None) -> None:
    """Serve the emulator with ``crds`` installed on 127.0.0.1 until SIGINT/SIGTERM (blocking).

    Prints the URL and the path of the kubeconfig it writes.
    """
    asyncio.run(_serve(port, kubeconfig, crds or []))


async def _serve(port: int, kubeconfig: str, crds: list[dict[str, Any]]) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with EmulatorServer(crds=crds, port=port) as server:
            path = server.write_kubeconfig(kubeconfig)
            print(f"Kubernetes API emulator serving at {server.url}", flush=True)
            print(f"kubeconfig: {path.resolve()}", flush=True)
            print(f"Try: kubectl --kubeconfig {path} get namespaces", flush=True)
            await stop.wait()
            print("Stopping the emulator.", file=sys.stderr, flush=True)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
