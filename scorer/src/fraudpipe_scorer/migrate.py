"""`fraudpipe-scorer migrate`: apply the shared schema, once, whoever else is trying.

A session-level advisory lock serialises concurrent runs (two Jobs, a retry overlapping a slow
first attempt); versions already in `schema_migrations` are skipped, and every file is
idempotent anyway, so running it again is always safe.
"""

from __future__ import annotations

import logging

import asyncpg

from fraudpipe_common.migrations import migrations

log = logging.getLogger(__name__)

# An arbitrary constant that identifies "fraudpipe schema migrations" among advisory locks.
MIGRATION_LOCK_ID = 0x66_72_61_75_64  # "fraud"


async def migrate(database_url: str) -> list[str]:
    """Apply what is missing; returns the versions applied by this call."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
        try:
            applied = await _applied_versions(conn)
            done = []
            for migration in migrations():
                if migration.version in applied:
                    continue
                log.info("applying migration %s", migration.version)
                await conn.execute(migration.sql)
                done.append(migration.version)
            return done
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_ID)
    finally:
        await conn.close()


async def _applied_versions(conn: asyncpg.Connection) -> set[str]:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return set()
    return {row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")}
