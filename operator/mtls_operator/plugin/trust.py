"""Whether two pods trust each other, now and after the next step of a CA rotation; what signed a leaf.

Pure: certificates in, verdicts with reasons out; ``now`` is an argument. Trust is what a TLS peer
decides: A accepts B when B's chain (leaf and intermediates) verifies against A's bundle (``ca.crt``).
The next rotation step changes what signs new leaves (``Distributing`` → ``Reissuing``: the next CA)
or what the bundles hold (``Reissuing``/``Retiring``: the previous CA leaves every bundle), so the
verdict after it is computed from the same certificates with that change applied.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from mtls_operator.errors import ChainError, PKIError
from mtls_operator.pki import fingerprint, parse_pem_certificates, verify_leaf
from mtls_operator.pki._util import is_directly_issued_by
from mtls_operator.plugin.facts import CAView
from mtls_operator.rules.rotation import Phase

__all__ = ["PodChain", "Verdict", "after_next_step", "bundle_trusts", "issuer_among", "mutual_trust", "pod_chain",
           "signer_of", "subject_alt_names"]


@dataclass(frozen=True)
class PodChain:
    """What one pod presents (its leaf and intermediates) and whom it trusts (its bundle)."""

    pod: str
    leaf: x509.Certificate
    intermediates: tuple[x509.Certificate, ...]
    bundle: tuple[x509.Certificate, ...]


@dataclass(frozen=True)
class Verdict:
    """``ok`` None: it cannot be told (the reasons say why)."""

    ok: bool | None
    reasons: tuple[str, ...] = ()


def pod_chain(pod: str, chain_pem: bytes, bundle_pem: bytes) -> PodChain:
    """PKIError when ``tls.crt`` or ``ca.crt`` holds no readable certificate."""
    chain = parse_pem_certificates(chain_pem)
    bundle = parse_pem_certificates(bundle_pem)
    return PodChain(pod=pod, leaf=chain[0], intermediates=tuple(chain[1:]), bundle=tuple(bundle))


def issuer_among(cert: x509.Certificate, candidates: Sequence[x509.Certificate]) -> str | None:
    """The fingerprint of the certificate among ``candidates`` whose key signed ``cert`` (names and signature,
    as the chain walk of pki.verify checks them); None when none did."""
    return next((fingerprint(ca) for ca in candidates if is_directly_issued_by(cert, ca)), None)


def signer_of(chain: PodChain) -> str | None:
    """The fingerprint of the CA that signed the leaf, among its intermediates and its bundle."""
    return issuer_among(chain.leaf, [*chain.intermediates, *chain.bundle])


def subject_alt_names(cert: x509.Certificate) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(URI SANs, DNS SANs); PKIError when the extension is malformed."""
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return (), ()
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType):
        raise PKIError(f"certificate with serial {cert.serial_number:x} has a malformed subjectAltName") from None
    return (tuple(names.get_values_for_type(x509.UniformResourceIdentifier)),
            tuple(names.get_values_for_type(x509.DNSName)))


def bundle_trusts(bundle: Sequence[x509.Certificate], ca_fingerprint: str, known: Sequence[x509.Certificate]) -> bool:
    """Whether a leaf signed by the CA ``ca_fingerprint`` can verify against ``bundle``: the CA is an
    anchor there, or (an intermediate CA, found among ``known``) its issuer is."""
    anchors = {fingerprint(cert) for cert in bundle}
    if ca_fingerprint in anchors:
        return True
    ca = next((cert for cert in known if fingerprint(cert) == ca_fingerprint), None)
    return ca is not None and issuer_among(ca, bundle) is not None


def _accepts(server: PodChain, client: PodChain, bundle: Sequence[x509.Certificate], now: datetime) -> str | None:
    try:
        verify_leaf(client.leaf, client.intermediates, bundle, now)
    except ChainError as exc:
        return f"{server.pod} does not trust {client.pod}: {exc}"
    return None


def mutual_trust(a: PodChain, b: PodChain, now: datetime) -> Verdict:
    """Each pod's chain verifies against the other's bundle at ``now``."""
    reasons = [r for r in (_accepts(a, b, a.bundle, now), _accepts(b, a, b.bundle, now)) if r]
    return Verdict(not reasons, tuple(reasons))


def after_next_step(a: PodChain, b: PodChain, ca: CAView, now: datetime) -> Verdict | None:
    """The verdict once the rotation's next step is taken; None when no rotation is under way."""
    if not ca.rotating:
        return None
    if ca.source != "ca-secret":
        return Verdict(None, ("the CA Secret could not be read, so the next CA and the previous CA are unknown "
                              "(ask for get on the CA Secret, or use --ca-secret/--operator-namespace)",))
    if ca.phase == str(Phase.DISTRIBUTING):
        return _after_switch(a, b, ca)
    if ca.phase in (str(Phase.REISSUING), str(Phase.RETIRING)):
        return _after_retire(a, b, ca, now)
    return Verdict(None, (f"unknown rotation phase {ca.phase!r}",))


def _after_switch(a: PodChain, b: PodChain, ca: CAView) -> Verdict:
    """Signing switches to the next CA: each pod's next leaf comes from it, so each bundle must trust it
    (the bundles themselves do not change in this step, so today's trust carries over)."""
    if ca.next is None:
        return Verdict(None, ("the CA Secret names no next CA",))
    known = [*a.intermediates, *a.bundle, *b.intermediates, *b.bundle]
    reasons = [
        f"{pod.pod} does not trust the next CA {ca.next} yet: its ca.crt has not received it (the operator "
        "distributes it to every pod Secret before signing switches)"
        for pod in (a, b) if not bundle_trusts(pod.bundle, ca.next, known)
    ]
    return Verdict(not reasons, tuple(reasons))


def _after_retire(a: PodChain, b: PodChain, ca: CAView, now: datetime) -> Verdict:
    """The previous CA leaves every bundle: each leaf must verify without it."""
    reasons: list[str] = []
    for pod in (a, b):
        if ca.previous is not None and signer_of(pod) == ca.previous:
            reasons.append(f"{pod.pod}'s certificate (serial {pod.leaf.serial_number:x}) is still signed by the "
                           f"previous CA {ca.previous}: it must be renewed before that CA leaves the trust bundle "
                           "(the operator waits for it)")
    if not reasons:
        trimmed_a = PodChain(a.pod, a.leaf, a.intermediates, _without(a.bundle, ca.previous))
        trimmed_b = PodChain(b.pod, b.leaf, b.intermediates, _without(b.bundle, ca.previous))
        reasons = [f"once the previous CA leaves the bundle, {reason}"
                   for reason in mutual_trust(trimmed_a, trimmed_b, now).reasons]
    return Verdict(not reasons, tuple(reasons))


def _without(bundle: Sequence[x509.Certificate], ca_fingerprint: str | None) -> tuple[x509.Certificate, ...]:
    return tuple(cert for cert in bundle if fingerprint(cert) != ca_fingerprint)
