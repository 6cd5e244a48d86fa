"""The Dockerfile: hadolint clean, multi-stage on a pinned slim Python, numeric non-root user.

No container engine runs here, so the image itself is not built; these checks read the file.
"""

from __future__ import annotations

import re

import yaml

from tests.chart.conftest import CHART, ROOT, run, tool

DOCKERFILE = ROOT / "Dockerfile"
BUILD_TOOLS = ("gcc", "build-essential", "make", "apt-get", "apk ", "git ")


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found: list[tuple[str, str]] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            instruction, _, arguments = stripped.partition(" ")
            found.append((instruction.upper(), arguments.strip()))
    return found


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction, arguments in _instructions():
        if instruction == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instruction, arguments))
    return stages


def test_hadolint_clean() -> None:
    result = run(tool("hadolint"), "--no-color", str(DOCKERFILE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_multi_stage_on_a_pinned_slim_python() -> None:
    args = dict(arguments.split("=", 1) for instruction, arguments in _instructions() if instruction == "ARG")
    assert re.fullmatch(r"python:3\.11\.[0-9]+-slim-[a-z]+", args["PYTHON_IMAGE"]), args["PYTHON_IMAGE"]
    stages = _stages()
    assert len(stages) == 2
    assert [stage[0][1] for stage in stages] == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE}"]


def test_final_stage_has_only_the_installed_package() -> None:
    final = _stages()[-1]
    copies = [arguments for instruction, arguments in final if instruction in ("COPY", "ADD")]
    assert copies == ["--from=build /opt/mtls-operator /opt/mtls-operator"]
    runs = " ".join(arguments for instruction, arguments in final if instruction == "RUN")
    assert not any(tool_name in runs for tool_name in BUILD_TOOLS)


def test_runs_the_operator_as_the_charts_numeric_user() -> None:
    final = dict(_stages()[-1])
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert final["USER"] == f"{values['securityContext']['runAsUser']}:{values['securityContext']['runAsGroup']}"
    assert final["ENTRYPOINT"] == '["mtls-operator"]'
    assert final["CMD"] == '["run"]'
    ports = set(final["EXPOSE"].split())
    assert ports == {str(values["metrics"]["port"]), str(values["webhook"]["port"]), str(values["health"]["port"])}


def test_dockerignore_keeps_the_context_to_the_package() -> None:
    patterns = [line for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line and not line.startswith("#")]
    assert patterns[0] == "*"
    assert {pattern for pattern in patterns if pattern.startswith("!")} == {"!pyproject.toml", "!README.md",
                                                                             "!operator/"}
