"""The PKCS#12 keystore password of each identity that asks for keystores, read every pass.

A new password changes no object the operator watches, so an identity with keystores is looked at
again within ``KEYSTORE_RECHECK`` seconds; a password that cannot be read stops its issuance (a
keystore is never written unencrypted) with the reason ``KEYSTORE_UNAVAILABLE``.
"""

from __future__ import annotations

from mtls_operator.errors import KubernetesAPIError
from mtls_operator.k8s import Cluster
from mtls_operator.rules.plan import KeystoreRequest, keystore_request
from mtls_operator.rules.spec import IdentitySpec

IdentityKey = tuple[str, str]  # (namespace, name)

# The Ready reason of an identity whose keystore password Secret is missing or unusable.
KEYSTORE_UNAVAILABLE = "KeystorePasswordUnavailable"
KEYSTORE_RECHECK = 600.0


class KeystorePasswords:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._requests: dict[IdentityKey, KeystoreRequest] = {}

    async def read(self, key: IdentityKey, spec: IdentitySpec) -> str | None:
        """Read the password the spec names: ``None`` when it asks for no keystores, or all is well;
        otherwise why it cannot be used."""
        if spec.pkcs12 is None:
            self._requests.pop(key, None)
            return None
        ref = spec.pkcs12
        try:
            password_secret = await self.cluster.get_secret(key[0], ref.password_secret_name)
            self._requests[key] = keystore_request(password_secret, ref, key[0])
        except KubernetesAPIError as exc:
            self._requests.pop(key, None)
            return f"cannot read the keystore password Secret {key[0]}/{ref.password_secret_name}: {exc}"
        except ValueError as exc:
            self._requests.pop(key, None)
            return str(exc)
        return None

    def get(self, key: IdentityKey) -> KeystoreRequest | None:
        return self._requests.get(key)

    def forget(self, key: IdentityKey) -> None:
        self._requests.pop(key, None)
