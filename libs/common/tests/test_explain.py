"""TreeSHAP against Shapley values computed by brute force over every coalition, on random
trees that split on the same feature several times along a path and route NaN both ways."""

from __future__ import annotations

import datetime as dt
import itertools
import math
from typing import Any

import numpy as np
import orjson
import pytest

from fraudpipe_common.contracts.decisions import (
    Contribution,
    Decision,
    DecisionRecord,
    Explanation,
    Reason,
    Track,
    Verdict,
)
from fraudpipe_common.explain import (
    ExplainerFormatError,
    ExplainerMismatchError,
    TreeExplainer,
    feature_reasons,
)
from fraudpipe_common.explain.trees import ExplainerFile, Tree

N_FEATURES = 5


def random_tree(rng: np.random.Generator, depth: int) -> Tree:
    columns: dict[str, list[Any]] = {k: [] for k in Tree.model_fields}

    def grow(rows: int, level: int) -> int:
        node = len(columns["feature"])
        for key in columns:
            columns[key].append(None)
        columns["cover"][node] = float(rows)
        if level == depth or rows < 4 or rng.random() < 0.15:
            for key, leaf in (("feature", 0), ("threshold", 0.0), ("left", -1), ("right", -1)):
                columns[key][node] = leaf
            columns["missing_left"][node] = False
            columns["value"][node] = float(rng.normal())
            return node
        # Few features, deep trees: the same feature comes back along a path.
        columns["feature"][node] = int(rng.integers(N_FEATURES))
        columns["threshold"][node] = float(rng.normal())
        columns["missing_left"][node] = bool(rng.random() < 0.5)
        columns["value"][node] = 0.0
        share = int(rng.integers(1, rows))
        columns["left"][node] = grow(share, level + 1)
        columns["right"][node] = grow(rows - share, level + 1)
        return node

    grow(1000, 0)
    return Tree(**columns)


def random_file(seed: int, trees: int = 4, depth: int = 6) -> ExplainerFile:
    rng = np.random.default_rng(seed)
    return ExplainerFile(
        features=tuple(f"f{i}" for i in range(N_FEATURES)),
        link="logistic",
        base_offset=float(rng.normal()),
        trees=[random_tree(rng, depth) for _ in range(trees)],
    )


def brute_force(file: ExplainerFile, x: np.ndarray) -> tuple[np.ndarray, float]:
    """Shapley values of TreeSHAP's path-dependent value function, by definition."""

    def value(coalition: set[int]) -> float:
        def walk(tree: Tree, node: int) -> float:
            left, right = tree.left[node], tree.right[node]
            if left == -1:
                return tree.value[node]
            feature = tree.feature[node]
            if feature in coalition:
                xv, threshold = np.float32(x[feature]), np.float32(tree.threshold[node])
                goes_left = tree.missing_left[node] if np.isnan(xv) else xv <= threshold
                return walk(tree, left if goes_left else right)
            return (
                tree.cover[left] * walk(tree, left) + tree.cover[right] * walk(tree, right)
            ) / tree.cover[node]

        return file.base_offset + sum(walk(tree, 0) for tree in file.trees)

    n = len(file.features)
    phi = np.zeros(n)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        for size in range(n):
            weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
            for subset in itertools.combinations(others, size):
                phi[i] += weight * (value({*subset, i}) - value(set(subset)))
    return phi, value(set())


def random_rows(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(n, N_FEATURES))
    rows[rng.random(rows.shape) < 0.2] = np.nan
    return rows


@pytest.mark.parametrize("seed", range(6))
def test_tree_shap_equals_brute_force_shapley_values(seed: int) -> None:
    file = random_file(seed)
    explainer = TreeExplainer.from_file(file)
    rows = random_rows(seed + 100, 4)
    phi = explainer.shap_values(rows)
    for row, ours in zip(rows, phi, strict=True):
        expected, empty = brute_force(file, row)
        np.testing.assert_allclose(ours, expected, atol=1e-10)
        assert explainer.expected_margin == pytest.approx(empty, abs=1e-10)


def test_contributions_add_up_to_the_margin_of_each_row() -> None:
    file = random_file(7, trees=30, depth=12)
    explainer = TreeExplainer.from_file(file)
    rows = random_rows(8, 300)
    direct = np.array([brute_force_margin(file, row) for row in rows])
    np.testing.assert_allclose(explainer.margins(rows), direct, atol=1e-9)


