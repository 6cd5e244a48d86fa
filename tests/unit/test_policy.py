"""policy.py: SPIFFE IDs, name syntax and which DNS names an identity may claim, table-driven."""

from __future__ import annotations

import pytest

from mtls_operator.errors import PolicyError
from mtls_operator.rules.policy import (
    check_dns_names,
    dns_name_allowed,
    dns_name_problem,
    is_dns1123_label,
    is_dns1123_subdomain,
    spiffe_id,
    validate_dns_pattern,
    validate_trust_domain,
)

NS = "shop"
CD = "cluster.local"

# --- SPIFFE IDs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trust_domain", "namespace", "service_account", "expected"),
    [
        pytest.param("cluster.local", "shop", "payments", "spiffe://cluster.local/ns/shop/sa/payments", id="design"),
        pytest.param("prod.example_org-1", "a", "b.c", "spiffe://prod.example_org-1/ns/a/sa/b.c", id="all-chars"),
        pytest.param("td", "default", "default", "spiffe://td/ns/default/sa/default", id="defaults"),
    ],
)
def test_spiffe_id(trust_domain: str, namespace: str, service_account: str, expected: str) -> None:
    assert spiffe_id(trust_domain, namespace, service_account) == expected


@pytest.mark.parametrize(
    ("trust_domain", "namespace", "service_account", "phrase"),
    [
        pytest.param("", "shop", "payments", "trust domain must not be empty", id="empty-trust-domain"),
        pytest.param("Cluster.Local", "shop", "payments", "lower-case letters", id="upper-trust-domain"),
        pytest.param("td:8443", "shop", "payments", "lower-case letters", id="port-in-trust-domain"),
        pytest.param("a/b", "shop", "payments", "lower-case letters", id="slash-in-trust-domain"),
        pytest.param("x" * 256, "shop", "payments", "at most 255", id="long-trust-domain"),
        pytest.param("td", "", "payments", "namespace must not be empty", id="empty-namespace"),
        pytest.param("td", "a/b", "payments", "namespace 'a/b' is not a valid SPIFFE path segment", id="slash-ns"),
        pytest.param("td", "shop", "", "service account must not be empty", id="empty-sa"),
        pytest.param("td", "shop", "..", "not '.' or '..'", id="dot-dot-sa"),
        pytest.param("td", "shop", ".", "not a valid SPIFFE path segment", id="dot-sa"),
        pytest.param("td", "shop", "a b", "not a valid SPIFFE path segment", id="space-sa"),
    ],
)
def test_spiffe_id_refuses(trust_domain: str, namespace: str, service_account: str, phrase: str) -> None:
    with pytest.raises(ValueError, match=phrase.replace(".", r"\.")):
        spiffe_id(trust_domain, namespace, service_account)


def test_validate_trust_domain_accepts_the_default() -> None:
    validate_trust_domain("cluster.local")


# --- name syntax -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "label", "subdomain"),
    [
        pytest.param("shop", True, True, id="simple"),
        pytest.param("a-1", True, True, id="dash-digit"),
        pytest.param("1a", True, True, id="leading-digit"),
        pytest.param("a.b", False, True, id="dotted"),
        pytest.param("x" * 63, True, True, id="63"),
        pytest.param("x" * 64, False, True, id="64-is-a-subdomain-but-not-a-label"),
        pytest.param("x" * 254, False, False, id="254"),
        pytest.param("", False, False, id="empty"),
        pytest.param("Shop", False, False, id="upper"),
        pytest.param("-a", False, False, id="leading-dash"),
        pytest.param("a-", False, False, id="trailing-dash"),
        pytest.param("a_b", False, False, id="underscore"),
        pytest.param("a.", False, False, id="trailing-dot"),
        pytest.param("a\n", False, False, id="trailing-newline"),
    ],
)
def test_dns1123(value: str, label: bool, subdomain: bool) -> None:
    assert is_dns1123_label(value) is label
    assert is_dns1123_subdomain(value) is subdomain


