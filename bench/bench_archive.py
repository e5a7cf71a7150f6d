"""The archive's CPU side: what the archiver spends per decision to make Parquet, and what the
reader's one-row-per-record guard costs against reading the rows as stored.

Writer: decode decisions.v1 JSON (`Decision.from_json`, the archiver's first step, shown as
the baseline it pays anyway), then build the window's Arrow table and encode it as zstd
Parquet (`decisions_table` + `pq.write_table`), in windows of `--window` records.
Reader: `ArchiveStore.read` over `--objects` objects on the local filesystem (no network, so
the difference is the guard's own work): as stored (`once_per_record=False`, the baseline),
then with the guard, on objects holding each record once and with 5 % written twice.

    uv run python bench/bench_archive.py [--records 200000] [--window 2000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from bench_decode import best_of  # bench/ is on the path of a bench run

from fraudpipe_common.archive.layout import ArchiveLocation, DatasetName, Run
from fraudpipe_common.archive.store import ArchiveStore
from fraudpipe_common.archive.tables import ArchivedDecision, decisions_table
from fraudpipe_common.contracts.decisions import Decision, Reason, Track, Verdict
from fraudpipe_common.features import FEATURE_NAMES

H10 = dt.datetime(2026, 12, 5, 10, 0, tzinfo=dt.UTC)
DIGEST = "sha256:" + "ab" * 32


def decision(i: int, rng: random.Random) -> Decision:
    """Feature values drawn at random: real ones compress about as badly."""
    decided = H10 + dt.timedelta(milliseconds=10 * i)
    verdict = Verdict.BLOCK if i % 50 == 0 else Verdict.FLAG if i % 20 == 0 else Verdict.APPROVE
    return Decision(
        tx_id=f"tx-{i:08d}",
        user_id=f"user-{i % 5000}",
        decision=verdict,
        score=round(rng.random(), 6),
        model_digest=DIGEST,
        track=Track.STABLE,
        reasons=[Reason(code="model_score", detail="score above the flag threshold")],
        features={name: round(rng.lognormvariate(3, 1.5), 4) for name in FEATURE_NAMES},
        event_ts=decided - dt.timedelta(milliseconds=40),
        decided_ts=decided,
    )


def write_objects(store: ArchiveStore, records: list[ArchivedDecision], per_object: int,
                  twice_every: int | None) -> int:  # fmt: skip
    """Objects of `per_object` consecutive records, each run of the hour's one partition; with
    `twice_every`, every n-th object is followed by one that repeats its last 5 %."""
    rows = 0
    for n, start in enumerate(range(0, len(records), per_object)):
        window = records[start : start + per_object]
        windows = [window]
        if twice_every and n % twice_every == 0:
            windows.append(window[-max(1, len(window) // 20) :])
        for chunk in windows:
            first, last = chunk[0].offset, chunk[-1].offset
            run = Run(0, H10, first, last, 0, len(chunk))
            store.put(DatasetName.DECISIONS, run, decisions_table(chunk))
            rows += len(chunk)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--window", type=int, default=2_000)
    args = parser.parse_args()
    rng = random.Random(7)  # noqa: S311 (benchmark data, not a secret)
    made = [decision(i, rng) for i in range(args.records)]
    payloads = [d.to_json() for d in made]
    records = [ArchivedDecision(0, i, d) for i, d in enumerate(made)]

    windows = [records[i : i + args.window] for i in range(0, len(records), args.window)]

    def decode_only() -> None:
        for data in payloads:
            Decision.from_json(data)

    parquet_bytes = [0]

    def table_and_parquet() -> None:
        parquet_bytes[0] = 0
        for window in windows:
            sink = pa.BufferOutputStream()
            pq.write_table(decisions_table(window), sink, compression="zstd")
            parquet_bytes[0] += sink.tell()

    print("| archiver step | µs per decision | decisions/s |\n|---|---|---|")
    for name, work in (
        ("Decision.from_json (baseline: decoding it)", decode_only),
        (f"Arrow table + zstd Parquet, windows of {args.window}", table_and_parquet),
    ):
        seconds = best_of(3, work)
        print(f"| {name} | {seconds / args.records * 1e6:.1f} | {args.records / seconds:,.0f} |")
    json_bytes = sum(len(p) for p in payloads)
    print(f"\nStored: {parquet_bytes[0] / args.records:.0f} bytes a decision in Parquet "
          f"against {json_bytes / args.records:.0f} in decisions.v1 JSON.")  # fmt: skip

    print("\n| read of the archive | rows stored | rows read | ms | vs as stored |")
    print("|---|---|---|---|---|")
    for label, twice_every in (("each record once", None), ("5 % of records twice", 1)):
        with tempfile.TemporaryDirectory() as root:
            read_rows(label, Path(root), records, args.window, twice_every)


def read_rows(label: str, root: Path, records: list[ArchivedDecision], per_object: int,
              twice_every: int | None) -> None:  # fmt: skip
    filesystem = pafs.SubTreeFileSystem(str(root), pafs.LocalFileSystem())
    store = ArchiveStore(ArchiveLocation.parse("s3://bench/archive"), filesystem)
    filesystem.create_dir(store.location.hour_path(DatasetName.DECISIONS, H10), recursive=True)
    stored = write_objects(store, records, per_object, twice_every)
    raw = best_of(3, lambda: store.read(DatasetName.DECISIONS, once_per_record=False))
    guarded = best_of(3, lambda: store.read(DatasetName.DECISIONS))
    read = store.read(DatasetName.DECISIONS).num_rows
    assert read == len(records), (read, len(records))
    print(f"| {label}, as stored (baseline) | {stored:,} | {stored:,} | {raw * 1e3:.0f} | 1.00 |")
    print(f"| {label}, one row per record | {stored:,} | {read:,} | {guarded * 1e3:.0f} "
          f"| {guarded / raw:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
