"""A kubelet stand-in for one node: pod certificates and trust bundles of projected volumes.

What kubelet 1.37 does for the pods bound to its node (``pkg/kubelet/podcertificate``,
``pkg/kubelet/clustertrustbundle``, ``pkg/volume/projected``), ported to run in-process against an
:class:`~kube_emulator.Emulator`, for tests and demos (not for the operator):

- every ``podCertificate`` source of a projected volume of a non-mirror pod whose ``spec.nodeName``
  is this node goes through the kubelet's state machine: a key of the source's ``keyType``
  (RSA3072, RSA4096, ECDSAP256, ECDSAP384, ECDSAP521, ED25519), made in memory and never written to
  the API, and a PodCertificateRequest created as the kubelet creates it (``generateName: req-``,
  an ownerReference to the pod, the pod's, its service account's and the node's names and UIDs,
  ``maxExpirationSeconds`` and ``userAnnotations`` copied verbatim, an empty PKCS#10 request
  self-signed by the key), made as the node so NodeRestriction applies; then it waits for
  ``Issued`` (the chain cleaned of headers and text between blocks), ``Denied`` or ``Failed``
  (permanent); at ``beginRefreshAt`` (plus the kubelet's jitter of up to 5 minutes) it makes a new
  key and request and serves the old credentials until that one is issued; a request deleted
  before it finished is re-created 10 minutes (plus jitter) after its creation;
- ``clusterTrustBundle`` sources: by ``name``, or by ``signerName`` + ``labelSelector`` (absent
  selects nothing, ``{}`` everything), the certificates deduplicated, sorted, then shuffled (the
  kubelet's "stable order that changes each time it restarts"), re-encoded as PEM; ``optional``
  allows none;
- :meth:`Kubelet.volume` gives the files the pod would see in a projected volume (the
  credential bundle, key and chain, and trust bundles at their paths), or raises
  :class:`VolumeNotReady` with the kubelet's errors, as a pod whose volume cannot be set up waits.

Time comes from ``now`` (the emulator's clock by default), the jitter from ``jitter``, so tests can
move time instead of sleeping; nothing runs by itself: :meth:`Kubelet.sync` is one pass of the
kubelet's work queue over every projection of the node (call it, or :meth:`Kubelet.wait_for_volume`).

Simplified: other sources of a projected volume (secrets, configMaps, downwardAPI, service account
tokens) are not produced (their files are absent); no Events are posted for denials, failures,
overdue refreshes or expiry; no file modes or owners; no metrics.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from kube_emulator import certificates
from kube_emulator.admission import selector_text
from kube_emulator.errors import ApiError
from kube_emulator.schema import go_json
from kube_emulator.selectors import SelectorError, parse_label_selector
from kube_emulator.store import Emulator

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey

ASSUME_DELETED_THRESHOLD = datetime.timedelta(minutes=10)
MAX_JITTER = datetime.timedelta(minutes=5)
KEY_TYPES = ("RSA3072", "RSA4096", "ECDSAP256", "ECDSAP384", "ECDSAP521", "ED25519")


class VolumeNotReady(Exception):
    """The projected volume cannot be set up yet (or ever, when ``permanent``): the kubelet's errors."""

    def __init__(self, problems: list[str], *, permanent: bool) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems
        self.permanent = permanent


@dataclasses.dataclass(frozen=True)
class ProjectionKey:
    namespace: str
    pod_name: str
    pod_uid: str
    volume: str
    source_index: int


