"""`hack/cluster`: a real single-node Kubernetes cluster on this machine (root only).

hack/cluster up                 start it (or keep it), print its settings
hack/cluster down               stop it; no process, mount, bridge, iptables rule or route is left
hack/cluster status             healthy, unhealthy, failed or stopped
hack/cluster env                `export` lines: eval "$(hack/cluster env)"
hack/cluster import TARBALL...  import image tarballs into the node's containerd (k8s.io)
hack/cluster restart-containerd stop the node's containerd and start it again (a fault the
                                end-to-end suite injects; the containers keep running)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fraudpipe_testing.stack.cli import exports
from fraudpipe_testing.stack.core import Stack
from fraudpipe_testing.stack.process import StackError
from fraudpipe_testing.stack.services.node import (
    NodeClusterService,
    host_cleanup,
    import_images,
    unmount_under,
)


def default_root() -> Path:
    fallback = f"/tmp/fraudpipe-cluster-{os.geteuid()}"  # noqa: S108 (beside the stack's)
    return Path(os.environ.get("FRAUDPIPE_CLUSTER_DIR", fallback))


def cluster(root: Path | None = None) -> Stack:
    return Stack(
        root or default_root(),
        services={"node": NodeClusterService()},
        root_variable="FRAUDPIPE_CLUSTER_DIR",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hack/cluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "command", choices=["up", "down", "status", "env", "import", "restart-containerd"]
    )
    parser.add_argument("tarballs", nargs="*", metavar="TARBALL", help="for import")
    args = parser.parse_args(argv)
    stack = cluster()
    try:
        if args.command == "up":
            if stack.status()["node"] == "stopped":
                # A cluster that crashed without its state file may have left mounts in the
                # folder `up` is about to empty: detach them first.
                unmount_under(stack.root / "node")
            print(exports(stack.up()))
            print(
                f'# cluster up in {stack.root}; load it with: eval "$(hack/cluster env)"',
                file=sys.stderr,
            )
        elif args.command == "down":
            stack.down()
            # Also what a crashed cluster left without a state file (never the host-wide
            # pieces of a node cluster that runs from another folder).
            host_cleanup(stack.root / "node", None)
        elif args.command == "env":
            print(exports(stack.env()))
        elif args.command == "import":
            stack.env()  # refuses when no cluster runs
            import_images(stack.root / "node", [Path(t) for t in args.tarballs])
            print(f"imported {len(args.tarballs)} tarball(s) into {stack.root}", file=sys.stderr)
        elif args.command == "restart-containerd":
            node = NodeClusterService()
            stack.update("node", node.restart_containerd)
            print("containerd restarted", file=sys.stderr)
        else:
            state = stack.status()["node"]
            print(f"node          {state}")
            return 0 if state in ("healthy", "stopped") else 1
    except StackError as exc:
        print(f"hack/cluster {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
