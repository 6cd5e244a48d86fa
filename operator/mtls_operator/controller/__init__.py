"""Orchestration without kopf: the work queue, the CA store and the reconciler (k8s + pure rules)."""