@dataclasses.dataclass
class Projection:
    """One ``podCertificate`` source's state: initial → wait → fresh ⇄ wait-refresh, or denied/failed."""

    state: str = "initial"  # initial, wait, fresh, wait-refresh, denied, failed
    private_key: bytes = b""  # PEM (PKCS#8) of the credentials served
    chain: bytes = b""
    begin_refresh_at: datetime.datetime | None = None
    not_after: datetime.datetime | None = None
    request_name: str = ""  # the request waited for (initial or refresh)
    pending_key: bytes = b""  # the key of that request
    abandon_at: datetime.datetime | None = None
    reason: str = ""
    message: str = ""
    last_error: str = ""  # of the last pass that failed (it is retried on the next)

    def credentials(self) -> tuple[bytes, bytes]:
        if self.state in ("fresh", "wait-refresh"):
            return self.private_key, self.chain
        if self.state == "denied":
            raise VolumeNotReady([f"PodCertificateRequest was permanently denied: reason={_go_quote(self.reason)} "
                                  f"message={_go_quote(self.message)}"], permanent=True)
        if self.state == "failed":
            raise VolumeNotReady([f"PodCertificateRequest was permanently failed: reason={_go_quote(self.reason)} "
                                  f"message={_go_quote(self.message)}"], permanent=True)
        raise VolumeNotReady(["credential bundle is not issued yet"], permanent=False)


def _go_quote(text: str) -> str:
    return go_json(text)


def _random_jitter() -> datetime.timedelta:
    # A spread in time, not a secret: the standard generator is what the kubelet's math/rand is.
    return datetime.timedelta(microseconds=random.randrange(int(MAX_JITTER.total_seconds() * 1_000_000)))  # noqa: S311


def generate_key(key_type: str) -> PrivateKey:
    """A key of a ``podCertificate`` source's ``keyType``; ValueError for another."""
    if key_type == "RSA3072":
        return rsa.generate_private_key(65537, 3072)
    if key_type == "RSA4096":
        return rsa.generate_private_key(65537, 4096)
    curves: dict[str, Callable[[], ec.EllipticCurve]] = {
        "ECDSAP256": ec.SECP256R1, "ECDSAP384": ec.SECP384R1, "ECDSAP521": ec.SECP521R1}
    if key_type in curves:
        return ec.generate_private_key(curves[key_type]())
    if key_type == "ED25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unknown key type {_go_quote(key_type)}")


def stub_pkcs10(key: PrivateKey) -> bytes:
    """The kubelet's request: an empty PKCS#10 (no subject, no extensions) self-signed by ``key``, DER."""
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    request = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, algorithm)
    return request.public_bytes(serialization.Encoding.DER)


def _pem_block(kind: str, der: bytes) -> bytes:
    """``pem.EncodeToMemory``: 64 base64 characters a line."""
    encoded = base64.b64encode(der).decode()
    lines = [encoded[i:i + 64] for i in range(0, len(encoded), 64)]
    return (f"-----BEGIN {kind}-----\n" + "".join(line + "\n" for line in lines) + f"-----END {kind}-----\n").encode()


def _key_pem(key: PrivateKey) -> bytes:
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return _pem_block("PRIVATE KEY", der)


def clean_certificate_chain(chain: str) -> bytes:
    """``cleanCertificateChain``: every PEM block re-encoded as CERTIFICATE, nothing else kept."""
    return b"".join(_pem_block("CERTIFICATE", block.data) for block in certificates.pem_blocks(chain))


