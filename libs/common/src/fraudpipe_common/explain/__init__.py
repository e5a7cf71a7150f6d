"""Why a model scored a transaction as it did: exact TreeSHAP contributions of each feature,
from the tree explainer file a model artifact may carry (`trees.py`), turned into the
`Explanation` of a decision (its top features, in words)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fraudpipe_common.contracts.decisions import Contribution, Explanation, Reason
from fraudpipe_common.explain.trees import (
    FORMAT,
    ExplainerFile,
    ExplainerFormatError,
    Link,
    path_tables,
)
from fraudpipe_common.explain.treeshap import CompiledTable, compile_tables, contributions

# How many features an explanation names, and how many of those (the ones that raised the
# risk most) also become reason codes.
TOP_FEATURES = 5
TOP_REASONS = 3
# The explainer and the graph must give the same score to this much: float32 sums over
# hundreds of trees differ from float64 ones in the fifth decimal, a wrong file by far more.
SCORE_TOLERANCE = 1e-4

UNITS: dict[Link, str] = {
    "logistic": "log-odds of fraud",
    "exp2_negative": "isolation depth (negated: shorter paths are riskier)",
}


class ExplainerMismatchError(ValueError):
    """The explainer file does not describe the graph it ships with."""


@dataclass(frozen=True)
class TreeExplainer:
    features: tuple[str, ...]
    link: Link
    base_offset: float
    expected_margin: float
    tables: list[CompiledTable]

    @classmethod
    def from_json(cls, data: bytes) -> TreeExplainer:
        return cls.from_file(ExplainerFile.from_json(data))

    @classmethod
    def from_file(cls, file: ExplainerFile) -> TreeExplainer:
        tables, expected = path_tables(file.trees)
        return cls(
            file.features,
            file.link,
            file.base_offset,
            file.base_offset + expected,
            compile_tables(tables),
        )

    @property
    def risk_sign(self) -> float:
        """+1 when a larger margin is riskier (log-odds), -1 when it is safer (path length)."""
        return 1.0 if self.link == "logistic" else -1.0

    def margins(self, rows: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
        """The margin of each row (expected + contributions: local accuracy)."""
        margins: npt.NDArray[np.float64] = self.expected_margin + self.shap_values(rows).sum(axis=1)
        return margins

    def scores(self, rows: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
        margin = self.margins(rows)
        if self.link == "logistic":
            return 1.0 / (1.0 + np.exp(-margin))
        return np.exp2(-margin)

    def shap_values(self, rows: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
        """[rows, features]: each feature's share of the row's margin, in margin units."""
        matrix = np.asarray(rows, dtype=np.float32).astype(np.float64)  # as the graph sees it
        return contributions(self.tables, matrix, len(self.features))

    def check_against(
        self, rows: npt.NDArray[np.floating], graph_scores: npt.NDArray[np.floating]
    ) -> None:
        """Raise ExplainerMismatchError unless the explainer scores `rows` as the graph did."""
        ours = self.scores(rows)
        theirs = np.asarray(graph_scores, dtype=np.float64)
        gap = np.abs(ours - theirs)
        worst = int(np.argmax(gap)) if len(gap) else 0
        if len(gap) and not gap[worst] <= SCORE_TOLERANCE:
            raise ExplainerMismatchError(
                f"the tree explainer does not match the ONNX graph: row {worst} scores "
                f"{ours[worst]:.6f} by the explainer and {theirs[worst]:.6f} by the graph "
                f"(tolerance {SCORE_TOLERANCE}); re-export the model with fraudpipe-model"
            )

    def explain(self, rows: npt.NDArray[np.floating]) -> list[Explanation]:
        """One explanation per row: the TOP_FEATURES features with the largest effect,
        signed so that a positive contribution raised the risk."""
        phi = self.shap_values(rows) * self.risk_sign
        values = np.asarray(rows, dtype=np.float64)
        base = self.expected_margin * self.risk_sign
        explanations = []
        for row, shares in zip(values.tolist(), phi, strict=True):
            top = np.argsort(-np.abs(shares), kind="stable")[:TOP_FEATURES]
            explanations.append(
                Explanation(
                    unit=UNITS[self.link],
                    base=round(base, 6),
                    contributions=[
                        Contribution(
                            feature=self.features[i],
                            value=row[i],
                            contribution=round(float(shares[i]), 6),
                        )
                        for i in top.tolist()
                    ],
                )
            )
        return explanations


def feature_reasons(explanation: Explanation) -> list[Reason]:
    """Reason codes for the features that raised the risk most (`feature:<name>`)."""
    raising = [c for c in explanation.contributions if c.contribution > 0][:TOP_REASONS]
    return [
        Reason(code=f"feature:{c.feature}", detail=c.describe(explanation.unit)) for c in raising
    ]


__all__ = [
    "FORMAT",
    "ExplainerFile",
    "ExplainerFormatError",
    "ExplainerMismatchError",
    "TreeExplainer",
    "feature_reasons",
]
