"""PKCS#12 keystores: the builder (pki/keystore.py), ``spec.keystores`` (spec.py) and the Secret's
keystore keys (plan.py), table-driven on a fixed clock.

The profiles are checked from the outside too: ``openssl pkcs12 -info`` names the algorithms it
finds in the file, and the truststore's entries carry Java's trusted-certificate attribute.
"""

from __future__ import annotations

import base64
import dataclasses
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12

from mtls_operator import constants as c
from mtls_operator.errors import PKIError, SpecError
from mtls_operator.k8s.views import SecretView
from mtls_operator.models import KeySpec
from mtls_operator.pki import certs_to_pem, create_intermediate_ca, create_self_signed_ca, issue_leaf
from mtls_operator.pki.keystore import (
    KEYSTORE_ALIAS,
    MAX_PASSWORD_BYTES,
    Pkcs12Profile,
    keystore_p12,
    truststore_p12,
)
from mtls_operator.rules.plan import (
    KeystoreRequest,
    b64text,
    keystore_digest,
    keystore_patch,
    keystore_request,
    merge_patches,
)
from mtls_operator.rules.spec import Pkcs12Keystore, parse_identity_spec
from tests.unit.pki_cases import ALL_SPECS, NOW, REQUEST

PASSWORD = b"correct horse battery staple"
ROOT = create_self_signed_ca(NOW, common_name="keystore test root", path_length=None)
INTERMEDIATE = create_intermediate_ca(ROOT, NOW)
NEXT_ROOT = create_self_signed_ca(NOW, common_name="keystore test root 2")


@pytest.mark.parametrize("profile", list(Pkcs12Profile))
@pytest.mark.parametrize("key", ALL_SPECS, ids=str)
def test_keystore_round_trips_every_key_type(key: KeySpec, profile: Pkcs12Profile) -> None:
    leaf = issue_leaf(INTERMEDIATE, dataclasses.replace(REQUEST, key=key), NOW)
    loaded = pkcs12.load_pkcs12(keystore_p12(leaf.chain_pem, leaf.key_pem, PASSWORD, profile), PASSWORD)
    assert loaded.key is not None
    assert loaded.cert is not None
    assert loaded.cert.certificate == leaf.cert
    assert loaded.cert.friendly_name == KEYSTORE_ALIAS.encode()
    assert loaded.key.public_key() == leaf.key.public_key()
    # The chain after the leaf: the intermediate (the root is the truststore's).
    assert [extra.certificate for extra in loaded.additional_certs] == [INTERMEDIATE.cert]


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        (Pkcs12Profile.MODERN_2023, ["MAC: sha256, Iteration 2048", "PBES2, PBKDF2, AES-256-CBC, Iteration 2048, "
                                     "PRF hmacWithSHA256"]),
        (Pkcs12Profile.LEGACY_DES, ["MAC: sha1, Iteration 2048", "pbeWithSHA1And3-KeyTripleDES-CBC, Iteration 2048"]),
    ],
)
def test_profiles_as_openssl_reads_them(tmp_path: Path, profile: Pkcs12Profile, expected: list[str]) -> None:
    leaf = issue_leaf(ROOT, REQUEST, NOW)
    for name, data in (("keystore", keystore_p12(leaf.chain_pem, leaf.key_pem, PASSWORD, profile)),
                       ("truststore", truststore_p12(certs_to_pem(ROOT.trust), PASSWORD, profile))):
        path = tmp_path / f"{name}.p12"
        path.write_bytes(data)
        info = subprocess.run(["openssl", "pkcs12", "-info", "-in", str(path), "-noout", "-passin", "stdin"],
                              input=PASSWORD, capture_output=True, check=True).stderr.decode()
        for line in expected:
            assert line in info, info
        wrong = subprocess.run(["openssl", "pkcs12", "-info", "-in", str(path), "-noout", "-passin", "pass:wrong"],
                               capture_output=True, check=False)
        assert wrong.returncode != 0


