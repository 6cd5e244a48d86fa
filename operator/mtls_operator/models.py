"""Plain shared types: the bottom layer, imported by pki, the pure rules and the handlers alike."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Usage(enum.StrEnum):
    """What a leaf may be used for; maps to the serverAuth / clientAuth extended key usages."""

    SERVER = "server"
    CLIENT = "client"


class Delivery(enum.StrEnum):
    """How a pod of an identity receives its key and certificate (``spec.delivery``)."""

    SECRET = "Secret"  # noqa: S105 -- a delivery, not a password: a Secret per pod
    POD_CERTIFICATE = "PodCertificate"  # the kubelet generates the key; the operator signs its request


class KeyAlgorithm(enum.StrEnum):
    ECDSA = "ECDSA"
    ED25519 = "Ed25519"
    RSA = "RSA"


# Allowed sizes per algorithm, the first being the default. Ed25519 has no size.
KEY_SIZES: dict[KeyAlgorithm, tuple[int, ...]] = {
    KeyAlgorithm.ECDSA: (256, 384),
    KeyAlgorithm.RSA: (2048, 3072, 4096),
    KeyAlgorithm.ED25519: (),
}


@dataclass(frozen=True)
class KeySpec:
    """A private key to generate: algorithm and size (``None`` for Ed25519)."""

    algorithm: KeyAlgorithm = KeyAlgorithm.ECDSA
    size: int | None = 256

    def __post_init__(self) -> None:
        allowed = KEY_SIZES[self.algorithm]
        if allowed and self.size not in allowed:
            raise ValueError(f"{self.algorithm} key size must be one of {list(allowed)}, not {self.size}")
        if not allowed and self.size is not None:
            raise ValueError(f"{self.algorithm} keys have no size")

    def __str__(self) -> str:
        return f"{self.algorithm}" if self.size is None else f"{self.algorithm}-{self.size}"
