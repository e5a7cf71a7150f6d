"""Offline model work: train, evaluate, export to ONNX and push as an OCI artifact."""

import fraudpipe_common  # noqa: F401  (switches onnxruntime's telemetry off before its import)
