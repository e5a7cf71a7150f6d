"""`fraudpipe-api backup`: pg_dump files to and from a real S3-compatible server (versitygw), the
newest `keep` kept, and a real round trip through pg_dump and pg_restore on real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
from pathlib import Path
from typing import BinaryIO

import asyncpg
import orjson
import pytest

from fraudpipe_api.backup import (
    BackupStore,
    StoredBackup,
    backup_name,
    parse_backup_name,
    to_delete,
)
from fraudpipe_api.pgservice import ServiceFileError, service_file
from fraudpipe_common.archive.layout import ArchiveLocation
from fraudpipe_testing.stack.services.s3 import s3_settings

from .harness import API, alert_row, insert_alerts, migrate, run

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
T0 = dt.datetime(2026, 12, 1, 2, 0, 5, tzinfo=dt.UTC)
# What a custom-format dump starts with, then anything: the store never reads further.
FAKE_DUMP = b"PGDMP\x01\x0f\x00" + b"x" * 100


def at(days: int) -> dt.datetime:
    return T0 + dt.timedelta(days=days)


def store_of(uri: str, s3_env: dict[str, str], name: str = "payments") -> BackupStore:
    return BackupStore(ArchiveLocation.parse(uri), name, s3_settings(s3_env).filesystem())


def dump_file(tmp_path: Path, name: str, content: bytes = FAKE_DUMP) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


# -- names and what to keep (pure) ---------------------------------------------------------------
def test_a_name_says_whose_backup_it_is_and_when_it_was_taken() -> None:
    name = backup_name("payments", T0)
    assert name == "payments-20261201T020005Z.dump"
    assert parse_backup_name("payments", name) == T0
    # Another pipeline whose name starts the same is not this one's, nor is anything else.
    assert parse_backup_name("payments", backup_name("payments-eu", T0)) is None
    assert parse_backup_name("payments", "payments-20261201T020005Z.dump.partial") is None
    assert parse_backup_name("payments", "notes.txt") is None


def test_only_the_newest_are_kept_whatever_order_they_are_listed_in() -> None:
    backups = [StoredBackup(f"b/{d}", at(d), 1) for d in (3, 0, 4, 1, 2)]
    assert [b.taken_at for b in to_delete(backups, 2)] == [at(2), at(1), at(0)]
    assert to_delete(backups, 5) == []


# -- against S3 -----------------------------------------------------------------------------------
@pytest.mark.s3
def test_uploads_keep_the_newest_and_leave_other_pipelines_backups_alone(
    s3_archive_uri: str, s3_env: dict[str, str], tmp_path: Path
) -> None:
    uri = f"{s3_archive_uri}/backups/postgres"
    payments, other = store_of(uri, s3_env), store_of(uri, s3_env, "payments-eu")
    other.upload(dump_file(tmp_path, "other.dump"), at(0))
    for day in range(4):
        payments.upload(dump_file(tmp_path, f"{day}.dump", FAKE_DUMP + bytes([day])), at(day))
        payments.prune(keep=2)
    assert [b.taken_at for b in payments.backups()] == [at(2), at(3)]
    assert [b.taken_at for b in other.backups()] == [at(0)]

    newest = payments.find(None)
    assert newest.base_name == "payments-20261204T020005Z.dump"
    out = tmp_path / "restore" / "fraudpipe.dump"
    out.parent.mkdir()
    payments.download(newest, out)
    assert out.read_bytes() == FAKE_DUMP + bytes([3])
    assert not out.with_name("fraudpipe.dump.partial").exists()
    payments.download(payments.find("payments-20261203T020005Z.dump"), out)
    assert out.read_bytes() == FAKE_DUMP + bytes([2])


@pytest.mark.s3
def test_a_file_that_is_not_a_dump_is_refused_and_nothing_is_uploaded(
    s3_archive_uri: str, s3_env: dict[str, str], tmp_path: Path
) -> None:
    store = store_of(s3_archive_uri, s3_env)
    for content in (b"", b"-- PostgreSQL database dump\n"):  # a failed dump, a plain one
        with pytest.raises(ValueError, match="not a pg_dump custom-format file"):
            store.upload(dump_file(tmp_path, "bad.dump", content), T0)
    assert store.backups() == []


@pytest.mark.s3
def test_an_upload_cut_short_leaves_no_object_that_could_pass_for_a_backup(
    s3_archive_uri: str, s3_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = store_of(s3_archive_uri, s3_env)
    store.upload(dump_file(tmp_path, "good.dump"), at(0))

    def half_then_fail(source: BinaryIO, target: BinaryIO, length: int = 0) -> None:
        target.write(source.read(len(FAKE_DUMP) // 2))
        raise OSError("disk read error")

    monkeypatch.setattr(shutil, "copyfileobj", half_then_fail)
    with pytest.raises(OSError, match="disk read error"):
        store.upload(dump_file(tmp_path, "cut.dump"), at(1))
    # pyarrow stored the half it was given when its stream closed; the upload removed it.
    assert [b.taken_at for b in store.backups()] == [at(0)]


@pytest.mark.s3
def test_a_retried_upload_of_a_stored_dump_writes_nothing_so_cannot_lose_it(
    s3_archive_uri: str, s3_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Job restarts its upload container when the prune after a good upload fails: the
    same dump (same time, same key) is found stored, and a failure now cannot delete it."""
    store = store_of(s3_archive_uri, s3_env)
    dump = dump_file(tmp_path, "fraudpipe.dump")
    first = store.upload(dump, at(0))

    def fail(source: BinaryIO, target: BinaryIO, length: int = 0) -> None:
        raise OSError("disk read error")

    monkeypatch.setattr(shutil, "copyfileobj", fail)
    assert store.upload(dump, at(0)) == first
    assert [(b.taken_at, b.size) for b in store.backups()] == [(at(0), len(FAKE_DUMP))]


