"""A real Kubernetes control plane for the e2e suite: etcd, kube-apiserver, kube-controller-manager.

The binaries are built from their Go modules by ``make controlplane`` (e2e/controlplane/) into
``.tools/k8s/<version>/bin``; this module only generates the certificates, keys and kubeconfigs,
starts the three processes in one process group of their own, waits until they serve, and stops
them again (on exit, on failure, on Ctrl-C: the caller's ``finally``; and if the Python process
itself dies, the kernel kills them: PR_SET_PDEATHSIG).

``make e2e`` runs the suite in a network namespace of its own (``unshare --net``) in which loopback
is up and the address ``10.250.0.1`` exists: the fixed ports below cannot clash with anything else
on the machine, and the API server has a non-loopback address to advertise and to reach the
operator's webhooks at (Endpoints and EndpointSlices refuse loopback addresses).

What runs, and why each flag (as kubeadm and Kubernetes' hack/local-up-cluster.sh set them):
- etcd on 127.0.0.1:2379, plain HTTP (only the API server talks to it, inside the namespace),
  ``--unsafe-no-fsync``: the data dies with the test run anyway.
- kube-apiserver on :6443 with a serving certificate from the test CA, client certificates
  (the admin is in ``system:masters``, the controller manager is ``system:kube-controller-manager``),
  ServiceAccount tokens signed by a key of its own (so ``kubectl create token`` works),
  ``--authorization-mode=Node,RBAC``, the admission plugins a kubeadm cluster enables (the defaults,
  which include MutatingAdmissionWebhook, ValidatingAdmissionWebhook, ValidatingAdmissionPolicy
  and PodSecurity, plus NodeRestriction), ``--enable-aggregator-routing`` so that webhook Services
  are reached through their EndpointSlices/Endpoints rather than cluster DNS, and an audit log (JSON,
  metadata level) of every request made by a ServiceAccount of the operator's namespace.
- kube-controller-manager with the controllers the suite relies on: the garbage collector, the
  namespace, ServiceAccount and ServiceAccount-token controllers, Deployments and ReplicaSets (a
  Deployment's pods go through the admission chain); each controller with its own ServiceAccount's
  credentials and bootstrap RBAC role (``--use-service-account-credentials``, as kubeadm runs it).
  Not the endpoint controllers: the suite writes the webhook Service's endpoints itself (the
  operator runs as a local process, not in a pod).
No scheduler, kubelet or kube-proxy: pods are admitted and stored, never run. The suite plays the
kubelet where it needs one (tests/e2e/kubelet.py), with a client certificate of the node's own
(``system:node:<name>`` in ``system:nodes``) from the same CA: the Node authorizer and the
NodeRestriction admission plugin judge its requests as they judge a real kubelet's.

Pod certificates (PodCertificateRequest, ClusterTrustBundle): on by default and GA at
``certificates.k8s.io/v1`` from 1.37; beta at ``v1beta1`` in 1.35 and 1.36, where the API server
needs the feature gates and the runtime-config of ``pod_certificate_support``; older releases lack
them (1.34's alpha had another shape), and the suite's tests of them skip there, saying so.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import errno
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ETCD_PORT = 2379
ETCD_PEER_PORT = 2380
APISERVER_PORT = 6443
CONTROLLER_MANAGER_PORT = 10257
SERVICE_CIDR = "10.0.0.0/24"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
# The namespace whose ServiceAccounts' requests the audit log records (the chart's release namespace).
AUDITED_NAMESPACE = "mtls-system"
CONTROLLERS = (
    "garbagecollector",
    "namespace",
    "serviceaccount",
    "serviceaccount-token",
    "deployment",
    "replicaset",
)
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class PodCertificateSupport:
    """What a release needs for PodCertificateRequests and ClusterTrustBundles, and at which version of
    ``certificates.k8s.io`` it serves them (None: it cannot; ``reason`` says why)."""

    api_version: str | None
    feature_gates: tuple[str, ...] = ()
    runtime_config: tuple[str, ...] = ()
    reason: str = ""


def pod_certificate_support(kubernetes_version: str) -> PodCertificateSupport:
    """The flags by release (gate names as in pkg/features/kube_features.go of 1.37: PodCertificateRequest
    alpha 1.34, beta 1.35, GA 1.37; ClusterTrustBundle and ClusterTrustBundleProjection beta 1.33, GA
    1.37). The beta resources are off by default even with the gates: runtime-config turns them on."""
    parts = kubernetes_version.removeprefix("v").split(".")
    if len(parts) < 2 or not parts[0].isdigit() or not parts[1].isdigit():
        raise ValueError(f"not a Kubernetes version: {kubernetes_version!r} (want e.g. 1.37.2)")
    major, minor = int(parts[0]), int(parts[1])
    if (major, minor) >= (1, 37):
        return PodCertificateSupport("v1")
    if (major, minor) >= (1, 35):
        return PodCertificateSupport(
            "v1beta1",
            feature_gates=("PodCertificateRequest=true", "ClusterTrustBundle=true",
                           "ClusterTrustBundleProjection=true"),
            runtime_config=("certificates.k8s.io/v1beta1/podcertificaterequests=true",
                            "certificates.k8s.io/v1beta1/clustertrustbundles=true"))
    return PodCertificateSupport(None, reason=(
        f"Kubernetes {kubernetes_version} has no PodCertificateRequest beta (v1beta1 from 1.35 behind the "
        "PodCertificateRequest gate, v1 from 1.37)"))


class ControlPlaneError(Exception):
    """The control plane could not start; the message is one line saying what failed."""


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path

    @classmethod
    def in_folder(cls, folder: Path) -> Binaries:
        binaries = cls(folder / "etcd", folder / "kube-apiserver", folder / "kube-controller-manager")
        for path in (binaries.etcd, binaries.kube_apiserver, binaries.kube_controller_manager):
            if not os.access(path, os.X_OK):
                raise ControlPlaneError(f"{path} is missing: build it with `make controlplane` (see e2e/controlplane)")
        return binaries


def _kill_with_parent() -> None:
    """In the child, before exec: the kernel sends SIGKILL when the process that started it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _port_taken(address: str, port: int) -> str | None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def _address_present(address: str) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((address, 0))
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                return False
            raise
    return True


