"""CA rotation end to end: the real operator on the emulator, wall-clock time moved by the test.

The propagation delay (the kubelet's time to put a changed Secret into a pod's files) is measured
on the operator's clock, which the test moves; "pods" here are folders the test's kubelet stand-in
refreshes from their Secrets with a lag shorter than that delay, and a real mTLS server and client
reload those files as a real service would.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from kube_emulator import Emulator, EmulatorServer
from mtls_operator import constants as c
from mtls_operator.demo.handshake import TLSFiles, mutual_tls_handshake
from mtls_operator.pki import (
    CertificateAuthority,
    PrivateKey,
    create_self_signed_ca,
    fingerprint,
    load_private_key_pem,
    parse_pem_certificates,
)

from .conftest import (
    NS,
    OPERATOR_NS,
    FakeClock,
    OperatorHandle,
    eventually,
    get_identity,
    identity,
    managed_secrets,
    operator_settings,
    pod,
)

CA_SECRET = "mtls-operator-ca"
DELAY = timedelta(seconds=20)
# The kubelet stand-in refreshes a pod's files at most this long after its Secret changed.
KUBELET_LAG = timedelta(seconds=6)
STEP = timedelta(seconds=2)


def ca_secret(emulator: Emulator) -> dict[str, Any]:
    body = emulator.get("v1", "secrets", CA_SECRET, OPERATOR_NS)
    assert body is not None
    return body


def ca_annotations(emulator: Emulator) -> dict[str, str]:
    return dict(ca_secret(emulator)["metadata"].get("annotations") or {})


def phase(emulator: Emulator) -> str | None:
    return ca_annotations(emulator).get("mtls.dev/rotation-phase")


def data(secret: dict[str, Any], key: str) -> bytes:
    return base64.b64decode(secret["data"][key])


def bundle_fingerprints(pem: bytes) -> set[str]:
    return {fingerprint(cert) for cert in parse_pem_certificates(pem)}


def request_rotation(emulator: Emulator) -> str:
    before = ca_annotations(emulator)["mtls.dev/ca-fingerprint"]
    emulator.patch("v1", "secrets", CA_SECRET, OPERATOR_NS,
                   {"metadata": {"annotations": {"mtls.dev/rotate": "true"}}})
    return before


async def start(server: EmulatorServer, clock: FakeClock, **settings: Any) -> OperatorHandle:
    handle = OperatorHandle(server, clock, operator_settings(ca_propagation_delay=DELAY, **settings))
    await handle.start()
    return handle


async def issued(emulator: Emulator, count: int) -> dict[str, dict[str, Any]]:
    return await eventually(lambda: (s := managed_secrets(emulator)) and len(s) == count and s, within=15,
                            what=f"{count} pod Secrets")


async def advance_until(emulator: Emulator, clock: FakeClock, wanted: str, *, within: int = 400,
                        each_step: Any = None) -> None:
    """Move the operator's clock in steps until the CA Secret says ``wanted``."""
    for _ in range(within):
        if phase(emulator) == wanted:
            return
        clock.advance(STEP)
        if each_step is not None:
            each_step()
        await asyncio.sleep(0.05)
    raise AssertionError(f"rotation never reached {wanted}: {ca_annotations(emulator)}")


def issuer_fingerprints(emulator: Emulator) -> set[str]:
    return {s["metadata"]["annotations"][c.CA_FINGERPRINT_ANNOTATION] for s in managed_secrets(emulator).values()}


def ca_events(emulator: Emulator) -> list[str]:
    return [e["reason"] for e in sorted(emulator.list("v1", "events", OPERATOR_NS),
                                        key=lambda e: e["metadata"]["creationTimestamp"])
            if e["involvedObject"]["name"] == CA_SECRET]


def assert_rotated(emulator: Emulator, old: str) -> str:
    new = ca_annotations(emulator)["mtls.dev/ca-fingerprint"]
    assert new != old
    ca = ca_secret(emulator)
    assert bundle_fingerprints(data(ca, c.CA_CRT)) == {new}
    assert "next.crt" not in ca["data"]
    for secret in managed_secrets(emulator).values():
        assert secret["metadata"]["annotations"][c.CA_FINGERPRINT_ANNOTATION] == new
        assert bundle_fingerprints(data(secret, c.CA_CRT)) == {new}
    bundle = emulator.get("v1", "configmaps", c.TRUST_BUNDLE_CONFIGMAP, NS)
    assert bundle is not None
    assert bundle_fingerprints(bundle["data"][c.CA_CRT].encode()) == {new}
    return new


