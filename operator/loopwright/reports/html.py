"""Self-contained HTML pages: inline CSS and SVG, no scripts, no fonts or images from anywhere.

A report is one file that opens the same on a laptop without network access, in a mail client
or from an S3 console, and reads top to bottom without JavaScript. Every function here is pure
and escapes what it is given.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from html import escape

CSS = """
:root { color-scheme: light; --ok: #1a7f37; --bad: #cf222e; --warn: #9a6700; --ink: #1f2328;
        --muted: #59636e; --line: #d1d9e0; --panel: #f6f8fa; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif;
       color: var(--ink); margin: 0 auto; max-width: 1100px; padding: 24px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; }
h3 { font-size: 15px; margin: 0 0 6px; }
.sub { color: var(--muted); margin: 0 0 16px; }
.banner { border-radius: 8px; padding: 14px 16px; margin: 12px 0 20px; border: 1px solid var(--line); }
.banner.ok { background: #dafbe1; border-color: #aceebb; }
.banner.bad { background: #ffebe9; border-color: #ffcecb; }
.banner.warn { background: #fff8c5; border-color: #f5e0a0; }
.banner strong { font-size: 16px; }
.facts { display: grid; grid-template-columns: repeat(auto-fill, minmax(180px, 1fr)); gap: 8px 16px; }
.fact { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px; }
.fact .k { color: var(--muted); font-size: 12px; }
.fact .v { font-size: 16px; font-variant-numeric: tabular-nums; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 12px; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); vertical-align: middle; }
th { font-size: 12px; color: var(--muted); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.pill { display: inline-block; border-radius: 10px; padding: 0 8px; font-size: 12px; font-weight: 600; }
.pill.ok { background: #dafbe1; color: var(--ok); }
.pill.bad { background: #ffebe9; color: var(--bad); }
.pill.warn { background: #fff8c5; color: var(--warn); }
.pill.none { background: var(--panel); color: var(--muted); }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: 14px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 12px; break-inside: avoid; }
.card.bad { border-color: #ff8182; }
.legend { color: var(--muted); font-size: 12px; }
.legend .sw { display: inline-block; width: 10px; height: 10px; margin: 0 4px 0 10px; }
footer { color: var(--muted); font-size: 12px; margin-top: 32px; border-top: 1px solid var(--line);
         padding-top: 8px; }
code { font-size: 12px; background: var(--panel); padding: 1px 4px; border-radius: 4px; }
svg text { font: 11px system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; fill: var(--muted); }
"""


def json_twin(uri: str) -> str:
    """Every HTML report has a JSON twin with the same data next to it."""
    return uri.removesuffix(".html") + ".json"


def e(value: object) -> str:
    """Escaped text of any value."""
    return escape("" if value is None else str(value), quote=True)


def page(*, title: str, subtitle: str, body: Iterable[str], footer: str) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<meta name=\"generator\" content=\"Loopwright\">"
            f"<title>{e(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{e(title)}</h1><p class=\"sub\">{e(subtitle)}</p>"
            + "".join(body) + f"<footer>{footer}</footer></body></html>\n")


def pill(text: str, tone: str) -> str:
    return f'<span class="pill {e(tone)}">{e(text)}</span>'


def banner(headline: str, detail: str, tone: str) -> str:
    return f'<div class="banner {e(tone)}"><strong>{e(headline)}</strong><br>{e(detail)}</div>'


def facts(pairs: Sequence[tuple[str, object]]) -> str:
    cells = "".join(f'<div class="fact"><div class="k">{e(k)}</div><div class="v">{e(v)}</div></div>'
                    for k, v in pairs)
    return f'<div class="facts">{cells}</div>'


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, numeric: Sequence[int] = ()) -> str:
    """A table of already escaped cells (``numeric`` columns are right-aligned)."""
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def section(title: str, *parts: str) -> str:
    return f"<h2>{e(title)}</h2>" + "".join(parts)


def number(value: object, digits: int = 4) -> str:
    """A statistic or metric as reports and the plugin print it: 4 significant digits, thousands
    separated, an exponent only for very small or very large values."""
    if value is None:
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if not math.isfinite(value):
        return str(value)
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}g}"
