"""Training data from the archive: each archived decision's feature snapshot (the numbers the
scorer really saw) joined with the labels archived for its transaction.

- Shadow decisions are left out (the acting decision of the same transaction carries the same
  snapshot); a transaction decided twice (a replay) counts once, by its first decision.
- A transaction labelled twice keeps its latest label (a later word corrects an earlier one).
- Rows are ordered by decision time, so the validation split is the most recent traffic, as
  with the synthetic stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fraudpipe_common.archive.layout import ArchiveLocation, DatasetName
from fraudpipe_common.archive.store import ArchiveStore, S3Settings
from fraudpipe_common.archive.tables import feature_column
from fraudpipe_common.contracts.decisions import Track
from fraudpipe_common.features import FEATURE_NAMES
from fraudpipe_model.dataset import LEGITIMATE, Dataset

UNSPECIFIED_SCENARIO = "unspecified"  # fraud labelled without a scenario (e.g. by an analyst)
DECISION_COLUMNS = ["tx_id", "track", "decided_ts", *map(feature_column, FEATURE_NAMES)]
LABEL_COLUMNS = ["tx_id", "is_fraud", "scenario", "labelled_ts"]


@dataclass(frozen=True)
class ArchiveSpec:
    """Where the rows came from, for the model card (`describe`)."""

    uri: str
    decisions: int  # archived, shadow left out
    labels: int
    first_decided: str
    last_decided: str

    def describe(self) -> str:
        return (
            f"fraudpipe archive {self.uri}: decisions joined with labels by tx_id "
            f"({self.decisions} decisions, {self.labels} labels; decided "
            f"{self.first_decided} .. {self.last_decided})"
        )


def join_labelled(decisions: pa.Table, labels: pa.Table, uri: str) -> Dataset:
    """The labelled rows of an archive (pure: tables in, dataset out)."""
    missing = [c for c in DECISION_COLUMNS if c not in decisions.column_names]
    if missing:
        raise ValueError(
            f"{uri}: the archived decisions lack {', '.join(missing)}; they were archived under "
            "another feature definition than this fraudpipe-model's"
        )
    acting = decisions.filter(pc.not_equal(decisions["track"], Track.SHADOW.value))
    acting = acting.sort_by([("decided_ts", "ascending"), ("tx_id", "ascending")])
    latest_labels = labels.sort_by([("labelled_ts", "ascending")])
    label_of: dict[str, tuple[bool, str | None]] = dict(
        zip(
            latest_labels["tx_id"].to_pylist(),
            zip(
                latest_labels["is_fraud"].to_pylist(),
                latest_labels["scenario"].to_pylist(),
                strict=True,
            ),
            strict=True,
        )
    )  # later labels overwrite earlier ones
    keep: list[int] = []
    seen: set[str] = set()
    for i, tx_id in enumerate(acting["tx_id"].to_pylist()):
        if tx_id in label_of and tx_id not in seen:
            keep.append(i)
        seen.add(tx_id)
    rows = acting.take(pa.array(keep, pa.int64()))
    features = (
        np.column_stack(
            [rows[feature_column(n)].to_numpy(zero_copy_only=False) for n in FEATURE_NAMES]
        )
        if len(rows)
        else np.empty((0, len(FEATURE_NAMES)))
    )
    if np.isnan(features).any():
        raise ValueError(
            f"{uri}: some archived decisions lack features of the current definition; "
            "train from an archive written under it"
        )
    is_fraud = [label_of[t][0] for t in rows["tx_id"].to_pylist()]
    scenarios = [
        (label_of[t][1] or UNSPECIFIED_SCENARIO) if fraud else LEGITIMATE
        for t, fraud in zip(rows["tx_id"].to_pylist(), is_fraud, strict=True)
    ]
    decided = rows["decided_ts"]
    spec = ArchiveSpec(
        uri=uri,
        decisions=len(acting),
        labels=len(labels),
        first_decided=pc.min(decided).as_py().isoformat() if len(rows) else "-",
        last_decided=pc.max(decided).as_py().isoformat() if len(rows) else "-",
    )
    return Dataset(
        spec,
        features.astype(np.float32),
        np.array(is_fraud, dtype=np.int8),
        np.array(scenarios, dtype=str),
    )


def load_archive_dataset(uri: str, s3: S3Settings | None = None) -> Dataset:
    """Read decisions and labels from `uri` (s3://bucket/prefix) and join them."""
    location = ArchiveLocation.parse(uri)
    store = ArchiveStore(location, (s3 or S3Settings()).filesystem())
    decisions = store.read(DatasetName.DECISIONS, DECISION_COLUMNS)
    labels = store.read(DatasetName.LABELS, LABEL_COLUMNS)
    dataset = join_labelled(decisions, labels, location.uri)
    if len(dataset) == 0:
        raise ValueError(
            f"{location.uri}: no archived decision has a label ({len(decisions)} decisions, "
            f"{len(labels)} labels); archive the labels topic too (ARCHIVE_LABELS=true)"
        )
    return dataset
