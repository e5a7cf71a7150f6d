"""The archive's layout: where a run of offsets goes and what its object is called (pure)."""

from __future__ import annotations

import datetime as dt

import pytest

from fraudpipe_common.archive.layout import (
    ArchiveLocation,
    DatasetName,
    hour_of,
    last_offset_of,
    split_runs,
)

H10 = dt.datetime(2025, 3, 1, 10, 0, tzinfo=dt.UTC)


def test_location_parses_bucket_and_prefix_and_refuses_what_is_not_s3() -> None:
    assert ArchiveLocation.parse("s3://fraud-archive/prod/eu/") == ArchiveLocation(
        "fraud-archive", "prod/eu"
    )
    assert ArchiveLocation.parse("s3://fraud-archive").dataset_path(DatasetName.LABELS) == (
        "fraud-archive/labels"
    )
    for bad in ("fraud-archive/prod", "s3://Upper/x", "gs://bucket/x"):
        with pytest.raises(ValueError, match=r"expected s3://BUCKET\[/PREFIX\]"):
            ArchiveLocation.parse(bad)


def test_runs_are_cut_where_the_hour_changes_and_named_by_their_offsets() -> None:
    stamps = [
        (7, H10 + dt.timedelta(minutes=58)),
        (8, H10 + dt.timedelta(minutes=59)),
        (10, H10 + dt.timedelta(hours=1, seconds=1)),  # a gap: a transaction marker at 9
        (11, H10 + dt.timedelta(minutes=59, seconds=59)),  # late: back in hour 10
    ]
    runs = split_runs(3, stamps, lambda s: s[0], lambda s: s[1])
    assert [(r.hour.hour, r.first_offset, r.last_offset, r.start, r.stop) for r in runs] == [
        (10, 7, 8, 0, 2),
        (11, 10, 10, 2, 3),
        (10, 11, 11, 3, 4),
    ]
    location = ArchiveLocation("bucket", "pre")
    assert location.hour_path(DatasetName.DECISIONS, runs[1].hour) == (
        "bucket/pre/decisions/dt=2025-03-01/hour=11"
    )
    assert runs[0].object_name == "p3-00000000000000000007-00000000000000000008.parquet"
    assert runs[0].object_name.startswith(runs[0].name_prefix)
    assert last_offset_of(f"bucket/pre/x/{runs[0].object_name}") == 8


def test_names_sort_in_offset_order() -> None:
    names = [
        split_runs(0, [(o, H10)], lambda s: s[0], lambda s: s[1])[0].object_name
        for o in (9, 10, 100, 2**40)
    ]
    assert sorted(names) == names


def test_hours_are_utc_whatever_the_offset_of_the_timestamp() -> None:
    paris = dt.timezone(dt.timedelta(hours=1))
    assert hour_of(dt.datetime(2025, 3, 1, 0, 30, tzinfo=paris)) == dt.datetime(
        2025, 2, 28, 23, tzinfo=dt.UTC
    )


def test_a_foreign_object_name_is_refused() -> None:
    with pytest.raises(ValueError, match="not named like an archived run"):
        last_offset_of("bucket/pre/decisions/dt=2025-03-01/hour=10/notes.txt")
