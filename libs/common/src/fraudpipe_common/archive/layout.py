"""Where archived records go (pure).

    <prefix>/<dataset>/dt=YYYY-MM-DD/hour=HH/p<partition>-<first offset>-<last offset>.parquet

One object holds a contiguous run of one Kafka partition's offsets whose records fall in one
UTC hour (offsets zero-padded to 20 digits, so names sort in offset order). A run is cut
wherever the hour changes, so every object belongs to exactly one hour directory even when a
partition's timestamps straddle an hour boundary. Because a name says which offsets its object
holds, the archiver can ask the store whether a run starting at an offset was already written
and skip to its end: a crash between the upload and the offset commit repeats no row.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

OFFSET_DIGITS = 20
T = TypeVar("T")


class DatasetName(StrEnum):
    DECISIONS = "decisions"
    LABELS = "labels"


@dataclass(frozen=True)
class ArchiveLocation:
    """`s3://bucket/prefix`: the bucket and the key prefix every object of the archive has."""

    bucket: str
    prefix: str  # without leading or trailing "/", may be empty

    @classmethod
    def parse(cls, uri: str) -> ArchiveLocation:
        match = re.fullmatch(r"s3://([a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])(/.*)?", uri.strip())
        if match is None:
            raise ValueError(
                f"{uri!r} is not an archive location: expected s3://BUCKET[/PREFIX] with a "
                "lower-case S3 bucket name"
            )
        return cls(match.group(1), (match.group(2) or "").strip("/"))

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def dataset_path(self, dataset: DatasetName) -> str:
        """`bucket/prefix/dataset`: the path pyarrow's S3 filesystem takes."""
        return "/".join(part for part in (self.bucket, self.prefix, dataset.value) if part)

    def hour_path(self, dataset: DatasetName, hour: dt.datetime) -> str:
        return f"{self.dataset_path(dataset)}/dt={hour:%Y-%m-%d}/hour={hour:%H}"


@dataclass(frozen=True)
class Run:
    """Records `start:stop` of a partition's window: consecutive offsets within one hour."""

    partition: int
    hour: dt.datetime
    first_offset: int
    last_offset: int
    start: int
    stop: int

    @property
    def name_prefix(self) -> str:
        """What every object starting at this run's first offset is named with."""
        return f"p{self.partition}-{self.first_offset:0{OFFSET_DIGITS}d}-"

    @property
    def object_name(self) -> str:
        return f"{self.name_prefix}{self.last_offset:0{OFFSET_DIGITS}d}.parquet"


def hour_of(ts: dt.datetime) -> dt.datetime:
    """The UTC hour `ts` falls in (naive timestamps are taken as UTC)."""
    utc = ts.astimezone(dt.UTC) if ts.tzinfo else ts.replace(tzinfo=dt.UTC)
    return utc.replace(minute=0, second=0, microsecond=0)


def split_runs(
    partition: int,
    records: Sequence[T],
    offset: Callable[[T], int],
    timestamp: Callable[[T], dt.datetime],
) -> list[Run]:
    """Cut `records` (one partition's, in offset order) into runs of one hour each."""
    runs: list[Run] = []
    start = 0
    for i in range(1, len(records) + 1):
        if i < len(records) and hour_of(timestamp(records[i])) == hour_of(
            timestamp(records[start])
        ):
            continue
        runs.append(
            Run(
                partition,
                hour_of(timestamp(records[start])),
                offset(records[start]),
                offset(records[i - 1]),
                start,
                i,
            )
        )
        start = i
    return runs


_OBJECT_NAME = re.compile(rf"p(\d+)-(\d{{{OFFSET_DIGITS}}})-(\d{{{OFFSET_DIGITS}}})\.parquet")


def offsets_of(object_name: str) -> tuple[int, int, int] | None:
    """(partition, first offset, last offset) of an archived object's name, else None."""
    match = _OBJECT_NAME.fullmatch(object_name.rsplit("/", 1)[-1])
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def last_offset_of(object_name: str) -> int:
    """The last offset an archived object holds, read from its name."""
    match = _OBJECT_NAME.fullmatch(object_name.rsplit("/", 1)[-1])
    if match is None:
        raise ValueError(f"{object_name!r} is not named like an archived run")
    return int(match.group(3))
