"""`fraudpipe-api report --date YYYY-MM-DD`: one UTC day of a pipeline, as JSON (or text).

Counts by decision, the alert rate, precision from analyst feedback and the rules that fired
most. FLAG and BLOCK come from PostgreSQL (the alerts table); APPROVE only from Prometheus
(`PROMETHEUS_URL`, decision 42), so without it, or when it no longer holds that day, APPROVE
and the alert rate are null rather than wrong. Shadow decisions are left out: they did not act.
Precision is fraud / (fraud + legit) over the day's alerts whose latest label is one of those
(decision 41).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
from typing import Any

import asyncpg
import orjson
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from fraudpipe_api.prom import decision_counts

DAY_S = 86_400


class ReportSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    database_url: str = Field(description="PostgreSQL: alerts and feedback.")
    prometheus_url: str | None = Field(default=None, description="For APPROVE counts.")
    prometheus_selector: str = Field(
        default="",
        description="Label matchers of this pipeline's scorers in Prometheus, e.g. "
        'namespace="payments", service="payments-scorer" (empty: every scorer it scrapes).',
    )
    dependency_timeout_s: float = Field(default=10.0, gt=0, le=120)


def parse_day(text: str | None, today: dt.date | None = None) -> dt.date:
    """The day to report: `YYYY-MM-DD`, `today`, `yesterday` or nothing (yesterday, UTC)."""
    today = today or dt.datetime.now(dt.UTC).date()
    if text in (None, "", "yesterday"):
        return today - dt.timedelta(days=1)
    if text == "today":
        return today
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--date must be YYYY-MM-DD, today or yesterday, not {text!r}") from None


_COUNTS = """
SELECT decision, count(*) AS n FROM alerts
WHERE decided_ts >= $1 AND decided_ts < $2 AND track <> 'shadow'
GROUP BY decision
"""
_LABELS = """
SELECT count(*) FILTER (WHERE label = 'fraud') AS fraud,
       count(*) FILTER (WHERE label = 'legit') AS legit,
       count(*) FILTER (WHERE label = 'unsure') AS unsure
FROM (SELECT DISTINCT ON (f.tx_id) f.label FROM feedback f
      JOIN alerts a ON a.tx_id = f.tx_id
      WHERE a.decided_ts >= $1 AND a.decided_ts < $2 AND a.track <> 'shadow'
      ORDER BY f.tx_id, f.id DESC) latest
"""
_RULES = """
SELECT reason->>'code' AS code, count(*) AS alerts,
       count(*) FILTER (WHERE decision = 'BLOCK') AS blocks
FROM alerts, jsonb_array_elements(reasons) AS reason
WHERE decided_ts >= $1 AND decided_ts < $2 AND track <> 'shadow'
  AND reason->>'code' NOT LIKE 'feature:%'  -- the model's explanations, not rules
GROUP BY code ORDER BY alerts DESC, code LIMIT $3
"""


async def build_report(
    settings: ReportSettings, day: dt.date, top: int = 10, now: dt.datetime | None = None
) -> dict[str, Any]:
    start = dt.datetime.combine(day, dt.time(), dt.UTC)
    end = start + dt.timedelta(days=1)
    now = now or dt.datetime.now(dt.UTC)
    conn = await asyncpg.connect(settings.database_url, timeout=settings.dependency_timeout_s)
    try:
        counts = {r["decision"]: r["n"] for r in await conn.fetch(_COUNTS, start, end)}
        labels = await conn.fetchrow(_LABELS, start, end)
        rules = [dict(r) for r in await conn.fetch(_RULES, start, end, top)]
    finally:
        await conn.close()
    # The counter's increase over the day, read at its end (or now, for today so far).
    until = min(end, now)
    by_track = await decision_counts(
        settings.prometheus_url,
        max((until - start).total_seconds(), 1),
        "decision,track",
        settings.dependency_timeout_s,
        at=until.timestamp(),
        selector=settings.prometheus_selector,
    )
    approve = None
    if by_track:  # {} when Prometheus has nothing for the day: unknown, not zero
        approve = sum(n for (verdict, track), n in by_track.items() if verdict == "APPROVE"
                      and track != "shadow")  # fmt: skip
    flag, block = counts.get("FLAG", 0), counts.get("BLOCK", 0)
    decided = None if approve is None else approve + flag + block
    fraud, legit = (labels["fraud"], labels["legit"]) if labels else (0, 0)
    return {
        "date": day.isoformat(),
        "from": start.isoformat(),
        "to": end.isoformat(),
        "complete": now >= end,
        "decisions": {"APPROVE": approve, "FLAG": flag, "BLOCK": block, "total": decided},
        "alert_rate": (flag + block) / decided if decided else None,
        "feedback": {
            "fraud": fraud,
            "legit": legit,
            "unsure": labels["unsure"] if labels else 0,
            "labelled_alerts": fraud + legit + (labels["unsure"] if labels else 0),
            "precision": fraud / (fraud + legit) if fraud + legit else None,
        },
        "top_rules": rules,
    }


def as_text(report: dict[str, Any]) -> str:
    d, f = report["decisions"], report["feedback"]

    def share(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2%}"

    approve = "n/a (no Prometheus)" if d["APPROVE"] is None else f"{d['APPROVE']:,}"
    lines = [
        f"fraudpipe daily report {report['date']} (UTC)"
        + ("" if report["complete"] else ", so far"),
        f"  decisions   APPROVE {approve}   FLAG {d['FLAG']:,}   BLOCK {d['BLOCK']:,}",
        f"  alert rate  {share(report['alert_rate'])}",
        f"  precision   {share(f['precision'])} from {f['fraud'] + f['legit']:,} labelled "
        f"alerts ({f['fraud']:,} fraud, {f['legit']:,} legit, {f['unsure']:,} unsure)",
        "  top rules fired:",
    ]
    lines += [
        f"    {r['code']:<24} {r['alerts']:>8,} alerts {r['blocks']:>8,} blocks"
        for r in report["top_rules"]
    ] or ["    (none)"]
    return "\n".join(lines)


def main(date: str | None, output: str, top: int) -> int:
    try:
        day = parse_day(date)
    except ValueError as exc:
        print(f"fraudpipe-api report: {exc}", file=sys.stderr)
        return 2
    settings = ReportSettings()  # type: ignore[call-arg]  # from the environment
    try:
        report = asyncio.run(build_report(settings, day, top))
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        print(f"fraudpipe-api report: cannot read PostgreSQL: {exc!r}", file=sys.stderr)
        return 1
    if output == "text":
        print(as_text(report))
    else:
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0
