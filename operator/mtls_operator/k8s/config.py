"""Where the API server is: an explicit kubeconfig, the in-cluster service account, or ~/.kube/config."""

from __future__ import annotations

import os

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
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=explicit, context=context, client_configuration=configuration
            )
            return configuration
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except k8s_config.ConfigException:
            k8s_config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except (k8s_config.ConfigException, OSError) as exc:
        where = explicit or "in-cluster service account or ~/.kube/config"
        raise ConfigError(f"cannot load Kubernetes credentials from {where}: {exc}") from None
    return configuration


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
