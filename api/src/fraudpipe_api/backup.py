"""`fraudpipe-api backup upload|list|download`: PostgreSQL backups (pg_dump custom-format files)
kept in S3-compatible storage, named by pipeline and time so that the newest sorts last:

    s3://BUCKET/PREFIX/<pipeline>-<YYYYmmddTHHMMSSZ>.dump

The dump itself is pg_dump's job (`pg_dump --format=custom`, compressed), and the restore
pg_restore's: this module only moves finished files. It never reads a dump's contents beyond
its header, so the dump's format is pg_dump's own, restorable with nothing of fraudpipe.

Objects appear whole or not at all: S3 shows an object only once its upload completed (a
single PUT for small files; pyarrow sends large ones as a multipart upload, invisible until
completed). pyarrow cannot abort an upload, though: its stream completes what it was given
when it closes, even after an error. So an upload that failed, or whose object is not the
dump's size, deletes that object before anything else happens. Decision 89
(docs/decisions.md).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fraudpipe_common.archive.layout import ArchiveLocation
from fraudpipe_common.archive.store import S3Settings

# Every pg_dump custom-format file starts with these bytes; anything else (an empty file left
# by a failed dump, a plain SQL dump) is refused before it can replace a good backup.
CUSTOM_FORMAT_MAGIC = b"PGDMP"
TIME_FORMAT = "%Y%m%dT%H%M%SZ"
COPY_BUFFER = 8 * 1024 * 1024


class BackupSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BACKUP_", extra="ignore")

    uri: str = Field(description="s3://bucket[/prefix]: where the backups live.")
    name: str = Field(
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="The name every backup starts with (the operator sets the pipeline's).",
    )
    keep: int = Field(default=7, ge=1, description="Backups of this name kept after an upload.")

    @field_validator("uri")
    @classmethod
    def _location_parses(cls, value: str) -> str:
        ArchiveLocation.parse(value)
        return value


@dataclass(frozen=True)
class StoredBackup:
    key: str  # bucket/prefix/name: the path pyarrow's S3 filesystem takes
    taken_at: dt.datetime
    size: int

    @property
    def base_name(self) -> str:
        return self.key.rsplit("/", 1)[-1]


def backup_name(name: str, taken_at: dt.datetime) -> str:
    return f"{name}-{taken_at.astimezone(dt.UTC):{TIME_FORMAT}}.dump"


def parse_backup_name(name: str, base_name: str) -> dt.datetime | None:
    """When the backup called `base_name` was taken, or None if it is not one of `name`'s
    (another pipeline's backup, or any other object)."""
    match = re.fullmatch(re.escape(name) + r"-(\d{8}T\d{6}Z)\.dump", base_name)
    if match is None:
        return None
    return dt.datetime.strptime(match.group(1), TIME_FORMAT).replace(tzinfo=dt.UTC)


def to_delete(backups: list[StoredBackup], keep: int) -> list[StoredBackup]:
    """All but the `keep` newest."""
    newest_first = sorted(backups, key=lambda b: b.taken_at, reverse=True)
    return newest_first[keep:]


def check_dump(path: Path) -> None:
    with path.open("rb") as file:
        head = file.read(len(CUSTOM_FORMAT_MAGIC))
    if head != CUSTOM_FORMAT_MAGIC:
        raise ValueError(
            f"{path} is not a pg_dump custom-format file (it starts with {head!r}): run "
            "pg_dump --format=custom, and upload only after it exited with status 0"
        )


class BackupStore:
    """The backups of one name at one location."""

    def __init__(self, location: ArchiveLocation, name: str, filesystem: pafs.FileSystem) -> None:
        self.location = location
        self.name = name
        self.fs = filesystem

    @property
    def directory(self) -> str:
        return "/".join(part for part in (self.location.bucket, self.location.prefix) if part)

    def backups(self) -> list[StoredBackup]:
        """This name's backups, oldest first."""
        listing = self.fs.get_file_info(pafs.FileSelector(self.directory, allow_not_found=True))
        found = []
        for info in listing:
            taken_at = parse_backup_name(self.name, info.base_name)
            if info.type == pafs.FileType.File and taken_at is not None:
                found.append(StoredBackup(info.path, taken_at, info.size or 0))
        return sorted(found, key=lambda b: b.taken_at)

    def upload(self, dump: Path, taken_at: dt.datetime) -> StoredBackup:
        check_dump(dump)
        size = dump.stat().st_size
        key = f"{self.directory}/{backup_name(self.name, taken_at)}"
        stored = self.fs.get_file_info(key)
        if stored.type == pafs.FileType.File and stored.size == size:
            # The Job's retry of an upload that succeeded (its prune failed, say): the key is
            # this dump's own time, so it is stored already. Writing it again could only lose
            # it: the clean-up of a failed second attempt would delete the good copy.
            return StoredBackup(key, taken_at.astimezone(dt.UTC), size)
        try:
            # Streamed: a dump may be larger than the pod's memory. A retry of the same dump
            # (same time) writes the same key again, never a second copy.
            with (
                dump.open("rb") as source,
                self.fs.open_output_stream(
                    key, metadata={"Content-Type": "application/octet-stream"}
                ) as out,
            ):
                shutil.copyfileobj(source, out, COPY_BUFFER)
            stored = self.fs.get_file_info(key).size
            if stored != size:
                raise OSError(f"s3://{key} holds {stored} bytes of the dump's {size}")
        except BaseException:
            # pyarrow completes an upload when its stream closes, even after an error (it
            # has no abort): what it stored may be a cut-off dump, which must not pass for a
            # backup (nor make the prune delete a good one).
            with contextlib.suppress(OSError):
                self.fs.delete_file(key)
            raise
        return StoredBackup(key, taken_at.astimezone(dt.UTC), size)

    def prune(self, keep: int) -> list[StoredBackup]:
        """Delete all but the `keep` newest backups of this name; returns those deleted."""
        deleted = to_delete(self.backups(), keep)
        for backup in deleted:
            self.fs.delete_file(backup.key)
        return deleted

    def find(self, base_name: str | None) -> StoredBackup:
        """The backup called `base_name`, or the newest when None."""
        backups = self.backups()
        if base_name is not None:
            backups = [b for b in backups if b.base_name == base_name]
        if not backups:
            wanted = base_name or f"any backup named {self.name}-<time>.dump"
            raise FileNotFoundError(
                f"{self.location.uri}: no {wanted}; `fraudpipe-api backup list` shows what "
                "is there (check BACKUP_URI and BACKUP_NAME)"
            )
        return backups[-1]

    def download(self, backup: StoredBackup, out: Path) -> None:
        """Into `out` through a temporary file beside it: `out` exists only when complete."""
        partial = out.with_name(out.name + ".partial")
        try:
            with self.fs.open_input_stream(backup.key) as source, partial.open("wb") as target:
                shutil.copyfileobj(source, target, COPY_BUFFER)
            check_dump(partial)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        partial.replace(out)


# -- the command --------------------------------------------------------------------------------
def open_store(settings: BackupSettings, s3: S3Settings) -> BackupStore:
    return BackupStore(ArchiveLocation.parse(settings.uri), settings.name, s3.filesystem())


def main(action: str, path: Path | None, backup: str | None) -> int:
    """`upload PATH` (then prune to BACKUP_KEEP), `list`, or `download --out PATH`; a JSON
    summary on stdout. Raises pydantic.ValidationError on a bad configuration."""
    settings = BackupSettings()  # type: ignore[call-arg]  # from the environment
    store = open_store(settings, S3Settings())
    try:
        if action == "upload":
            assert path is not None
            # Named by when pg_dump finished writing: a retried upload of the same file
            # overwrites its own object instead of adding a second backup.
            taken_at = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
            uploaded = store.upload(path, taken_at)
            deleted = store.prune(settings.keep)
            summary: object = {
                "uploaded": f"s3://{uploaded.key}",
                "bytes": uploaded.size,
                "deleted": [f"s3://{b.key}" for b in deleted],
            }
        elif action == "download":
            assert path is not None
            found = store.find(backup)
            store.download(found, path)
            summary = {"downloaded": f"s3://{found.key}", "to": str(path), "bytes": found.size}
        else:
            summary = [
                {"backup": b.base_name, "takenAt": f"{b.taken_at:%Y-%m-%dT%H:%M:%SZ}",
                 "bytes": b.size}
                for b in reversed(store.backups())
            ]  # fmt: skip
    except (OSError, ValueError) as exc:  # FileNotFoundError included
        print(f"fraudpipe-api backup {action}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2))
    return 0
