"""keystores.py: the keystore password of each identity, read every pass; never a keystore without it."""

from __future__ import annotations

import base64

from mtls_operator.controller.keystores import KeystorePasswords
from mtls_operator.rules.spec import parse_identity_spec
from tests.unit.fake_cluster import FakeCluster
from tests.unit.parts import NS, WEB

KEY = (NS, "web")
WITH_STORES = parse_identity_spec(
    {**WEB, "keystores": {"pkcs12": {"create": True, "passwordSecretRef": {"name": "p12-pass", "key": "password"}}}},
    namespace=NS, cluster_domain="cluster.local")
WITHOUT = parse_identity_spec(WEB, namespace=NS, cluster_domain="cluster.local")


def password_secret(value: bytes) -> dict[str, object]:
    return {"metadata": {"name": "p12-pass"}, "data": {"password": base64.b64encode(value).decode()}}


async def test_the_password_is_read_and_kept_for_the_pass() -> None:
    cluster = FakeCluster()
    cluster.put_secret(NS, password_secret(b"correct horse"))
    passwords = KeystorePasswords(cluster)  # type: ignore[arg-type]
    assert await passwords.read(KEY, WITH_STORES) is None
    request = passwords.get(KEY)
    assert request is not None
    assert request.password == b"correct horse"
    assert await passwords.read(KEY, WITHOUT) is None
    assert passwords.get(KEY) is None, "no longer asked for: forgotten"


async def test_a_missing_or_unreadable_password_says_why_and_forgets_the_old_one() -> None:
    cluster = FakeCluster()
    passwords = KeystorePasswords(cluster)  # type: ignore[arg-type]
    problem = await passwords.read(KEY, WITH_STORES)
    assert problem is not None
    assert problem.startswith(f"the keystore password Secret {NS}/p12-pass does not exist")
    cluster.put_secret(NS, password_secret(b"correct horse"))
    assert await passwords.read(KEY, WITH_STORES) is None
    cluster.fail("get_secret")
    problem = await passwords.read(KEY, WITH_STORES)
    assert problem is not None
    assert problem.startswith(f"cannot read the keystore password Secret {NS}/p12-pass: ")
    assert passwords.get(KEY) is None
    assert "correct horse" not in problem
