"""The operator pod passes the `restricted` Pod Security Standard, with a read-only root filesystem.

The checks are the standard's own list (https://kubernetes.io/docs/concepts/security/pod-security-standards/,
"Baseline" and "Restricted"), over every matrix entry, since values may not weaken any of them.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.chart.conftest import MATRIX, Rendered

# Volume types the restricted profile allows.
RESTRICTED_VOLUME_TYPES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                           "projected", "secret"}
# Baseline: capabilities a container may add; restricted: at most NET_BIND_SERVICE.
RESTRICTED_ADDED_CAPABILITIES = {"NET_BIND_SERVICE"}


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """What in a pod spec the `restricted` profile (version latest) refuses; empty when it passes."""
    problems: list[str] = []
    pod_context = pod.get("securityContext") or {}
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            problems.append(f"pod {field}")
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            problems.append(f"volume {volume['name']}: {sorted(kinds)}")
    if pod_context.get("runAsUser") == 0:
        problems.append("pod runAsUser 0")
    if (pod_context.get("seLinuxOptions") or {}).get("type") not in (None, "", "container_t", "container_init_t",
                                                                     "container_kvm_t"):
        problems.append("pod seLinuxOptions.type")
    if pod_context.get("sysctls"):
        problems.append("pod sysctls")
    pod_seccomp = (pod_context.get("seccompProfile") or {}).get("type")
    for container in (pod.get("initContainers") or []) + (pod.get("containers") or []):
        where = f"container {container['name']}"
        context = container.get("securityContext") or {}
        if context.get("privileged"):
            problems.append(f"{where}: privileged")
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation must be false")
        capabilities = context.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            problems.append(f"{where}: capabilities must drop ALL")
        if not set(capabilities.get("add") or []) <= RESTRICTED_ADDED_CAPABILITIES:
            problems.append(f"{where}: capabilities added")
        if not context.get("runAsNonRoot", pod_context.get("runAsNonRoot")):
            problems.append(f"{where}: runAsNonRoot must be true")
        if context.get("runAsUser") == 0:
            problems.append(f"{where}: runAsUser 0")
        seccomp = (context.get("seccompProfile") or {}).get("type") or pod_seccomp
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{where}: seccompProfile must be RuntimeDefault or Localhost")
        if context.get("procMount") not in (None, "Default"):
            problems.append(f"{where}: procMount")
        if any(port.get("hostPort") for port in container.get("ports") or []):
            problems.append(f"{where}: hostPort")
    return problems


def _pod(rendered: Rendered) -> dict[str, Any]:
    pod = rendered.one("Deployment")["spec"]["template"]["spec"]
    assert isinstance(pod, dict)
    return pod


@pytest.mark.parametrize("name", MATRIX)
def test_pod_passes_the_restricted_profile(rendered: dict[str, Rendered], name: str) -> None:
    assert restricted_violations(_pod(rendered[name])) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"hostNetwork": True}, "pod hostNetwork"),
        ({"securityContext": {"runAsNonRoot": False}}, "container operator: runAsNonRoot must be true"),
        ({"volumes": [{"name": "host", "hostPath": {"path": "/"}}]}, "volume host: ['hostPath']"),
        ({"securityContext": {"runAsNonRoot": True}}, "container operator: seccompProfile must be RuntimeDefault"),
    ],
)
def test_the_check_catches_violations(rendered: dict[str, Rendered], change: dict[str, Any], problem: str) -> None:
    """The checker itself: each violation, planted into the rendered pod, is reported."""
    pod = {**_pod(rendered["defaults"]), **change}
    (container,) = pod["containers"]
    context = {key: value for key, value in container["securityContext"].items()
               if key not in ("runAsNonRoot", "seccompProfile")}
    pod["containers"] = [{**container, "securityContext": context}]
    assert any(found.startswith(problem) for found in restricted_violations(pod)), restricted_violations(pod)


@pytest.mark.parametrize("name", MATRIX)
def test_read_only_root_with_a_memory_tmp(rendered: dict[str, Rendered], name: str) -> None:
    pod = _pod(rendered[name])
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}]


def test_numeric_non_root_ids(rendered: dict[str, Rendered]) -> None:
    context = _pod(rendered["defaults"])["securityContext"]
    assert context == {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                       "seccompProfile": {"type": "RuntimeDefault"}}
