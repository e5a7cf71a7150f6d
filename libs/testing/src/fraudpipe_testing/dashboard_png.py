"""Draw a Grafana dashboard's panels from a real Prometheus, as a PNG, without Grafana.

Each panel's own PromQL (its `targets[].expr`, with `$namespace`/`$pipeline` filled in) is sent
to Prometheus' HTTP API (`/api/v1/query_range`); the series that come back are drawn as SVG
lines on a page laid out by the panels' `gridPos`, which headless Chromium screenshots. Nothing
is made up: a panel without data says "no data". Grafana's styling is not imitated.
"""

from __future__ import annotations

import html
import json
import math
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

COLUMNS = 24  # Grafana's grid
CELL_W, CELL_H = 64, 34  # pixels per grid unit
COLORS = ["#3274d9", "#e02f44", "#56a64b", "#ff9830", "#a352cc", "#8ab8ff", "#f2cc0c", "#70dbed"]


@dataclass(frozen=True)
class Series:
    label: str
    points: list[tuple[float, float]]


def fill(expr: str, variables: dict[str, str]) -> str:
    for name, value in variables.items():
        expr = expr.replace(f"${name}", value)
    return expr


def legend(template: str, metric: dict[str, str]) -> str:
    text = template or ", ".join(f"{k}={v}" for k, v in metric.items() if k != "__name__")
    for key, value in metric.items():
        short = value[:19] if value.startswith("sha256:") else value  # digests: 12 hex digits
        text = text.replace("{{" + key + "}}", short)
    return text


def query_range(prometheus: str, expr: str, start: float, end: float, step: float) -> list[Any]:
    response = httpx.get(
        f"{prometheus}/api/v1/query_range",
        params={"query": expr, "start": start, "end": end, "step": step},
        timeout=30,
    )
    response.raise_for_status()
    result: list[Any] = response.json()["data"]["result"]
    return result


def panel_series(
    prometheus: str, panel: dict[str, Any], variables: dict[str, str], span: tuple[float, float]
) -> list[Series]:
    start, end = span
    step = max((end - start) / 200, 1.0)
    found = []
    for target in panel.get("targets", []):
        for item in query_range(prometheus, fill(target["expr"], variables), start, end, step):
            points = [(float(t), float(v)) for t, v in item["values"] if math.isfinite(float(v))]
            if points:
                found.append(Series(legend(target.get("legendFormat", ""), item["metric"]), points))
    return found


def fmt(value: float, unit: str) -> str:
    if unit == "percentunit":
        return f"{value * 100:.3g}%"
    if unit == "s":
        return f"{value * 1000:.3g} ms" if abs(value) < 1 else f"{value:.3g} s"
    if unit == "reqps":
        return f"{value:.3g}/s"
    return f"{value:.3g}"


def svg(series: list[Series], unit: str, width: int, height: int, span: tuple[float, float]) -> str:
    if not series:
        return f'<div class="empty" style="height:{height}px">no data</div>'
    left, bottom, top = 70, 18, 6
    ys = [v for s in series for _, v in s.points]
    low, high = min(0.0, *ys), max(ys)
    if high == low:
        high = low + 1
    t0, t1 = span

    def x(t: float) -> float:
        return left + (t - t0) / (t1 - t0) * (width - left - 8)

    def y(v: float) -> float:
        return top + (high - v) / (high - low) * (height - top - bottom)

    parts = [f'<svg width="{width}" height="{height}">']
    for i in range(5):
        value = low + (high - low) * i / 4
        parts.append(
            f'<line x1="{left}" x2="{width - 8}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
            'stroke="#333" />'
            f'<text x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end">'
            f"{html.escape(fmt(value, unit))}</text>"
        )
    for i in range(4):
        t = t0 + (t1 - t0) * i / 3
        label = time.strftime("%H:%M:%S", time.gmtime(t))
        parts.append(f'<text x="{x(t):.1f}" y="{height - 3}" text-anchor="middle">{label}</text>')
    for n, s in enumerate(series):
        line = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in s.points)
        color = COLORS[n % len(COLORS)]
        parts.append(f'<polyline points="{line}" fill="none" stroke="{color}" stroke-width="2" />')
    parts.append("</svg>")
    return "".join(parts)


