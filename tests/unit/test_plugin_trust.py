"""kubectl mtls verify/inspect: trust between two pods' chains, now and after the next rotation step (pure)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mtls_operator.models import KeySpec, Usage
from mtls_operator.pki import (
    CertificateAuthority,
    LeafRequest,
    certs_to_pem,
    create_intermediate_ca,
    create_self_signed_ca,
    issue_leaf,
)
from mtls_operator.plugin.facts import CAView
from mtls_operator.plugin.trust import PodChain, after_next_step, bundle_trusts, mutual_trust, pod_chain, signer_of

from .pki_cases import NOW

OLD = create_self_signed_ca(NOW - timedelta(days=200), common_name="old CA")
NEW = create_self_signed_ca(NOW, common_name="new CA")
FOREIGN = create_self_signed_ca(NOW, common_name="foreign CA")
ROOT = create_self_signed_ca(NOW, common_name="root", path_length=1)
INTERMEDIATE = create_intermediate_ca(ROOT, NOW, common_name="intermediate")


def fp(ca: CertificateAuthority) -> str:
    return ca.fingerprint


def pod(name: str, signer: CertificateAuthority, *trusted: CertificateAuthority) -> PodChain:
    leaf = issue_leaf(signer, LeafRequest(spiffe_id=f"spiffe://cluster.local/ns/shop/sa/{name}", dns_names=(),
                                          usages=frozenset(Usage), key=KeySpec(), duration=timedelta(hours=24)), NOW)
    bundle = certs_to_pem(ca.cert for ca in trusted)
    return pod_chain(f"pod/{name}", leaf.chain_pem, bundle)


IDLE = CAView(signing=fp(OLD), source="ca-secret")
DISTRIBUTING = CAView(signing=fp(OLD), next=fp(NEW), phase="Distributing", source="ca-secret")
REISSUING = CAView(signing=fp(NEW), previous=fp(OLD), phase="Reissuing", source="ca-secret")
RETIRING = CAView(signing=fp(NEW), previous=fp(OLD), phase="Retiring", source="ca-secret")


def test_pod_chain_keeps_intermediates_apart_from_the_leaf() -> None:
    chain = pod("a", INTERMEDIATE, ROOT)
    assert chain.intermediates == (INTERMEDIATE.cert,)
    assert signer_of(chain) == fp(INTERMEDIATE)


@pytest.mark.parametrize(
    ("a", "b", "ok", "distrusting"),
    [
        pytest.param(pod("a", OLD, OLD), pod("b", OLD, OLD), True, [], id="same-ca"),
        pytest.param(pod("a", OLD, OLD, NEW), pod("b", NEW, OLD, NEW), True, [], id="both-bundles-hold-both"),
        pytest.param(pod("a", OLD, OLD), pod("b", NEW, OLD, NEW), False, ["pod/a does not trust pod/b"],
                     id="a-lacks-the-new-ca"),
        pytest.param(pod("a", FOREIGN, OLD), pod("b", OLD, OLD), False, ["pod/b does not trust pod/a"],
                     id="foreign-signer"),
        pytest.param(pod("a", FOREIGN, FOREIGN), pod("b", OLD, OLD), False,
                     ["pod/a does not trust pod/b", "pod/b does not trust pod/a"], id="strangers"),
        pytest.param(pod("a", INTERMEDIATE, ROOT), pod("b", INTERMEDIATE, ROOT), True, [], id="through-intermediate"),
    ],
)
def test_mutual_trust(a: PodChain, b: PodChain, ok: bool, distrusting: list[str]) -> None:
    verdict = mutual_trust(a, b, NOW)
    assert verdict.ok is ok
    assert [reason.split(":")[0] for reason in verdict.reasons] == distrusting


def test_an_expired_peer_is_not_trusted() -> None:
    verdict = mutual_trust(pod("a", OLD, OLD), pod("b", OLD, OLD), NOW + timedelta(days=2))
    assert verdict.ok is False
    assert "expired" in verdict.reasons[0] or "not valid" in verdict.reasons[0]


@pytest.mark.parametrize(
    ("ca", "a", "b", "expected_ok", "fragment"),
    [
        pytest.param(IDLE, pod("a", OLD, OLD), pod("b", OLD, OLD), None, None, id="idle-no-step"),
        pytest.param(DISTRIBUTING, pod("a", OLD, OLD, NEW), pod("b", OLD, OLD, NEW), True, None,
                     id="distributing-both-have-next"),
        pytest.param(DISTRIBUTING, pod("a", OLD, OLD, NEW), pod("b", OLD, OLD), False,
                     "pod/b does not trust the next CA", id="distributing-b-not-yet"),
        pytest.param(REISSUING, pod("a", NEW, OLD, NEW), pod("b", NEW, OLD, NEW), True, None,
                     id="reissuing-all-renewed"),
        pytest.param(REISSUING, pod("a", NEW, OLD, NEW), pod("b", OLD, OLD, NEW), False,
                     "pod/b's certificate", id="reissuing-b-still-old"),
        pytest.param(RETIRING, pod("a", NEW, NEW), pod("b", NEW, OLD, NEW), True, None,
                     id="retiring-bundles-trimmed"),
        pytest.param(RETIRING, pod("a", NEW, OLD), pod("b", NEW, OLD, NEW), False,
                     "once the previous CA leaves the bundle, pod/a does not trust pod/b", id="retiring-a-only-old"),
    ],
)
def test_after_next_step(ca: CAView, a: PodChain, b: PodChain, expected_ok: bool | None, fragment: str | None) -> None:
    verdict = after_next_step(a, b, ca, NOW)
    if ca.phase == "Idle":
        assert verdict is None
        return
    assert verdict is not None
    assert verdict.ok is expected_ok
    if fragment is None:
        assert verdict.reasons == ()
    else:
        assert any(fragment in reason for reason in verdict.reasons), verdict.reasons


def test_after_next_step_cannot_be_told_without_the_ca_secret() -> None:
    view = CAView(signing=fp(OLD), phase="Distributing", source="identity-status")
    verdict = after_next_step(pod("a", OLD, OLD), pod("b", OLD, OLD), view, NOW)
    assert verdict is not None
    assert verdict.ok is None
    assert len(verdict.reasons) == 1
    assert "CA Secret could not be read" in verdict.reasons[0]


@pytest.mark.parametrize(
    ("bundle", "ca", "known", "expected"),
    [
        pytest.param([OLD], OLD, [], True, id="anchor"),
        pytest.param([OLD], NEW, [NEW.cert], False, id="other-root"),
        pytest.param([ROOT], INTERMEDIATE, [INTERMEDIATE.cert], True, id="intermediate-under-anchor"),
        pytest.param([ROOT], INTERMEDIATE, [], False, id="intermediate-unknown"),
    ],
)
def test_bundle_trusts(bundle: list[CertificateAuthority], ca: CertificateAuthority, known: list[object],
                       expected: bool) -> None:
    assert bundle_trusts([c.cert for c in bundle], fp(ca), known) is expected  # type: ignore[arg-type]
