"""The tree explainer file: a model's trees as TreeSHAP needs them, shipped beside its ONNX
graph (`explainer.json`, an optional layer of the model artifact).

An ONNX tree ensemble keeps each tree's splits and leaf values but not how many training rows
reached each node (the *cover*), and path-dependent TreeSHAP weighs every split by exactly that.
So the exporter writes the trees once more, with their covers, in this small format:

    {"format": "fraudpipe.tree-explainer.v1", "features": [...], "link": "logistic",
     "base_offset": -3.1, "trees": [{"feature": [...], "threshold": [...], "left": [...],
     "right": [...], "missing_left": [...], "value": [...], "cover": [...]}, ...]}

Node 0 is a tree's root; `left == -1` marks a leaf. A row goes left when `x <= threshold`
(compared in float32, as ONNX Runtime does) or when x is NaN and `missing_left`. The model's
*margin* is `base_offset + sum of the leaves reached`; its score is `link(margin)`:
- `logistic`: score = 1 / (1 + e^-margin), the margin is the log-odds of fraud (boosted trees);
- `exp2_negative`: score = 2^-margin, the margin is the normalised mean isolation depth
  (IsolationForest): a *shorter* path is riskier.
A scorer checks that the file agrees with the graph (`TreeExplainer.check_against`) before
it explains anything with it, so a mismatched file is refused, never believed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import orjson
import pydantic
from pydantic import BaseModel, ConfigDict, Field, model_validator

FORMAT: Literal["fraudpipe.tree-explainer.v1"] = "fraudpipe.tree-explainer.v1"
Link = Literal["logistic", "exp2_negative"]


class ExplainerFormatError(ValueError):
    """The explainer file is malformed; the message names the tree and the field."""


class Tree(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    feature: list[int]
    threshold: list[float]
    left: list[int]
    right: list[int]
    missing_left: list[bool]
    value: list[float]
    cover: list[float]

    @model_validator(mode="after")
    def _well_formed(self) -> Tree:
        n = len(self.feature)
        columns = ("threshold", "left", "right", "missing_left", "value", "cover")
        uneven = [c for c in columns if len(getattr(self, c)) != n]
        if n == 0 or uneven:
            raise ValueError(f"every column must hold one entry per node ({n}); not: {uneven}")
        for node in range(n):
            left, right = self.left[node], self.right[node]
            if (left == -1) != (right == -1):
                raise ValueError(f"node {node} has one child")
            if left != -1 and not (node < left < n and node < right < n):
                raise ValueError(f"node {node}'s children must come after it, within the tree")
            if not self.cover[node] > 0:
                raise ValueError(f"node {node} has cover {self.cover[node]}; covers must be > 0")
        return self


class ExplainerFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["fraudpipe.tree-explainer.v1"] = FORMAT
    features: tuple[str, ...] = Field(min_length=1)
    link: Link
    base_offset: float
    trees: list[Tree] = Field(min_length=1)

    @model_validator(mode="after")
    def _features_exist(self) -> ExplainerFile:
        width = len(self.features)
        for t, tree in enumerate(self.trees):
            bad = [
                f
                for f, child in zip(tree.feature, tree.left, strict=True)
                if child != -1 and not 0 <= f < width
            ]
            if bad:
                raise ValueError(
                    f"tree {t} splits on feature index {bad[0]}, not in 0..{width - 1}"
                )
        return self

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))

    @classmethod
    def from_json(cls, data: bytes) -> ExplainerFile:
        try:
            return cls.model_validate_json(data)
        except pydantic.ValidationError as exc:
            raise ExplainerFormatError(f"invalid tree explainer file: {exc}") from exc


@dataclass(frozen=True)
class PathTable:
    """Leaves whose paths split on at most `width` distinct features, one row per leaf (padded
    to `width` with neutral entries, see `path_tables`).
    A feature split on several times along a path is one entry: the row satisfies it when it
    satisfies all of them (lo < x <= hi, or NaN where every such split sends NaN its way), and
    its zero fraction is the product of the covers' ratios along those splits."""

    width: int
    feature: npt.NDArray[np.intp]  # [leaves, width]
    lower: npt.NDArray[np.float64]  # [leaves, width], exclusive
    upper: npt.NDArray[np.float64]  # [leaves, width], inclusive
    nan_ok: npt.NDArray[np.bool_]  # [leaves, width]
    zero_fraction: npt.NDArray[np.float64]  # [leaves, width]
    value: npt.NDArray[np.float64]  # [leaves]


