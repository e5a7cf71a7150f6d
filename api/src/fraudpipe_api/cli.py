"""`fraudpipe-api [serve]` serves the API; `fraudpipe-api hash-key [TOKEN]` prints a key line
(a new token when none is given) for API_KEYS_FILE; `fraudpipe-api notify` runs the webhook
notifier (fraudpipe_api.notify); `fraudpipe-api report --date D` prints a day's report;
`fraudpipe-api retention` deletes alerts and feedback past their retention
(fraudpipe_api.retention); `fraudpipe-api backup upload|list|download` moves PostgreSQL dumps
to and from S3 (fraudpipe_api.backup)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pydantic
import uvicorn

from fraudpipe_api.auth import KeyFileError, hash_key, new_token


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fraudpipe-api",
        description="Alerts, decisions, scoring and feedback over HTTP (configured by the "
        "environment: docs/configuration.md).",
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="serve the API (the default)")
    keys = commands.add_parser("hash-key", help="print an API_KEYS_FILE line for a token")
    keys.add_argument("token", nargs="?", help="the key to hash (default: a new random one)")
    keys.add_argument("--scope", choices=["read", "write"], default="read")
    keys.add_argument("--name", default="", help="a name shown in 403 messages")
    commands.add_parser(
        "notify", help="post BLOCK decisions and alert-rate spikes to NOTIFY_WEBHOOK_URL"
    )
    commands.add_parser(
        "archive",
        help="archive decisions.v1 and the labels topic to ARCHIVE_URI as hourly Parquet",
    )
    report = commands.add_parser(
        "report", help="one UTC day: decisions, alert rate, precision, top rules (stdout)"
    )
    report.add_argument("--date", help="YYYY-MM-DD, today or yesterday (default: yesterday)")
    report.add_argument("--output", choices=["json", "text"], default="json")
    report.add_argument("--top", type=int, default=10, help="how many rules to list")
    retention = commands.add_parser(
        "retention",
        help="delete alerts and feedback older than their retention, in short batches "
        "(JSON summary on stdout)",
    )
    retention.add_argument(
        "--alerts-days",
        type=int,
        help="alerts older than this go, unless labelled (default: RETENTION_ALERTS_DAYS)",
    )
    retention.add_argument(
        "--feedback-days",
        type=int,
        help="feedback older than this goes (default: RETENTION_FEEDBACK_DAYS)",
    )
    retention.add_argument(
        "--batch-size", type=int, help="rows per DELETE (default: RETENTION_BATCH_SIZE, 1000)"
    )
    backup = commands.add_parser(
        "backup", help="PostgreSQL dumps (pg_dump --format=custom) in S3, at BACKUP_URI"
    )
    backup_actions = backup.add_subparsers(dest="action", required=True)
    upload = backup_actions.add_parser(
        "upload", help="upload a dump as <BACKUP_NAME>-<time>.dump, keep the BACKUP_KEEP newest"
    )
    upload.add_argument("file", type=Path, help="the pg_dump --format=custom file")
    backup_actions.add_parser("list", help="this BACKUP_NAME's backups, newest first (JSON)")
    download = backup_actions.add_parser("download", help="fetch a backup for pg_restore")
    download.add_argument("--out", type=Path, required=True, help="file to write")
    download.add_argument(
        "--backup", help="its name as `backup list` shows it (default: the newest)"
    )
    service = commands.add_parser(
        "pg-service", help="write DATABASE_URL as a libpq service file (for pg_dump)"
    )
    service.add_argument("--out", type=Path, required=True, help="the file to write (0600)")
    args = parser.parse_args(argv)
    if args.command == "notify":
        return _notify()
    if args.command == "archive":
        return _archive()
    if args.command == "pg-service":
        return _pg_service(args.out)
    if args.command == "backup":
        return _backup(
            args.action, getattr(args, "file", None) or getattr(args, "out", None),
            getattr(args, "backup", None),
        )  # fmt: skip
    if args.command == "report":
        return _report(args.date, args.output, args.top)
    if args.command == "retention":
        return _retention(args.alerts_days, args.feedback_days, args.batch_size)
    if args.command == "hash-key":
        token = args.token or new_token()
        if not args.token:
            print(f"token: {token}", file=sys.stderr)
        suffix = f":{args.name}" if args.name else ""
        print(f"{hash_key(token)}:{args.scope}{suffix}")
        return 0
    return _serve()


def _serve() -> int:
    from fraudpipe_api.app import create_app
    from fraudpipe_api.config import load_settings

    try:
        settings, kafka, topics, rules = load_settings()
        create_app(settings, kafka, topics, rules)  # fail here, once, on a bad configuration
    except pydantic.ValidationError as exc:
        print(f"fraudpipe-api: invalid configuration: {exc}", file=sys.stderr)
        return 2
    except (KeyFileError, OSError) as exc:
        print(f"fraudpipe-api: cannot read API keys: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        "fraudpipe_api.app:from_environment",
        factory=True,
        workers=settings.api_workers,
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
        access_log=False,
        proxy_headers=False,
    )
    return 0


def _notify() -> int:
    import asyncio

    from fraudpipe_api.notify import NotifySettings, run
    from fraudpipe_common.kafka import KafkaSettings, TopicSettings

    try:
        settings = NotifySettings()  # type: ignore[call-arg]  # from the environment
        kafka = KafkaSettings()  # type: ignore[call-arg]
    except pydantic.ValidationError as exc:
        print(f"fraudpipe-api notify: invalid configuration: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(run(settings, kafka, TopicSettings()))
    return 0


def _archive() -> int:
    import asyncio

    from fraudpipe_api.archive import ArchiveSettings, run
    from fraudpipe_common.archive.store import S3Settings
    from fraudpipe_common.kafka import KafkaSettings, TopicSettings

    try:
        settings = ArchiveSettings()  # type: ignore[call-arg]  # from the environment
        kafka = KafkaSettings()  # type: ignore[call-arg]
        s3 = S3Settings()
    except pydantic.ValidationError as exc:
        print(f"fraudpipe-api archive: invalid configuration: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(run(settings, kafka, TopicSettings(), s3))
    return 0


def _pg_service(out: Path) -> int:
    from fraudpipe_api.pgservice import ServiceFileError, main

    try:
        return main(out)
    except (ServiceFileError, OSError) as exc:
        print(f"fraudpipe-api pg-service: {exc}", file=sys.stderr)
        return 2


def _backup(action: str, path: Path | None, name: str | None) -> int:
    from fraudpipe_api.backup import main as backup

    try:
        return backup(action, path, name)
    except pydantic.ValidationError as exc:
        print(f"fraudpipe-api backup: invalid configuration: {exc}", file=sys.stderr)
        return 2


def _report(date: str | None, output: str, top: int) -> int:
    from fraudpipe_api.report import main as report

    try:
        return report(date, output, top)
    except pydantic.ValidationError as exc:
        print(f"fraudpipe-api report: invalid configuration: {exc}", file=sys.stderr)
        return 2


def _retention(alerts_days: int | None, feedback_days: int | None, batch_size: int | None) -> int:
    from fraudpipe_api.retention import main as retention

    try:
        return retention(alerts_days, feedback_days, batch_size)
    except pydantic.ValidationError as exc:
        print(f"fraudpipe-api retention: invalid configuration: {exc}", file=sys.stderr)
        return 2
