"""Picture the Grafana dashboard of manifests/monitoring with live data, for the README (needs
chromium and a Prometheus that scraped a loop, e.g. right after `make kind-monitoring`):

    kubectl -n monitoring port-forward svc/prometheus-operated 9090 &
    python tests/report_samples/dashboard.py http://127.0.0.1:9090 NAMESPACE DEPLOYMENT START END

Each panel's queries run over START..END (Unix seconds) through Prometheus' HTTP API, as Grafana
would with the variables set to NAMESPACE and DEPLOYMENT; time series are drawn as SVG lines and
table panels list the values at END (Grafana's instant queries), placed on the dashboard's own
24-column grid. No Grafana is needed (none runs here); the picture is of the queries and the data,
not of Grafana's styling.
"""

from __future__ import annotations

import html
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent)]

from browser import screenshot  # noqa: E402

DASHBOARD = HERE.parents[1] / "manifests" / "monitoring" / "loopwright-dashboard.json"
COLUMN, ROW = 46, 34  # pixels per grid column and row
COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def _legend(template: str | None, metric: dict[str, str]) -> str:
    if not template:
        return ", ".join(f"{k}={v}" for k, v in metric.items() if k != "__name__")
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), template)


def _query(client: httpx.Client, expr: str, start: float, end: float, *,
           instant: bool) -> list[dict[str, Any]]:
    """Series of (time, value) pairs: over START..END, or at END alone for an instant (table) query."""
    if instant:
        body = client.get("/api/v1/query", params={"query": expr, "time": end}).json()
    else:
        step = max(5, int((end - start) / 200))
        body = client.get("/api/v1/query_range",
                          params={"query": expr, "start": start, "end": end, "step": step}).json()
    if body["status"] != "success":
        raise RuntimeError(f"{expr}: {body}")
    result: list[dict[str, Any]] = body["data"]["result"]
    for found in result:
        found.setdefault("values", [found.pop("value")] if "value" in found else [])
    return result


def _chart(lines: list[tuple[str, list[tuple[float, float]]]], width: int, height: int,
           start: float, end: float) -> str:
    """An SVG time series: one polyline per series, the y axis from 0 (or the minimum) to the maximum."""
    values = [v for _, points in lines for _, v in points]
    if not values:
        return '<p class="empty">No data</p>'
    low, high = min(0.0, *values), max(values)
    high = high if high > low else low + 1
    plot_w, plot_h = width - 50, height - 20

    def xy(t: float, v: float) -> str:
        x = 40 + (t - start) / (end - start) * plot_w
        return f"{x:.1f},{5 + (1 - (v - low) / (high - low)) * plot_h:.1f}"

    parts = [f'<svg width="{width}" height="{height}">',
             f'<text x="0" y="12" class="axis">{high:.3g}</text>',
             f'<text x="0" y="{plot_h + 5}" class="axis">{low:.3g}</text>',
             f'<line x1="40" y1="{plot_h + 5}" x2="{width - 10}" y2="{plot_h + 5}" class="grid"/>']
    for i, (_, points) in enumerate(lines):
        path = " ".join(xy(t, v) for t, v in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{COLOURS[i % len(COLOURS)]}" '
                     'stroke-width="2"/>')
    parts.append("</svg>")
    legend = "".join(f'<span style="color:{COLOURS[i % len(COLOURS)]}">&#9632; {html.escape(name)}</span>'
                     for i, (name, _) in enumerate(lines))
    return "".join(parts) + f'<div class="legend">{legend}</div>'


def _panel(client: httpx.Client, panel: dict[str, Any], variables: dict[str, str],
           start: float, end: float) -> str:
    grid = panel["gridPos"]
    width, height = grid["w"] * COLUMN - 12, grid["h"] * ROW - 12
    series: list[tuple[str, list[tuple[float, float]]]] = []
    for target in panel["targets"]:
        expr = re.sub(r"\$[a-z]+", lambda m: variables[m.group()], target["expr"])
        for found in _query(client, expr, start, end, instant=bool(target.get("instant"))):
            points = [(float(t), float(v)) for t, v in found["values"] if v not in ("NaN", "+Inf", "-Inf")]
            series.append((_legend(target.get("legendFormat"), found["metric"]), points))
    if panel["type"] == "table":
        rows = "".join(f"<tr><td>{html.escape(name)}</td><td>{points[-1][1]:.4g}</td></tr>"
                       for name, points in series if points)
        body = f"<table>{rows}</table>" if rows else '<p class="empty">No data</p>'
    else:
        body = _chart(series, width - 16, height - 70, start, end)
    style = (f"left:{grid['x'] * COLUMN}px;top:{grid['y'] * ROW + 40}px;"
             f"width:{width}px;height:{height}px")
    return f'<div class="panel" style="{style}"><h2>{html.escape(panel["title"])}</h2>{body}</div>'


def page(prometheus: str, namespace: str, deployment: str, start: float, end: float) -> str:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {"$namespace": namespace, "$deployment": deployment}
    with httpx.Client(base_url=prometheus, timeout=30) as client:
        panels = "".join(_panel(client, p, variables, start, end) for p in dashboard["panels"])
    title = html.escape(f"{dashboard['title']} (namespace {namespace}, deployment {deployment}, "
                        f"{(end - start) / 60:.0f} min)")
    return f"""<!doctype html><html><head><meta charset="utf-8"><style>
body {{ margin: 0; background: #111217; color: #ccccdc; font: 12px sans-serif; position: relative; }}
h1 {{ font-size: 16px; margin: 10px 12px; }}
.panel {{ position: absolute; box-sizing: border-box; margin: 6px; padding: 6px 8px; background: #181b1f;
          border: 1px solid #2c3235; border-radius: 3px; overflow: hidden; }}
h2 {{ font-size: 13px; margin: 0 0 6px; color: #fff; }}
table {{ border-collapse: collapse; width: 100%; }}
td {{ border-bottom: 1px solid #2c3235; padding: 2px 4px; }}
.axis {{ fill: #8e8e8e; font-size: 10px; }} .grid {{ stroke: #2c3235; }}
.legend span {{ margin-right: 10px; white-space: nowrap; }} .empty {{ color: #6e6e6e; }}
</style></head><body><h1>{title}</h1>{panels}</body></html>"""


def main() -> None:
    prometheus, namespace, deployment, start, end = sys.argv[1:6]
    dashboard = json.loads(DASHBOARD.read_text())
    bottom = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in dashboard["panels"])
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "dashboard.html"
        source.write_text(page(prometheus, namespace, deployment, float(start), float(end)))
        png = HERE / "dashboard.png"
        screenshot(source, png, width=24 * COLUMN + 12, height=bottom * ROW + 60)
        print(png)


if __name__ == "__main__":
    main()