@dataclass
class PodFiles:
    """A pod's projected Secret volume, refreshed by the kubelet stand-in with a lag."""

    folder: Path
    secret_name: str
    changed_at: Any = None  # the operator-clock time the Secret was first seen changed
    version: str | None = None
    reloads: int = 0
    seen: list[str] = field(default_factory=list)

    def kubelet(self, emulator: Emulator, clock: FakeClock) -> None:
        secret = emulator.get("v1", "secrets", self.secret_name, NS)
        assert secret is not None
        version = secret["metadata"]["resourceVersion"]
        if version == self.version:
            self.changed_at = None
            return
        if self.changed_at is None:
            self.changed_at = clock.now
        if self.version is None or clock.now - self.changed_at >= KUBELET_LAG:
            for key in (c.TLS_CRT, c.TLS_KEY, c.CA_CRT):
                (self.folder / key).write_bytes(data(secret, key))
            self.version, self.changed_at = version, None

    def load(self) -> TLSFiles:
        """What the application reads: the files on disk, reloaded each time they change."""
        files = TLSFiles(*((self.folder / key).read_bytes() for key in (c.TLS_CRT, c.TLS_KEY, c.CA_CRT)))
        stamp = fingerprint(parse_pem_certificates(files.cert_chain)[0])
        if not self.seen or self.seen[-1] != stamp:
            self.seen.append(stamp)
            self.reloads += 1
        return files


async def test_a_complete_rotation_keeps_every_handshake_working(
    server: EmulatorServer, emulator: Emulator, tmp_path: Path
) -> None:
    clock = FakeClock()
    # Start well in the past so certificates issued on the moved clock are already valid in real time.
    clock.advance(-timedelta(minutes=30))
    emulator.create(identity("payments", dnsNames=["payments"]))
    emulator.create(pod("payments-0", "payments"))
    emulator.create(pod("payments-1", "payments"))
    handle = await start(server, clock)
    try:
        secrets = await issued(emulator, 2)
        pods = []
        for name in sorted(secrets):
            folder = tmp_path / name
            folder.mkdir()
            pods.append(PodFiles(folder, name))
        for files in pods:
            files.kubelet(emulator, clock)
        old = request_rotation(emulator)
        phases: list[str] = []
        handshakes = 0
        failures: list[str] = []
        for _ in range(600):
            current = phase(emulator) or ""
            if not phases or phases[-1] != current:
                phases.append(current)
            if phases[-1] == "Idle" and len(phases) > 1:
                break
            result = await asyncio.to_thread(mutual_tls_handshake, pods[0].load(), pods[1].load(),
                                             server_hostname="payments")
            handshakes += 1
            if not result.ok:
                failures.append(f"phase {current}: {result.error}")
            clock.advance(STEP)
            for files in pods:
                files.kubelet(emulator, clock)
            await asyncio.sleep(0.05)
        assert failures == []
        # Retiring has no propagation delay to wait: it ends as soon as the last pod Secret is written, which
        # for two pods may fall between two samples. The Events below show that every phase was entered.
        assert [p for p in phases if p != "Retiring"][-3:] == ["Distributing", "Reissuing", "Idle"], phases
        order = ["Idle", "Distributing", "Reissuing", "Retiring"]
        ranks = [len(order) if p == "Idle" and i else order.index(p) for i, p in enumerate(phases)]
        assert ranks == sorted(ranks), phases
        assert handshakes > 20
        new = assert_rotated(emulator, old)
        # Each pod reloaded its files to a certificate of the new CA, and still handshakes.
        for files in pods:
            files.kubelet(emulator, clock)
            clock.advance(KUBELET_LAG)
            files.kubelet(emulator, clock)
            assert files.reloads >= 2
        final = await asyncio.to_thread(mutual_tls_handshake, pods[0].load(), pods[1].load(),
                                        server_hostname="payments")
        assert final.ok, final.error
        await eventually(lambda: {"RotationStarted", "RotationReissuing", "RotationRetiring", "RotationComplete"}
                         <= set(ca_events(emulator)), what="an Event for every phase")
        status = await eventually(lambda: (s := get_identity(emulator, "payments").get("status") or {})
                                  and s.get("caFingerprint") == new and s.get("caRotationPhase") == "Idle" and s,
                                  what="the identity's status following the new CA")
        assert status["lastIssuance"]["reason"] == "ca-rotation"
        assert status["lastIssuance"]["message"].endswith("Re-issuing: CA rotated")
        conditions = {cond["type"]: cond for cond in status["conditions"]}
        assert conditions["CertificateAuthority"]["reason"] == "Valid"
        assert new in conditions["CertificateAuthority"]["message"]
    finally:
        await handle.stop()