def test_truststore_holds_every_anchor_as_a_java_trusted_entry(tmp_path: Path) -> None:
    bundle = certs_to_pem((ROOT.cert, NEXT_ROOT.cert))
    data = truststore_p12(bundle, PASSWORD, Pkcs12Profile.MODERN_2023)
    loaded = pkcs12.load_pkcs12(data, PASSWORD)
    assert loaded.key is None
    assert [extra.certificate for extra in loaded.additional_certs] == [ROOT.cert, NEXT_ROOT.cert]
    aliases = [extra.friendly_name for extra in loaded.additional_certs]
    assert len(set(aliases)) == 2
    assert all(alias is not None and alias.startswith(b"ca-") for alias in aliases)
    path = tmp_path / "truststore.p12"
    path.write_bytes(data)
    dump = subprocess.run(["openssl", "pkcs12", "-info", "-in", str(path), "-nokeys", "-passin", "stdin"],
                          input=PASSWORD, capture_output=True, check=True).stdout.decode()
    # Java's KeyStore("PKCS12") trusts only certificates with this attribute (Oracle's trusted key usage).
    assert dump.count("2.16.840.1.113894.746875.1.1:") == 2


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        (b"", "empty"),
        (b"x" * (MAX_PASSWORD_BYTES + 1), f"longer than {MAX_PASSWORD_BYTES} bytes"),
    ],
)
def test_bad_passwords_are_refused_never_written_unencrypted(password: bytes, problem: str) -> None:
    leaf = issue_leaf(ROOT, REQUEST, NOW)
    with pytest.raises(PKIError, match=problem):
        keystore_p12(leaf.chain_pem, leaf.key_pem, password, Pkcs12Profile.MODERN_2023)
    with pytest.raises(PKIError, match=problem):
        truststore_p12(certs_to_pem(ROOT.trust), password, Pkcs12Profile.LEGACY_DES)


def test_a_key_that_is_not_the_leafs_is_refused() -> None:
    one, other = issue_leaf(ROOT, REQUEST, NOW), issue_leaf(ROOT, REQUEST, NOW)
    with pytest.raises(PKIError, match="does not belong"):
        keystore_p12(one.chain_pem, other.key_pem, PASSWORD, Pkcs12Profile.MODERN_2023)


# spec.keystores --------------------------------------------------------------------------------

SELECTOR = {"matchLabels": {"app": "payments"}}
REF = {"name": "p12-pass", "key": "password"}


@pytest.mark.parametrize(
    ("keystores", "expected"),
    [
        (None, None),
        ({}, None),
        ({"pkcs12": None}, None),
        ({"pkcs12": {"create": False}}, None),
        ({"pkcs12": {"create": False, "passwordSecretRef": REF, "profile": "LegacyDES"}}, None),
        ({"pkcs12": {"create": True, "passwordSecretRef": REF}}, Pkcs12Keystore("p12-pass", "password")),
        ({"pkcs12": {"create": True, "passwordSecretRef": {"name": "a.b-c", "key": "k.e_y-1"}, "profile": "LegacyDES"}},
         Pkcs12Keystore("a.b-c", "k.e_y-1", Pkcs12Profile.LEGACY_DES)),
    ],
)
def test_keystores_spec(keystores: Any, expected: Pkcs12Keystore | None) -> None:
    spec = parse_identity_spec({"selector": SELECTOR, "keystores": keystores}, namespace="shop")
    assert spec.pkcs12 == expected