def path_tables(trees: list[Tree]) -> tuple[list[PathTable], float]:
    """The leaves grouped by path width, and the trees' expected output (each leaf's value
    weighted by the share of training rows that reached it)."""
    rows: dict[int, list[Entry]] = {}
    expected = 0.0
    for tree in trees:
        stack: list[tuple[int, dict[int, tuple[float, float, bool, float]]]] = [(0, {})]
        root_cover = tree.cover[0]
        while stack:
            node, conditions = stack.pop()
            left, right = tree.left[node], tree.right[node]
            if left == -1:
                value = tree.value[node]
                expected += value * tree.cover[node] / root_cover
                features = sorted(conditions)
                entry = (
                    features,
                    [conditions[f][0] for f in features],
                    [conditions[f][1] for f in features],
                    [conditions[f][2] for f in features],
                    [conditions[f][3] for f in features],
                    value,
                )
                rows.setdefault(len(features), []).append(entry)
                continue
            feature, threshold = tree.feature[node], _as_float32(tree.threshold[node])
            lo, hi, nan_ok, zero = conditions.get(feature, (-math.inf, math.inf, True, 1.0))
            to_left, to_right = (
                tree.cover[left] / tree.cover[node],
                tree.cover[right] / tree.cover[node],
            )
            nan_left = tree.missing_left[node]
            stack.append(
                (
                    left,
                    {
                        **conditions,
                        feature: (lo, min(hi, threshold), nan_ok and nan_left, zero * to_left),
                    },
                )
            )
            stack.append(
                (
                    right,
                    {
                        **conditions,
                        feature: (max(lo, threshold), hi, nan_ok and not nan_left, zero * to_right),
                    },
                )
            )
    # Leaves of widths 2k-1 and 2k share one table, padded with neutral entries (always
    # satisfied, zero fraction 1: their factor is 1 whatever the coalition, and their share 0),
    # which leaves every Shapley value as it was (a dummy player changes nothing): half as many
    # tables, so half as many array operations, and no extra quadrature node for any leaf.
    padded: dict[int, list[Entry]] = {}
    for width, entries in rows.items():
        # Even widths: the quadrature needs ceil(width / 2) nodes, the same for both.
        bucket = width + width % 2
        padded.setdefault(bucket, []).extend(_pad(e, bucket) for e in entries)
    tables = []
    for width, entries in sorted(padded.items()):
        columns = list(zip(*entries, strict=True))
        tables.append(
            PathTable(
                width,
                np.asarray(columns[0], dtype=np.intp).reshape(len(entries), width),
                np.asarray(columns[1], dtype=np.float64).reshape(len(entries), width),
                np.asarray(columns[2], dtype=np.float64).reshape(len(entries), width),
                np.asarray(columns[3], dtype=np.bool_).reshape(len(entries), width),
                np.asarray(columns[4], dtype=np.float64).reshape(len(entries), width),
                np.asarray(columns[5], dtype=np.float64),
            )
        )
    return tables, expected


Entry = tuple[list[int], list[float], list[float], list[bool], list[float], float]


def _pad(entry: Entry, width: int) -> Entry:
    features, lower, upper, nan_ok, zero, value = entry
    missing = width - len(features)
    return (
        features + [0] * missing,
        lower + [-math.inf] * missing,
        upper + [math.inf] * missing,
        nan_ok + [True] * missing,
        zero + [1.0] * missing,
        value,
    )


def _as_float32(threshold: float) -> float:
    """ONNX Runtime compares float32 inputs with float32 thresholds: so does the explainer."""
    return float(np.float32(threshold))
