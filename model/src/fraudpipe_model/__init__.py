"""Offline model work: train, evaluate, export to ONNX and push as an OCI artifact."""
