"""kubectl works against the emulator through a kubeconfig, as against a cluster."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import time

import pytest
import yaml

from kube_emulator import EmulatorThread

from .conftest import WIDGET_CRD, widget

REPO = pathlib.Path(__file__).resolve().parents[2]


def find_kubectl() -> str | None:
    found = shutil.which("kubectl")
    if found:
        return found
    local = REPO / ".tools" / "bin" / "kubectl"
    return str(local) if local.exists() else None


KUBECTL = find_kubectl()
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl not found: run `make tools` (see shared/TOOLS.md)")


class Kubectl:
    def __init__(self, kubeconfig: pathlib.Path, cache: pathlib.Path) -> None:
        self.base = [str(KUBECTL), "--kubeconfig", str(kubeconfig), "--cache-dir", str(cache)]

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([*self.base, *args], capture_output=True, text=True, timeout=60, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result


def test_kubectl_against_emulator(tmp_path: pathlib.Path) -> None:
    with EmulatorThread() as server:
        kubectl = Kubectl(server.write_kubeconfig(tmp_path / "kubeconfig"), tmp_path / "cache")
        crd_file = tmp_path / "crd.yaml"
        crd_file.write_text(yaml.safe_dump(WIDGET_CRD))
        obj_file = tmp_path / "widget.yaml"
        obj_file.write_text(yaml.safe_dump(widget("w1", size=3, color="blue")))

        assert "created" in kubectl("apply", "-f", str(crd_file)).stdout
        kubectl("wait", "--for=condition=Established", "crd/widgets.example.com", "--timeout=10s")
        assert "widget.example.com/w1 created" in kubectl("apply", "--validate=false", "-f", str(obj_file)).stdout
        assert "unchanged" in kubectl("apply", "--validate=false", "-f", str(obj_file)).stdout

        table = kubectl("get", "widgets").stdout.splitlines()
        assert table[0].split() == ["NAME", "SIZE", "COLOR", "READY"]
        assert table[1].split() == ["w1", "3", "blue"]
        assert "w1" in kubectl("get", "wdg", "-n", "default").stdout  # the short name

        bad = tmp_path / "bad.yaml"
        bad.write_text(yaml.safe_dump(widget("bad", bogus=1)))
        refused = kubectl("apply", "-f", str(bad), check=False)  # kubectl asks for server-side validation
        assert refused.returncode == 1
        assert 'strict decoding error: unknown field "spec.bogus"' in refused.stderr

        manifest = yaml.safe_load(kubectl("get", "widget", "w1", "-o", "yaml").stdout)
        assert manifest["spec"] == {"size": 3, "color": "blue"}
        assert manifest["metadata"]["uid"]

        described = kubectl("describe", "widget", "w1").stdout
        assert "Name:" in described
        assert "w1" in described
        assert "Size:" in described

        kubectl("label", "widget", "w1", "team=a")
        assert "w1" in kubectl("get", "widgets", "-l", "team=a").stdout

        server.emulator.patch("example.com/v1", "widgets", "w1", "default",
                              {"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
                              subresource="status")
        kubectl("wait", "--for=condition=Ready", "widget/w1", "--timeout=10s")
        assert kubectl("get", "widgets").stdout.splitlines()[1].split() == ["w1", "3", "blue", "True"]

        # wait also sees a change that happens while it waits
        (tmp_path / "w2.yaml").write_text(yaml.safe_dump(widget("w2")))
        kubectl("apply", "--validate=false", "-f", str(tmp_path / "w2.yaml"))
        waiter = subprocess.Popen([*kubectl.base, "wait", "--for=condition=Ready", "widget/w2", "--timeout=20s"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)
        server.emulator.patch("example.com/v1", "widgets", "w2", "default",
                              {"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
                              subresource="status")
        out, err = waiter.communicate(timeout=30)
        assert waiter.returncode == 0, err
        assert "condition met" in out

        deleted = kubectl("delete", "widget", "w1", "w2").stdout
        assert 'widget.example.com "w1" deleted' in deleted
        assert server.emulator.list("example.com/v1", "widgets") == []
        assert "No resources found" in kubectl("get", "widgets").stderr

        # typed-client commands send protobuf bodies: Namespace, Secret, ConfigMap, ServiceAccount decode
        kubectl("create", "namespace", "shop")
        kubectl("-n", "shop", "create", "secret", "generic", "s", "--from-literal=a=b")
        kubectl("-n", "shop", "create", "configmap", "c", "--from-literal=x=y")
        kubectl("-n", "shop", "create", "serviceaccount", "bot")
        assert server.emulator.get("v1", "secrets", "s", "shop")["data"] == {"a": "Yg=="}  # type: ignore[index]
        assert server.emulator.get("v1", "configmaps", "c", "shop")["data"] == {"x": "y"}  # type: ignore[index]
        assert "namespace \"shop\" deleted" in kubectl("delete", "namespace", "shop").stdout
        assert server.emulator.get("v1", "namespaces", "shop") is None

        kubectl("get", "namespaces")
        kubectl("get", "all", "-A")
        kubectl("api-resources")
        assert kubectl("get", "secret", "nope", check=False).returncode == 1
