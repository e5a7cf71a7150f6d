"""`fraudpipe-model train --from-archive`: the archive's feature snapshots joined with its labels
train a model, on a real S3-compatible server (versitygw)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from fraudpipe_common.archive.layout import ArchiveLocation, DatasetName, split_runs
from fraudpipe_common.archive.store import ArchiveStore, S3Settings
from fraudpipe_common.archive.tables import (
    ArchivedDecision,
    ArchivedLabel,
    decisions_table,
    labels_table,
)
from fraudpipe_common.contracts.decisions import Decision, Track, Verdict
from fraudpipe_common.contracts.labels import Label
from fraudpipe_common.features import FEATURE_NAMES
from fraudpipe_common.model_artifact import read_model_dir
from fraudpipe_model.archived import join_labelled
from fraudpipe_model.cli import main
from fraudpipe_model.dataset import DatasetSpec, build_dataset

DIGEST = "sha256:" + "cd" * 32
START = dt.datetime(2025, 3, 1, 9, 30, tzinfo=dt.UTC)


def archived(i: int, features: np.ndarray, track: Track = Track.STABLE) -> ArchivedDecision:
    decided = START + dt.timedelta(seconds=i)
    return ArchivedDecision(
        partition=i % 2,
        offset=i,
        decision=Decision(
            tx_id=f"tx-{i:06d}",
            user_id="u",
            decision=Verdict.APPROVE,
            score=0.1,
            model_digest=DIGEST,
            track=track,
            features=dict(zip(FEATURE_NAMES, map(float, features), strict=True)),
            event_ts=decided,
            decided_ts=decided,
        ),
    )


def labelled(i: int, is_fraud: bool, at_s: int = 0) -> ArchivedLabel:
    label = Label(tx_id=f"tx-{i:06d}", is_fraud=is_fraud, scenario="ato" if is_fraud else None)
    return ArchivedLabel(i % 2, i, START + dt.timedelta(seconds=at_s), label)


def test_shadow_and_unlabelled_decisions_are_left_out_and_the_latest_label_wins() -> None:
    row = np.arange(len(FEATURE_NAMES), dtype=np.float32)
    decisions = decisions_table(
        [
            archived(2, row + 2),
            archived(1, row + 1),
            archived(1, row + 100, Track.SHADOW),
            archived(3, row + 3),  # never labelled
        ]
    )
    labels = labels_table([labelled(1, False, at_s=5), labelled(1, True, at_s=9),
                           labelled(2, False)])  # fmt: skip
    dataset = join_labelled(decisions, labels, "s3://b/p")
    assert dataset.features.tolist() == [(row + 1).tolist(), (row + 2).tolist()]  # time order
    assert dataset.labels.tolist() == [1, 0]
    assert dataset.scenarios.tolist() == ["ato", ""]
    assert "s3://b/p" in dataset.spec.describe()


def test_decisions_archived_without_a_current_feature_are_refused() -> None:
    decisions = decisions_table([archived(1, np.zeros(len(FEATURE_NAMES)))]).drop_columns(
        ["feature_" + FEATURE_NAMES[0]]
    )
    with pytest.raises(ValueError, match=f"lack feature_{FEATURE_NAMES[0]}"):
        join_labelled(decisions, labels_table([labelled(1, True)]), "s3://b/p")


@pytest.mark.s3
def test_train_from_archive_joins_features_with_labels_and_records_the_source(
    s3_env: dict[str, str],
    s3_archive_uri: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    for name, value in s3_env.items():
        monkeypatch.setenv(name, value)
    synthetic = build_dataset(DatasetSpec(rows=12_000, seed=5, fraud_rate=0.03))
    decisions = [archived(i, synthetic.features[i]) for i in range(len(synthetic))]
    labels = [labelled(i, bool(synthetic.labels[i])) for i in range(len(synthetic))]
    store = ArchiveStore(ArchiveLocation.parse(s3_archive_uri), S3Settings().filesystem())
    for partition in (0, 1):  # as the archiver writes them: per partition, per hour
        mine = [d for d in decisions if d.partition == partition]
        for run in split_runs(partition, mine, lambda r: r.offset, lambda r: r.timestamp):
            store.put(DatasetName.DECISIONS, run, decisions_table(mine[run.start : run.stop]))
        theirs = [lb for lb in labels if lb.partition == partition]
        for run in split_runs(partition, theirs, lambda r: r.offset, lambda r: r.timestamp):
            store.put(DatasetName.LABELS, run, labels_table(theirs[run.start : run.stop]))

    out = tmp_path_factory.mktemp("archive-model") / "gbt"
    assert main(["train", "--from-archive", s3_archive_uri, "--threads", "1",
                 "--out", str(out)]) == 0  # fmt: skip
    card = read_model_dir(out).card
    train_rows, _ = synthetic.split(0.2)  # same rows, same order: decided in stream order
    assert card.training_data.sha256 == train_rows.sha256()
    assert card.training_data.rows == 9_600
    assert s3_archive_uri in card.training_data.source
    assert card.features == FEATURE_NAMES


@pytest.mark.s3
def test_train_from_an_empty_archive_says_what_to_do(
    s3_env: dict[str, str],
    s3_archive_uri: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    for name, value in s3_env.items():
        monkeypatch.setenv(name, value)
    out = tmp_path_factory.mktemp("none") / "m"
    assert main(["train", "--from-archive", s3_archive_uri, "--out", str(out)]) == 1
    assert "nothing archived there yet" in capsys.readouterr().err