def stat(series: list[Series], unit: str, height: int) -> str:
    if not series:
        return f'<div class="empty" style="height:{height}px">no data</div>'
    value = sum(s.points[-1][1] for s in series)
    return f'<div class="stat" style="height:{height}px">{html.escape(fmt(value, unit))}</div>'


def render_html(
    dashboard: dict[str, Any],
    prometheus: str,
    variables: dict[str, str],
    span: tuple[float, float],
    caption: str,
) -> tuple[str, int, int]:
    """The page, and its size in pixels."""
    boxes = []
    bottom = 0
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        width, height = grid["w"] * CELL_W - 8, grid["h"] * CELL_H - 8
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "none")
        series = panel_series(prometheus, panel, variables, span)
        per_row = max(1, (width - 12) // 170)
        legend_rows = -(-len(series) // per_row)
        chart_h = height - 28 - (0 if panel["type"] == "stat" else 16 * legend_rows)
        body = (
            stat(series, unit, chart_h)
            if panel["type"] == "stat"
            else svg(series, unit, width - 12, max(chart_h, 60), span)
        )
        keys = "".join(
            f'<span style="color:{COLORS[n % len(COLORS)]}">&#9644; {html.escape(s.label)}</span>'
            for n, s in enumerate(series)
        )
        legend_html = "" if panel["type"] == "stat" else f'<div class="legend">{keys}</div>'
        left, top = grid["x"] * CELL_W, grid["y"] * CELL_H + 40
        boxes.append(
            f'<div class="panel" style="left:{left}px;top:{top}px;'
            f'width:{width}px;height:{height}px"><div class="title">'
            f"{html.escape(panel['title'])}</div>{body}{legend_html}</div>"
        )
        bottom = max(bottom, (grid["y"] + grid["h"]) * CELL_H + 40)
    page_w = COLUMNS * CELL_W
    page = f"""<!doctype html><html><head><meta charset="utf-8"><style>
body {{ margin:0; background:#111217; color:#ccccdc; font:12px sans-serif; }}
.head {{ position:absolute; left:8px; top:8px; font-size:14px; }}
.panel {{ position:absolute; background:#181b1f; border:1px solid #2c3235; padding:4px 6px;
  box-sizing:border-box; overflow:hidden; }}
.title {{ font-weight:bold; margin-bottom:4px; }}
svg text {{ fill:#8e8e99; font-size:10px; }}
.legend span {{ display:inline-block; width:166px; white-space:nowrap; overflow:hidden; }}
.legend {{ overflow:hidden; }}
.stat {{ display:flex; align-items:center; justify-content:center; font-size:32px;
  color:#73bf69; }}
.empty {{ display:flex; align-items:center; justify-content:center; color:#666; }}
</style></head><body><div class="head">{html.escape(dashboard["title"])} &mdash;
{html.escape(caption)}</div>{"".join(boxes)}</body></html>"""
    return page, page_w, bottom + 8


def render_png(
    dashboard_json: Path,
    prometheus: str,
    variables: dict[str, str],
    span: tuple[float, float],
    out: Path,
    *,
    caption: str,
    chromium: str = "chromium",
) -> None:
    dashboard = json.loads(dashboard_json.read_text())
    page, width, height = render_html(dashboard, prometheus, variables, span, caption)
    with tempfile.TemporaryDirectory(prefix="fraudpipe-dashboard-") as scratch:
        html_path = Path(scratch) / "dashboard.html"
        html_path.write_text(page)
        subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--user-data-dir={scratch}/profile",
                f"--window-size={width},{height}",
                f"--screenshot={out}",
                html_path.as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
