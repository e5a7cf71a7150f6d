from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from fraudpipe_operator.models import FraudPipeline

REPO = Path(__file__).resolve().parents[2]
DIGEST = "a" * 64


def pipeline(spec: dict[str, Any] | None = None, name: str = "payments") -> FraudPipeline:
    body = {
        "metadata": {"name": name, "namespace": "fraud", "uid": "uid-1", "generation": 3},
        "spec": {"model": {"ref": f"registry.example.com/models/gbt@sha256:{DIGEST}"}}
        | (spec or {}),
    }
    return FraudPipeline.from_body(body)


def example(name: str) -> FraudPipeline:
    body = yaml.safe_load((REPO / "examples" / name).read_text())
    body["metadata"] |= {"namespace": "fraud", "uid": "uid-1"}
    return FraudPipeline.from_body(body)
