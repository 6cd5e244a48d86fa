"""``kubectl-mtls``: the argument parsing and wiring of ``kubectl mtls``; the work is in ``commands``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from mtls_operator.errors import ConfigError
from mtls_operator.k8s import KubeAPI
from mtls_operator.k8s.config import kubeconfig_namespace, load_configuration
from mtls_operator.plugin import commands, render
from mtls_operator.plugin.cluster import OperatorRef, PluginCluster
from mtls_operator.plugin.facts import parse_within

Clock = Callable[[], datetime]
_DEFAULTS = OperatorRef()


def _with_kind(kind: str) -> Callable[[str], str]:
    """``pod/NAME`` (or a bare NAME) -> NAME; kubectl's ``kind/name`` form."""
    def parse(text: str) -> str:
        given, _, name = text.rpartition("/")
        if given and given not in (kind, f"{kind}s"):
            raise argparse.ArgumentTypeError(f"expected {kind}/NAME, not {text!r}")
        if not name:
            raise argparse.ArgumentTypeError(f"expected {kind}/NAME, not {text!r}")
        return name
    return parse


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    common.add_argument("--context", help="the kubeconfig context to use")
    common.add_argument("-n", "--namespace", help="namespace (default: the context's, else 'default')")
    common.add_argument("-o", "--output", choices=render.FORMATS, default="table", help="output format")
    common.add_argument("--operator-namespace", default=_DEFAULTS.namespace,
                        help=f"where the operator runs and keeps its CA (default {_DEFAULTS.namespace})")
    common.add_argument("--ca-secret", default=_DEFAULTS.ca_secret, help="the CA Secret's name")
    common.add_argument("--webhook-ca-secret", default=_DEFAULTS.webhook_ca_secret,
                        help="the admission webhooks' CA Secret's name")
    common.add_argument("--lease", default=_DEFAULTS.lease, help="the leader election Lease's name")
    common.add_argument("--webhook-configuration", default=_DEFAULTS.webhook_configuration,
                        help="the webhook configurations' name")
    common.add_argument("--operator-service-account", default=_DEFAULTS.service_account,
                        help="the operator's ServiceAccount (for the RBAC check)")

    parser = argparse.ArgumentParser(
        prog="kubectl mtls", description="Day-2 operations for mtls-operator: which certificates expire first, "
                                         "what a pod holds, whether two pods trust each other, preflight checks.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    status = sub.add_parser("status", parents=[common], help="every identity, most urgent first")
    status.add_argument("-A", "--all-namespaces", action="store_true", help="identities of every namespace")
    status.add_argument("--expiring-within", metavar="DURATION", help="only those with a certificate expiring "
                                                                      "within DURATION (24h, 90m, 30d)")
    inspect = sub.add_parser("inspect", parents=[common], help="a pod's certificate, chain and trust bundle")
    inspect.add_argument("pod", type=_with_kind("pod"), metavar="pod/NAME")
    verify = sub.add_parser("verify", parents=[common], help="whether two pods trust each other, now and after "
                                                             "the next step of a CA rotation")
    verify.add_argument("first", type=_with_kind("pod"), metavar="pod/A")
    verify.add_argument("second", type=_with_kind("pod"), metavar="pod/B")
    sub.add_parser("check", parents=[common], help="preflight checks: ok, warning or failure (exit 1 on a failure)")
    sub.add_parser("rotate-ca", parents=[common], help="start a CA rotation (a CA the operator generated)")
    renew = sub.add_parser("renew", parents=[common], help="re-issue an identity's certificates (reason manual)")
    renew.add_argument("identity", type=_with_kind("identity"), metavar="identity/NAME")
    return parser


def main(argv: Sequence[str] | None = None, *, out: TextIO = sys.stdout, err: TextIO = sys.stderr,
         clock: Clock | None = None) -> int:
    args = build_parser().parse_args(argv)
    now = (clock or (lambda: datetime.now(UTC)))()
    try:
        configuration = load_configuration(args.kubeconfig, args.context)
    except ConfigError as exc:
        print(f"error: {exc}", file=err)
        return 2
    namespace = args.namespace or kubeconfig_namespace(args.kubeconfig, args.context) or "default"
    ref = OperatorRef(namespace=args.operator_namespace, ca_secret=args.ca_secret,
                      webhook_ca_secret=args.webhook_ca_secret, lease=args.lease,
                      webhook_configuration=args.webhook_configuration, service_account=args.operator_service_account)
    try:
        work = _command(args, ref, namespace, now)
    except ValueError as exc:
        print(f"error: {exc}", file=err)
        return 2
    api = KubeAPI.from_configuration(configuration, user_agent="kubectl-mtls")
    try:
        output = asyncio.run(work(PluginCluster(api)))
    except commands.CommandError as exc:
        print(f"error: {exc}", file=err)
        return 1
    finally:
        api.close()
    print(output.text if args.output == "table" else render.dump(output.data, args.output), file=out)
    return output.code


def _command(args: argparse.Namespace, ref: OperatorRef, namespace: str, now: datetime
             ) -> Callable[[PluginCluster], Coroutine[Any, Any, commands.Output]]:
    """The chosen command bound to its arguments; ValueError for a bad one (before any request)."""
    if args.command == "status":
        within = parse_within(args.expiring_within) if args.expiring_within else None
        scope = None if args.all_namespaces else namespace
        return lambda cluster: commands.status(cluster, ref, scope, within, now)
    if args.command == "inspect":
        return lambda cluster: commands.inspect(cluster, ref, namespace, args.pod, now)
    if args.command == "verify":
        return lambda cluster: commands.verify(cluster, ref, namespace, args.first, args.second, now)
    if args.command == "check":
        return lambda cluster: commands.check(cluster, ref, namespace, now)
    if args.command == "rotate-ca":
        return lambda cluster: commands.rotate_ca(cluster, ref)
    return lambda cluster: commands.renew(cluster, namespace, args.identity, now)


if __name__ == "__main__":
    sys.exit(main())
