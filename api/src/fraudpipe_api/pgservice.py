"""A libpq service file from DATABASE_URL, so that pg_dump connects without the password in its
command line (where `ps` on the node, or a process-collecting agent, would read it): the backup
CronJob writes it to a memory-backed volume the dump container reads through PGSERVICEFILE.

    fraudpipe-api pg-service --out /conninfo/pg_service.conf    # service name: fraudpipe
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

SERVICE = "fraudpipe"


class ServiceFileError(ValueError):
    """DATABASE_URL cannot be written as a service file (the message leaves the URL out)."""


def service_file(url: str, service: str = SERVICE) -> str:
    """The [service] section of a postgresql:// URL: host, port, user, password, dbname and the
    query's parameters (sslmode, …), each key=value on its own line as libpq reads them."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ServiceFileError("DATABASE_URL must be a postgresql:// URL")
    entries = {
        "host": parts.hostname,
        "port": str(parts.port) if parts.port else None,
        "user": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
        "dbname": unquote(parts.path.lstrip("/")) or None,
        **dict(parse_qsl(parts.query)),
    }
    lines = [f"[{service}]"]
    for key, value in entries.items():
        if value is None:
            continue
        if "\n" in value or "\r" in value:
            raise ServiceFileError(f"DATABASE_URL's {key} holds a line break")
        lines.append(f"{key}={value}")
    return "\n".join(lines) + "\n"


def main(out: Path) -> int:
    url = os.environ.get("DATABASE_URL")
    if not url:
        raise ServiceFileError("DATABASE_URL is not set")
    # Owner-only: libpq refuses nothing here, but the file holds a password.
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(service_file(url))
    return 0
