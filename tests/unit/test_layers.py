"""The architecture's layers, checked: imports point downward only (DESIGN.md, "Architecture")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "mtls_operator"

# Pure code: no kopf, no kubernetes client, nothing with I/O above it.
PURE = ["models.py", "constants.py", "errors.py", "spec.py", "policy.py", "renewal.py", "config.py", "plan.py",
        "rotation.py", "election.py", "injection.py", "admission.py", "webhook_ca.py", "pki", "logs.py",
        # kubectl mtls: everything but its API access (cluster.py, commands.py) and wiring (cli.py).
        "plugin/facts.py", "plugin/trust.py", "plugin/checks.py", "plugin/render.py"]
FRAMEWORKS = {"kopf", "kubernetes", "kmock", "aiohttp", "prometheus_client"}
UPPER = {"mtls_operator.handlers", "mtls_operator.controller", "mtls_operator.k8s", "mtls_operator.main",
         "mtls_operator.cli", "mtls_operator.demo", "mtls_operator.testing", "mtls_operator.plugin.cluster",
         "mtls_operator.plugin.commands", "mtls_operator.plugin.cli"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _files(*entries: str) -> list[Path]:
    found: list[Path] = []
    for entry in entries:
        target = PACKAGE / entry
        found.extend(sorted(target.rglob("*.py")) if target.is_dir() else [target])
    return found


def _hits(imported: set[str], forbidden: set[str]) -> set[str]:
    return {name for name in imported if any(name == f or name.startswith(f + ".") for f in forbidden)}


@pytest.mark.parametrize("path", _files(*PURE), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_pure_code_imports_no_framework_and_no_upper_layer(path: Path) -> None:
    assert not _hits(_imports(path), FRAMEWORKS | UPPER)


@pytest.mark.parametrize("path", _files("k8s"), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_k8s_layer_imports_no_kopf_and_no_upper_layer(path: Path) -> None:
    upper = UPPER - {"mtls_operator.k8s"}
    assert not _hits(_imports(path), {"kopf"} | upper)


def test_metrics_import_no_kopf_no_kubernetes_and_no_upper_layer() -> None:
    assert not _hits(_imports(PACKAGE / "metrics.py"), {"kopf", "kubernetes"} | UPPER)


@pytest.mark.parametrize("path", _files("controller"), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_controller_imports_no_kopf_and_no_handlers(path: Path) -> None:
    upper = {"mtls_operator.handlers", "mtls_operator.main", "mtls_operator.cli", "mtls_operator.demo",
             "mtls_operator.testing"}
    assert not _hits(_imports(path), {"kopf"} | upper)


@pytest.mark.parametrize(
    "path",
    [p for p in _files(".") if p.name not in ("demo.py", "cli.py") and "testing" not in p.parts],
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_only_the_demo_and_cli_import_the_emulator(path: Path) -> None:
    assert not _hits(_imports(path), {"mtls_operator.testing", "kmock"})


@pytest.mark.parametrize("path", _files("testing"), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_emulator_stands_apart_from_the_operator(path: Path) -> None:
    operator_layers = {"mtls_operator.handlers", "mtls_operator.controller", "mtls_operator.k8s",
                       "mtls_operator.main", "mtls_operator.pki", "mtls_operator.plan"}
    assert not _hits(_imports(path), operator_layers)


@pytest.mark.parametrize("path", _files("plugin"), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_plugin_uses_no_kopf_and_no_operator_internals(path: Path) -> None:
    """kubectl mtls runs on a user's machine: no kopf, no controller or handlers, no emulator."""
    forbidden = {"kopf", "mtls_operator.handlers", "mtls_operator.controller", "mtls_operator.main",
                 "mtls_operator.testing", "kmock"}
    assert not _hits(_imports(path), forbidden)