@pytest.mark.parametrize("stop_in", ["Distributing", "Reissuing", "Retiring"])
async def test_an_operator_restart_resumes_the_rotation_phase(
    server: EmulatorServer, emulator: Emulator, clock: FakeClock, stop_in: str
) -> None:
    emulator.create(identity("payments"))
    for index in range(3):
        emulator.create(pod(f"payments-{index}", "payments"))
    handle = await start(server, clock)
    await issued(emulator, 3)
    old = request_rotation(emulator)
    stuck = None
    if stop_in == "Retiring":
        # Hold the rotation in Retiring: the trust ConfigMap cannot take the final bundle.
        await advance_until(emulator, clock, "Reissuing")
        await eventually(lambda: "mtls.dev/rotation-settled-at" in ca_annotations(emulator), what="reissued")
        stuck = emulator.faults.add(verb="patch", resource="configmaps", status=500, count=None)
    await advance_until(emulator, clock, stop_in)
    await asyncio.sleep(0.5)
    await handle.stop()
    assert phase(emulator) == stop_in
    # The CA being rolled in: next while Distributing, the signing one afterwards.
    incoming = ca_annotations(emulator)["mtls.dev/next-ca-fingerprint" if stop_in == "Distributing"
                                        else "mtls.dev/ca-fingerprint"]
    if stuck is not None:
        emulator.faults.remove(stuck)

    handle = await start(server, clock)
    try:
        await advance_until(emulator, clock, "Idle")
        await eventually(lambda: issuer_fingerprints(emulator) == {ca_annotations(emulator)["mtls.dev/ca-fingerprint"]},
                         what="every leaf from the new CA")
        # The same rotation resumed, to the same new CA; none started afresh.
        assert assert_rotated(emulator, old) == incoming
        await eventually(lambda: "RotationComplete" in ca_events(emulator), what="the RotationComplete Event")
        assert ca_events(emulator).count("RotationStarted") == 1
        assert ca_events(emulator).count("RotationComplete") == 1
    finally:
        await handle.stop()


async def test_a_ca_replaced_by_a_person_is_rolled_in_without_an_outage(
    server: EmulatorServer, emulator: Emulator, clock: FakeClock
) -> None:
    emulator.create(identity("payments"))
    emulator.create(pod("payments-0", "payments"))
    handle = await start(server, clock)
    try:
        await issued(emulator, 1)
        old = ca_annotations(emulator)["mtls.dev/ca-fingerprint"]
        theirs = create_self_signed_ca(clock.now, common_name="Their new CA")
        emulator.patch("v1", "secrets", CA_SECRET, OPERATOR_NS, {"data": _ca_data(theirs)})
        # The operator restores the CA it signs with and rolls the new one in as the next CA.
        await eventually(lambda: phase(emulator) == "Distributing", what="a rotation to the replacement")
        ca = ca_secret(emulator)
        assert fingerprint(parse_pem_certificates(data(ca, c.TLS_CRT))[0]) == old
        assert bundle_fingerprints(data(ca, c.CA_CRT)) == {old, theirs.fingerprint}
        await advance_until(emulator, clock, "Idle")
        assert assert_rotated(emulator, old) == theirs.fingerprint
        assert ca_annotations(emulator)["mtls.dev/ca-origin"] == "supplied"
    finally:
        await handle.stop()


async def test_a_generated_ca_rotates_itself_at_two_thirds_of_its_life(
    server: EmulatorServer, emulator: Emulator, clock: FakeClock
) -> None:
    emulator.create(identity("payments"))
    emulator.create(pod("payments-0", "payments"))
    handle = await start(server, clock, ca_duration=timedelta(hours=3))
    try:
        await issued(emulator, 1)
        old = ca_annotations(emulator)["mtls.dev/ca-fingerprint"]
        await asyncio.sleep(1)
        assert phase(emulator) == "Idle"
        clock.advance(timedelta(hours=2, minutes=1))
        await advance_until(emulator, clock, "Idle", within=5)  # still Idle right now
        await eventually(lambda: phase(emulator) != "Idle", what="an automatic rotation")
        await advance_until(emulator, clock, "Idle")
        assert_rotated(emulator, old)
        started = [e for e in emulator.list("v1", "events", OPERATOR_NS) if e["reason"] == "RotationStarted"]
        assert "2/3 of its lifetime" in started[0]["message"]
    finally:
        await handle.stop()


