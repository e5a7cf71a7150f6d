"""`fraudpipe-scorer [run]` serves; `fraudpipe-scorer migrate` applies the schema and exits."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import pydantic

from fraudpipe_common.model_artifact import ModelArtifactError
from fraudpipe_scorer.config import MigrateSettings, load_settings
from fraudpipe_scorer.migrate import migrate
from fraudpipe_scorer.service import Scorer
from fraudpipe_scorer.sinks import ProducerFencedError

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fraudpipe-scorer",
        description="Score transactions.v1 into decisions.v1 (configured by the environment: "
        "docs/configuration.md).",
    )
    parser.add_argument("command", nargs="?", choices=["run", "migrate"], default="run")
    args = parser.parse_args(argv)
    try:
        if args.command == "migrate":
            return _migrate()
        return _run()
    except pydantic.ValidationError as exc:
        print(f"fraudpipe-scorer: invalid configuration: {exc}", file=sys.stderr)
        return 2


def _migrate() -> int:
    only = MigrateSettings()  # type: ignore[call-arg]
    _logging(only.log_level)
    applied = asyncio.run(migrate(only.database_url))
    print(f"schema up to date ({len(applied)} migration(s) applied: {applied})")
    return 0


def _run() -> int:
    settings, kafka, topics, rules = load_settings()
    _logging(settings.log_level)
    scorer = Scorer(settings, kafka, topics, rules)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, scorer.stop)
        await scorer.run()

    try:
        asyncio.run(serve())
    except ModelArtifactError as exc:
        # A model that cannot be used never is: the scorer exits before it is ready.
        log.error("not starting: %s", exc)
        return 1
    except ProducerFencedError as exc:
        print(f"fraudpipe-scorer: fenced, exiting: {exc}", file=sys.stderr)
        return 1
    return 0


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
