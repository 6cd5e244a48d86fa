"""Pure rules: the identity spec, naming policy, renewal and re-issue decisions, the desired Secrets
and status, rotation and election state machines, admission and injection.

Nothing here does I/O or reads the clock (``now`` is an argument), and nothing imports kopf or the
kubernetes client: the import contracts in ``.importlinter`` keep it so.
"""
