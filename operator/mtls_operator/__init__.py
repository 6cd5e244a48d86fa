"""mtls-operator: per-pod X.509 identities from an in-cluster CA, for mutual TLS."""

__version__ = "0.1.0"