async def test_a_supplied_ca_expiring_soon_is_announced(
    server: EmulatorServer, emulator: Emulator, clock: FakeClock
) -> None:
    theirs = create_self_signed_ca(clock.now - timedelta(days=300), validity=timedelta(days=320))
    emulator.create({"apiVersion": "v1", "kind": "Secret", "type": c.SECRET_TYPE_TLS,
                     "metadata": {"name": CA_SECRET, "namespace": OPERATOR_NS}, "data": _ca_data(theirs)})
    emulator.create(identity("payments"))
    emulator.create(pod("payments-0", "payments"))
    handle = await start(server, clock)
    try:
        await issued(emulator, 1)

        def ca_condition() -> dict[str, Any] | None:
            conditions = (get_identity(emulator, "payments").get("status") or {}).get("conditions") or []
            found = next((cond for cond in conditions if cond["type"] == "CertificateAuthority"), None)
            return found if found and found["reason"] == "CAExpiringSoon" else None

        condition = await eventually(ca_condition, what="the CertificateAuthority condition")
        assert condition["status"] == "False"
        assert "cannot renew it" in condition["message"]
        warnings = [e for e in emulator.list("v1", "events", OPERATOR_NS) if e["reason"] == "CAExpiringSoon"]
        assert len(warnings) == 1
        # Never rotated away from a CA the user owns, and asked-for rotation is refused with a reason.
        request_rotation(emulator)
        await eventually(lambda: [e for e in emulator.list("v1", "events", OPERATOR_NS)
                                  if e["reason"] == "RotationRefused"], what="the refusal")
        assert phase(emulator) == "Idle"
        assert ca_annotations(emulator)["mtls.dev/ca-fingerprint"] == theirs.fingerprint
    finally:
        await handle.stop()


HEALS = [
    pytest.param("tls.key", "another key", id="key-replaced"),
    pytest.param("tls.crt", "a certificate from another CA", id="foreign-certificate"),
    pytest.param("tls.crt", "garbage", id="garbage-certificate"),
]


@pytest.mark.parametrize(("key", "what"), HEALS)
async def test_a_corrupted_secret_is_healed(
    emulator: Emulator, operator: OperatorHandle, clock: FakeClock, key: str, what: str
) -> None:
    emulator.create(identity("payments"))
    emulator.create(pod("payments-0", "payments"))
    secret = (await issued(emulator, 1))["payments-payments-0"]
    serial = secret["metadata"]["annotations"][c.SERIAL_ANNOTATION]
    foreign = create_self_signed_ca(clock.now)
    if what == "another key":
        value = foreign.secret_data()[c.TLS_KEY]
    elif what == "garbage":
        value = b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"
    else:
        # A real certificate for the Secret's own key and with the serial the annotations expect, but
        # from another CA: only the chain check against the trust bundle can tell.
        value = _forged_leaf(foreign, int(serial, 16), load_private_key_pem(data(secret, c.TLS_KEY)))
    emulator.patch("v1", "secrets", "payments-payments-0", NS, {"data": {key: base64.b64encode(value).decode()}})
    healed = await eventually(
        lambda: (s := managed_secrets(emulator).get("payments-payments-0"))
        and s["metadata"]["annotations"][c.SERIAL_ANNOTATION] != serial and s,
        what="a re-issued certificate",
    )
    chain = parse_pem_certificates(data(healed, c.TLS_CRT))
    assert fingerprint(chain[0]) != fingerprint(parse_pem_certificates(data(secret, c.TLS_CRT))[0])
    # The first issue is reported by a later pass ("new"), which may land after the patch: wait for the repair.
    await eventually(
        lambda: ((get_identity(emulator, "payments").get("status") or {}).get("lastIssuance") or {}).get("reason")
        == "repair", what="lastIssuance of the repair")
    # The Event is posted after the status write: wait for it too.
    repairs = await eventually(
        lambda: [e for e in emulator.list("v1", "events", NS) if "repair: 1" in e["message"]], what="a repair Event")
    assert "Repairing" in repairs[-1]["message"]


def _ca_data(ca: CertificateAuthority) -> dict[str, str]:
    return {key: base64.b64encode(value).decode() for key, value in ca.secret_data().items()}


def _forged_leaf(ca: CertificateAuthority, serial: int, key: PrivateKey) -> bytes:
    now = ca.cert.not_valid_before_utc
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(hours=24))
        .sign(ca.key, hashes.SHA256())
    )
    return cert.public_bytes(Encoding.PEM)


