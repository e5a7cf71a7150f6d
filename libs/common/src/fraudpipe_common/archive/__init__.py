"""The archive: decisions (with their feature snapshot) and labels as hourly-partitioned Parquet
objects in S3-compatible storage, for training and audits long after Kafka dropped them.

- `layout`: where each object goes and what it is called (pure). Names derive from the Kafka
  offsets an object holds, so a re-run after a crash finds what was already written.
- `tables`: the Parquet schemas and records-to-table conversion (pure).
- `store`: the S3 side (pyarrow's S3 filesystem): write one object, find an archived run,
  read a dataset back.

Needs the `archive` extra of fraudpipe-common (pyarrow).
"""
