"""The python `kubernetes` client, threads, the kubeconfig and the standalone process."""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import subprocess
import sys
import threading

import kubernetes.client
import kubernetes.config
import pytest
import yaml
from kubernetes.client.rest import ApiException

from kube_emulator import EmulatorServer, EmulatorThread

from .conftest import REPOSITORY_CRDS, secret, widget


def test_kubernetes_client_through_emulator_thread(thread_server: EmulatorThread) -> None:
    api = kubernetes.client.ApiClient(thread_server.client_configuration())
    try:
        core = kubernetes.client.CoreV1Api(api)
        created = core.create_namespaced_secret("default", {"metadata": {"name": "a"}, "stringData": {"k": "v"}})
        assert created.metadata.uid
        assert created.data == {"k": "dg=="}
        with pytest.raises(ApiException) as info:
            core.create_namespaced_secret("default", {"metadata": {"name": "a"}})
        assert info.value.status == 409
        custom = kubernetes.client.CustomObjectsApi(api)
        obj = custom.create_namespaced_custom_object("example.com", "v1", "default", "widgets", widget("w"))
        assert obj["spec"]["color"] == "red"
        listed = custom.list_namespaced_custom_object("example.com", "v1", "default", "widgets")
        assert [i["metadata"]["name"] for i in listed["items"]] == ["w"]
        core.delete_namespaced_secret("a", "default")
        assert core.list_namespaced_secret("default").items == []
    finally:
        api.close()


def test_in_process_helpers_from_another_thread(thread_server: EmulatorThread) -> None:
    emulator = thread_server.emulator
    assert threading.current_thread() is threading.main_thread()
    emulator.create(secret("a"))
    assert emulator.get("v1", "Secret", "a", "default") is not None
    assert [s["metadata"]["name"] for s in emulator.list("v1", "secrets", "default")] == ["a"]


async def test_sync_client_via_to_thread_on_the_servers_loop(server: EmulatorServer) -> None:
    api = kubernetes.client.ApiClient(server.client_configuration())
    try:
        core = kubernetes.client.CoreV1Api(api)
        namespaces = await asyncio.to_thread(core.list_namespace)
        assert "default" in [n.metadata.name for n in namespaces.items]
    finally:
        api.close()


def test_write_kubeconfig(thread_server: EmulatorThread, tmp_path: pathlib.Path) -> None:
    path = thread_server.write_kubeconfig(tmp_path / "config", namespace="shop")
    doc = yaml.safe_load(path.read_text())
    assert doc["clusters"][0]["cluster"]["server"] == thread_server.url
    assert doc["contexts"][0]["context"]["namespace"] == "shop"
    api = kubernetes.config.new_client_from_config(str(path))
    try:
        version = kubernetes.client.VersionApi(api).get_code()
        assert version.major == "1"
    finally:
        api.close()


def test_standalone_process_serves_until_sigterm(tmp_path: pathlib.Path) -> None:
    kubeconfig = tmp_path / "emulator.kubeconfig"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "kube_emulator", "--crds", str(REPOSITORY_CRDS), "--port", "0",
         "--kubeconfig", str(kubeconfig)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        second = process.stdout.readline()
        assert "http://127.0.0.1:" in first
        assert str(kubeconfig.resolve()) in second
        api = kubernetes.config.new_client_from_config(str(kubeconfig))
        try:
            crds = kubernetes.client.ApiextensionsV1Api(api).list_custom_resource_definition()
            assert "mtlsidentities.mtls.dev" in [c.metadata.name for c in crds.items]
        finally:
            api.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
