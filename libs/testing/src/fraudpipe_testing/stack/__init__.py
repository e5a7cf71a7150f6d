"""The local stack: real services on loopback, each in its own data directory.

`hack/stack up|down|status|env` drives it from a shell; the pytest plugin drives the same
code, so a developer's stack and a test run's stack are one and the same thing.
"""

from fraudpipe_testing.stack.core import SERVICE_NAMES, Stack, StackError

__all__ = ["SERVICE_NAMES", "Stack", "StackError"]