# -- certificates ------------------------------------------------------------------------------------

def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@dataclass(frozen=True)
class _Issuer:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _new_ca(now: datetime.datetime) -> _Issuer:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mtls-e2e-ca")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return _Issuer(cert, key)


def _new_leaf(issuer: _Issuer, now: datetime.datetime, common_name: str, *, organizations: tuple[str, ...] = (),
              dns: tuple[str, ...] = (), ips: tuple[str, ...] = (), server: bool = False
              ) -> tuple[bytes, bytes]:
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attributes)).issuer_name(issuer.cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                              else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    )
    if dns or ips:
        names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(issuer.key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def write_kubeconfig(path: Path, server: str, ca_file: Path, *, user: str, cert_file: Path | None = None,
                     key_file: Path | None = None, token: str | None = None) -> Path:
    credentials: dict[str, str] = {}
    if cert_file is not None and key_file is not None:
        credentials = {"client-certificate": str(cert_file), "client-key": str(key_file)}
    if token is not None:
        credentials["token"] = token
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "e2e",
        "clusters": [{"name": "e2e", "cluster": {"server": server, "certificate-authority": str(ca_file)}}],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": user}}],
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


# -- the control plane -------------------------------------------------------------------------------

class ControlPlane:
    """etcd, kube-apiserver and kube-controller-manager under ``workdir``, in one process group."""

    def __init__(self, workdir: Path, binaries: Binaries, *, address: str, version: str) -> None:
        self.workdir = workdir
        self.binaries = binaries
        self.address = address
        self.version = version
        self.server = f"https://127.0.0.1:{APISERVER_PORT}"
        self.pki = workdir / "pki"
        self.logs = workdir / "logs"
        self.audit_log = self.logs / "audit.jsonl"
        self.admin_kubeconfig = workdir / "admin.kubeconfig"
        self._processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._pgid: int | None = None
        self._ca: _Issuer | None = None
        self.pod_certificates = pod_certificate_support(version) if version else PodCertificateSupport("v1")

    @property
    def ca_file(self) -> Path:
        return self.pki / "ca.crt"

    # The caller uses it as a context manager, so that a failure anywhere stops what was started.
    def __enter__(self) -> ControlPlane:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        if not _address_present(self.address):
            raise ControlPlaneError(
                f"the address {self.address} is not on this host: run the suite through `make e2e`, which "
                "starts it in a network namespace of its own with that address")
        for name, port in (("etcd", ETCD_PORT), ("etcd", ETCD_PEER_PORT), ("kube-apiserver", APISERVER_PORT),
                           ("kube-controller-manager", CONTROLLER_MANAGER_PORT)):
            reason = _port_taken("0.0.0.0", port)  # noqa: S104 -- a probe, closed at once
            if reason:
                raise ControlPlaneError(f"{name}: port {port} is taken ({reason}); stop what listens there")
        self.logs.mkdir(parents=True, exist_ok=True)
        self._write_pki()
        self._spawn("etcd", [
            str(self.binaries.etcd), "--name=e2e", f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{ETCD_PORT}",
            f"--advertise-client-urls=http://127.0.0.1:{ETCD_PORT}",
            f"--listen-peer-urls=http://127.0.0.1:{ETCD_PEER_PORT}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{ETCD_PEER_PORT}",
            f"--initial-cluster=e2e=http://127.0.0.1:{ETCD_PEER_PORT}",
            "--unsafe-no-fsync", "--log-level=warn",
        ])
        self._wait("etcd", lambda: self._http_ok(f"http://127.0.0.1:{ETCD_PORT}/health"), 60)
        self._spawn("kube-apiserver", self._apiserver_args())
        self._wait("kube-apiserver", lambda: self._https_ok("/readyz"), 120)
        self._spawn("kube-controller-manager", self._controller_manager_args())
        # The ServiceAccount controller creates `default` in every namespace: the controllers run.
        self._wait("kube-controller-manager",
                   lambda: self._https_ok("/api/v1/namespaces/default/serviceaccounts/default"), 120)

    def stop(self) -> None:
        if self._pgid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._pgid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _, process in reversed(self._processes):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._pgid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._pgid, signal.SIGKILL)
        self._processes.clear()
        self._pgid = None

    # -- processes ---------------------------------------------------------------------------------

    def _spawn(self, name: str, args: list[str]) -> None:
        log = (self.logs / f"{name}.log").open("ab")
        process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            process_group=self._pgid or 0, preexec_fn=_kill_with_parent,
        )
        log.close()
        if self._pgid is None:
            self._pgid = process.pid
        self._processes.append((name, process))

    def _wait(self, name: str, ready: object, timeout: float) -> None:
        assert callable(ready)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for started, process in self._processes:
                if process.poll() is not None:
                    raise ControlPlaneError(
                        f"{started} exited with code {process.returncode} while starting: "
                        f"{self._last_line(started)} (full log: {self.logs / (started + '.log')})")
            if ready():
                return
            time.sleep(0.25)
        raise ControlPlaneError(f"{name} was not ready within {timeout:.0f}s: {self._last_line(name)} "
                                f"(full log: {self.logs / (name + '.log')})")

    def _last_line(self, name: str) -> str:
        try:
            lines = (self.logs / f"{name}.log").read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return lines[-1][:400] if lines else "empty log"

    def _http_ok(self, url: str) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 -- a fixed local URL
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def admin_ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return context

    def _https_ok(self, path: str) -> bool:
        try:
            with urllib.request.urlopen(self.server + path, timeout=3,  # noqa: S310 -- a fixed local URL
                                        context=self.admin_ssl_context()) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    # -- configuration -----------------------------------------------------------------------------

    def _write_pki(self) -> None:
        self.pki.mkdir(parents=True, exist_ok=True)
        now = datetime.datetime.now(datetime.UTC)
        ca = self._ca = _new_ca(now)
        self.ca_file.write_bytes(ca.cert.public_bytes(serialization.Encoding.PEM))
        leaves = {
            "apiserver": _new_leaf(ca, now, "kube-apiserver", server=True, dns=(
                "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local"), ips=("127.0.0.1", self.address, "10.0.0.1")),
            "admin": _new_leaf(ca, now, "e2e-admin", organizations=("system:masters",)),
            "controller-manager": _new_leaf(ca, now, "system:kube-controller-manager"),
        }
        for name, (cert, key) in leaves.items():
            (self.pki / f"{name}.crt").write_bytes(cert)
            (self.pki / f"{name}.key").write_bytes(key)
            (self.pki / f"{name}.key").chmod(0o600)
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (self.pki / "sa.key").write_bytes(_pem_key(sa_key))
        (self.pki / "sa.pub").write_bytes(sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        write_kubeconfig(self.admin_kubeconfig, self.server, self.ca_file, user="admin",
                         cert_file=self.pki / "admin.crt", key_file=self.pki / "admin.key")
        write_kubeconfig(self.workdir / "controller-manager.kubeconfig", self.server, self.ca_file,
                         user="controller-manager", cert_file=self.pki / "controller-manager.crt",
                         key_file=self.pki / "controller-manager.key")
        (self.workdir / "audit-policy.yaml").write_text(yaml.safe_dump({
            "apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived"],
            "rules": [
                {"level": "Metadata", "userGroups": [f"system:serviceaccounts:{AUDITED_NAMESPACE}"]},
                {"level": "None"},
            ],
        }))

    def client_kubeconfig(self, name: str, common_name: str, organizations: tuple[str, ...] = ()) -> Path:
        """A kubeconfig with a new client certificate of the control plane's CA: the API server
        authenticates it as user ``common_name`` in the groups ``organizations`` (as it does a kubelet's,
        ``system:node:<node>`` in ``system:nodes``)."""
        assert self._ca is not None, "the control plane has not started"
        cert, key = _new_leaf(self._ca, datetime.datetime.now(datetime.UTC), common_name, organizations=organizations)
        (self.pki / f"{name}.crt").write_bytes(cert)
        (self.pki / f"{name}.key").write_bytes(key)
        (self.pki / f"{name}.key").chmod(0o600)
        return write_kubeconfig(self.workdir / f"{name}.kubeconfig", self.server, self.ca_file, user=name,
                                cert_file=self.pki / f"{name}.crt", key_file=self.pki / f"{name}.key")

    def _apiserver_args(self) -> list[str]:
        pki = self.pki
        args = [
            str(self.binaries.kube_apiserver),
            f"--etcd-servers=http://127.0.0.1:{ETCD_PORT}",
            "--bind-address=0.0.0.0", f"--secure-port={APISERVER_PORT}", f"--advertise-address={self.address}",
            f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={self.ca_file}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            "--enable-aggregator-routing=true",
            "--allow-privileged=true",
            f"--audit-policy-file={self.workdir / 'audit-policy.yaml'}",
            f"--audit-log-path={self.audit_log}", "--audit-log-format=json", "--audit-log-mode=blocking",
            "--profiling=false",
        ]
        if self.pod_certificates.feature_gates:
            args.append(f"--feature-gates={','.join(self.pod_certificates.feature_gates)}")
        if self.pod_certificates.runtime_config:
            args.append(f"--runtime-config={','.join(self.pod_certificates.runtime_config)}")
        return args

    def _controller_manager_args(self) -> list[str]:
        kubeconfig = self.workdir / "controller-manager.kubeconfig"
        return [
            str(self.binaries.kube_controller_manager),
            f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1", f"--secure-port={CONTROLLER_MANAGER_PORT}",
            f"--controllers={','.join(CONTROLLERS)}",
            f"--service-account-private-key-file={self.pki / 'sa.key'}",
            f"--root-ca-file={self.ca_file}",
            "--use-service-account-credentials=true",
            "--leader-elect=false",
        ]

    # -- reading what happened -----------------------------------------------------------------------

    def audit_events(self) -> Iterator[dict[str, object]]:
        if not self.audit_log.exists():
            return
        with self.audit_log.open() as log:
            for line in log:
                if line.strip():
                    yield json.loads(line)