async def test_certificates_that_expired_while_the_operator_was_down_are_renewed_first(
    server: EmulatorServer, emulator: Emulator, clock: FakeClock
) -> None:
    emulator.create(identity("fresh", duration="1h"))
    emulator.create(identity("steady"))
    for name in ("fresh-0", "fresh-1"):
        emulator.create(pod(name, "fresh"))
    for name in ("steady-0", "steady-1"):
        emulator.create(pod(name, "steady"))
    handle = await start(server, clock, max_issuance_per_second=1.0)
    await issued(emulator, 4)
    await handle.stop()
    # While no operator runs, the 1h certificates expire and the other identity's spec changes.
    clock.advance(timedelta(hours=2))
    emulator.patch(f"{c.GROUP}/{c.VERSION}", c.PLURAL, "steady", NS, {"spec": {"dnsNames": ["steady"]}})
    handle = await start(server, clock, max_issuance_per_second=1.0)
    try:
        await eventually(lambda: all(s["metadata"]["annotations"][c.NOT_AFTER_ANNOTATION] > clock.now.isoformat()
                                     for s in managed_secrets(emulator, "fresh").values())
                         and len(_secret_writes(emulator)) >= 4, within=20, what="4 re-issues")
        writes = _secret_writes(emulator)[-4:]
        # One token may go to whoever asks first; after that, overdue renewals beat spec changes.
        assert writes[-1].startswith("steady-"), writes
        assert sum(name.startswith("fresh-") for name in writes[:3]) == 2, writes
        # The status is written after the pass's Secrets (and its Events): wait for it.
        fresh = await eventually(lambda: (last := get_identity(emulator, "fresh")["status"]["lastIssuance"])
                                 ["reason"] == "renewal" and last, what="fresh: lastIssuance renewal")
        assert "certificate expired at" in fresh["message"]
        await eventually(lambda: get_identity(emulator, "steady")["status"]["lastIssuance"]["reason"] == "spec-change",
                         what="steady: lastIssuance spec-change")
    finally:
        await handle.stop()


def _secret_writes(emulator: Emulator) -> list[str]:
    """Pod Secret updates in order (the first issue creates; these are the re-issues)."""
    return [str(request.name) for request in list(emulator.requests.recent)
            if request.resource == "secrets" and request.verb == "patch" and request.namespace == NS]


async def test_a_ca_secret_broken_by_hand_leaves_signing_with_the_ca_held(
    server: EmulatorServer, emulator: Emulator, clock: FakeClock
) -> None:
    emulator.create(identity("payments"))
    emulator.create(pod("payments-0", "payments"))
    handle = await start(server, clock)
    try:
        await issued(emulator, 1)
        good = ca_secret(emulator)["data"]
        signing = ca_annotations(emulator)["mtls.dev/ca-fingerprint"]
        emulator.patch("v1", "secrets", CA_SECRET, OPERATOR_NS,
                       {"data": {c.TLS_CRT: base64.b64encode(b"oops").decode()}})

        def ca_condition() -> dict[str, Any] | None:
            conditions = (get_identity(emulator, "payments").get("status") or {}).get("conditions") or []
            return next((cond for cond in conditions if cond["type"] == "CertificateAuthority"), None)

        broken = await eventually(lambda: (cond := ca_condition()) and cond["reason"] == "CASecretInvalid" and cond,
                                  what="CASecretInvalid")
        assert broken["status"] == "False"
        assert signing in broken["message"]
        # Pods keep being served, by the CA held, and nothing rewrites what the person wrote.
        emulator.create(pod("payments-1", "payments"))
        secrets = await issued(emulator, 2)
        assert {s["metadata"]["annotations"][c.CA_FINGERPRINT_ANNOTATION] for s in secrets.values()} == {signing}
        assert (ready_condition := (get_identity(emulator, "payments")["status"]["conditions"][0]))["status"] == "True"
        assert ready_condition["type"] == "Ready"
        await eventually(lambda: "CASecretInvalid" in ca_events(emulator), what="a CASecretInvalid Event")
        assert data(ca_secret(emulator), c.TLS_CRT) == b"oops"
        emulator.patch("v1", "secrets", CA_SECRET, OPERATOR_NS, {"data": {c.TLS_CRT: good[c.TLS_CRT]}})
        await eventually(lambda: (cond := ca_condition()) and cond["reason"] == "Valid", what="Valid again")
    finally:
        await handle.stop()
