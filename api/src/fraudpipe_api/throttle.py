"""Brute-force limit on API keys: every presented key is looked up through `AuthThrottle.find`.

A client (`peers.client_key`: the socket peer, or the address trusted proxies name) that
presented AUTH_FAILURE_LIMIT unknown keys within AUTH_FAILURE_WINDOW_S gets 429 with
Retry-After for every request that carries a key, valid or not, until the oldest of those
failures is that old. A key is not even looked up meanwhile: answering 200 to the right key
and 429 to the others would leave the guessing open. Requests without a key are not refused
(health checks, open reads, and the 401 saying a key is missing reveal nothing about keys).

Counted: unknown keys only. A malformed header reveals nothing about any key, and a 403 (a
valid key lacking the scope) is not a guess.

The check, the look-up and the count happen together without an await, so requests in
flight at once cannot slip more guesses past the limit than it allows. The state is per
process: with API_WORKERS > 1 each worker counts its own (docs/security.md).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from starlette.types import Scope

from fraudpipe_api.auth import ApiKey, KeyRing
from fraudpipe_api.config import ApiSettings
from fraudpipe_api.errors import ApiError
from fraudpipe_api.metrics import ApiMetrics
from fraudpipe_api.peers import client_key
from fraudpipe_api.ratelimit import FailureWindow

log = logging.getLogger(__name__)


class AuthThrottle:
    def __init__(
        self,
        keys: KeyRing,
        settings: ApiSettings,
        metrics: ApiMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.keys = keys
        self._proxies = settings.trusted_proxies
        self._metrics = metrics
        self._failures = FailureWindow(
            settings.auth_failure_limit,
            settings.auth_failure_window_s,
            settings.auth_failure_max_clients,
            clock,
        )
        metrics.auth_tracked_clients.set_function(lambda: len(self._failures))

    def client(self, scope: Scope) -> str:
        peer = scope.get("client")
        forwarded = [
            value.decode("latin-1")
            for name, value in scope.get("headers", ())
            if name == b"x-forwarded-for"
        ]
        return client_key(peer[0] if peer else None, forwarded, self._proxies)

    def find(
        self, scope: Scope, token: str, *, count: bool = True, digest: bool = False
    ) -> ApiKey | None:
        """The key `token` is, if its client may still present keys; ApiError 429 if not.
        `count=False` decides without counting (the fast path, which hands every refusal to
        FastAPI's route, where it is counted once); `digest=True` takes the key's SHA-256
        (the analyst page's cookie)."""
        client = self.client(scope) if len(self._failures) else None
        if client is not None:
            wait = self._failures.retry_after(client)
            if wait > 0:
                if count:
                    self._metrics.auth_throttled.inc()
                seconds = max(1, math.ceil(wait))
                raise ApiError(
                    429,
                    "too_many_failures",
                    f"too many unknown API keys from this address; requests with a key are "
                    f"refused for {seconds} s more (check the key you send before retrying)",
                    {"Retry-After": str(seconds)},
                )
        key = self.keys.find_digest(token) if digest else self.keys.find(token)
        if key is None and count:
            self._metrics.auth_failures.inc()
            client = client or self.client(scope)
            if self._failures.record(client):
                log.warning(
                    "client %s presented %d unknown API keys within %g s: its requests with a "
                    "key are refused (429) until the oldest is that old",
                    client,
                    self._failures.limit,
                    self._failures.window_s,
                )
        return key
