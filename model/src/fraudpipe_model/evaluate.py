"""Judging exported models on a held-out stream: the figures (pure), the table and the plot."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fraudpipe_common.model_artifact import ModelCard
from fraudpipe_model.metrics import (
    FLAG_MAX_FPR,
    Confusion,
    confusion_at,
    per_scenario_recall,
    pr_auc,
    pr_curve,
    recall_at_fpr,
)

# The quality bar of the supervised default, on a stream it never saw.
MIN_PR_AUC = 0.90
MIN_RECALL_AT_1PCT_FPR = 0.80


@dataclass(frozen=True)
class Evaluation:
    card: ModelCard
    rows: int
    positives: int
    pr_auc: float
    recall_at_1pct_fpr: float
    flag: Confusion  # at the card's thresholds, chosen on validation data
    block: Confusion
    scenario_recall: dict[str, tuple[int, float]]  # at the FLAG threshold
    curve: tuple[np.ndarray, np.ndarray]  # (recall, precision)

    def meets_quality_bar(self) -> bool:
        return self.pr_auc >= MIN_PR_AUC and self.recall_at_1pct_fpr >= MIN_RECALL_AT_1PCT_FPR


def quality_bar_failures(evaluations: list[Evaluation]) -> list[str]:
    """Names of supervised models below the bar; IsolationForest is reported, not judged."""
    return [
        e.card.name
        for e in evaluations
        if e.card.family == "gradient_boosting" and not e.meets_quality_bar()
    ]


def evaluate_scores(
    card: ModelCard, labels: np.ndarray, scenarios: np.ndarray, scores: np.ndarray
) -> Evaluation:
    if labels.sum() == 0:
        raise ValueError("the held-out stream has no fraud rows: raise --rows or --fraud-rate")
    flag = confusion_at(labels, scores, card.thresholds.flag)
    return Evaluation(
        card=card,
        rows=len(labels),
        positives=int(labels.sum()),
        pr_auc=pr_auc(labels, scores),
        recall_at_1pct_fpr=recall_at_fpr(labels, scores, FLAG_MAX_FPR),
        flag=flag,
        block=confusion_at(labels, scores, card.thresholds.block),
        scenario_recall=per_scenario_recall(scenarios, scores, card.thresholds.flag),
        curve=pr_curve(labels, scores),
    )


def format_table(evaluations: list[Evaluation], source: str) -> str:
    """Models side by side, one column each."""
    names = [f"{e.card.family} ({e.card.model_sha256[7:19]})" for e in evaluations]
    first = evaluations[0]
    rows: list[tuple[str, list[str]]] = [
        ("PR-AUC", [f"{e.pr_auc:.3f}" for e in evaluations]),
        ("recall at 1% FPR", [f"{e.recall_at_1pct_fpr:.3f}" for e in evaluations]),
        ("FLAG threshold", [f"{e.flag.threshold:.6g}" for e in evaluations]),
        ("FLAG precision", [f"{e.flag.precision:.3f}" for e in evaluations]),
        ("FLAG recall", [f"{e.flag.recall:.3f}" for e in evaluations]),
        ("FLAG FPR", [f"{e.flag.fpr:.4f}" for e in evaluations]),
        ("BLOCK threshold", [f"{e.block.threshold:.6g}" for e in evaluations]),
        ("BLOCK precision", [f"{e.block.precision:.3f}" for e in evaluations]),
        ("BLOCK recall", [f"{e.block.recall:.3f}" for e in evaluations]),
        ("BLOCK FPR", [f"{e.block.fpr:.4f}" for e in evaluations]),
    ]
    for scenario, (count, _) in first.scenario_recall.items():
        rows.append(
            (
                f"recall@FLAG {scenario} (n={count})",
                [f"{e.scenario_recall.get(scenario, (0, 0.0))[1]:.3f}" for e in evaluations],
            )
        )
    rows.append(
        (
            "quality bar (PR-AUC>=0.90, recall>=0.80)",
            ["met" if e.meets_quality_bar() else "not met" for e in evaluations],
        )
    )
    label_width = max(len(label) for label, _ in rows)
    widths = [max(len(n), *(len(r[1][i]) for r in rows)) for i, n in enumerate(names)]
    lines = [
        f"held-out stream: {source}: {first.rows} rows, {first.positives} fraud",
        " " * label_width
        + "  "
        + "  ".join(n.rjust(w) for n, w in zip(names, widths, strict=True)),
    ]
    for label, cells in rows:
        lines.append(
            label.ljust(label_width)
            + "  "
            + "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True))
        )
    return "\n".join(lines)


def plot_pr_curves(evaluations: list[Evaluation], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a display
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4.8), dpi=100)
    for e in evaluations:
        recall, precision = e.curve
        (line,) = axes.plot(recall, precision, label=f"{e.card.family} (PR-AUC {e.pr_auc:.3f})")
        color = line.get_color()
        axes.scatter([e.flag.recall], [e.flag.precision], marker="o", s=28, color=color)
        axes.scatter([e.block.recall], [e.block.precision], marker="s", s=28, color=color)
    axes.set_xlabel("recall")
    axes.set_ylabel("precision")
    axes.set_xlim(0.0, 1.0)
    axes.set_ylim(0.0, 1.02)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower left", title="o FLAG, \u25a1 BLOCK threshold")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
