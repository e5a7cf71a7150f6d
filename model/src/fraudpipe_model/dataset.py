"""Labelled feature matrices from the seeded synthetic stream, computed exactly as served.

Rows are replayed in time order through the shared offline feature store (the same definition
the scorer computes online), then cast to float32, the dtype the ONNX graph takes, so that
scikit-learn, the exported graph and the scorer all see identical numbers.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from fraudpipe_common import features as feature_pkg
from fraudpipe_common import synthetic as synthetic_pkg
from fraudpipe_common.features import FEATURE_NAMES, OfflineFeatureStore, assemble
from fraudpipe_common.synthetic import PopulationConfig, TrafficConfig, generate

LEGITIMATE = ""  # scenario of rows that are not fraud


@dataclass(frozen=True)
class DatasetSpec:
    """Everything needed to regenerate a dataset bit for bit."""

    rows: int
    seed: int
    fraud_rate: float = 0.01
    users: int = 10_000
    # Rows replayed through the feature store before the kept rows start. A fresh stream is
    # cold (every user's device and merchants look new); a scorer in production is not.
    warmup: int = 0

    def describe(self) -> str:
        warm = f" after warmup={self.warmup}" if self.warmup else ""
        return (
            f"fraudpipe_common.synthetic rows={self.rows}{warm} seed={self.seed} "
            f"fraud_rate={self.fraud_rate} users={self.users}"
        )

    def traffic(self) -> TrafficConfig:
        population = PopulationConfig(users=self.users, seed=self.seed)
        return TrafficConfig(population=population, seed=self.seed, fraud_rate=self.fraud_rate)


class DataSource(Protocol):
    """Where a dataset's rows came from: a synthetic `DatasetSpec`, or the archive
    (fraudpipe_model.archived.ArchiveSpec)."""

    def describe(self) -> str: ...


@dataclass(frozen=True)
class Dataset:
    spec: DataSource
    features: np.ndarray  # float32, (rows, len(FEATURE_NAMES)), in stream order
    labels: np.ndarray  # int8, 1 = fraud
    scenarios: np.ndarray  # str, the fraud scenario or LEGITIMATE

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def positives(self) -> int:
        return int(self.labels.sum())

    def sha256(self) -> str:
        """Identifies the training data: feature names, matrix and labels."""
        digest = hashlib.sha256()
        digest.update("\x1f".join(FEATURE_NAMES).encode())
        digest.update(np.ascontiguousarray(self.features, dtype="<f4").tobytes())
        digest.update(np.ascontiguousarray(self.labels, dtype="i1").tobytes())
        return "sha256:" + digest.hexdigest()

    def split(self, validation_fraction: float) -> tuple[Dataset, Dataset]:
        """Earlier rows for training, the later ones for validation (no look-ahead)."""
        if not 0.0 < validation_fraction < 1.0:
            raise ValueError(f"validation fraction must be in (0, 1), got {validation_fraction}")
        cut = round(len(self) * (1.0 - validation_fraction))
        return self._slice(slice(0, cut)), self._slice(slice(cut, len(self)))

    def _slice(self, part: slice) -> Dataset:
        return Dataset(self.spec, self.features[part], self.labels[part], self.scenarios[part])


def build_dataset(spec: DatasetSpec) -> Dataset:
    if spec.rows <= 0 or spec.warmup < 0:
        raise ValueError(f"rows must be positive and warmup not negative, got {spec}")
    store = OfflineFeatureStore()
    stream = generate(spec.traffic())
    for tx in itertools.islice(stream, spec.warmup):
        store.process(tx.feature_input())
    matrix = np.empty((spec.rows, len(FEATURE_NAMES)), dtype=np.float32)
    labels = np.empty(spec.rows, dtype=np.int8)
    scenarios: list[str] = []
    for i, tx in enumerate(itertools.islice(stream, spec.rows)):
        row = tx.feature_input()
        matrix[i] = assemble(row, store.process(row))
        labels[i] = tx.is_fraud
        scenarios.append(tx.scenario or LEGITIMATE)
    return Dataset(spec, matrix, labels, np.array(scenarios, dtype=str))


def code_fingerprint() -> str:
    """Changes whenever the generator or the feature definition changes (cache key)."""
    digest = hashlib.sha256()
    for package in (feature_pkg, synthetic_pkg):
        root = Path(str(package.__file__)).parent
        for source in sorted(root.glob("*.py")) + sorted(root.glob("*.lua")):
            digest.update(source.name.encode())
            digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


def load_dataset(spec: DatasetSpec, cache_dir: Path | None) -> Dataset:
    """Build the dataset, or read it from `cache_dir` when it was built by the same code."""
    if cache_dir is None:
        return build_dataset(spec)
    path = cache_dir / (
        f"rows{spec.rows}-warmup{spec.warmup}-seed{spec.seed}-fraud{spec.fraud_rate}"
        f"-users{spec.users}-{code_fingerprint()}.npz"
    )
    if path.exists():
        with np.load(path, allow_pickle=False) as cached:
            return Dataset(spec, cached["features"], cached["labels"], cached["scenarios"])
    dataset = build_dataset(spec)
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.npz")
    np.savez(partial, features=dataset.features, labels=dataset.labels, scenarios=dataset.scenarios)
    partial.replace(path)  # atomic: a concurrent reader never sees half a file
    return dataset