@pytest.mark.parametrize(
    ("keystores", "field", "message"),
    [
        ("yes", "spec.keystores", "must be an object"),
        ({"jks": {"create": True}}, "spec.keystores.jks", "JKS keystores are not offered"),
        ({"pem": {}}, "spec.keystores.pem", "unknown field"),
        ({"pkcs12": {}}, "spec.keystores.pkcs12.create", "required: true or false"),
        ({"pkcs12": {"create": "true"}}, "spec.keystores.pkcs12.create", "not a string"),
        ({"pkcs12": {"create": True}}, "spec.keystores.pkcs12.passwordSecretRef", "never written unencrypted"),
        ({"pkcs12": {"create": True, "passwordSecretRef": REF, "profile": "LegacyRC2"}},
         "spec.keystores.pkcs12.profile", "'LegacyRC2'; allowed (case-sensitive): Modern2023, LegacyDES"),
        ({"pkcs12": {"create": True, "passwordSecretRef": REF, "password": "x"}}, "spec.keystores.pkcs12.password",
         "unknown field"),
        ({"pkcs12": {"create": True, "passwordSecretRef": {"name": "P12", "key": "k"}}},
         "spec.keystores.pkcs12.passwordSecretRef.name", "not a valid Secret name"),
        ({"pkcs12": {"create": True, "passwordSecretRef": {"key": "k"}}},
         "spec.keystores.pkcs12.passwordSecretRef.name", "must be a Secret name, not null"),
        ({"pkcs12": {"create": True, "passwordSecretRef": {"name": "p", "key": "a/b"}}},
         "spec.keystores.pkcs12.passwordSecretRef.key", "not a valid Secret key"),
        ({"pkcs12": {"create": False, "passwordSecretRef": {"name": "p", "key": ""}}},
         "spec.keystores.pkcs12.passwordSecretRef.key", "not a valid Secret key"),
    ],
)
def test_keystores_spec_refused(keystores: Any, field: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_identity_spec({"selector": SELECTOR, "keystores": keystores}, namespace="shop")
    assert caught.value.field == field
    assert message in str(caught.value)


# The password Secret and the Secret's keystore keys ---------------------------------------------


def _password_secret(data: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "p12-pass", "namespace": "shop"}, "data": data}


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        (None, "Secret shop/p12-pass does not exist"),
        (_password_secret({}), "has no key 'password'"),
        (_password_secret({"password": 12}), "is not base64 text"),
        (_password_secret({"password": "not base64!"}), "is not valid base64"),
        (_password_secret({"password": ""}), "the password is empty"),
        (_password_secret({"password": b64text(b"x" * (MAX_PASSWORD_BYTES + 1))}), "longer than"),
    ],
)
def test_keystore_password_problems(secret: dict[str, Any] | None, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        keystore_request(secret, Pkcs12Keystore("p12-pass", "password"), "shop")
    assert "correct horse" not in str(caught.value)


def test_keystore_password_read() -> None:
    request = keystore_request(_password_secret({"password": b64text(PASSWORD)}),
                               Pkcs12Keystore("p12-pass", "password", Pkcs12Profile.LEGACY_DES), "shop")
    assert request == KeystoreRequest(PASSWORD, Pkcs12Profile.LEGACY_DES)
    assert "correct" not in repr(request)


LEAF = issue_leaf(ROOT, REQUEST, NOW)
BUNDLE = certs_to_pem(ROOT.trust)
ROTATING = certs_to_pem((ROOT.cert, NEXT_ROOT.cert))
MODERN = KeystoreRequest(PASSWORD)


def _pod_secret(*, stores: KeystoreRequest | None = None, bundle: bytes = BUNDLE,
                extra: dict[str, str] | None = None) -> dict[str, Any]:
    data = {c.TLS_CRT: b64text(LEAF.chain_pem), c.TLS_KEY: b64text(LEAF.key_pem), c.CA_CRT: b64text(bundle)}
    annotations: dict[str, str] = {}
    if stores is not None:
        patch = keystore_patch(SecretView.of({"data": data}), stores, bundle)
        assert patch is not None
        data.update(patch["data"])
        annotations.update(patch["metadata"]["annotations"])
    data.update(extra or {})
    return {"metadata": {"name": "payments-payments-0", "annotations": annotations}, "data": data}


@pytest.mark.parametrize(
    ("secret", "request_", "bundle", "outcome"),
    [
        # Asked for and missing (keystores just enabled): written from the Secret's own key.
        (_pod_secret(), MODERN, BUNDLE, "write"),
        (_pod_secret(stores=MODERN), MODERN, BUNDLE, None),
        # The bundle changed (a CA rotation began): the truststore follows, the keystore is re-written too.
        (_pod_secret(stores=MODERN), MODERN, ROTATING, "write"),
        # Another password or profile: both re-written.
        (_pod_secret(stores=MODERN), KeystoreRequest(b"another"), BUNDLE, "write"),
        (_pod_secret(stores=MODERN), KeystoreRequest(PASSWORD, Pkcs12Profile.LEGACY_DES), BUNDLE, "write"),
        # Someone deleted one of the keys: written again.
        ({**_pod_secret(stores=MODERN), "data": {k: v for k, v in _pod_secret(stores=MODERN)["data"].items()
                                                 if k != c.TRUSTSTORE_P12}}, MODERN, BUNDLE, "write"),
        # No longer asked for: removed, with the annotation.
        (_pod_secret(stores=MODERN), None, BUNDLE, "remove"),
        (_pod_secret(extra={c.KEYSTORE_P12: "eA=="}), None, BUNDLE, "remove"),
        (_pod_secret(), None, BUNDLE, None),
        # No readable key: that is a re-issue, which writes the keystores with the new key.
        ({"metadata": {}, "data": {c.TLS_CRT: b64text(LEAF.chain_pem)}}, MODERN, BUNDLE, None),
        ({"metadata": {}, "data": {c.TLS_CRT: b64text(LEAF.chain_pem), c.TLS_KEY: b64text(b"junk")}}, MODERN,
         BUNDLE, None),
    ],
)
def test_keystore_patch(secret: dict[str, Any], request_: KeystoreRequest | None, bundle: bytes,
                        outcome: str | None) -> None:
    patch = keystore_patch(SecretView.of(secret), request_, bundle)
    if outcome is None:
        assert patch is None
        return
    assert patch is not None
    if outcome == "remove":
        assert patch == {"metadata": {"annotations": {c.KEYSTORE_ANNOTATION: None}},
                         "data": {c.KEYSTORE_P12: None, c.TRUSTSTORE_P12: None}}
        return
    assert request_ is not None
    assert patch["metadata"]["annotations"][c.KEYSTORE_ANNOTATION] == keystore_digest(LEAF.chain_pem, bundle,
                                                                                      request_)
    store = pkcs12.load_pkcs12(base64.b64decode(patch["data"][c.KEYSTORE_P12]), request_.password)
    assert store.cert is not None
    assert store.cert.certificate == LEAF.cert
    trust = pkcs12.load_pkcs12(base64.b64decode(patch["data"][c.TRUSTSTORE_P12]), request_.password)
    assert certs_to_pem(extra.certificate for extra in trust.additional_certs) == bundle


@pytest.mark.parametrize(
    ("change", "value"),
    [("chain", b"other chain"), ("bundle", ROTATING), ("password", b"other"), ("profile", Pkcs12Profile.LEGACY_DES)],
)
def test_keystore_digest_changes_with_each_input(change: str, value: Any) -> None:
    parts: dict[str, Any] = {"chain": LEAF.chain_pem, "bundle": BUNDLE, "password": PASSWORD,
                             "profile": Pkcs12Profile.MODERN_2023}
    before = keystore_digest(parts["chain"], parts["bundle"], KeystoreRequest(parts["password"], parts["profile"]))
    parts[change] = value
    after = keystore_digest(parts["chain"], parts["bundle"], KeystoreRequest(parts["password"], parts["profile"]))
    assert before != after
    assert PASSWORD.hex() not in after


def test_merge_patches() -> None:
    first = {"metadata": {"labels": {"a": "1"}, "annotations": {"x": "1"}}, "data": {c.CA_CRT: "b"}}
    second = {"metadata": {"annotations": {"y": "2"}}, "data": {c.KEYSTORE_P12: "k"}}
    assert merge_patches(first, second) == {
        "metadata": {"labels": {"a": "1"}, "annotations": {"x": "1", "y": "2"}},
        "data": {c.CA_CRT: "b", c.KEYSTORE_P12: "k"},
    }


def test_leaf_duration_unused_by_keystores() -> None:
    """Keystores carry no time of their own: a re-issued leaf (new serial) changes the digest."""
    renewed = issue_leaf(ROOT, REQUEST, NOW + timedelta(hours=1))
    assert keystore_digest(LEAF.chain_pem, BUNDLE, MODERN) != keystore_digest(renewed.chain_pem, BUNDLE, MODERN)
