"""Inference speed: onnxruntime against scikit-learn, for both model families, in one run.

    uv run python bench/bench_inference.py [--threads 1] [--train-rows 60000]

Trains both families with their production settings (300 boosted trees / 200 isolation trees)
on a cached synthetic dataset, exports them, and first checks that onnxruntime and
scikit-learn return the same scores (within 1e-5) on every benchmark row. Then, after a
warm-up, it times:
  single row   one transaction per call (latency: median and p99)
  batch 500    the scorer's default micro-batch
  batch 10000  bulk scoring (throughput)
and, for batches of 1, 10 and 100 rows, exact TreeSHAP explanations (fraudpipe_common.explain)
against onnxruntime scoring the same rows.
Both runtimes get the same float32 rows and the same thread budget (onnxruntime intra-op
threads, and scikit-learn's OpenMP pool via threadpoolctl). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from fraudpipe_common.explain import TreeExplainer
from fraudpipe_common.features import FEATURE_NAMES
from fraudpipe_model.dataset import DatasetSpec, load_dataset
from fraudpipe_model.explainer import export_explainer
from fraudpipe_model.export import export_onnx
from fraudpipe_model.families import FAMILIES, fit, sklearn_scores
from fraudpipe_model.runtime import PARITY_TOLERANCE, OnnxModel, max_abs_diff

CACHE = Path(os.environ.get("FRAUDPIPE_CACHE", Path.home() / ".cache" / "fraudpipe")) / "datasets"
BATCHES = (1, 500, 10_000)
EXPLAIN_BATCHES = (1, 10, 100)


def timed_calls(call: Callable[[], object], min_seconds: float, min_calls: int) -> list[float]:
    """Per-call seconds, after a warm-up, until both the time and the call floor are met."""
    for _ in range(min(20, min_calls)):
        call()
    samples: list[float] = []
    started = time.perf_counter()
    while len(samples) < min_calls or time.perf_counter() - started < min_seconds:
        begin = time.perf_counter()
        call()
        samples.append(time.perf_counter() - begin)
    return samples


def sliding_batches(
    score: Callable[[np.ndarray], object], rows: np.ndarray, batch: int
) -> Callable[[], None]:
    """Each call scores the next `batch` rows, so no runtime scores the same rows twice in a row."""
    calls = 0

    def call() -> None:
        nonlocal calls
        start = (calls * batch) % (len(rows) - batch + 1)
        calls += 1
        score(rows[start : start + batch])

    return call


def describe(samples: list[float], batch: int) -> tuple[str, str, str]:
    median = statistics.median(samples)
    p99 = float(np.percentile(samples, 99))
    return f"{median * 1e6:,.0f}", f"{p99 * 1e6:,.0f}", f"{batch / median:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="threads for both runtimes")
    parser.add_argument("--train-rows", type=int, default=60_000)
    parser.add_argument("--seconds", type=float, default=2.0, help="minimum time per cell")
    args = parser.parse_args()

    train = load_dataset(DatasetSpec(rows=args.train_rows, seed=1), CACHE)
    rows = load_dataset(DatasetSpec(rows=10_000, seed=2, warmup=20_000), CACHE).features
    print(
        f"# {args.threads} thread(s); trained on {len(train)} rows; scoring 10,000 held-out rows; "
        f"load average {os.getloadavg()[0]:.2f}",
        file=sys.stderr,
    )
    print("| model | runtime | batch | median µs/call | p99 µs/call | rows/s |")
    print("|---|---|---|---|---|---|")
    for family in FAMILIES:
        with threadpool_limits(limits=args.threads):
            estimator = fit(family, train.features, train.labels, seed=1)
            onnx_model = OnnxModel(export_onnx(estimator, rows.shape[1]), threads=args.threads)
            diff = max_abs_diff(onnx_model, estimator, rows)
            if diff > PARITY_TOLERANCE:
                raise SystemExit(f"{family}: outputs differ by {diff}, not comparing speeds")
            runtimes: dict[str, Callable[[np.ndarray], object]] = {
                "onnxruntime": onnx_model.scores,
                "scikit-learn": lambda batch, e=estimator: sklearn_scores(e, batch),
            }
            for batch in BATCHES:
                for runtime, score in runtimes.items():
                    call = sliding_batches(score, rows, batch)
                    samples = timed_calls(call, args.seconds, min_calls=5)
                    median, p99, rate = describe(samples, batch)
                    print(f"| {family} | {runtime} | {batch} | {median} | {p99} | {rate} |")
                    sys.stdout.flush()
            # Explanations (the scorer explains its FLAG/BLOCK rows only), against scoring the
            # same rows: what an explained row costs beside a scored one.
            explainer = TreeExplainer.from_json(export_explainer(estimator, FEATURE_NAMES))
            explainer.check_against(rows[:500], onnx_model.scores(rows[:500]))
            for batch in EXPLAIN_BATCHES:
                for runtime, work in (
                    ("onnxruntime", onnx_model.scores),
                    ("TreeSHAP explain", explainer.explain),
                ):
                    call = sliding_batches(work, rows, batch)
                    samples = timed_calls(call, args.seconds, min_calls=5)
                    median, p99, rate = describe(samples, batch)
                    print(f"| {family} | {runtime} | {batch} | {median} | {p99} | {rate} |")
                    sys.stdout.flush()
        print(f"# {family}: max |onnx - sklearn| = {diff:.2e} on 10,000 rows", file=sys.stderr)


if __name__ == "__main__":
    main()
