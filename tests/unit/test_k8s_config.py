"""k8s/config.py: a kubeconfig's TLS flag must be a boolean (the client's loader reads it by truthiness)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from mtls_operator.errors import ConfigError
from mtls_operator.k8s.config import check_tls_flags, load_configuration


def kubeconfig(path: Path, **cluster: object) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "prod", "cluster": {"server": "https://10.0.0.1:6443", **cluster}}],
        "contexts": [{"name": "c", "context": {"cluster": "prod", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "t0ken"}}],
    }))
    return path


@pytest.mark.parametrize("flag", ["false", "true", "no", 0, 1, None])
def test_a_flag_that_is_not_a_boolean_is_refused_naming_the_cluster(tmp_path: Path, flag: object) -> None:
    path = kubeconfig(tmp_path / "config", **{"insecure-skip-tls-verify": flag})
    with pytest.raises(ConfigError, match=r"cluster 'prod': insecure-skip-tls-verify must be true or false"):
        load_configuration(str(path))


def test_the_string_false_would_otherwise_have_turned_verification_off(tmp_path: Path) -> None:
    # The reason for the check: the kubernetes client's loader takes "false" as true.
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig(tmp_path / "config", **{"insecure-skip-tls-verify": "false"})),
                            client_configuration=configuration)
    assert configuration.verify_ssl is False


@pytest.mark.parametrize(("flag", "verify"), [(False, True), (True, False)])
def test_booleans_are_taken_as_they_say(tmp_path: Path, flag: bool, verify: bool) -> None:
    configuration = load_configuration(str(kubeconfig(tmp_path / "config", **{"insecure-skip-tls-verify": flag})))
    assert configuration.verify_ssl is verify


def test_no_flag_verifies(tmp_path: Path) -> None:
    assert load_configuration(str(kubeconfig(tmp_path / "config"))).verify_ssl is True


def test_every_file_of_a_list_is_checked_and_unreadable_ones_are_left_to_the_loader(tmp_path: Path) -> None:
    good = kubeconfig(tmp_path / "good", **{"insecure-skip-tls-verify": False})
    bad = kubeconfig(tmp_path / "bad", **{"insecure-skip-tls-verify": "false"})
    (tmp_path / "garbage").write_text(":\n  - [")
    check_tls_flags(os.pathsep.join([str(good), str(tmp_path / "missing"), str(tmp_path / "garbage")]))
    with pytest.raises(ConfigError, match="bad"):
        check_tls_flags(os.pathsep.join([str(good), str(bad)]))
