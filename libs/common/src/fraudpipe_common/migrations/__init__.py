"""The PostgreSQL schema, as numbered SQL files applied in name order.

The canonical copy: the scorer's `migrate` command applies it, the API reads the tables it
creates. Every file is idempotent on its own and records its version in `schema_migrations`.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class Migration:
    version: str  # the file name without .sql, e.g. 0001_alerts_feedback
    sql: str


def migrations() -> list[Migration]:
    """Every migration, in the order they must be applied."""
    files = [f for f in resources.files(__package__).iterdir() if f.name.endswith(".sql")]
    return [
        Migration(f.name.removesuffix(".sql"), f.read_text())
        for f in sorted(files, key=lambda f: f.name)
    ]
