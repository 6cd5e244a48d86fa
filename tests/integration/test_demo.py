"""`mtls-operator demo`: the whole story on the emulator, as a user runs it."""

from __future__ import annotations

import base64
import io
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kube_emulator import Emulator, EmulatorServer
from mtls_operator.cli import main
from mtls_operator.demo.handshake import HandshakeResult
from mtls_operator.pki import key_matches_certificate, load_private_key_pem, parse_pem_certificates

TIME = r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)"
INVENTORY_ID = "spiffe://cluster.local/ns/shop/sa/inventory"


def test_demo_passes_and_writes_secret_files(tmp_path: Path) -> None:
    # As a user runs it: its own process, its own event loops.
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "mtls_operator.cli", "demo", "--output-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    text = run.stdout
    # The bound, for the whole process (imports, emulator, operator, handshakes).
    assert time.monotonic() - started < 30
    assert "Demo passed" in text
    # A clean run warns about nothing: the demo waits for what it needs (the webhooks' CA) before using it.
    assert run.stderr == ""
    assert not [line for line in text.splitlines() if "[WARNING" in line or "[ERROR" in line], text
    # The orders pod went through the admission webhook: a generateName, the Secret name it injected.
    assert re.search(r"orders-7d9f8c-\w{5} -> payments-0 \(mutual TLS\): OK", text), text
    assert "[ok] the webhook-injected orders pod mounts the Secret the operator wrote for it" in text
    assert "foreign-CA client -> payments-0: refused" in text
    folders = sorted(p.name for p in (tmp_path / "shop").iterdir())
    # The PodCertificate pod has no Secret to write: only the three Secret-served pods are there.
    assert len(folders) == 3
    assert folders[1:] == ["payments-payments-0", "payments-payments-1"]
    assert re.fullmatch(r"orders-orders-7d9f8c-[a-z0-9]{8}", folders[0]), folders
    for folder in folders:
        files = tmp_path / "shop" / folder
        assert {p.name for p in files.iterdir()} == {"tls.crt", "tls.key", "ca.crt"}
        assert (files / "tls.key").stat().st_mode & 0o077 == 0
        verify = subprocess.run(["openssl", "verify", "-CAfile", str(files / "ca.crt"), str(files / "tls.crt")],
                                capture_output=True, text=True, check=False)
        assert verify.returncode == 0, verify.stdout + verify.stderr
    _assert_pod_certificate_part(text, tmp_path)


def _assert_pod_certificate_part(text: str, output_dir: Path) -> None:
    """What the demo printed of the pod served by a pod certificate, and the files it wrote for it."""
    pod = re.search(r"Created pod shop/(inventory-5c6b7d-[a-z0-9]{5}) bound to node-1 \(spec.nodeName\) through the "
                    r"API; the webhook injected projected volume mtls-identity, mounted at /var/run/secrets/mtls.dev "
                    r"in app:\n  podCertificate \(signer mtls.dev/spiffe, keyType ECDSAP256, maxExpirationSeconds "
                    r"86400\) -> tls.key, tls.crt \+ clusterTrustBundle \(signer mtls.dev/spiffe, "
                    r"mtls.dev/trust-bundle=true\) -> ca.crt\n", text)
    assert pod, text
    name = pod.group(1)
    assert re.search(r"kubelet on node-1: made its ECDSAP256 key in memory, created PodCertificateRequest "
                     r"shop/req-[a-z0-9]{5} as the node", text), text
    answer = re.search(rf"signer mtls.dev/spiffe answered Issued: notBefore {TIME}, notAfter {TIME}, "
                       rf"beginRefreshAt {TIME}\n", text)
    assert answer, text
    not_before, not_after, refresh = (datetime.fromisoformat(value) for value in answer.groups())
    assert not_after - not_before == timedelta(hours=24)  # the identity's duration, under maxExpirationSeconds
    assert not_before + timedelta(minutes=10) <= refresh <= not_after - timedelta(minutes=10)
    assert re.search(rf"  tls.crt  {INVENTORY_ID}  DNS inventory, inventory.shop.svc  not after "
                     rf"{answer.group(2)}, renewed by the kubelet from {answer.group(3)}\n", text), text
    assert "  tls.key  ECDSA secp256r1 private key, made by the kubelet\n" in text
    assert ("  ca.crt   1 certificate(s) from ClusterTrustBundle mtls.dev:spiffe:bundle (the same as the Secrets' "
            "ca.crt)") in text
    assert re.search(rf"payments-0 \(Secret\) -> {name} \(PodCertificate, mutual TLS\): OK over TLSv1\.\d; server "
                     rf"saw client spiffe://cluster.local/ns/shop/sa/payments, client saw server {INVENTORY_ID}", text)
    assert f"Secrets for {name}: 0; Secrets holding its key: 0" in text
    for check in ("the webhook gave the PodCertificate pod the projected volume",
                  "the signer issued PodCertificateRequest req-",
                  f"tls.crt carries {INVENTORY_ID}; ca.crt is the Secrets' trust bundle",
                  f"mutual TLS between payments-0 (Secret) and {name} (PodCertificate) succeeds",
                  f"no Secret holds {name}'s key (the key never left the node)"):
        assert f"  [ok] {check}" in text, check
    # The files the kubelet of node-1 mounted, as --output-dir wrote them.
    files = output_dir / "nodes" / "node-1" / "shop" / name / "mtls-identity"
    assert {p.name for p in files.iterdir()} == {"tls.crt", "tls.key", "ca.crt"}
    assert (files / "tls.key").stat().st_mode & 0o077 == 0
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(files / "ca.crt"), str(files / "tls.crt")],
                            capture_output=True, text=True, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    leaf = parse_pem_certificates((files / "tls.crt").read_bytes())[0]
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.UniformResourceIdentifier) == [INVENTORY_ID]
    assert key_matches_certificate(load_private_key_pem((files / "tls.key").read_bytes()), leaf)
    assert leaf.not_valid_after_utc == not_after
    # The same trust as the Secret-served pods'.
    assert _ders((files / "ca.crt").read_bytes()) == _ders((output_dir / "shop" / "payments-payments-0" / "ca.crt")
                                                           .read_bytes())


