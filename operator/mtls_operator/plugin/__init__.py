"""``kubectl mtls``: day-2 answers about the cluster's per-pod certificates, with the user's kubeconfig.

Installed as the console script ``kubectl-mtls``, so ``kubectl mtls …`` finds it on ``PATH``.

- ``facts``  pure: what identities, pod Secrets and the CA Secret say; urgency; durations;
- ``trust``  pure: whether two pods trust each other now and after the next rotation step;
- ``checks`` pure: the preflight verdicts (ok, warning, failure) from what ``cluster`` read;
- ``render`` pure: table, JSON and YAML output;
- ``cluster`` reads and writes through the project's API client (``k8s``), with the user's RBAC;
- ``cli``    argument parsing and wiring.
"""
