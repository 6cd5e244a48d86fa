"""Thin kopf handlers: parse the event, hand it to the controller, translate errors for kopf."""

from mtls_operator.handlers.handlers import registry
from mtls_operator.handlers.webhooks import AdmissionServer  # importing it registers the admission handlers

__all__ = ["AdmissionServer", "registry"]
