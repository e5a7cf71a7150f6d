"""`fraudpipe-produce`: send synthetic or replayed transactions to transactions.v1.

Examples:
  fraudpipe-produce --rps 200 --duration 60 --labels-to labels.jsonl
  fraudpipe-produce --rps 0 --count 1000000 --partitions 12        # as fast as possible
  fraudpipe-produce --from-csv paysim.csv --csv-format paysim \\
      --labels-to kafka:transactions.v1.labels
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from fraudpipe_common.kafka import KafkaSettings, TopicSettings
from fraudpipe_common.synthetic import PopulationConfig, TrafficConfig, generate
from fraudpipe_producer.csv_adapters import FORMATS, CsvOptions, CsvReport, read_csv
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


def parse_args(
    argv: list[str] | None, defaults: ProducerSettings, topics: TopicSettings
) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="fraudpipe-produce",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--rps", type=float, default=defaults.rps, help="transactions per second (0 = unlimited)"
    )
    stop = parser.add_mutually_exclusive_group()
    stop.add_argument("--count", type=int, help="stop after this many transactions")
    stop.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--fraud-rate", type=float, default=defaults.fraud_rate)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--users", type=int, default=defaults.users, help="simulated population size"
    )
    parser.add_argument("--topic", default=topics.transactions_topic)
    parser.add_argument(
        "--partitions", type=int, help="create the topic with N partitions if it is missing"
    )
    parser.add_argument(
        "--labels-to", help="a JSON-lines file, or kafka:TOPIC (never the scored topic)"
    )
    parser.add_argument(
        "--from-csv", type=Path, help="replay a CSV file instead of generating traffic"
    )
    parser.add_argument("--csv-format", choices=FORMATS, help="layout of --from-csv")
    parser.add_argument(
        "--csv-country", default="US", help="country for CSV rows (the files have none)"
    )
    parser.add_argument("--csv-currency", default="USD", help="currency for PaySim rows")
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress line (default: when stderr is a terminal)",
    )
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=10.0,
        help="seconds to wait for the broker before giving up",
    )
    parser.add_argument("--verbose", action="store_true", help="show librdkafka's own log")
    args = parser.parse_args(argv)
    if args.from_csv and not args.csv_format:
        parser.error("--from-csv needs --csv-format (paysim or kaggle)")
    if not 0 <= args.fraud_rate <= 0.5:
        parser.error("--fraud-rate must be between 0 and 0.5")
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


def run(args: argparse.Namespace, kafka: KafkaSettings) -> int:
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.CRITICAL,
        format="%(levelname)s %(name)s: %(message)s",
    )
    sink = KafkaSink(kafka, connect_timeout_s=args.connect_timeout)
    sink.ensure_topic(args.topic, create_partitions=args.partitions)
    labels = open_labels(args.labels_to, sink)
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
    sent = fraud = 0
    step = max(1, min(1000, int(args.rps // 20) or 1)) if args.rps > 0 else 1000
    for message, is_fraud, scenario in source:
        if stopping or (args.count is not None and sent >= args.count):
            break
        sink.send(
            args.topic, message["user_id"].encode(), orjson.dumps(message), headers=SCHEMA_HEADERS
        )
        if labels is not None:
            labels.write(
                message["tx_id"],
                orjson.dumps(
                    {"tx_id": message["tx_id"], "is_fraud": is_fraud, "scenario": scenario}
                ),
            )
        sent += 1
        fraud += is_fraud
        if sent % step == 0:
            limiter.acquire(step)
            progress.update(sent, sink.errors, fraud)
            if deadline is not None and time.monotonic() >= deadline:
                break
    undelivered = sink.flush()
    if labels is not None:
        labels.close()
    print(progress.finish(sent, sink.errors + undelivered, fraud), file=sys.stderr)
    if report.rows:
        print(f"CSV: {report.rows:,} rows read, {report.rejected:,} rejected", file=sys.stderr)
        for problem in report.problems:
            print(f"  {problem}", file=sys.stderr)
    if sink.errors or undelivered:
        print(
            f"fraudpipe-produce: {sink.errors + undelivered} transactions were not delivered "
            f"(last error: {sink.last_error or 'timed out'})",
            file=sys.stderr,
        )
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        defaults, topics = ProducerSettings(), TopicSettings()
        args = parse_args(argv, defaults, topics)
        kafka = KafkaSettings()  # type: ignore[call-arg]  # read from the environment
    except ValidationError as exc:
        print(f"fraudpipe-produce: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    try:
        return run(args, kafka)
    except ProducerError as exc:
        print(f"fraudpipe-produce: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"fraudpipe-produce: {exc.filename}: no such file", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
