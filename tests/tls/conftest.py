"""TLS tests issue their certificates through the real operator on the emulator."""

from tests.integration.conftest import clock, emulator, operator, server

__all__ = ["clock", "emulator", "operator", "server"]
