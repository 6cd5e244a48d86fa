"""``mtls-operator``: run the operator, the self-contained demo, or the emulated API playground."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mtls_operator.errors import ConfigError

if TYPE_CHECKING:
    from mtls_operator.config import Settings
    from mtls_operator.controller.prefetch import ListPrefetch

# Flag name -> environment variable it mirrors (DESIGN.md, "Configuration").
_SETTING_FLAGS = {
    "trust_domain": "MTLS_TRUST_DOMAIN",
    "cluster_domain": "MTLS_CLUSTER_DOMAIN",
    "namespace": "MTLS_NAMESPACE",
    "ca_secret": "MTLS_CA_SECRET",
    "default_duration": "MTLS_DEFAULT_DURATION",
    "max_issuance_per_second": "MTLS_MAX_ISSUANCE_PER_SECOND",
    "allowed_dns_patterns": "MTLS_ALLOWED_DNS_PATTERNS",
    "metrics_port": "MTLS_METRICS_PORT",
    "allow_short_dns_names": "MTLS_ALLOW_SHORT_DNS_NAMES",
    "max_duration": "MTLS_MAX_DURATION",
    "ca_propagation_delay": "MTLS_CA_PROPAGATION_DELAY",
    "ca_duration": "MTLS_CA_DURATION",
    "webhook_port": "MTLS_WEBHOOK_PORT",
    "webhook_service": "MTLS_WEBHOOK_SERVICE",
    "webhook_configuration": "MTLS_WEBHOOK_CONFIGURATION",
    "webhook_ca_secret": "MTLS_WEBHOOK_CA_SECRET",
    "leader_election": "MTLS_LEADER_ELECTION",
    "lease_name": "MTLS_LEASE_NAME",
    "lease_duration": "MTLS_LEASE_DURATION",
    "pod_name": "MTLS_POD_NAME",
    "health_port": "MTLS_HEALTH_PORT",
    "log_format": "MTLS_LOG_FORMAT",
    "shard_namespace_selector": "MTLS_SHARD_NAMESPACE_SELECTOR",
    "ca_rotation": "MTLS_CA_ROTATION",
    "pod_certificates": "MTLS_POD_CERTIFICATES",
    "pod_certificate_signer": "MTLS_POD_CERTIFICATE_SIGNER",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtls-operator",
        description="Per-pod X.509 identities from an in-cluster CA, for mutual TLS between microservices.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the operator against the current kubeconfig or in-cluster")
    run.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, in-cluster, ~/.kube/config)")
    run.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    for dest, env in _SETTING_FLAGS.items():
        run.add_argument(f"--{dest.replace('_', '-')}", dest=dest, metavar=env.removeprefix("MTLS_"),
                         help=f"overrides ${env}")

    demo = commands.add_parser("demo", help="issue certificates on an embedded emulated cluster and prove mTLS")
    demo.add_argument("--output-dir", help="write each pod Secret as DIR/<namespace>/<secret>/{tls.crt,...}")

    emulator = commands.add_parser("emulator", help="serve the emulated Kubernetes API as a playground")
    emulator.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free port)")
    emulator.add_argument("--kubeconfig", default="emulator.kubeconfig", help="where to write the kubeconfig")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
        try:
            from kube_emulator import serve
            from mtls_operator.demo.run import project_crds, run_demo
        except ImportError as exc:
            print(f"mtls-operator: {args.command} needs the API emulator ({exc.name} is missing): "
                  "pip install ./emulator 'mtls-operator[demo]' from the repository (make demo does)",
                  file=sys.stderr)
            return 2
        if args.command == "demo":
            return run_demo(output_dir=args.output_dir)
        serve(port=args.port, kubeconfig=args.kubeconfig, crds=project_crds())
        return 0
    except ConfigError as exc:
        print(f"mtls-operator: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _run(args: argparse.Namespace) -> int:
    from mtls_operator.config import settings_from_env
    from mtls_operator.observability import startup

    overrides = {env: getattr(args, dest) for dest, env in _SETTING_FLAGS.items()}
    settings = settings_from_env(os.environ, overrides)
    # The pods and Secrets are listed while the rest is imported and kopf starts (controller/prefetch.py).
    prefetch = _prefetch(args.kubeconfig, settings)
    from mtls_operator.k8s.config import load_configuration

    configuration = load_configuration(args.kubeconfig)
    if prefetch is not None and not prefetch.reaches(str(configuration.host)):
        prefetch.discard()
        prefetch = None
    if prefetch is not None:
        from mtls_operator.controller.objects import metadata_view, stored_pod

        prefetch.keep_as(stored_pod, metadata_view)
    from mtls_operator.main import run_operator
    from mtls_operator.observability.logs import configure_logging

    startup.imports_done()
    # What the imports made lives as long as the process: the collector need not walk it again and again
    # while the lists' objects pile up.
    gc.freeze()
    configure_logging(settings.log_format, verbose=args.verbose)
    asyncio.run(run_operator(settings, configuration, prefetch=prefetch))
    return 0


def _prefetch(kubeconfig: str | None, settings: Settings) -> ListPrefetch | None:
    from mtls_operator import __version__
    from mtls_operator.constants import MANAGER_NAME
    from mtls_operator.controller.prefetch import ListPrefetch, endpoint

    where = endpoint(kubeconfig)
    if where is None:
        return None
    prefetch = ListPrefetch(where, f"{MANAGER_NAME}/{__version__} ({settings.holder_identity})")
    prefetch.start()
    return prefetch


if __name__ == "__main__":
    sys.exit(main())
