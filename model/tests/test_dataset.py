"""The training data: regenerated bit for bit, computed like the scorer, split without
look-ahead, cached safely."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from fraudpipe_common.features import FEATURE_NAMES, OfflineFeatureStore, assemble
from fraudpipe_common.synthetic import generate
from fraudpipe_model.dataset import DatasetSpec, build_dataset, load_dataset

SPEC = DatasetSpec(rows=3000, seed=4, fraud_rate=0.05, users=500)


def test_same_spec_gives_the_same_rows_and_hash() -> None:
    first, second = build_dataset(SPEC), build_dataset(SPEC)
    assert np.array_equal(first.features, second.features)
    assert first.sha256() == second.sha256()
    other = build_dataset(DatasetSpec(rows=3000, seed=5, fraud_rate=0.05, users=500))
    assert other.sha256() != first.sha256()


def test_rows_are_the_shared_feature_definition_in_float32() -> None:
    dataset = build_dataset(SPEC)
    assert dataset.features.shape == (3000, len(FEATURE_NAMES))
    assert dataset.features.dtype == np.float32
    store = OfflineFeatureStore()
    for index, tx in enumerate(itertools.islice(generate(SPEC.traffic()), 200)):
        row = tx.feature_input()
        expected = np.asarray(assemble(row, store.process(row)), dtype=np.float32)
        assert np.array_equal(dataset.features[index], expected)
        assert dataset.labels[index] == tx.is_fraud
        assert dataset.scenarios[index] == (tx.scenario or "")


def test_labels_and_scenarios_agree() -> None:
    dataset = build_dataset(SPEC)
    assert dataset.positives > 0
    assert np.array_equal(dataset.labels == 1, dataset.scenarios != "")


def test_split_keeps_time_order() -> None:
    dataset = build_dataset(SPEC)
    train, validation = dataset.split(0.2)
    assert (len(train), len(validation)) == (2400, 600)
    assert np.array_equal(validation.features, dataset.features[2400:])
    with pytest.raises(ValueError, match="validation fraction"):
        dataset.split(1.0)


def test_cache_returns_identical_data_and_is_used(tmp_path: Path) -> None:
    built = load_dataset(SPEC, tmp_path)
    (cached_file,) = tmp_path.glob("*.npz")
    loaded = load_dataset(SPEC, tmp_path)
    assert loaded.sha256() == built.sha256()
    assert np.array_equal(loaded.scenarios, built.scenarios)
    cached_file.write_bytes(b"")  # proves the second call read the file, not the generator
    with pytest.raises(Exception):  # noqa: B017, PT011
        load_dataset(SPEC, tmp_path)
