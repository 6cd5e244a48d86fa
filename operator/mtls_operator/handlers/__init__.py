"""Thin kopf handlers: parse the event, hand it to the controller, translate errors for kopf."""

from mtls_operator.handlers.handlers import registry

__all__ = ["registry"]
