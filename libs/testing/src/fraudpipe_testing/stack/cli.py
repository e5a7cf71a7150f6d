"""`hack/stack` / `fraudpipe-stack`: manage the local stack from a shell.

hack/stack up [SERVICE...]      start (or keep) services, print their settings
hack/stack down [SERVICE...]    stop services; no process is left behind
hack/stack status               one line per service: healthy, unhealthy, failed, stopped
hack/stack env [SERVICE...]     `export` lines: eval "$(hack/stack env)"
"""

from __future__ import annotations

import argparse
import shlex
import sys

from fraudpipe_testing.stack.core import SERVICE_NAMES, Stack, StackError


def exports(env: dict[str, str]) -> str:
    return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hack/stack", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["up", "down", "status", "env"])
    parser.add_argument(
        "services",
        nargs="*",
        metavar="SERVICE",
        help=f"any of: {', '.join(SERVICE_NAMES)} (default: all)",
    )
    args = parser.parse_args(argv)
    names = args.services or list(SERVICE_NAMES)
    stack = Stack()
    try:
        if args.command == "up":
            env = stack.up(names)
            print(exports(env))
            print(
                f'# stack up in {stack.root}; load it with: eval "$(hack/stack env)"',
                file=sys.stderr,
            )
        elif args.command == "down":
            stack.down(names)
        elif args.command == "env":
            print(exports(stack.env(names)))
        else:
            report = stack.status()
            for name, state in report.items():
                print(f"{name:<16} {state}")
            return 0 if all(s in ("healthy", "stopped") for s in report.values()) else 1
    except StackError as exc:
        print(f"hack/stack {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
