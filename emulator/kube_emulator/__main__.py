"""``python -m kube_emulator --port N --kubeconfig FILE [--crds DIR]``: serve the emulator standalone."""

from __future__ import annotations

import argparse
from pathlib import Path

from kube_emulator import load_crds, serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m kube_emulator",
        description="Serve the emulated Kubernetes API on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=0, help="TCP port (default: a free one)")
    parser.add_argument("--kubeconfig", default="emulator.kubeconfig", help="where to write the kubeconfig")
    parser.add_argument("--crds", type=Path, help="install the CRDs of this folder's YAML files")
    args = parser.parse_args(argv)
    serve(port=args.port, kubeconfig=args.kubeconfig, crds=load_crds(args.crds) if args.crds else [])


if __name__ == "__main__":
    main()
