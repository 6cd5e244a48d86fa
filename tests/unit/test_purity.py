"""The pure layers (pki/, rules/) never read the clock and draw randomness only from secrets/cryptography.

Which modules a layer may import is checked by the import contracts (``.importlinter``, run by
``make lint``); this test checks what they cannot see: calls that read the clock.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "mtls_operator"
PURE = sorted([*(PACKAGE / "pki").glob("*.py"), *(PACKAGE / "rules").glob("*.py")])
CLOCK_CALLS = {"now", "utcnow", "today", "time_ns", "monotonic", "perf_counter"}
FORBIDDEN_MODULES = {"random", "time", "kopf", "kubernetes", "logging"}


@pytest.mark.parametrize("path", PURE, ids=lambda p: str(p.relative_to(PACKAGE)))
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
