"""Candidate models for the canary scenarios, derived from the trained e2e model with onnx's
helpers (the same artifact format, pushed the same way):

- good: the very same graph under another card (another digest): it must be promoted;
- flags_all: scores every transaction 0.99, above the BLOCK threshold: rolled back on the
  alert-rate ratio;
- slow: the good graph plus input-dependent matrix products that ONNX Runtime cannot fold
  away (tens of ms a batch) and that leave the score unchanged: rolled back on latency;
- incompatible: a card naming a feature the scorer does not compute: refused before traffic.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from fraudpipe_common.model_artifact import (
    ModelArtifact,
    push_model,
    read_model_dir,
    write_model_dir,
)
from fraudpipe_common.oci import sha256_digest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from e2e_checks import get_json
from e2e_harness import REGISTRY, REGISTRY_PORT, Target, local_url, port_forward
from operator_harness import wait_for

OPSET = [helper.make_opsetid("", 17)]
SLOW_SIZE = 800  # three 800x800 products: about 3 GFLOP a batch, whatever its size


def _with(artifact: ModelArtifact, onnx_bytes: bytes, name: str, **card: object) -> ModelArtifact:
    # A hand-made graph has no tree explainer: the trained model's would not match it.
    updated = artifact.card.model_copy(
        update={
            "name": name,
            "model_sha256": sha256_digest(onnx_bytes),
            "explainer_sha256": None,
            **card,
        }
    )
    return ModelArtifact(onnx_bytes, updated)


def _flags_all(width: int) -> bytes:
    graph = helper.make_graph(
        [
            helper.make_node("ReduceSum", ["features", "row_axis"], ["row_sum"], keepdims=0),
            helper.make_node("Mul", ["row_sum", "zero"], ["nothing"]),
            helper.make_node("Add", ["nothing", "high"], ["fraud_score"]),
        ],
        "flags_all",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, width])],
        [helper.make_tensor_value_info("fraud_score", TensorProto.FLOAT, [None])],
        [
            numpy_helper.from_array(np.array([1], dtype=np.int64), "row_axis"),
            numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"),
            numpy_helper.from_array(np.array(0.99, dtype=np.float32), "high"),
        ],
    )
    model = helper.make_model(graph, opset_imports=OPSET, ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def _slow(onnx_bytes: bytes) -> bytes:
    model = onnx.load_from_string(onnx_bytes)
    graph = model.graph
    for node in graph.node:  # the original score becomes an intermediate value
        node.output[:] = ["raw_score" if o == "fraud_score" else o for o in node.output]
    rng = np.random.default_rng(7)
    weights = rng.uniform(0, 0.001, (SLOW_SIZE, SLOW_SIZE)).astype(np.float32)
    graph.initializer.extend(
        [
            numpy_helper.from_array(weights, "slow_weights"),
            numpy_helper.from_array(np.array(0.0, dtype=np.float32), "slow_zero"),
        ]
    )
    graph.node.extend(
        [
            # Depends on the input, so it is computed for every batch, never folded.
            helper.make_node("ReduceSum", ["features"], ["slow_total"], keepdims=0),
            helper.make_node("Mul", ["slow_total", "slow_zero"], ["slow_nothing"]),
            helper.make_node("Add", ["slow_weights", "slow_nothing"], ["slow_a"]),
            helper.make_node("MatMul", ["slow_a", "slow_a"], ["slow_b"]),
            helper.make_node("MatMul", ["slow_b", "slow_a"], ["slow_c"]),
            helper.make_node("MatMul", ["slow_c", "slow_a"], ["slow_d"]),
            helper.make_node("ReduceSum", ["slow_d"], ["slow_sum"], keepdims=0),
            helper.make_node("Mul", ["slow_sum", "slow_zero"], ["slow_added"]),
            helper.make_node("Add", ["raw_score", "slow_added"], ["fraud_score"]),
        ]
    )
    onnx.checker.check_model(model)
    return model.SerializeToString()


def write_variants(trained: Path, out: Path) -> dict[str, Path]:
    """Model directories of the four candidates, beside each other under `out`."""
    base = read_model_dir(trained)
    features = list(base.card.features)
    variants = {
        "good": _with(base, base.onnx, f"{base.card.name}-retrained"),
        "flags_all": _with(base, _flags_all(len(features)), "flags-all"),
        "slow": _with(base, _slow(base.onnx), "slow"),
        "incompatible": _with(
            base, base.onnx, "incompatible", features=(*features[:-1], "device_risk_score")
        ),
    }
    paths = {}
    for name, artifact in variants.items():
        paths[name] = out / name
        write_model_dir(paths[name], artifact)
    return paths


def push_candidates(target: Target, namespace: str, paths: dict[str, Path]) -> dict[str, str]:
    """Push each candidate into the namespace's registry with the library, not
    `fraudpipe-model push` (which refuses the incompatible one, as it should); returns the
    references pods use."""
    pushed = {}
    with port_forward(target, namespace, f"svc/{REGISTRY}", REGISTRY_PORT) as port:
        wait_for(lambda: get_json(local_url(port), "/v2/")[0] == 200, "registry answers", 60)
        for name, path in paths.items():
            ref = asyncio.run(
                push_model(
                    f"127.0.0.1:{port}",
                    "fraudpipe/models/e2e",
                    read_model_dir(path),
                    tag=name,
                    plain_http=True,
                )
            )
            pushed[name] = (
                f"{REGISTRY}.{namespace}.svc:{REGISTRY_PORT}/fraudpipe/models/e2e@{ref.digest}"
            )
    return pushed