class Kubelet:
    """The pod certificate and trust bundle parts of the kubelet of node ``node_name``.

    ``now``: the clock (defaults to the emulator's); ``jitter``: the random delay the kubelet adds to
    ``beginRefreshAt`` and to its patience with a missing request (up to 5 minutes); ``rng``: the
    order of trust anchors; ``api_version``: where requests are created (``certificates.k8s.io/v1``,
    or ``/v1beta1`` as on 1.35/1.36).
    """

    def __init__(
        self,
        emulator: Emulator,
        node_name: str,
        *,
        now: Callable[[], datetime.datetime] | None = None,
        jitter: Callable[[], datetime.timedelta] | None = None,
        rng: random.Random | None = None,
        api_version: str = f"{certificates.GROUP}/v1",
    ) -> None:
        self.emulator = emulator
        self.node_name = node_name
        self.now = now or emulator.clock
        self.jitter = jitter or _random_jitter
        self.rng = rng or random.Random()  # noqa: S311 - an order, not a secret
        self.api_version = api_version
        self.projections: dict[ProjectionKey, Projection] = {}

    # ------------------------------------------------------------------------------ pods
    def pods(self) -> list[dict[str, Any]]:
        """The non-mirror pods bound to this node."""
        return [pod for pod in self.emulator.list("v1", "pods", field_selector=f"spec.nodeName={self.node_name}")
                if certificates.MIRROR_POD_ANNOTATION not in (pod["metadata"].get("annotations") or {})]

    def _find_pod(self, namespace: str, name: str) -> dict[str, Any]:
        pod = self.emulator.get("v1", "pods", name, namespace)
        if pod is None or (pod.get("spec") or {}).get("nodeName") != self.node_name:
            raise LookupError(f'pod "{namespace}/{name}" is not bound to node "{self.node_name}"')
        return pod

    @staticmethod
    def _sources(pod: Mapping[str, Any]) -> list[tuple[str, int, dict[str, Any]]]:
        """(volume name, source index, podCertificate source) of every projected volume of the pod."""
        found = []
        for volume in (pod.get("spec") or {}).get("volumes") or ():
            projected = volume.get("projected") if isinstance(volume, dict) else None
            for index, source in enumerate((projected or {}).get("sources") or ()):
                if isinstance(source, dict) and isinstance(source.get("podCertificate"), dict):
                    found.append((str(volume.get("name", "")), index, source["podCertificate"]))
        return found

    @staticmethod
    def _key(pod: Mapping[str, Any], volume: str, index: int) -> ProjectionKey:
        meta = pod["metadata"]
        return ProjectionKey(meta.get("namespace", ""), meta["name"], meta["uid"], volume, index)

    # ------------------------------------------------------------------------------ the work
    def sync(self) -> None:
        """One pass over every ``podCertificate`` projection of the node; forgets pods that are gone."""
        pods = self.pods()
        live = set()
        for pod in pods:
            for volume, index, source in self._sources(pod):
                key = self._key(pod, volume, index)
                live.add(key)
                record = self.projections.setdefault(key, Projection())
                try:
                    self._handle(pod, source, record)
                    record.last_error = ""
                except (ApiError, ValueError, LookupError) as exc:
                    record.last_error = str(exc)
        for key in [k for k in self.projections if k not in live]:
            del self.projections[key]

    def _handle(self, pod: dict[str, Any], source: Mapping[str, Any], record: Projection) -> None:
        """``handleProjection``: one step of the projection's state machine."""
        now = self.now()
        if record.state == "initial":
            key, request = self._create_request(pod, source)
            record.state, record.pending_key = "wait", key
            record.request_name = request["metadata"]["name"]
            record.abandon_at = self._abandon_at(request)
        elif record.state in ("wait", "wait-refresh"):
            self._check_request(pod, record, now)
        elif record.state == "fresh":
            assert record.begin_refresh_at is not None
            if now < record.begin_refresh_at:
                return
            key, request = self._create_request(pod, source)
            record.state, record.pending_key = "wait-refresh", key
            record.request_name = request["metadata"]["name"]
            record.abandon_at = self._abandon_at(request)

    def _abandon_at(self, request: Mapping[str, Any]) -> datetime.datetime:
        created = certificates.parse_time(request["metadata"].get("creationTimestamp")) or self.now()
        return created + ASSUME_DELETED_THRESHOLD + self.jitter()

    def _check_request(self, pod: Mapping[str, Any], record: Projection, now: datetime.datetime) -> None:
        namespace = pod["metadata"]["namespace"]
        request = self.emulator.get(self.api_version, "podcertificaterequests", record.request_name, namespace)
        if request is None:
            assert record.abandon_at is not None
            if now > record.abandon_at:
                record.state = "fresh" if record.state == "wait-refresh" else "initial"
                raise LookupError(f'PodCertificateRequest "{namespace}/{record.request_name}" appears to have been '
                                  "deleted")
            return
        for condition in (request.get("status") or {}).get("conditions") or ():
            kind = condition.get("type")
            if kind in (certificates.DENIED, certificates.FAILED):
                record.state = "denied" if kind == certificates.DENIED else "failed"
                record.reason, record.message = str(condition.get("reason", "")), str(condition.get("message", ""))
                record.private_key = record.chain = record.pending_key = b""
                return
            if kind == certificates.ISSUED:
                status = request["status"]
                refresh = certificates.parse_time(status.get("beginRefreshAt"))
                assert refresh is not None  # validation requires it with Issued
                record.state = "fresh"
                record.private_key, record.pending_key = record.pending_key, b""
                record.chain = clean_certificate_chain(str(status.get("certificateChain", "")))
                record.begin_refresh_at = refresh + self.jitter()
                record.not_after = certificates.parse_time(status.get("notAfter"))
                return

    def _create_request(self, pod: Mapping[str, Any], source: Mapping[str, Any]) -> tuple[bytes, dict[str, Any]]:
        """``createPodCertificateRequest``: a new key (kept here) and its request (created as this node)."""
        meta, spec = pod["metadata"], pod.get("spec") or {}
        namespace = meta["namespace"]
        account = self.emulator.get("v1", "serviceaccounts", str(spec.get("serviceAccountName", "")), namespace)
        if account is None:
            raise LookupError(f'while fetching service account: serviceaccounts "{spec.get("serviceAccountName")}" '
                              "not found")
        node = self.emulator.get("v1", "nodes", self.node_name)
        if node is None:
            raise LookupError(f'while getting node object from local cache: node "{self.node_name}" not found')
        key = generate_key(str(source.get("keyType", "")))
        request_spec: dict[str, Any] = {
            "signerName": source.get("signerName", ""),
            "podName": meta["name"], "podUID": meta["uid"],
            "serviceAccountName": spec.get("serviceAccountName", ""), "serviceAccountUID": account["metadata"]["uid"],
            "nodeName": self.node_name, "nodeUID": node["metadata"]["uid"],
            "stubPKCS10Request": base64.b64encode(stub_pkcs10(key)).decode(),
        }
        if source.get("maxExpirationSeconds") is not None:
            request_spec["maxExpirationSeconds"] = source["maxExpirationSeconds"]
        if source.get("userAnnotations"):
            request_spec["unverifiedUserAnnotations"] = dict(source["userAnnotations"])
        body = {
            "apiVersion": self.api_version, "kind": certificates.PCR_KIND,
            "metadata": {"namespace": namespace, "generateName": "req-",
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": meta["name"],
                                              "uid": meta["uid"]}]},
            "spec": request_spec,
        }
        created = self.emulator.create(body, as_node=self.node_name)
        return _key_pem(key), created

    # ------------------------------------------------------------------------------ volumes
    def projection(self, namespace: str, pod_name: str, volume: str, source_index: int) -> Projection | None:
        """The state of one ``podCertificate`` source (None before the first :meth:`sync` saw it)."""
        pod = self._find_pod(namespace, pod_name)
        return self.projections.get(self._key(pod, volume, source_index))

    def volume(self, namespace: str, pod_name: str, volume: str) -> dict[str, bytes]:
        """The files of a projected volume as the pod sees them ({path: content}).

        Raises :class:`VolumeNotReady` (with every source's problem) while any source cannot be
        produced, and LookupError when the pod is not bound to this node or has no such volume.
        """
        pod = self._find_pod(namespace, pod_name)
        spec_volume = next((v for v in (pod.get("spec") or {}).get("volumes") or ()
                            if isinstance(v, dict) and v.get("name") == volume), None)
        if spec_volume is None or not isinstance(spec_volume.get("projected"), dict):
            raise LookupError(f'pod "{namespace}/{pod_name}" has no projected volume "{volume}"')
        files: dict[str, bytes] = {}
        problems: list[str] = []
        permanent = False
        for index, source in enumerate(spec_volume["projected"].get("sources") or ()):
            if not isinstance(source, dict):
                continue
            try:
                if isinstance(source.get("podCertificate"), dict):
                    files.update(self._certificate_files(pod, volume, index, source["podCertificate"]))
                elif isinstance(source.get("clusterTrustBundle"), dict):
                    bundle = source["clusterTrustBundle"]
                    files[str(bundle.get("path", ""))] = self.trust_anchors(bundle)
            except VolumeNotReady as exc:
                problems.extend(exc.problems)
                permanent = permanent or exc.permanent
        if problems:
            raise VolumeNotReady(problems, permanent=permanent)
        return files

    def _certificate_files(self, pod: Mapping[str, Any], volume: str, index: int,
                           source: Mapping[str, Any]) -> dict[str, bytes]:
        key = self._key(pod, volume, index)
        record = self.projections.get(key)
        if record is None:
            raise VolumeNotReady([f"no credentials yet for key={key}"], permanent=False)
        private_key, chain = record.credentials()
        files = {}
        if source.get("credentialBundlePath"):
            files[str(source["credentialBundlePath"])] = private_key + chain
        if source.get("keyPath"):
            files[str(source["keyPath"])] = private_key
        if source.get("certificateChainPath"):
            files[str(source["certificateChainPath"])] = chain
        return files

    def trust_anchors(self, source: Mapping[str, Any]) -> bytes:
        """A ``clusterTrustBundle`` source's file: the selected bundles' certificates, deduplicated."""
        optional = bool(source.get("optional"))
        if source.get("name") is not None:
            found = self.emulator.get(f"{certificates.GROUP}/v1", "clustertrustbundles", str(source["name"]))
            if found is None:
                if optional:
                    return b""
                raise VolumeNotReady([f'while getting ClusterTrustBundle: clustertrustbundle.{certificates.GROUP} '
                                      f'"{source["name"]}" not found'], permanent=False)
            bundles = [found]
        elif source.get("signerName") is not None:
            selector = source.get("labelSelector")
            if selector is None:
                bundles = []  # a nil selector matches nothing
            else:
                try:
                    parse_label_selector(selector_text(selector))
                except SelectorError as exc:
                    raise VolumeNotReady([f"while parsing label selector: {exc}"], permanent=False) from None
                listed = self.emulator.list(f"{certificates.GROUP}/v1", "clustertrustbundles",
                                            label_selector=selector_text(selector) or None)
                bundles = [b for b in listed if (b.get("spec") or {}).get("signerName") == source["signerName"]]
            if not bundles:
                if optional:
                    return b""
                raise VolumeNotReady(["combination of signerName and labelSelector matched zero "
                                      "ClusterTrustBundles"], permanent=False)
        else:
            raise VolumeNotReady(["ClusterTrustBundle projection requires either name or signerName to be set"],
                                 permanent=True)
        anchors = sorted({block.data for bundle in bundles
                          for block in certificates.pem_blocks(str((bundle.get("spec") or {}).get("trustBundle", "")))})
        self.rng.shuffle(anchors)
        return b"".join(_pem_block("CERTIFICATE", der) for der in anchors)

    # ------------------------------------------------------------------------------ waiting
    async def wait_for_volume(self, namespace: str, pod_name: str, volume: str, *, within: float = 30.0,
                              interval: float = 0.05) -> dict[str, bytes]:
        """:meth:`sync` until the volume can be set up; its files. VolumeNotReady when it never can
        (a denied or failed request, at once) or not ``within`` seconds (of the event loop's clock)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            self.sync()
            try:
                return self.volume(namespace, pod_name, volume)
            except VolumeNotReady as exc:
                if exc.permanent or loop.time() >= deadline:
                    raise
            await asyncio.sleep(interval)

    def wait_for_volume_blocking(self, namespace: str, pod_name: str, volume: str, *, within: float = 30.0,
                                 interval: float = 0.05) -> dict[str, bytes]:
        """:meth:`wait_for_volume` for synchronous callers (the emulator served by an EmulatorThread)."""
        deadline = time.monotonic() + within
        while True:
            self.sync()
            try:
                return self.volume(namespace, pod_name, volume)
            except VolumeNotReady as exc:
                if exc.permanent or time.monotonic() >= deadline:
                    raise
            time.sleep(interval)
