"""API keys: only their SHA-256 is configured; a bearer token is hashed and compared in
constant time against every configured hash (no early exit, no timing hint of a near miss).

A key line is `<sha256 hex>:<scope>[:<name>]`; scope `read` reads, `write` reads and writes.
Generate one with `fraudpipe-api hash-key <token>`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


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
    def __init__(self, keys: list[ApiKey]) -> None:
        self._keys = keys

    def __len__(self) -> int:
        return len(self._keys)

    def find(self, token: str) -> ApiKey | None:
        presented = hash_key(token).encode()
        found = None
        for key in self._keys:  # every key is compared: the time does not depend on a match
            if hmac.compare_digest(key.digest.encode(), presented):
                found = key
        return found