def _ders(pem: bytes) -> set[bytes]:
    return {cert.public_bytes(serialization.Encoding.DER) for cert in parse_pem_certificates(pem)}


async def test_the_demos_pod_certificate_in_the_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cluster the demo leaves: the kubelet's request issued, the signer's trust bundle, no Secret for the pod."""
    import mtls_operator.demo.run as demo

    servers: list[EmulatorServer] = []

    class Recorded(EmulatorServer):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            servers.append(self)

    monkeypatch.setattr(demo, "EmulatorServer", Recorded)
    assert await demo.run_demo_async(None, io.StringIO()) == 0
    emulator: Emulator = servers[0].emulator
    (pod,) = emulator.list("v1", "pods", "shop", label_selector="app=inventory")
    name = pod["metadata"]["name"]
    assert pod["spec"]["nodeName"] == "node-1"
    (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == "mtls-identity"]
    assert [next(iter(source)) for source in volume["projected"]["sources"]] == ["podCertificate",
                                                                                 "clusterTrustBundle"]
    (request,) = emulator.list("certificates.k8s.io/v1", "podcertificaterequests", "shop")
    spec, status = request["spec"], request["status"]
    assert (spec["signerName"], spec["podName"], spec["podUID"], spec["nodeName"]) == (
        "mtls.dev/spiffe", name, pod["metadata"]["uid"], "node-1")
    assert [(cond["type"], cond["status"]) for cond in status["conditions"]] == [("Issued", "True")]
    assert "PRIVATE KEY" not in str(request)
    leaf = parse_pem_certificates(status["certificateChain"].encode())[0]
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    stub = x509.load_der_x509_csr(base64.b64decode(spec["stubPKCS10Request"]))
    assert leaf.public_key().public_bytes(*spki) == stub.public_key().public_bytes(*spki)
    bundle = emulator.get("certificates.k8s.io/v1", "clustertrustbundles", "mtls.dev:spiffe:bundle")
    assert bundle is not None
    assert bundle["spec"]["signerName"] == "mtls.dev/spiffe"
    assert emulator.list("v1", "secrets", "shop", label_selector=f"mtls.dev/pod={name}") == []
    identity = emulator.get("mtls.dev/v1alpha1", "mtlsidentities", "inventory", "shop")
    assert identity is not None
    assert identity["status"]["podCertificatePods"] == 1


def test_run_refuses_bad_settings_with_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MTLS_DEFAULT_DURATION", "forever")
    assert main(["run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "MTLS_DEFAULT_DURATION" in err


async def test_demo_exits_1_when_a_check_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    import mtls_operator.demo.pod_certificate as pod_certificate
    import mtls_operator.demo.run as demo

    def refused(*_: object, **__: object) -> HandshakeResult:
        return HandshakeResult(ok=False, error="client: injected failure")

    monkeypatch.setattr(demo, "mutual_tls_handshake", refused)
    monkeypatch.setattr(pod_certificate, "mutual_tls_handshake", refused)
    out = io.StringIO()
    assert await demo.run_demo_async(None, out) == 1
    text = out.getvalue()
    assert re.search(r"\[FAILED\] mutual TLS between payments-0 and orders-7d9f8c-\w{5} succeeds", text), text
    assert re.search(r"\[FAILED\] mutual TLS between payments-0 \(Secret\) and inventory-5c6b7d-\w{5} "
                     r"\(PodCertificate\) succeeds", text), text
    assert "Demo FAILED" in text
