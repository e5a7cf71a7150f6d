"""Shared code for every fraudpipe service: data contracts, feature definitions, the model
artifact format and thin Kafka/Redis/Postgres/OCI helpers. Depends on no service."""

import os

# onnxruntime reads this when it is first imported, and every import of it goes through a
# fraudpipe package first: no usage telemetry leaves any process (docs/decisions.md 39).
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
