"""Typed access to the Kubernetes API; ``ApiException`` becomes the project's own errors here."""

from mtls_operator.k8s.api import JSON, KubeAPI, core_path, group_path
from mtls_operator.k8s.resources import Cluster

__all__ = ["JSON", "Cluster", "KubeAPI", "core_path", "group_path"]
