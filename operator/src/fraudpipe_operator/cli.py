"""`fraudpipe-operator`: run the operator, or generate the CRD from the models."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fraudpipe_operator import crd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fraudpipe-operator", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="reconcile FraudPipelines (kopf)")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument(
        "-n", "--namespace", action="append", default=[], help="watch only this namespace (repeat)"
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    run.add_argument(
        "--liveness",
        default="http://0.0.0.0:8080/healthz",
        help="URL of the liveness endpoint (kopf's)",
    )

    generate = commands.add_parser("crd", help="write the CRD (crds/ and the chart's copy)")
    generate.add_argument("--root", type=Path, default=Path.cwd(), help="repository root")
    generate.add_argument(
        "--check", action="store_true", help="fail if the files differ from the models"
    )
    generate.add_argument("--stdout", action="store_true", help="print the plain CRD instead")

    args = parser.parse_args(argv)
    if args.command == "crd":
        return _crd(args.root, check=args.check, stdout=args.stdout)
    return _run(args.namespace, args.all_namespaces, args.liveness)


def _crd(root: Path, *, check: bool, stdout: bool) -> int:
    if stdout:
        sys.stdout.write(crd.render_plain())
        return 0
    if check:
        stale = crd.stale(root)
        for path in stale:
            print(f"{path} differs from the models: run `fraudpipe-operator crd`", file=sys.stderr)
        return 1 if stale else 0
    for path in crd.write(root):
        print(f"wrote {path}")
    return 0


def _run(namespaces: list[str], all_namespaces: bool, liveness: str) -> int:
    import kopf

    from fraudpipe_operator import handlers  # noqa: F401  (registers the handlers)

    level = os.environ.get("LOG_LEVEL", "INFO").upper()  # the contract every service shares
    kopf.configure(verbose=level == "DEBUG", quiet=level in ("WARNING", "ERROR"))

    kopf.run(
        standalone=True,  # one replica (Recreate strategy): no peering CRDs needed
        clusterwide=all_namespaces or not namespaces,
        namespaces=namespaces,
        liveness_endpoint=liveness,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