@pytest.mark.s3
def test_asking_for_a_backup_that_is_not_there_says_where_it_looked(
    s3_archive_uri: str, s3_env: dict[str, str]
) -> None:
    with pytest.raises(FileNotFoundError, match="backup list"):
        store_of(s3_archive_uri, s3_env).find(None)


# -- the round trip --------------------------------------------------------------------------------
def backup_command(
    *args: str, uri: str, s3_env: dict[str, str], keep: int = 7
) -> subprocess.CompletedProcess[str]:
    env = os.environ | s3_env | {
        "BACKUP_URI": uri, "BACKUP_NAME": "payments", "BACKUP_KEEP": str(keep),
    }  # fmt: skip
    return subprocess.run(
        [API, "backup", *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def pg(tool: str, *args: str, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(
        [str(PG_BIN / tool), *args],
        env=os.environ | (env or {}),
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


async def rows(database_url: str) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    conn = await asyncpg.connect(database_url)
    try:
        alerts = await conn.fetch("SELECT * FROM alerts ORDER BY tx_id")
        feedback = await conn.fetch("SELECT * FROM feedback ORDER BY id")
    finally:
        await conn.close()
    return [tuple(r) for r in alerts], [tuple(r) for r in feedback]


async def alerts_with_feedback(database_url: str) -> None:
    await migrate(database_url)
    await insert_alerts(database_url, [alert_row(f"tx-{i:03}") for i in range(40)])
    conn = await asyncpg.connect(database_url)
    try:
        await conn.executemany(
            "INSERT INTO feedback (tx_id, label, analyst) VALUES ($1, $2, 'ann')",
            [(f"tx-{i:03}", "fraud" if i % 2 else "legit") for i in range(0, 40, 3)],
        )
    finally:
        await conn.close()


async def lose_everything(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("DELETE FROM feedback; DELETE FROM alerts")
    finally:
        await conn.close()


@pytest.mark.postgres
@pytest.mark.s3
def test_a_database_dumped_uploaded_downloaded_and_restored_has_exactly_its_rows_back(
    database_url: str, s3_archive_uri: str, s3_env: dict[str, str], tmp_path: Path
) -> None:
    """The commands of docs/runbooks.md, in order, against real servers."""
    run(alerts_with_feedback(database_url))
    before = run(rows(database_url))
    assert len(before[0]) == 40
    assert len(before[1]) == 14

    # As the CronJob dumps: the connection in a service file, nothing of it in pg_dump's argv.
    service = tmp_path / "pg_service.conf"
    written = subprocess.run(
        [API, "pg-service", "--out", str(service)],
        env=os.environ | {"DATABASE_URL": database_url},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert written.returncode == 0, written.stderr
    assert service.stat().st_mode & 0o077 == 0  # the password's file is the owner's alone
    dump = tmp_path / "fraudpipe.dump"
    pg(
        "pg_dump", "--format=custom", "--compress=6", f"--file={dump}",
        env={"PGSERVICEFILE": str(service), "PGSERVICE": "fraudpipe"},
    )  # fmt: skip
    uri = f"{s3_archive_uri}/backups/postgres"
    uploaded = backup_command("upload", str(dump), uri=uri, s3_env=s3_env)
    assert uploaded.returncode == 0, uploaded.stderr
    summary = orjson.loads(uploaded.stdout)
    assert summary["uploaded"].startswith(f"{uri}/payments-")
    assert summary["bytes"] == dump.stat().st_size
    assert summary["deleted"] == []

    run(lose_everything(database_url))
    assert run(rows(database_url)) == ([], [])

    listed = backup_command("list", uri=uri, s3_env=s3_env)
    assert [b["backup"] for b in orjson.loads(listed.stdout)] == [
        summary["uploaded"].rsplit("/", 1)[-1]
    ]
    restored = tmp_path / "restore" / "fraudpipe.dump"
    restored.parent.mkdir()
    downloaded = backup_command("download", "--out", str(restored), uri=uri, s3_env=s3_env)
    assert downloaded.returncode == 0, downloaded.stderr
    assert restored.read_bytes() == dump.read_bytes()
    pg(
        "pg_restore", "--clean", "--if-exists", "--no-owner", "--single-transaction",
        "--exit-on-error", f"--dbname={database_url}", str(restored),
    )  # fmt: skip
    assert run(rows(database_url)) == before


def test_a_service_file_holds_every_part_of_the_url_decoded() -> None:
    url = "postgresql://fraud%40pipe:p%3Ass%20w@db.example.com:6432/alerts?sslmode=verify-full"
    assert service_file(url) == (
        "[fraudpipe]\nhost=db.example.com\nport=6432\nuser=fraud@pipe\npassword=p:ss w\n"
        "dbname=alerts\nsslmode=verify-full\n"
    )
    with pytest.raises(ServiceFileError, match="line break"):
        service_file("postgresql://u:a%0Ab@db/x")
    with pytest.raises(ServiceFileError, match="postgresql://"):
        service_file("mysql://u:p@db/x")


@pytest.mark.s3
def test_download_with_nothing_there_fails_and_says_what_to_check(
    s3_archive_uri: str, s3_env: dict[str, str], tmp_path: Path
) -> None:
    done = backup_command("download", "--out", str(tmp_path / "x.dump"), uri=s3_archive_uri,
                          s3_env=s3_env)  # fmt: skip
    assert done.returncode == 1
    assert "BACKUP_URI" in done.stderr
    assert not (tmp_path / "x.dump").exists()


def test_upload_without_its_settings_is_a_configuration_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKUP_")}
    done = subprocess.run(
        [API, "backup", "upload", str(dump_file(tmp_path, "d.dump"))],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "invalid configuration" in done.stderr
    assert "uri" in done.stderr
