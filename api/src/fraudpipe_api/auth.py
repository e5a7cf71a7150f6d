"""API keys: only their SHA-256 is configured; a bearer token is hashed and compared in
constant time against every configured hash (no early exit, no timing hint of a near miss).

A key line is `<sha256 hex>:<scope>[:<name>]`; scope `read` reads, `write` reads and writes.
Generate one with `fraudpipe-api hash-key <token>`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class Scope(StrEnum):
    READ = "read"
    WRITE = "write"


@dataclass(frozen=True)
class ApiKey:
    digest: str
    scope: Scope
    name: str

    def allows(self, wanted: Scope) -> bool:
        return self.scope is Scope.WRITE or wanted is Scope.READ


class KeyFileError(ValueError):
    """A key line is malformed; the message names the line."""


def hash_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "fpk_" + secrets.token_urlsafe(32)


def parse_keys(lines: list[str], source: str) -> list[ApiKey]:
    keys = []
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        digest, _, rest = line.partition(":")
        scope, _, name = rest.partition(":")
        digest = digest.lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise KeyFileError(f"{source} line {number}: expected a sha256 hex digest first")
        if scope not in (Scope.READ, Scope.WRITE):
            raise KeyFileError(f"{source} line {number}: scope must be read or write")
        keys.append(ApiKey(digest, Scope(scope), name or f"key-{digest[:8]}"))
    return keys


def load_keys(keys_file: str | None, keys_env: str | None) -> list[ApiKey]:
    keys: list[ApiKey] = []
    if keys_file:
        keys += parse_keys(Path(keys_file).read_text().splitlines(), keys_file)
    if keys_env:
        keys += parse_keys(keys_env.split(","), "API_KEYS")
    return keys


class KeyRing:
    """The configured keys. With `keys_file`, a change of the file (a Secret update the kubelet
    swaps in, about a minute after `kubectl apply`) is picked up within `check_every_s` of the
    next lookup: a revoked key stops working without a restart. A file that no longer parses
    keeps only the keys whose digest it still holds (logged): a key removed in the same edit as
    a typo is revoked all the same, while refusing every client for a typo would be an outage
    of its own."""

    def __init__(
        self,
        keys: list[ApiKey],
        *,
        keys_file: str | None = None,
        keys_env: str | None = None,
        check_every_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._keys = keys
        self._file = Path(keys_file) if keys_file else None
        self._env = keys_env
        self._check_every_s = check_every_s
        self._clock = clock
        self._checked_at = clock()
        self._seen = self._identity()

    @classmethod
    def load(cls, keys_file: str | None, keys_env: str | None, **options: Any) -> KeyRing:
        return cls(
            load_keys(keys_file, keys_env), keys_file=keys_file, keys_env=keys_env, **options
        )

    def __len__(self) -> int:
        self._refresh()
        return len(self._keys)

    def find(self, token: str) -> ApiKey | None:
        return self.find_digest(hash_key(token))

    def find_digest(self, digest: str) -> ApiKey | None:
        """The key whose SHA-256 is `digest` (the analyst page's cookie holds that, never the
        key itself)."""
        self._refresh()
        presented = digest.encode()
        found = None
        for key in self._keys:  # every key is compared: the time does not depend on a match
            if hmac.compare_digest(key.digest.encode(), presented):
                found = key
        return found

    def _identity(self) -> tuple[int, int, int] | None:
        """What changes when the file does: a Secret volume swaps in a new file (new inode)."""
        if self._file is None:
            return None
        try:
            st = self._file.stat()
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _refresh(self) -> None:
        if self._file is None or self._clock() - self._checked_at < self._check_every_s:
            return
        self._checked_at = self._clock()
        seen = self._identity()
        if seen == self._seen:
            return
        try:
            keys = load_keys(str(self._file), self._env)
        except OSError:
            return  # mid-swap or gone for a moment: checked again at the next interval
        except KeyFileError as exc:
            text = self._file.read_text(errors="replace").lower()
            kept = [k for k in self._keys if k.digest in text]
            log.error(
                "API keys in %s do not parse (%s); %d of the previous %d keys, those still in "
                "it, stay in force until it is fixed",
                self._file,
                exc,
                len(kept),
                len(self._keys),
            )
            self._keys, self._seen = kept, seen
            return
        self._keys, self._seen = keys, seen
        log.info("API keys reloaded from %s: %d keys", self._file, len(keys))
