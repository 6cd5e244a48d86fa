"""PKCS#12 keystores on the emulator: the real operator writes ``keystore.p12`` and
``truststore.p12`` beside the PEM files, keeps them current through re-issues, bundle and password
changes, and reports a missing or unusable password Secret on the identity instead of writing
anything unencrypted."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12

from kube_emulator import Emulator
from mtls_operator import constants as c
from mtls_operator.rules.plan import b64text, secret_data

from .conftest import (
    API,
    NS,
    OPERATOR_NS,
    OperatorHandle,
    eventually,
    identity,
    managed_secrets,
    pod,
    ready,
)

PASSWORD = b"changeit-but-longer"
KEYSTORES = {"pkcs12": {"create": True, "passwordSecretRef": {"name": "p12-pass", "key": "password"}}}
SECRET = "payments-payments-0"


def password_secret(data: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "p12-pass", "namespace": NS}, "data": data}


def stores(secret: dict[str, Any], password: bytes) -> tuple[pkcs12.PKCS12KeyAndCertificates,
                                                             pkcs12.PKCS12KeyAndCertificates]:
    keystore = secret_data(secret, c.KEYSTORE_P12)
    truststore = secret_data(secret, c.TRUSTSTORE_P12)
    assert keystore is not None, "no keystore.p12"
    assert truststore is not None, "no truststore.p12"
    return pkcs12.load_pkcs12(keystore, password), pkcs12.load_pkcs12(truststore, password)


def pem_certs(data: bytes | None) -> list[x509.Certificate]:
    assert data is not None
    return x509.load_pem_x509_certificates(data)


def assert_stores_match_pem(secret: dict[str, Any], password: bytes) -> None:
    keystore, truststore = stores(secret, password)
    assert keystore.cert is not None
    assert keystore.key is not None
    leaf = pem_certs(secret_data(secret, c.TLS_CRT))[0]
    assert keystore.cert.certificate == leaf
    assert keystore.key.public_key() == leaf.public_key()
    assert [extra.certificate for extra in truststore.additional_certs] == pem_certs(secret_data(secret, c.CA_CRT))


def pod_secret_when(emulator: Emulator, check: Any) -> Any:
    """A waiter for ``eventually``: the pod Secret once ``check`` holds for it."""
    def probe() -> dict[str, Any] | None:
        secret = managed_secrets(emulator).get(SECRET)
        return secret if secret is not None and check(secret) else None
    return probe


def keystore_serial(secret: dict[str, Any], password: bytes) -> int:
    keystore, _ = stores(secret, password)
    assert keystore.cert is not None
    return keystore.cert.certificate.serial_number


async def test_keystores_follow_issue_bundle_reissue_and_password(emulator: Emulator, operator: OperatorHandle) -> None:
    emulator.create(password_secret({"password": b64text(PASSWORD)}))
    emulator.create(identity("payments", keystores=KEYSTORES))
    emulator.create(pod("payments-0", "payments"))
    await eventually(lambda: (ready(emulator, "payments") or {}).get("status") == "True", what="Ready=True")
    secret = managed_secrets(emulator)[SECRET]
    assert_stores_match_pem(secret, PASSWORD)
    with pytest.raises(ValueError, match="password"):
        stores(secret, b"wrong")

    # A CA rotation starts: the new CA joins ca.crt, and truststore.p12 with it.
    emulator.patch("v1", "secrets", "mtls-operator-ca", OPERATOR_NS,
                   {"metadata": {"annotations": {"mtls.dev/rotate": "true"}}})
    operator.poke()
    rotated = await eventually(pod_secret_when(emulator, lambda s: len(pem_certs(secret_data(s, c.CA_CRT))) == 2),
                               what="the new CA in ca.crt")
    assert_stores_match_pem(rotated, PASSWORD)

    # A re-issue (spec change) writes the keystore with the new key.
    serial = keystore_serial(rotated, PASSWORD)
    emulator.patch(API, c.PLURAL, "payments", NS, {"spec": {"duration": "48h"}})
    reissued = await eventually(pod_secret_when(emulator, lambda s: keystore_serial(s, PASSWORD) != serial),
                                what="the re-issued leaf in keystore.p12")
    assert_stores_match_pem(reissued, PASSWORD)

    # A new password: both stores are written again with it, from the key the pod already holds.
    emulator.patch("v1", "secrets", "p12-pass", NS, {"data": {"password": b64text(b"a new password")}})
    operator.poke()

    def readable_with_new_password() -> dict[str, Any] | None:
        current = managed_secrets(emulator)[SECRET]
        try:
            stores(current, b"a new password")
        except ValueError:
            return None
        return current

    changed = await eventually(readable_with_new_password, what="keystores under the new password")
    assert_stores_match_pem(changed, b"a new password")
    assert secret_data(changed, c.TLS_KEY) == secret_data(reissued, c.TLS_KEY), "no re-issue for a new password"

    # Keystores no longer asked for: removed.
    emulator.patch(API, c.PLURAL, "payments", NS, {"spec": {"keystores": None}})
    removed = await eventually(pod_secret_when(emulator, lambda s: c.KEYSTORE_P12 not in (s.get("data") or {})),
                               what="the keystores removed")
    assert c.TRUSTSTORE_P12 not in removed["data"]
    assert c.KEYSTORE_ANNOTATION not in removed["metadata"]["annotations"]


@pytest.mark.parametrize(
    ("password_data", "message"),
    [
        (None, f"the keystore password Secret {NS}/p12-pass does not exist"),
        ({"other": b64text(PASSWORD)}, f"Secret {NS}/p12-pass has no key 'password'"),
        ({"password": ""}, "the password is empty"),
    ],
)
async def test_unusable_password_is_a_condition_and_nothing_is_written(
    emulator: Emulator, operator: OperatorHandle, password_data: dict[str, Any] | None, message: str
) -> None:
    if password_data is not None:
        emulator.create(password_secret(password_data))
    emulator.create(identity("payments", keystores=KEYSTORES))
    emulator.create(pod("payments-0", "payments"))
    condition = await eventually(
        lambda: (cond := ready(emulator, "payments")) and cond.get("reason") == "KeystorePasswordUnavailable" and cond,
        what="Ready=False KeystorePasswordUnavailable")
    assert condition["status"] == "False"
    assert message in condition["message"]
    events = await eventually(lambda: [e for e in emulator.list("v1", "events", NS)
                                       if e["reason"] == "KeystorePasswordUnavailable"], what="a Warning Event")
    assert events[0]["type"] == "Warning"
    assert message in events[0]["message"]
    assert managed_secrets(emulator) == {}, "nothing is issued without a usable password"

    # The user fixes it: the next look (with backoff) issues, keystores included.
    if password_data is None:
        emulator.create(password_secret({"password": b64text(PASSWORD)}))
    else:
        emulator.patch("v1", "secrets", "p12-pass", NS, {"data": {"password": b64text(PASSWORD)}})
    await eventually(lambda: (ready(emulator, "payments") or {}).get("status") == "True", what="Ready=True",
                     within=15)
    assert_stores_match_pem(managed_secrets(emulator)[SECRET], PASSWORD)
    assert base64.b64decode(emulator.get("v1", "secrets", "p12-pass", NS)["data"]["password"]) == PASSWORD