@pytest.mark.parametrize(
    ("name", "phrase"),
    [
        pytest.param("payments", None, id="label"),
        pytest.param("Payments.Shop.SVC", None, id="case-ignored"),
        pytest.param("*.shop.svc", None, id="wildcard"),
        pytest.param("1.2.3.4", None, id="numeric-labels"),
        pytest.param("x" * 63 + ".shop", None, id="63-label"),
        pytest.param("", "empty", id="empty"),
        pytest.param("*", "followed by a domain", id="bare-wildcard"),
        pytest.param("a.*.shop", "entire left-most label", id="middle-wildcard"),
        pytest.param("**.shop", "entire left-most label", id="double-star"),
        pytest.param("*shop", "entire left-most label", id="partial"),
        pytest.param("shop.*", "entire left-most label", id="right-most"),
        pytest.param("shop.", "trailing dot", id="trailing-dot"),
        pytest.param(".shop", "empty label", id="leading-dot"),
        pytest.param("a..b", "empty label", id="double-dot"),
        pytest.param("pay_ments", "letters, digits and '-'", id="underscore"),
        pytest.param("a-.shop", "start and end", id="trailing-dash"),
        pytest.param("a b", "letters, digits", id="space"),
        pytest.param("x" * 64, "longer than 63", id="64-label"),
        pytest.param("a." * 127 + "a", "longer than 253", id="255-chars"),
    ],
)
def test_dns_name_problem(name: str, phrase: str | None) -> None:
    problem = dns_name_problem(name)
    if phrase is None:
        assert problem is None
    else:
        assert problem is not None
        assert phrase in problem


# --- DNS policy --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "allowed"),
    [
        # Allowed: single labels and the namespace's own service names.
        pytest.param("payments", True, id="single-label"),
        pytest.param("localhost", True, id="any-single-label"),
        pytest.param("shop", True, id="namespace-as-label"),
        pytest.param("PAYMENTS", True, id="upper-single-label"),
        pytest.param("payments.shop", True, id="service.ns"),
        pytest.param("*.shop", True, id="wildcard.ns"),
        pytest.param("payments.shop.svc", True, id="service.ns.svc"),
        pytest.param("*.shop.svc", True, id="wildcard.ns.svc"),
        pytest.param("payments.shop.svc.cluster.local", True, id="fqdn"),
        pytest.param("*.shop.svc.cluster.local", True, id="wildcard-fqdn"),
        pytest.param("Payments.Shop.SVC.Cluster.Local", True, id="case-insensitive"),
        pytest.param("svc.shop", True, id="service-named-svc"),
        # Refused: other namespaces, cluster-wide names, extra labels, bad syntax.
        pytest.param("db.other.svc", False, id="other-namespace"),
        pytest.param("db.other", False, id="other-namespace-short"),
        pytest.param("db.other.svc.cluster.local", False, id="other-namespace-fqdn"),
        pytest.param("*.svc", False, id="wildcard-svc"),
        pytest.param("*.cluster.local", False, id="wildcard-cluster-domain"),
        pytest.param("*.svc.cluster.local", False, id="wildcard-svc-cluster-domain"),
        pytest.param("*", False, id="bare-wildcard"),
        pytest.param("svc", False, id="bare-svc"),
        pytest.param("SVC", False, id="bare-svc-upper"),
        pytest.param("shop.svc", False, id="bare-namespace-domain"),
        pytest.param("shop.svc.cluster.local", False, id="bare-namespace-fqdn"),
        pytest.param("a.b.shop.svc", False, id="extra-label"),
        pytest.param("a.b.shop", False, id="extra-label-short"),
        pytest.param("*.a.shop.svc", False, id="wildcard-extra-label"),
        pytest.param("payments.shop.cluster.local", False, id="missing-svc"),
        pytest.param("payments.shop.svc.cluster", False, id="partial-cluster-domain"),
        pytest.param("payments.shop.svc.example.com", False, id="other-cluster-domain"),
        pytest.param("payments.shop.svc.", False, id="trailing-dot"),
        pytest.param("example.com", False, id="public-name"),
        pytest.param("a.*.shop.svc", False, id="wildcard-in-the-middle"),
        pytest.param("**.shop", False, id="double-star"),
        pytest.param("*shop", False, id="partial-wildcard"),
        pytest.param("", False, id="empty"),
    ],
)
def test_dns_name_allowed(name: str, allowed: bool) -> None:
    assert dns_name_allowed(name, namespace=NS, cluster_domain=CD) is allowed


@pytest.mark.parametrize(
    ("name", "allowed"),
    [
        pytest.param("payments.shop.svc.corp.internal", True, id="own-cluster-domain"),
        pytest.param("*.shop.svc.corp.internal", True, id="wildcard-own-cluster-domain"),
        pytest.param("payments.shop.svc.cluster.local", False, id="default-domain-is-not-ours"),
    ],
)
def test_dns_name_allowed_follows_the_cluster_domain(name: str, allowed: bool) -> None:
    assert dns_name_allowed(name, namespace=NS, cluster_domain="corp.internal") is allowed


PATTERNS = ("*.example.com", "api.corp.internal", "api.*.mesh")


