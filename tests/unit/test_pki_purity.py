"""The PKI layer is pure: it never reads the clock and draws randomness only from secrets/cryptography."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKI = Path(__file__).resolve().parents[2] / "operator" / "mtls_operator" / "pki"
CLOCK_CALLS = {"now", "utcnow", "today", "time_ns", "monotonic", "perf_counter"}
FORBIDDEN_MODULES = {"random", "time", "kopf", "kubernetes", "logging"}


@pytest.mark.parametrize("path", sorted(PKI.glob("*.py")), ids=lambda p: p.name)
def test_no_clock_no_weak_randomness_no_logging(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert not {alias.name.split(".")[0] for alias in node.names} & FORBIDDEN_MODULES
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.module.split(".")[0] not in FORBIDDEN_MODULES
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            # time.time() reads the clock; PolicyBuilder().time(now) passes our ``now`` in.
            reads_clock = node.func.attr in CLOCK_CALLS or (node.func.attr == "time" and not node.args)
            assert not reads_clock, f"{path.name}:{node.lineno} reads the clock"
