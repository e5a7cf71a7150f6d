#!/bin/sh
# With no arguments: serve /data on :7070, first making the buckets S3_BUCKETS names
# (space-separated), as a directory each, so that clients which never create buckets (the
# archiver and the backups: least privilege) find theirs. Otherwise: versitygw ARGS…
set -e
if [ "$#" -eq 0 ]; then
  for bucket in ${S3_BUCKETS:-}; do mkdir -p "/data/$bucket"; done
  set -- --port "${S3_ADDRESS:-:7070}" --region "${S3_REGION:-us-east-1}" --quiet posix /data
fi
exec versitygw "$@"