def brute_force_margin(file: ExplainerFile, x: np.ndarray) -> float:
    total = file.base_offset
    for tree in file.trees:
        node = 0
        while tree.left[node] != -1:
            xv = np.float32(x[tree.feature[node]])
            threshold = np.float32(tree.threshold[node])
            goes_left = tree.missing_left[node] if np.isnan(xv) else xv <= threshold
            node = tree.left[node] if goes_left else tree.right[node]
        total += tree.value[node]
    return total


def test_explanations_name_the_largest_effects_signed_as_risk() -> None:
    file = random_file(3)
    rows = random_rows(4, 3)
    for link, sign in (("logistic", 1.0), ("exp2_negative", -1.0)):
        explainer = TreeExplainer.from_file(file.model_copy(update={"link": link}))
        phi = explainer.shap_values(rows) * sign
        for row, shares, explanation in zip(rows, phi, explainer.explain(rows), strict=True):
            order = np.argsort(-np.abs(shares), kind="stable")[:5]
            assert [c.feature for c in explanation.contributions] == [
                file.features[i] for i in order
            ]
            assert [c.contribution for c in explanation.contributions] == pytest.approx(
                shares[order], abs=1e-6
            )
            assert explanation.base == pytest.approx(explainer.expected_margin * sign, abs=1e-6)
            np.testing.assert_equal([c.value for c in explanation.contributions], row[order])


def test_a_file_that_disagrees_with_the_graph_is_refused() -> None:
    explainer = TreeExplainer.from_file(random_file(5))
    rows = random_rows(6, 20)
    explainer.check_against(rows, explainer.scores(rows) + 5e-5)
    shifted = explainer.scores(rows)
    shifted[3] += 0.01
    with pytest.raises(ExplainerMismatchError, match="row 3 scores"):
        explainer.check_against(rows, shifted)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"cover": "zero"}, "cover 0.0; covers must be > 0"),
        ({"left": "backwards"}, "children must come after it"),
        ({"feature": "outside"}, "splits on feature index 9"),
    ],
)
def test_malformed_files_are_refused_naming_the_problem(
    change: dict[str, str], message: str
) -> None:
    data = random_file(1).model_dump(mode="json")
    tree = data["trees"][0]
    (what,) = change
    if what == "cover":
        tree["cover"][1] = 0.0
    elif what == "left":
        tree["left"][0] = 0
    else:
        tree["feature"][0] = 9
    with pytest.raises(ExplainerFormatError, match=message):
        TreeExplainer.from_json(orjson.dumps(data))


def test_feature_reasons_are_the_top_three_that_raised_the_risk() -> None:
    explanation = Explanation(
        unit="log-odds of fraud",
        base=-4.0,
        contributions=[
            Contribution(feature="amount", value=9450.0, contribution=2.5),
            Contribution(feature="hour_of_day", value=3.0, contribution=-1.0),
            Contribution(feature="new_device", value=1.0, contribution=0.75),
            Contribution(feature="count_1m", value=6.0, contribution=0.5),
            Contribution(feature="mcc_risk", value=0.9, contribution=0.25),
        ],
    )
    assert feature_reasons(explanation) == [
        Reason(
            code="feature:amount",
            detail="amount = 9450 raised the risk by 2.500 (log-odds of fraud)",
        ),
        Reason(
            code="feature:new_device",
            detail="new_device = 1 raised the risk by 0.750 (log-odds of fraud)",
        ),
        Reason(
            code="feature:count_1m",
            detail="count_1m = 6 raised the risk by 0.500 (log-odds of fraud)",
        ),
    ]


def test_a_decision_with_an_explanation_encodes_as_the_contract_does() -> None:
    now = dt.datetime(2026, 12, 5, 12, tzinfo=dt.UTC)
    explanation = Explanation(
        unit="log-odds of fraud",
        base=-4.0,
        contributions=[Contribution(feature="amount", value=9450.0, contribution=2.5)],
    )
    record = DecisionRecord(
        "tx-1", "u-1", Verdict.BLOCK, 0.97, "sha256:" + "a" * 64, Track.STABLE,
        [Reason(code="model_score", detail="score 0.9700 >= block 0.9000")],
        {"amount": 9450.0}, now, now, explanation,
    )  # fmt: skip
    assert record.to_json() == record.to_model().to_json()
    assert Decision.from_json(record.to_json()).explanation == explanation
    plain = record._replace(explanation=None)
    assert b"explanation" not in plain.to_json()
    assert plain.to_json() == plain.to_model().to_json()
