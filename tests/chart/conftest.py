"""The chart, rendered by the real helm binaries (helm 4 and helm 3) over a matrix of values.

Every matrix entry is rendered once per session by each helm; the tests read the parsed objects.
The binaries come from ``make tools`` (``.tools/bin``) and the test extra (``hadolint``); a missing
one fails the test rather than skipping it, so that ``make test`` always checks the chart.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "mtls-operator"
RELEASE = "mtls-operator"
NAMESPACE = "mtls-system"
HELMS = ("helm", "helm3")

# The longest release name helm accepts: every derived name must still fit in 63 characters.
LONG_RELEASE = "r" * 53

# What `helm install` learns from an API server of Kubernetes 1.30 or later (discovery); `helm template`
# knows it only when told (--api-versions).
VALIDATING_ADMISSION_POLICY_API = "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy"

# Non-default values for every setting the chart turns into an MTLS_* variable (test_env_wiring).
EVERY_SETTING_CHANGED: dict[str, Any] = {
    "trustDomain": "prod.example.org",
    "clusterDomain": "k8s.internal",
    "defaultDuration": "12h",
    "maxIssuancePerSecond": 7.5,
    "maxDuration": "720h",
    "allowShortDNSNames": False,
    "allowedDNSPatterns": [
        "api.example.com",
        {"namespaces": ["shop", "payments"], "patterns": ["*.shop.example.com", "shop.example.org"]},
        {"namespaces": ["web"], "patterns": ["*.web.example.com"]},
    ],
    "ca": {"existingSecret": "corp-intermediate-ca", "selfSigned": {"duration": "4380h"}, "propagationDelay": "5m"},
    "replicaCount": 3,
    "leaderElection": {"leaseName": "mtls-leader", "leaseDuration": "30s"},
    "health": {"port": 8081},
    "logFormat": "json",
    "metrics": {"port": 9191},
    "webhook": {"port": 10443, "timeoutSeconds": 9, "failurePolicy": "Fail", "caSecret": "corp-webhook-ca"},
    "podCertificates": {"enabled": True, "signerName": "example.com/spiffe.prod"},
}


@dataclass(frozen=True)
class Case:
    """One entry of the matrix: values, the release name to install them under, and the cluster as
    helm sees it (``--kube-version``; ``--api-versions``, as discovery tells `helm install`)."""

    values: Mapping[str, Any]
    release: str = RELEASE
    kube_version: str | None = None
    api_versions: tuple[str, ...] = ()


MATRIX: dict[str, Case] = {
    "defaults": Case({}),
    "one-replica": Case({"replicaCount": 1, "leaderElection": {"enabled": False}}),
    "existing-ca": Case({"ca": {"existingSecret": "corp-intermediate-ca"}}),
    "monitoring": Case({"metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}}}),
    "webhook-off": Case({"webhook": {"enabled": False}}),
    "metrics-off": Case({"metrics": {"enabled": False}}),
    "crds-off": Case({"crds": {"enabled": False}}),
    "crds-not-kept": Case({"crds": {"keep": False}}),
    "dashboard": Case({"metrics": {"grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "mTLS"}}}}),
    "dashboard-elsewhere": Case({"metrics": {"grafanaDashboard": {"enabled": True, "namespace": "monitoring",
                                                                  "labels": {"grafana-dashboard": "mtls",
                                                                             "grafana_dashboard": None}}}}),
    "every-setting": Case(EVERY_SETTING_CHANGED),
    "pod-certificates": Case({"podCertificates": {"enabled": True}}),
    "long-release-name": Case({}, release=LONG_RELEASE),
    "kubernetes-1.29": Case({}, kube_version="1.29.0"),
    "secret-policy": Case({}, kube_version="1.30.0", api_versions=(VALIDATING_ADMISSION_POLICY_API,)),
    "secret-policy-off": Case({"secretPolicy": {"enabled": False}}, kube_version="1.30.0",
                              api_versions=(VALIDATING_ADMISSION_POLICY_API,)),
    "secret-policy-own-names": Case({"ca": {"existingSecret": "corp-intermediate-ca"}, "webhook": {"enabled": False},
                                     "serviceAccount": {"name": "mtls"}}, release="tls",
                                    kube_version="1.31.0", api_versions=(VALIDATING_ADMISSION_POLICY_API,)),
}


def tool(name: str) -> str:
    """The path of a tool: on PATH, in .tools/bin (make tools) or next to this Python (the test extra)."""
    found = shutil.which(name)
    if found:
        return found
    for folder in (ROOT / ".tools" / "bin", Path(sys.executable).parent):
        candidate = folder / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    pytest.fail(f"{name} is not installed: run `make tools install` (see the Makefile)")


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command; helm must never reach a cluster, so it gets no kubeconfig."""
    env = {**os.environ, "KUBECONFIG": os.devnull}
    return subprocess.run(list(args), input=stdin, capture_output=True, text=True, env=env, timeout=60, check=False)


def helm_template(
    helm: str,
    values: Mapping[str, Any],
    *,
    release: str = RELEASE,
    kube_version: str | None = None,
    api_versions: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    cluster = [*(["--kube-version", kube_version] if kube_version else []),
               *(arg for api in api_versions for arg in ("--api-versions", api))]
    with tempfile.NamedTemporaryFile("w", suffix=".json", encoding="utf-8") as handle:
        json.dump(values, handle)
        handle.flush()
        return run(tool(helm), "template", release, str(CHART), "--namespace", NAMESPACE, "--values", handle.name,
                   *cluster)


@dataclass(frozen=True)
class Rendered:
    objects: list[dict[str, Any]]
    by_kind: dict[str, list[dict[str, Any]]] = field(init=False)

    def __post_init__(self) -> None:
        by_kind: dict[str, list[dict[str, Any]]] = {}
        for obj in self.objects:
            by_kind.setdefault(obj["kind"], []).append(obj)
        object.__setattr__(self, "by_kind", by_kind)

    def all(self, kind: str) -> list[dict[str, Any]]:
        return self.by_kind.get(kind, [])

    def one(self, kind: str) -> dict[str, Any]:
        found = self.all(kind)
        assert len(found) == 1, f"expected one {kind}, got {[obj['metadata']['name'] for obj in found]}"
        return found[0]

    @property
    def container(self) -> dict[str, Any]:
        (container,) = self.one("Deployment")["spec"]["template"]["spec"]["containers"]
        assert isinstance(container, dict)
        return container

    @property
    def env(self) -> dict[str, Any]:
        """The container's env: name -> value, or -> the valueFrom mapping."""
        return {item["name"]: item["value"] if "value" in item else item["valueFrom"] for item in self.container["env"]}


def parse(manifest: str) -> Rendered:
    return Rendered([doc for doc in yaml.safe_load_all(manifest) if doc])


def render(helm: str, case: Case) -> Rendered:
    result = helm_template(helm, case.values, release=case.release, kube_version=case.kube_version,
                           api_versions=case.api_versions)
    assert result.returncode == 0, f"{helm} template failed:\n{result.stderr}"
    return parse(result.stdout)


@pytest.fixture(scope="session")
def renders() -> dict[tuple[str, str], Rendered]:
    """{(helm, matrix entry): the rendered objects}, rendered once for the whole session."""
    return {(helm, name): render(helm, case) for helm in HELMS for name, case in MATRIX.items()}


@pytest.fixture(scope="session")
def rendered(renders: dict[tuple[str, str], Rendered]) -> dict[str, Rendered]:
    """{matrix entry: helm 4's rendering} (test_helm3_renders_the_same proves helm 3's identical)."""
    return {name: renders[("helm", name)] for name in MATRIX}
