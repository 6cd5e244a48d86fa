"""policy.py: SPIFFE IDs, name syntax and which DNS names an identity may claim, table-driven."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from mtls_operator.rules.policy import (
    AdminPattern,
    DnsRefusal,
    allowed_dns_summary,
    dns_name_allowed,
    dns_name_problem,
    dns_name_refusal,
    is_dns1123_label,
    is_dns1123_subdomain,
    parse_admin_patterns,
    pod_dns_names,
    public_suffix,
    refused_dns_names,
    special_use_suffix,
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


# --- DNS policy: the built-in rule ----------------------------------------------------------------

# (name, the phrase of the refusal, or None when allowed) for an identity in namespace "shop".
SHOP_NAMES = [
    # The namespace's own Service names, with and without the cluster domain.
    pytest.param("payments.shop.svc", None, id="service.ns.svc"),
    pytest.param("*.shop.svc", None, id="wildcard.ns.svc"),
    pytest.param("payments.shop.svc.cluster.local", None, id="fqdn"),
    pytest.param("*.shop.svc.cluster.local", None, id="wildcard-fqdn"),
    pytest.param("Payments.Shop.SVC.Cluster.Local", None, id="case-insensitive"),
    pytest.param("svc.shop.svc", None, id="service-named-svc"),
    # Headless pod names (StatefulSets): <host>.<service>.<ns>.svc[.<cd>], the host may be '*'.
    pytest.param("payments-0.payments.shop.svc", None, id="headless"),
    pytest.param("payments-0.payments.shop.svc.cluster.local", None, id="headless-fqdn"),
    pytest.param("*.payments.shop.svc", None, id="headless-wildcard"),
    pytest.param("*.payments.shop.svc.cluster.local", None, id="headless-wildcard-fqdn"),
    # Short names that cannot name anything outside the cluster.
    pytest.param("payments", None, id="single-label"),
    pytest.param("PAYMENTS", None, id="upper-single-label"),
    pytest.param("kube-dns", None, id="dashed-label"),
    # Short names that can: public suffixes (the PSL, not a hand-kept list) and special-use names.
    pytest.param("shop", "'shop' is a public suffix (Public Suffix List)", id="namespace-is-a-tld"),
    pytest.param("payments.shop", "'shop' is a public suffix", id="service.ns-registrable"),
    pytest.param("*.shop", "'shop' is a public suffix", id="wildcard.ns-public"),
    pytest.param("com", "'com' is a public suffix", id="tld"),
    pytest.param("web", "'web' is a public suffix", id="new-gtld"),
    pytest.param("localhost", "'localhost' is a special-use domain name", id="localhost"),
    pytest.param("LocalHost", "'localhost' is a special-use", id="localhost-upper"),
    pytest.param("local", "'local' is a special-use", id="mdns"),
    pytest.param("invalid", "'invalid' is a special-use", id="invalid"),
    pytest.param("test", "'test' is a special-use", id="test"),
    pytest.param("example", "'example' is a special-use", id="example"),
    pytest.param("onion", "'onion' is a special-use", id="onion"),
    pytest.param("internal", "'internal' is a special-use", id="internal"),
    pytest.param("alt", "'alt' is a special-use", id="alt"),
    # Other namespaces, however written.
    pytest.param("db.other.svc", "it names namespace 'other'", id="other-namespace"),
    pytest.param("db.other.svc.cluster.local", "it names namespace 'other'", id="other-namespace-fqdn"),
    pytest.param("db-0.db.other.svc", "it names namespace 'other'", id="other-namespace-headless"),
    pytest.param("*.db.other.svc.cluster.local", "it names namespace 'other'", id="other-headless-wildcard"),
    pytest.param("db.other", "short name of a Service in namespace 'other'", id="other-namespace-short"),
    pytest.param("*.other", "short name of a Service in namespace 'other'", id="other-namespace-short-wildcard"),
    pytest.param(
        "mtls-operator-webhook.mtls-system.svc", "it names namespace 'mtls-system'", id="the-operator-webhook"
    ),
    # Cluster-wide names and shapes that are no Service name.
    pytest.param("*.svc", "a wildcard cannot stand for the namespace", id="wildcard-svc"),
    pytest.param("*.svc.cluster.local", "a wildcard cannot stand for the namespace", id="wildcard-svc-cd"),
    pytest.param("*.cluster.local", "only Service names", id="wildcard-cluster-domain"),
    pytest.param("cluster.local", "only Service names", id="the-cluster-domain"),
    pytest.param("10-0-0-1.shop.pod.cluster.local", "not pod A records", id="pod-a-record"),
    pytest.param("payments.shop.cluster.local", "only Service names", id="missing-svc"),
    pytest.param("svc", "the cluster's Service domain itself", id="bare-svc"),
    pytest.param("svc.cluster.local", "the cluster's Service domain itself", id="bare-svc-cd"),
    pytest.param("shop.svc", "it names no Service: write <service>.shop.svc", id="bare-namespace-domain"),
    pytest.param("shop.svc.cluster.local", "it names no Service", id="bare-namespace-fqdn"),
    pytest.param("a.b.c.shop.svc", "too many labels", id="extra-label"),
    pytest.param("*.a.b.shop.svc", "too many labels", id="wildcard-extra-label"),
    pytest.param("a.b.shop", "outside the cluster and no admin pattern", id="extra-label-short"),
    pytest.param("payments.shop.svc.cluster", "outside the cluster", id="partial-cluster-domain"),
    pytest.param("payments.shop.svc.example.com", "outside the cluster", id="other-cluster-domain"),
    pytest.param("example.com", "outside the cluster", id="public-name"),
    # Syntax.
    pytest.param("payments.shop.svc.", "remove the trailing dot", id="trailing-dot"),
    pytest.param("a.*.shop.svc", "entire left-most label", id="wildcard-in-the-middle"),
    pytest.param("**.shop", "entire left-most label", id="double-star"),
    pytest.param("*", "followed by a domain", id="bare-wildcard"),
    pytest.param("", "it is empty", id="empty"),
]


@pytest.mark.parametrize(("name", "phrase"), SHOP_NAMES)
def test_dns_name_refusal(name: str, phrase: str | None) -> None:
    reason = dns_name_refusal(name, namespace=NS, cluster_domain=CD)
    if phrase is None:
        assert reason is None
    else:
        assert reason is not None
        assert phrase in reason
    assert dns_name_allowed(name, namespace=NS, cluster_domain=CD) is (phrase is None)


# Namespaces named like top-level domains or special-use names: their short names are public.
@pytest.mark.parametrize(
    ("namespace", "name", "phrase"),
    [
        pytest.param("dev", "google.dev", "'dev' is a public suffix", id="dev-google.dev"),
        pytest.param("dev", "*.dev", "'dev' is a public suffix", id="dev-wildcard"),
        pytest.param("dev", "dev", "'dev' is a public suffix", id="dev-single"),
        pytest.param("app", "mail.app", "'app' is a public suffix", id="app"),
        pytest.param("com", "google.com", "'com' is a public suffix", id="com"),
        pytest.param("uk", "co.uk", "'co.uk' is a public suffix", id="second-level-suffix"),
        pytest.param("io", "github.io", "'github.io' is a public suffix", id="private-section"),
        pytest.param("ck", "x.ck", "'x.ck' is a public suffix", id="psl-wildcard-rule"),
        pytest.param("local", "printer.local", "'local' is a special-use", id="mdns"),
        pytest.param("localhost", "app.localhost", "'localhost' is a special-use", id="localhost"),
        pytest.param("onion", "x.onion", "'onion' is a special-use", id="onion"),
        pytest.param("test", "*.test", "'test' is a special-use", id="test"),
        pytest.param("internal", "db.internal", "'internal' is a special-use", id="internal"),
        pytest.param("alt", "x.alt", "'alt' is a special-use", id="alt"),
        # Their in-cluster names are theirs all the same.
        pytest.param("dev", "google.dev.svc", None, id="dev-in-cluster"),
        pytest.param("dev", "*.dev.svc.cluster.local", None, id="dev-in-cluster-wildcard"),
        pytest.param("local", "printer.local.svc", None, id="local-in-cluster"),
        # A namespace that is no public name keeps its short names.
        pytest.param("corp", "db.corp", None, id="corp-short"),
        pytest.param("corp", "*.corp", None, id="corp-short-wildcard"),
        pytest.param("payments-team", "api.payments-team", None, id="dashed-namespace"),
    ],
)
def test_short_names_of_public_looking_namespaces(namespace: str, name: str, phrase: str | None) -> None:
    reason = dns_name_refusal(name, namespace=namespace, cluster_domain=CD)
    if phrase is None:
        assert reason is None
    else:
        assert reason is not None
        assert phrase in reason


@pytest.mark.parametrize(
    ("name", "phrase"),
    [
        pytest.param("payments", "turned off by the cluster admin (MTLS_ALLOW_SHORT_DNS_NAMES=false)", id="label"),
        pytest.param("db.corp", "turned off", id="service.ns"),
        pytest.param("*.corp", "turned off", id="wildcard.ns"),
        pytest.param("db.corp.svc", None, id="in-cluster-stays"),
        pytest.param("db-0.db.corp.svc.cluster.local", None, id="headless-stays"),
    ],
)
def test_short_names_can_be_turned_off(name: str, phrase: str | None) -> None:
    reason = dns_name_refusal(name, namespace="corp", cluster_domain=CD, allow_short_names=False)
    if phrase is None:
        assert reason is None
    else:
        assert reason is not None
        assert phrase in reason


@pytest.mark.parametrize(
    ("name", "allowed"),
    [
        pytest.param("payments.shop.svc.corp.internal", True, id="own-cluster-domain"),
        pytest.param("*.shop.svc.corp.internal", True, id="wildcard-own-cluster-domain"),
        pytest.param("db-0.db.shop.svc.corp.internal", True, id="headless-own-cluster-domain"),
        pytest.param("payments.shop.svc.cluster.local", False, id="default-domain-is-not-ours"),
        pytest.param("payments.other.svc.corp.internal", False, id="other-namespace"),
    ],
)
def test_dns_name_allowed_follows_the_cluster_domain(name: str, allowed: bool) -> None:
    assert dns_name_allowed(name, namespace=NS, cluster_domain="corp.internal") is allowed


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("google.dev", "dev", id="tld"),
        pytest.param("x.github.io", "github.io", id="private"),
        pytest.param("a.b.co.uk", "co.uk", id="second-level"),
        pytest.param("payments", None, id="not-public"),
        pytest.param("db.corp", None, id="unknown-tld-is-not-public"),
        pytest.param("payments.shop.svc", None, id="svc-is-not-public"),
    ],
)
def test_public_suffix_uses_the_shipped_list(name: str, expected: str | None) -> None:
    assert public_suffix(name) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("localhost", "localhost"),
        ("a.b.localhost", "localhost"),
        ("router.home.arpa", "home.arpa"),
        ("home.arpa", "home.arpa"),
        ("arpa", None),
        ("localhost.example.org", None),
        ("payments", None),
    ],
)
def test_special_use_suffix(name: str, expected: str | None) -> None:
    assert special_use_suffix(name) == expected


def test_refused_dns_names_lists_every_refusal_with_its_index() -> None:
    names = ["payments", "db.other.svc", "payments.shop.svc", "localhost", "payments-0.payments.shop.svc"]
    refusals = refused_dns_names(names, namespace=NS, cluster_domain=CD)
    assert [(r.index, r.name) for r in refusals] == [(1, "db.other.svc"), (3, "localhost")]
    assert all(isinstance(r, DnsRefusal) and r.reason for r in refusals)
    assert refused_dns_names([], namespace=NS, cluster_domain=CD) == ()


def test_allowed_dns_summary_names_every_form() -> None:
    summary = allowed_dns_summary(NS, CD, parse_admin_patterns("shop:*.example.com;web:*.web.com", cluster_domain=CD))
    assert "<service>.shop.svc[.cluster.local]" in summary
    assert "<host>.<service>.shop.svc[.cluster.local]" in summary
    assert "short names (<service>, <service>.shop) that are not public or special-use names" in summary
    assert "'shop:*.example.com'" in summary
    assert "web.com" not in summary  # patterns of other namespaces are not this identity's business
    assert "short names are turned off" in allowed_dns_summary(NS, CD, (), allow_short_names=False)


# --- headless pod names --------------------------------------------------------------------------


def test_pod_dns_names() -> None:
    assert pod_dns_names("db-0", "db", "shop", "cluster.local") == (
        "db-0.db.shop.svc",
        "db-0.db.shop.svc.cluster.local",
    )


@pytest.mark.parametrize(
    ("hostname", "subdomain", "phrase"),
    [
        pytest.param("DB_0", "db", "spec.hostname 'DB_0' is not a DNS label", id="hostname"),
        pytest.param("db-0", "db.x", "spec.subdomain 'db.x' is not a DNS label", id="dotted-subdomain"),
        pytest.param("x" * 64, "db", "spec.hostname", id="long-hostname"),
        pytest.param("db-0", "*", "spec.subdomain '*'", id="wildcard-subdomain"),
    ],
)
def test_pod_dns_names_refuses_bad_labels(hostname: str, subdomain: str, phrase: str) -> None:
    with pytest.raises(ValueError, match=re.escape(phrase)):
        pod_dns_names(hostname, subdomain, "shop", "cluster.local")


# --- admin patterns ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern",
    ["*.example.com", "api.corp.internal", "*.*.example.com", "api.*.mesh", "API.Example.com", "example.com"],
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
        pytest.param("single", "at least two labels", id="single-label"),
        pytest.param("api.*", "right-most label must be literal", id="wildcard-right-most"),
        pytest.param("*.com", "'com' is a public suffix", id="wildcard-tld"),
        pytest.param("api.*.com", "'com' is a public suffix", id="wildcard-below-tld"),
        pytest.param("*.co.uk", "'co.uk' is a public suffix", id="wildcard-second-level"),
        pytest.param("*.github.io", "'github.io' is a public suffix", id="wildcard-private-suffix"),
        pytest.param("co.uk", "'co.uk' is a public suffix", id="literal-suffix"),
    ],
)
def test_validate_dns_pattern_refuses(pattern: str, phrase: str) -> None:
    with pytest.raises(ValueError, match=re.escape(phrase)):
        validate_dns_pattern(pattern)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("", (), id="empty"),
        pytest.param("*.example.com", (AdminPattern("*.example.com"),), id="old-syntax-one"),
        pytest.param(
            " *.Example.com , api.corp.internal,,*.example.com ",
            (AdminPattern("*.example.com"), AdminPattern("api.corp.internal")),
            id="old-syntax-list",
        ),
        pytest.param(
            "shop,payments:*.example.com",
            (AdminPattern("*.example.com", frozenset({"shop", "payments"})),),
            id="scoped",
        ),
        pytest.param(
            "shop:*.shop.example.com,api.example.com; web:*.web.example.com ;",
            (
                AdminPattern("*.shop.example.com", frozenset({"shop"})),
                AdminPattern("api.example.com", frozenset({"shop"})),
                AdminPattern("*.web.example.com", frozenset({"web"})),
            ),
            id="several-entries",
        ),
        pytest.param(
            "*.example.com;shop:*.shop.example.com",
            (AdminPattern("*.example.com"), AdminPattern("*.shop.example.com", frozenset({"shop"}))),
            id="mixed",
        ),
        pytest.param("corp:*.corp", (AdminPattern("*.corp", frozenset({"corp"})),), id="own-short-names"),
        pytest.param("shop:google.dev", (AdminPattern("google.dev", frozenset({"shop"})),), id="public-2-labels"),
    ],
)
def test_parse_admin_patterns(value: str, expected: tuple[AdminPattern, ...]) -> None:
    assert parse_admin_patterns(value, cluster_domain=CD) == expected


@pytest.mark.parametrize(
    ("value", "phrase"),
    [
        pytest.param("*.*.svc", "pattern '*.*.svc' (for every namespace): it could match in-cluster names", id="svc"),
        pytest.param("shop:*.*.svc", "(for namespaces shop): it could match in-cluster names", id="svc-scoped"),
        pytest.param("*.svc.cluster.local", "in-cluster names", id="svc-cd"),
        pytest.param("*.*.svc.cluster.local", "in-cluster names", id="headless-cd"),
        pytest.param("*.cluster.local", "in-cluster names", id="cluster-domain"),
        pytest.param("a.*.local", "in-cluster names", id="wildcard-in-cluster-domain"),
        pytest.param("webhook.mtls-system.svc", "the operator's webhook Service", id="webhook"),
        pytest.param("*.corp", "short name of a Service in namespace 'corp'; scope it", id="unscoped-2-labels"),
        pytest.param("db.corp", "namespace 'corp'", id="unscoped-literal-2-labels"),
        pytest.param("shop:*.corp", "scope it to that namespace only ('corp:*.corp')", id="scoped-elsewhere"),
        pytest.param("corp,shop:*.corp", "namespace 'corp'", id="scoped-too-wide"),
        pytest.param("shop:*.com", "pattern '*.com': 'com' is a public suffix", id="public-suffix"),
        pytest.param("shop:single", "at least two labels", id="single"),
        pytest.param("shop:api-*.x.com", "'*' must be a whole label", id="syntax"),
        pytest.param(":*.example.com", "names no namespace before ':'", id="no-namespace"),
        pytest.param("shop:", "names no pattern", id="no-pattern"),
        pytest.param("Shop:*.example.com", "'Shop' is not a namespace name", id="bad-namespace"),
        pytest.param("a:b:*.example.com", "more than one ':'", id="two-colons"),
    ],
)
def test_parse_admin_patterns_refuses(value: str, phrase: str) -> None:
    with pytest.raises(ValueError, match=re.escape(phrase)) as caught:
        parse_admin_patterns(value, cluster_domain=CD)
    assert "\n" not in str(caught.value)


def test_patterns_follow_the_cluster_domain() -> None:
    assert parse_admin_patterns("*.cluster.local", cluster_domain="corp.internal") == (AdminPattern("*.cluster.local"),)
    with pytest.raises(ValueError, match="in-cluster names"):
        parse_admin_patterns("*.corp.internal", cluster_domain="corp.internal")


PATTERNS = parse_admin_patterns(
    "*.example.com,api.corp.internal,api.*.mesh;shop:*.shop.example.org;shop,dev:google.dev", cluster_domain=CD
)


@pytest.mark.parametrize(
    ("namespace", "name", "allowed"),
    [
        pytest.param(NS, "api.example.com", True, id="wildcard-pattern"),
        pytest.param(NS, "API.Example.COM", True, id="case-insensitive"),
        pytest.param(NS, "*.example.com", True, id="wildcard-name-under-wildcard-pattern"),
        pytest.param(NS, "a.b.example.com", False, id="star-is-one-label"),
        pytest.param(NS, "example.com", False, id="star-is-not-empty"),
        pytest.param(NS, "api.corp.internal", True, id="literal-pattern"),
        pytest.param(NS, "web.corp.internal", False, id="literal-differs"),
        pytest.param(NS, "*.corp.internal", False, id="wildcard-name-under-literal-pattern"),
        pytest.param(NS, "api.eu.mesh", True, id="inner-wildcard-pattern"),
        pytest.param(NS, "web.eu.mesh", False, id="inner-wildcard-literal-differs"),
        pytest.param(NS, "db.other.svc", False, id="patterns-add-only-what-they-match"),
        pytest.param(NS, "payments.shop.svc", True, id="namespace-names-still-allowed"),
        # Scoped patterns: only for the namespaces they name.
        pytest.param(NS, "a.shop.example.org", True, id="scoped-own"),
        pytest.param("web", "a.shop.example.org", False, id="scoped-other"),
        pytest.param("web", "api.example.com", True, id="unscoped-everywhere"),
        pytest.param("dev", "google.dev", True, id="admin-allows-a-public-name"),
        pytest.param("web", "google.dev", False, id="public-name-elsewhere"),
    ],
)
def test_dns_name_allowed_with_admin_patterns(namespace: str, name: str, allowed: bool) -> None:
    assert dns_name_allowed(name, namespace=namespace, cluster_domain=CD, allowed_patterns=PATTERNS) is allowed


@pytest.mark.parametrize(
    ("pattern", "name"),
    [
        pytest.param("*.*.svc", "mtls-operator-webhook.mtls-system.svc", id="webhook"),
        pytest.param("*.*.svc", "db.other.svc", id="other-namespace"),
        pytest.param("*.*.*.svc", "db-0.db.other.svc", id="other-headless"),
        pytest.param("*.*.svc.cluster.local", "db.other.svc.cluster.local", id="other-fqdn"),
        pytest.param("*.cluster.local", "x.cluster.local", id="cluster-domain"),
        pytest.param("*.other", "db.other", id="other-short-name"),
    ],
)
def test_a_pattern_built_by_hand_never_grants_another_namespace_names(pattern: str, name: str) -> None:
    # parse_admin_patterns refuses these at start-up; the rule holds even for a pattern built directly.
    granted = (AdminPattern(pattern), AdminPattern(pattern, frozenset({NS})))
    assert not dns_name_allowed(name, namespace=NS, cluster_domain=CD, allowed_patterns=granted)


def test_admin_pattern_text() -> None:
    assert str(AdminPattern("*.example.com")) == "*.example.com"
    assert str(AdminPattern("*.example.com", frozenset({"web", "shop"}))) == "shop,web:*.example.com"


def test_the_public_suffix_list_is_read_offline() -> None:
    # A process without any network: importing the policy and asking the list must still work.
    script = (
        "import socket\n"
        "def refuse(*args, **kwargs):\n"
        "    raise OSError('no network in this test')\n"
        "socket.socket = refuse\n"
        "socket.create_connection = refuse\n"
        "socket.getaddrinfo = refuse\n"
        "from mtls_operator.rules.policy import public_suffix\n"
        "print(public_suffix('google.dev'), public_suffix('payments'))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.split() == ["dev", "None"]
