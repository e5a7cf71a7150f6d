"""The archive's S3 side, through pyarrow's S3 filesystem (blocking: asyncio callers run it in a
thread).

Credentials and endpoint use the AWS SDKs' standard variables, so the same Secret serves this,
the aws CLI and any other S3 tool: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION and,
for anything but AWS itself (MinIO, Ceph, SeaweedFS, versitygw, …), AWS_ENDPOINT_URL.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from fraudpipe_common.archive.layout import (
    ArchiveLocation,
    DatasetName,
    Run,
    offsets_of,
)

# Every archived row says which record it came from (tables.SOURCE_COLUMNS).
RECORD_KEY = ["kafka_partition", "kafka_offset"]


class S3Settings(BaseSettings):
    """AWS_* variables (the AWS SDKs' own names)."""

    model_config = SettingsConfigDict(env_prefix="AWS_", extra="ignore")

    endpoint_url: str | None = Field(
        default=None,
        description="http(s)://host:port of an S3-compatible server; unset for AWS S3.",
    )
    region: str = Field(default="us-east-1", description="The bucket's region.")
    access_key_id: str | None = Field(default=None, description="Unset: the SDK's own chain.")
    secret_access_key: SecretStr | None = None

    def filesystem(self) -> pafs.S3FileSystem:
        options: dict[str, object] = {"region": self.region}
        if self.endpoint_url:
            endpoint = urlsplit(self.endpoint_url)
            if endpoint.scheme not in ("http", "https") or not endpoint.netloc:
                raise ValueError(
                    f"AWS_ENDPOINT_URL={self.endpoint_url!r}: expected http(s)://host[:port]"
                )
            # Path-style addressing (pyarrow's default with an endpoint): works with every
            # S3-compatible server, where virtual-host buckets need DNS for each bucket.
            options |= {"endpoint_override": endpoint.netloc, "scheme": endpoint.scheme}
        if self.access_key_id and self.secret_access_key:
            options |= {
                "access_key": self.access_key_id,
                "secret_key": self.secret_access_key.get_secret_value(),
            }
        return pafs.S3FileSystem(**options)


class ArchiveStore:
    """One archive location on one S3 filesystem."""

    def __init__(self, location: ArchiveLocation, filesystem: pafs.FileSystem) -> None:
        self.location = location
        self.fs = filesystem

    def archived_through(self, dataset: DatasetName, run: Run) -> int | None:
        """The last offset of an object already archived that holds `run`'s first offset
        (written by an owner that could not commit, in a window that may have started or
        ended elsewhere than this one), or None."""
        directory = self.location.hour_path(dataset, run.hour)
        listing = self.fs.get_file_info(pafs.FileSelector(directory, allow_not_found=True))
        found = [
            offsets[2]
            for info in listing
            if info.type == pafs.FileType.File
            and (offsets := offsets_of(info.base_name)) is not None
            and offsets[0] == run.partition
            and offsets[1] <= run.first_offset <= offsets[2]
        ]
        return max(found) if found else None

    def put(self, dataset: DatasetName, run: Run, table: pa.Table) -> str:
        """Write `table` as the run's object and return its key. The file is made in memory
        and sent in one upload: S3 shows an object only once its upload completed, so a
        reader or a crash never leaves half a file."""
        path = f"{self.location.hour_path(dataset, run.hour)}/{run.object_name}"
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        with self.fs.open_output_stream(
            path, metadata={"Content-Type": "application/parquet"}
        ) as out:
            out.write(sink.getvalue())
        return path

    def read_object(self, path: str) -> pa.Table:
        """One archived object (`bucket/key`), as written."""
        return pq.read_table(path, filesystem=self.fs)

    def read(
        self,
        dataset: DatasetName,
        columns: list[str] | None = None,
        *,
        once_per_record: bool = True,
    ) -> pa.Table:
        """Every object of `dataset`, with its hive partition columns `dt` and `hour`. Objects
        written under another feature definition have other feature columns: the schema is
        the union of all of them, and a column an object lacks reads as null. Of `columns`,
        those no object has are left out (the caller says what that means).

        `once_per_record`: one row per Kafka record. The archiver writes each record once,
        but two archivers owning a partition at once (one cut off from the group that has
        not noticed yet) could both write a window before either commits; the rows say
        which record they are, so a reader never counts one twice. False shows every row
        as stored (the archiver's own tests)."""
        root = self.location.dataset_path(dataset)
        if self.fs.get_file_info(root).type == pafs.FileType.NotFound:
            raise FileNotFoundError(
                f"{self.location.uri}/{dataset.value}: nothing archived there yet; check the "
                "location, or let `fraudpipe-api archive` run first"
            )
        found = pads.dataset(root, filesystem=self.fs, format="parquet", partitioning="hive")
        schema = pa.unify_schemas(
            [found.schema, *(f.physical_schema for f in found.get_fragments())]
        )
        found = pads.dataset(
            root, filesystem=self.fs, format="parquet", partitioning="hive", schema=schema
        )
        if columns is not None:
            columns = [c for c in columns if c in schema.names]
        if not once_per_record:
            return found.to_table(columns=columns)
        wanted = schema.names if columns is None else columns
        table = found.to_table(columns=list(dict.fromkeys([*wanted, *RECORD_KEY])))
        return first_of_each_record(table).select(wanted)


def first_of_each_record(table: pa.Table) -> pa.Table:
    """The rows of `table` with a (partition, offset) not seen in an earlier row, in order."""
    position = pa.array(np.arange(table.num_rows, dtype=np.int64))
    keyed = table.select(RECORD_KEY).append_column("position", position)
    first = keyed.group_by(RECORD_KEY, use_threads=False).aggregate([("position", "min")])
    if first.num_rows == table.num_rows:
        return table
    positions = first["position_min"]
    return table.take(pc.take(positions, pc.sort_indices(positions)))
