"""The demo: the real operator on the API emulator (``mtls-operator demo``), and the mutual-TLS
handshake that proves what it issued. The only part of the operator that imports the emulator.
"""
