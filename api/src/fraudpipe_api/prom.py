"""Decision counts from the scorers' own counter in Prometheus (`fraudpipe_scorer_decisions`):
only alerts are stored in PostgreSQL, so APPROVE counts, the alert rate and each model's
traffic share come from there when PROMETHEUS_URL is set."""

from __future__ import annotations

import logging
import math

import httpx

log = logging.getLogger(__name__)


async def decision_counts(
    prometheus_url: str | None,
    window_s: float,
    by: str,
    timeout_s: float,
    at: float | None = None,
    selector: str = "",
) -> dict[tuple[str, ...], int] | None:
    """`sum by (<by>) (increase(...{selector}[window]))` ending now or at the Unix time `at`,
    or None when Prometheus is unset or down (statistics degrade to what PostgreSQL knows
    rather than failing). `selector` (label matchers) keeps other pipelines' scorers out."""
    if not prometheus_url:
        return None
    labels = tuple(label.strip() for label in by.split(","))
    window = f"{max(1, math.ceil(window_s))}s"
    metric = (
        f"fraudpipe_scorer_decisions_total{{{selector}}}"
        if selector
        else ("fraudpipe_scorer_decisions_total")
    )
    query = f"sum by ({by}) (increase({metric}[{window}]))"
    params = {"query": query} | ({"time": f"{at:.3f}"} if at is not None else {})
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            response = await client.get(prometheus_url.rstrip("/") + "/api/v1/query", params=params)
            response.raise_for_status()
            body = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        log.warning("prometheus query failed: %r", exc)
        return None
    counts: dict[tuple[str, ...], int] = {}
    for sample in body.get("data", {}).get("result", []):
        key = tuple(str(sample["metric"].get(label, "")) for label in labels)
        value = float(sample["value"][1])
        counts[key] = round(value) if math.isfinite(value) else 0
    return counts