@pytest.mark.parametrize(
    ("name", "allowed"),
    [
        pytest.param("api.example.com", True, id="wildcard-pattern"),
        pytest.param("API.Example.COM", True, id="case-insensitive"),
        pytest.param("*.example.com", True, id="wildcard-name-under-wildcard-pattern"),
        pytest.param("a.b.example.com", False, id="star-is-one-label"),
        pytest.param("example.com", False, id="star-is-not-empty"),
        pytest.param("api.corp.internal", True, id="literal-pattern"),
        pytest.param("web.corp.internal", False, id="literal-differs"),
        pytest.param("*.corp.internal", False, id="wildcard-name-under-literal-pattern"),
        pytest.param("api.eu.mesh", True, id="inner-wildcard-pattern"),
        pytest.param("web.eu.mesh", False, id="inner-wildcard-literal-differs"),
        pytest.param("db.other.svc", False, id="patterns-add-only-what-they-match"),
        pytest.param("payments.shop.svc", True, id="namespace-names-still-allowed"),
    ],
)
def test_dns_name_allowed_with_admin_patterns(name: str, allowed: bool) -> None:
    assert dns_name_allowed(name, namespace=NS, cluster_domain=CD, allowed_patterns=PATTERNS) is allowed


def test_check_dns_names_passes_allowed_names() -> None:
    check_dns_names(["payments", "*.shop.svc", "payments.shop.svc.cluster.local"], namespace=NS, cluster_domain=CD)
    check_dns_names([], namespace=NS, cluster_domain=CD)


@pytest.mark.parametrize(
    ("names", "index", "phrases"),
    [
        pytest.param(
            ["payments", "db.other.svc"],
            1,
            [
                "'db.other.svc' is not allowed for an identity in namespace 'shop'",
                "single labels (such as 'payments')",
                "<service>.shop.svc.cluster.local",
                "one label or '*'",
            ],
            id="foreign",
        ),
        pytest.param(["*.svc"], 0, ["'*.svc' is not allowed"], id="wildcard-svc"),
        pytest.param(["ok", "a.*.b"], 1, ["'a.*.b' is not a valid DNS name", "left-most"], id="syntax"),
        pytest.param(["payments.shop.svc."], 0, ["remove the trailing dot"], id="trailing-dot"),
    ],
)
def test_check_dns_names_refuses(names: list[str], index: int, phrases: list[str]) -> None:
    with pytest.raises(PolicyError) as caught:
        check_dns_names(names, namespace=NS, cluster_domain=CD)
    assert caught.value.field == f"spec.dnsNames[{index}]"
    for phrase in phrases:
        assert phrase in caught.value.message
    assert "admin patterns" not in caught.value.message


def test_check_dns_names_names_the_admin_patterns_and_the_field() -> None:
    with pytest.raises(PolicyError) as caught:
        check_dns_names(
            ["db.other.svc"], namespace=NS, cluster_domain=CD, allowed_patterns=PATTERNS, field="webhook.names"
        )
    assert caught.value.field == "webhook.names[0]"
    assert "names matching the admin patterns '*.example.com', 'api.corp.internal', 'api.*.mesh'" in (
        caught.value.message
    )


# --- admin patterns ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern",
    ["*.example.com", "api.corp.internal", "*.*.example.com", "api.*.mesh", "API.Example.com", "single"],
)
def test_validate_dns_pattern_accepts(pattern: str) -> None:
    validate_dns_pattern(pattern)


@pytest.mark.parametrize(
    ("pattern", "phrase"),
    [
        pytest.param("", "must not be empty", id="empty"),
        pytest.param("*", "at least one literal label", id="star"),
        pytest.param("*.*", "at least one literal label", id="stars"),
        pytest.param("api-*.example.com", "'*' must be a whole label", id="partial-wildcard"),
        pytest.param("**.example.com", "'*' must be a whole label", id="double-star"),
        pytest.param("example.com.", "must not end with a dot", id="trailing-dot"),
        pytest.param("a..b", "label '' must be", id="empty-label"),
        pytest.param("-a.com", "label '-a' must be", id="leading-dash"),
        pytest.param("a_b.com", "label 'a_b' must be", id="underscore"),
        pytest.param("x" * 64 + ".com", "must be '*' or 1..63", id="long-label"),
        pytest.param("a." * 127 + "a", "at most 253", id="long-pattern"),
    ],
)
def test_validate_dns_pattern_refuses(pattern: str, phrase: str) -> None:
    with pytest.raises(ValueError, match=phrase.replace(".", r"\.").replace("*", r"\*")):
        validate_dns_pattern(pattern)
