"""An alert's explanation for people: the rules that fired, then the model's strongest
features (decisions.v1 `explanation`, exact TreeSHAP), in numbers and in words."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

from fraudpipe_common.contracts.decisions import Explanation, Reason

FEATURE_REASON = "feature:"  # reason codes the scorer adds for the features (not rules)


def explain_alert(row: asyncpg.Record) -> dict[str, Any]:
    """The body of GET /v1/alerts/{tx_id}/explanation from `queries.get_explanation`'s row."""
    explanation = Explanation.model_validate_json(row["explanation"])
    rules = [
        Reason.model_validate(r)
        for r in orjson.loads(row["reasons"])
        if not r["code"].startswith(FEATURE_REASON)
    ]
    contributions = [
        {**c.model_dump(), "text": c.describe(explanation.unit)} for c in explanation.contributions
    ]
    return {
        "tx_id": row["tx_id"],
        "decision": row["decision"],
        "score": row["score"],
        "model_digest": row["model_digest"],
        "track": row["track"],
        "rules": [r.model_dump() for r in rules],
        "method": explanation.method,
        "unit": explanation.unit,
        "base": explanation.base,
        "contributions": contributions,
        "summary": summary(row["decision"], row["score"], rules, explanation),
    }


def summary(decision: str, score: float, rules: list[Reason], explanation: Explanation) -> str:
    fired = "; ".join(r.detail for r in rules) or "no rule"
    raised = [c for c in explanation.contributions if c.contribution > 0]
    lowered = [c for c in explanation.contributions if c.contribution < 0]
    sentences = [f"{decision} with model score {score:.4f} because: {fired}."]
    if raised:
        listed = ", ".join(f"{c.feature} = {c.value:g} (+{c.contribution:.3f})" for c in raised)
        sentences.append(f"What raised the model's risk most: {listed}.")
    if lowered:
        listed = ", ".join(f"{c.feature} = {c.value:g} ({c.contribution:.3f})" for c in lowered)
        sentences.append(f"What lowered it: {listed}.")
    sentences.append(
        f"Contributions are in {explanation.unit}, from an average transaction's "
        f"{explanation.base:.3f}."
    )
    return " ".join(sentences)
