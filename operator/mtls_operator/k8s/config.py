"""Where the API server is: an explicit kubeconfig, the in-cluster service account, or ~/.kube/config."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from mtls_operator.errors import ConfigError


def load_configuration(kubeconfig: str | None = None, context: str | None = None) -> k8s_client.Configuration:
    """A client ``Configuration``; ``ConfigError`` with one clear line when none can be found.

    ``context`` picks a kubeconfig context other than the current one (``kubectl --context``)."""
    configuration = k8s_client.Configuration()
    explicit = kubeconfig or os.environ.get("KUBECONFIG")
    try:
        if explicit or context:
            check_tls_flags(explicit)
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=explicit, context=context, client_configuration=configuration
            )
            return configuration
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except k8s_config.ConfigException:
            check_tls_flags(None)
            k8s_config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except (k8s_config.ConfigException, OSError) as exc:
        where = explicit or "in-cluster service account or ~/.kube/config"
        raise ConfigError(f"cannot load Kubernetes credentials from {where}: {exc}") from None
    return configuration


def check_tls_flags(kubeconfig: str | None) -> None:
    """Refuse a kubeconfig whose ``insecure-skip-tls-verify`` is anything but a boolean, as kubectl does.

    The kubernetes client's loader reads the field by truthiness: the string ``"false"`` would turn TLS
    verification off. kubectl refuses such a file; so does the operator (``ConfigError`` naming the
    cluster). ``kubeconfig`` may list several files (``KUBECONFIG``'s separator); unreadable files are
    left to the loader, which reports them."""
    files = (kubeconfig or str(Path.home() / ".kube" / "config")).split(os.pathsep)
    for name in files:
        try:
            document: Any = yaml.safe_load(Path(name).expanduser().read_text())
        except (OSError, yaml.YAMLError, UnicodeDecodeError):
            continue
        clusters = document.get("clusters") if isinstance(document, dict) else None
        for entry in clusters if isinstance(clusters, list) else []:
            cluster = entry.get("cluster") if isinstance(entry, dict) else None
            if not isinstance(cluster, dict) or "insecure-skip-tls-verify" not in cluster:
                continue
            flag = cluster["insecure-skip-tls-verify"]
            if not isinstance(flag, bool):
                raise ConfigError(
                    f"kubeconfig {name}: cluster {str(entry.get('name'))[:253]!r}: insecure-skip-tls-verify must be "
                    f"true or false, not {type(flag).__name__} {str(flag)[:40]!r}")


def bearer_token(configuration: k8s_client.Configuration) -> tuple[str | None, str | None]:
    """(scheme, token) from the configuration's Authorization header, as kopf wants them."""
    header = configuration.get_api_key_with_prefix("BearerToken") or configuration.get_api_key_with_prefix(
        "authorization"
    )
    if not header:
        return None, None
    parts = str(header).split(" ", 1)
    return (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])


def kubeconfig_namespace(kubeconfig: str | None = None, context: str | None = None) -> str | None:
    """The namespace the kubeconfig's (current or named) context sets, as kubectl uses it; else None."""
    try:
        contexts, current = k8s_config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=kubeconfig or os.environ.get("KUBECONFIG")
        )
    except (k8s_config.ConfigException, OSError):
        return None
    chosen = next((ctx for ctx in contexts or [] if ctx.get("name") == context), None) if context else current
    namespace = ((chosen or {}).get("context") or {}).get("namespace")
    return str(namespace) if namespace else None
