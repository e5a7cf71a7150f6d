"""`fraudpipe-produce`: send synthetic or replayed transactions to transactions.v1.

Examples:
  fraudpipe-produce --rps 200 --duration 60 --labels-to labels.jsonl
  fraudpipe-produce --rps 0 --count 1000000 --partitions 12        # as fast as possible
  fraudpipe-produce --from-csv paysim.csv --csv-format paysim \\
      --labels-to kafka:transactions.v1.labels

Labels are written when their transaction is queued, not when the broker confirms it: after
delivery errors, some labels name transactions that never arrived (the summary says how many
were written and how many transactions failed).

Synthetic tx_ids carry a fresh run id, so two runs never share one; --deterministic-ids leaves
it out to replay the very same ids. CSV tx_ids are derived from the file (see csv_adapters).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import math
import re
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import orjson
from pydantic import ValidationError

from fraudpipe_common.contracts import transactions_avro
from fraudpipe_common.contracts.labels import Label
from fraudpipe_common.kafka import KafkaSettings, TopicSettings
from fraudpipe_common.schema_registry import SchemaRegistryError
from fraudpipe_common.synthetic import PopulationConfig, TrafficConfig, generate
from fraudpipe_producer.csv_adapters import FORMATS, CsvOptions, CsvReport, read_csv
from fraudpipe_producer.metrics import ProducerMetrics
from fraudpipe_producer.pacing import RateLimiter
from fraudpipe_producer.progress import Progress
from fraudpipe_producer.settings import ProducerSettings
from fraudpipe_producer.sinks import (
    SCHEMA_HEADERS,
    FileLabelSink,
    KafkaSink,
    LabelSink,
    ProducerError,
    TopicLabelSink,
)

Outgoing = tuple[dict[str, Any], bool, str | None]  # message, is_fraud, scenario
PROG = "fraudpipe-produce"
# What to do when a variable without a default is not set.
HOW_TO_SET = {"KAFKA_BOOTSTRAP_SERVERS": ' (e.g. eval "$(hack/stack env)")'}


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line that names the flag, rather than argparse's usage block.
        self.exit(2, f"{PROG}: {message.removeprefix('argument ')} (see {PROG} --help)\n")


def positive(kind: type[int] | type[float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            whole = "whole " if kind is int else ""
            raise argparse.ArgumentTypeError(f"must be a {whole}number, not {text!r}") from None
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be greater than 0, not {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def code(letters: int, standard: str, example: str) -> Callable[[str], str]:
    pattern = re.compile(f"[A-Z]{{{letters}}}")

    def parse(text: str) -> str:
        if not pattern.fullmatch(text):
            raise argparse.ArgumentTypeError(
                f"must be an {standard} code such as {example}, not {text!r}"
            )
        return text

    return parse


def describe(exc: ValidationError, name_of: Callable[[str], str]) -> str:
    """A pydantic error as one line, naming the flag or variable the user has to change."""
    problems = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        message = message.replace("Input should be", "must be")
        if not field:
            problems.append(message)
        elif error["type"] == "missing":
            problems.append(f"set {name_of(field)}{HOW_TO_SET.get(name_of(field), '')}")
        else:
            problems.append(f"{name_of(field)}: {message}, not {error['input']!r}")
    return "; ".join(problems)


def parse_args(
    argv: list[str] | None, defaults: ProducerSettings, topics: TopicSettings
) -> argparse.Namespace:
    parser = Parser(
        prog=PROG,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--rps", type=float, default=defaults.rps, help="transactions per second (0 = unlimited)"
    )
    stop = parser.add_mutually_exclusive_group()
    stop.add_argument("--count", type=positive(int), help="stop after this many transactions")
    stop.add_argument("--duration", type=positive(float), help="stop after this many seconds")
    parser.add_argument("--fraud-rate", type=float, default=defaults.fraud_rate)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--users", type=int, default=defaults.users, help="simulated population size"
    )
    parser.add_argument("--topic", default=topics.transactions_topic)
    parser.add_argument(
        "--format",
        choices=["json", "avro"],
        default=topics.transactions_format,
        help="json, or avro in the Confluent wire format (default: TRANSACTIONS_FORMAT)",
    )
    parser.add_argument(
        "--schema-registry",
        default=topics.schema_registry_url,
        help="schema registry URL for --format avro (default: SCHEMA_REGISTRY_URL); the "
        "schema is registered under <topic>-value with BACKWARD compatibility",
    )
    parser.add_argument(
        "--deterministic-ids",
        action="store_true",
        help="no run id in tx_ids: the same seed gives the same ids (replays)",
    )
    parser.add_argument(
        "--partitions",
        type=positive(int),
        help="create the topic with N partitions if it is missing (an existing topic keeps "
        "its own count, with a warning if it differs)",
    )
    parser.add_argument(
        "--labels-to", help="a JSON-lines file, or kafka:TOPIC (never the scored topic)"
    )
    parser.add_argument(
        "--from-csv", type=Path, help="replay a CSV file instead of generating traffic"
    )
    parser.add_argument("--csv-format", choices=FORMATS, help="layout of --from-csv")
    parser.add_argument(
        "--csv-country",
        type=code(2, "ISO 3166 alpha-2", "US"),
        default="US",
        help="country for CSV rows (the files have none)",
    )
    parser.add_argument(
        "--csv-currency",
        type=code(3, "ISO 4217", "USD"),
        default="USD",
        help="currency for PaySim rows",
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress line (default: when stderr is a terminal)",
    )
    parser.add_argument(
        "--connect-timeout",
        type=positive(float),
        default=10.0,
        help="seconds to wait for the broker before giving up",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=defaults.metrics_port,
        help="serve Prometheus /metrics on this port while running (0 = off)",
    )
    parser.add_argument("--verbose", action="store_true", help="show librdkafka's own log")
    args = parser.parse_args(argv)
    if args.from_csv and not args.csv_format:
        parser.error("--from-csv needs --csv-format (paysim or kaggle)")
    try:  # the flags that override settings obey the settings' bounds
        ProducerSettings(
            rps=args.rps,
            fraud_rate=args.fraud_rate,
            seed=args.seed,
            users=args.users,
            metrics_port=args.metrics_port,
        )
    except ValidationError as exc:
        parser.error(describe(exc, lambda field: "--" + field.replace("_", "-")))
    if args.labels_to and args.labels_to == f"kafka:{args.topic}":
        parser.error(
            "--labels-to must not be the scored topic: labels never travel with transactions"
        )
    return args


def synthetic(args: argparse.Namespace) -> Iterator[Outgoing]:
    config = TrafficConfig(
        population=PopulationConfig(users=args.users, seed=args.seed),
        fraud_rate=args.fraud_rate,
        start_ts=time.time(),
        seed=args.seed,
        run_id=None if args.deterministic_ids else uuid.uuid4().hex[:8],
    )
    for generated in generate(config):
        yield generated.message(), generated.is_fraud, generated.scenario


def replayed(args: argparse.Namespace, report: CsvReport) -> Iterator[Outgoing]:
    options = CsvOptions(
        format=args.csv_format, country=args.csv_country, currency=args.csv_currency
    )
    for message, label in read_csv(args.from_csv, options, report):
        yield message, label.is_fraud, label.scenario


def open_labels(target: str | None, sink: KafkaSink) -> LabelSink | None:
    if not target:
        return None
    if target.startswith("kafka:"):
        topic = target.removeprefix("kafka:")
        sink.ensure_topic(topic, create_partitions=1)
        return TopicLabelSink(sink, topic)
    return FileLabelSink(Path(target))


def message_encoder(args: argparse.Namespace) -> Callable[[dict[str, Any]], bytes]:
    """JSON, or Avro under the schema id the registry gives `SCHEMA` for the topic."""
    if args.format == "json":
        return orjson.dumps
    if not args.schema_registry:
        raise ProducerError("--format avro needs --schema-registry (or SCHEMA_REGISTRY_URL)")

    async def registered() -> int:
        # The flag's URL, with SCHEMA_REGISTRY_USERNAME/PASSWORD from the environment.
        topics = TopicSettings(transactions_format="avro", schema_registry_url=args.schema_registry)
        async with topics.schema_registry() as registry:
            return await transactions_avro.register(registry, args.topic)

    try:
        schema_id = asyncio.run(registered())
    except (SchemaRegistryError, ValidationError) as exc:
        raise ProducerError(f"cannot register the transactions.v1 schema: {exc}") from exc
    return functools.partial(transactions_avro.encode, schema_id)


def run(args: argparse.Namespace, kafka: KafkaSettings, metrics_host: str) -> int:
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.CRITICAL,
        format="%(levelname)s %(name)s: %(message)s",
    )
    sink = KafkaSink(kafka, connect_timeout_s=args.connect_timeout)
    partitions = sink.ensure_topic(args.topic, create_partitions=args.partitions)
    if args.partitions is not None and partitions != args.partitions:
        # Producing to it is still right (keys pick partitions); only the user's intent differs.
        print(
            f"{PROG}: warning: topic {args.topic!r} already exists with {partitions} "
            f"partitions, not {args.partitions}; --partitions only applies when the topic is "
            "created",
            file=sys.stderr,
        )
    encode = message_encoder(args)
    labels = open_labels(args.labels_to, sink)
    metrics = ProducerMetrics()
    if args.metrics_port:
        metrics.serve(args.metrics_port, metrics_host)
    report = CsvReport()
    source = replayed(args, report) if args.from_csv else synthetic(args)
    limiter, progress = RateLimiter(args.rps), Progress(enabled=args.progress)
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
    deadline = time.monotonic() + args.duration if args.duration else None
    sent = fraud = labels_written = 0
    step = max(1, min(1000, int(args.rps // 20) or 1)) if args.rps > 0 else 1000
    for message, is_fraud, scenario in source:
        if stopping or (args.count is not None and sent >= args.count):
            break
        sink.send(args.topic, message["user_id"].encode(), encode(message), headers=SCHEMA_HEADERS)
        if labels is not None:
            # At queue time, not on delivery: see the module docstring.
            label = Label(tx_id=message["tx_id"], is_fraud=is_fraud, scenario=scenario)
            labels.write(label.tx_id, label.to_json())
            labels_written += 1
        sent += 1
        fraud += is_fraud
        if sent % step == 0:
            limiter.acquire(step)
            progress.update(sent, sink.errors, fraud)
            metrics.update(sent, fraud, sink.errors)
            if deadline is not None and time.monotonic() >= deadline:
                break
    undelivered = sink.flush()
    metrics.update(sent, fraud, sink.errors + undelivered)
    if labels is not None:
        labels.close()
    summary = progress.finish(sent, sink.errors + undelivered, fraud)
    if labels is not None:
        summary += f"; {labels_written:,} labels written when queued"
    print(summary, file=sys.stderr)
    if report.rows:
        print(f"CSV: {report.rows:,} rows read, {report.rejected:,} rejected", file=sys.stderr)
        for problem in report.problems:
            print(f"  {problem}", file=sys.stderr)
    if sent == 0:
        print(f"{PROG}: nothing was sent: {nothing_sent_reason(args, report)}", file=sys.stderr)
        return 1
    if sink.errors or undelivered:
        written = " (their labels were written all the same)" if labels is not None else ""
        print(
            f"{PROG}: {sink.errors + undelivered} messages were not delivered{written} "
            f"(last error: {sink.last_error or 'timed out'})",
            file=sys.stderr,
        )
        return 1
    return 0


def nothing_sent_reason(args: argparse.Namespace, report: CsvReport) -> str:
    if not args.from_csv:
        return "stopped before the first transaction"
    if not report.rows:
        return f"{args.from_csv} has no data rows"
    return (
        f"every row of {args.from_csv} was rejected ({report.rows:,} read); "
        f"is --csv-format {args.csv_format} the file's layout?"
    )


def main(argv: list[str] | None = None) -> int:
    try:
        defaults = ProducerSettings()
    except ValidationError as exc:
        print(f"{PROG}: {describe(exc, lambda name: 'PRODUCER_' + name.upper())}", file=sys.stderr)
        return 2
    try:
        topics = TopicSettings()
    except ValidationError as exc:
        print(f"{PROG}: {describe(exc, str.upper)}", file=sys.stderr)
        return 2
    args = parse_args(argv, defaults, topics)
    try:
        kafka = KafkaSettings()  # type: ignore[call-arg]  # read from the environment
    except ValidationError as exc:
        print(f"{PROG}: {describe(exc, lambda name: 'KAFKA_' + name.upper())}", file=sys.stderr)
        return 2
    try:
        return run(args, kafka, defaults.metrics_host)
    except ProducerError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # --from-csv or --labels-to
        print(f"{PROG}: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
