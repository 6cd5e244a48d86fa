"""``python -m mtls_operator.testing --port N --kubeconfig FILE``: serve the emulator standalone."""

from __future__ import annotations

import argparse

from mtls_operator.testing import serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mtls_operator.testing",
        description="Serve the emulated Kubernetes API (with the project's CRDs) on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=0, help="TCP port (default: a free one)")
    parser.add_argument("--kubeconfig", default="emulator.kubeconfig", help="where to write the kubeconfig")
    args = parser.parse_args(argv)
    serve(port=args.port, kubeconfig=args.kubeconfig)


if __name__ == "__main__":
    main()
