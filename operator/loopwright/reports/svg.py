"""Inline SVG charts for the reports: paired histograms, a confusion matrix, a bar of counts (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from loopwright.reports.html import e, number

REF = "#8c959f"
CUR = "#0969da"
BAD = "#cf222e"


def _share(counts: Sequence[float]) -> list[float]:
    total = float(sum(counts))
    return [c / total if total > 0 else 0.0 for c in counts]


def _label(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def histogram(labels: Sequence[str], series: Sequence[tuple[str, Sequence[float], str]], *, title: str,
              width: int = 340, height: int = 170) -> str:
    """Bars per bin for each ``(name, counts, colour)`` series, as shares of the series' total (so samples
    of different sizes compare), side by side in every bin."""
    shares = [(label, _share(counts), colour) for label, counts, colour in series]
    n = max(len(labels), 1)
    top = max([v for _, values, _ in shares for v in values] + [0.01])
    left, bottom, plot_h = 34, 38, height - 50
    slot = (width - left - 4) / n
    bar = max(slot * 0.76 / max(len(series), 1), 1.0)
    # Full width of its box, at most the drawn width; the height follows from the viewBox.
    parts = [f'<svg role="img" aria-label="{e(title)}" width="100%" style="max-width:{width}px" '
             f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg"><title>{e(title)}</title>']
    for frac in (0.0, 0.5, 1.0):
        y = 8 + plot_h * (1 - frac)
        parts.append(f'<line x1="{left}" x2="{width - 4}" y1="{y:.1f}" y2="{y:.1f}" stroke="#d1d9e0" '
                     f'stroke-width="1"/><text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">'
                     f"{top * frac:.0%}</text>")
    every = max(1, -(-n // 6))
    for i in range(len(labels)):
        x = left + i * slot + slot * 0.12
        for j, (name, values, colour) in enumerate(shares):
            value = values[i] if i < len(values) else 0.0
            h = plot_h * value / top
            parts.append(f'<rect x="{x + j * bar:.1f}" y="{8 + plot_h - h:.1f}" width="{bar:.1f}" '
                         f'height="{h:.1f}" fill="{colour}"><title>{e(labels[i])}: {e(name)} {value:.1%}'
                         "</title></rect>")
        if i % every == 0:
            parts.append(f'<text x="{x + bar * len(series) / 2:.1f}" y="{height - bottom + 16}" '
                         f'text-anchor="middle">{e(_label(labels[i], max(int(slot * every / 6), 4)))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def paired_histogram(labels: Sequence[str], reference: Sequence[float], current: Sequence[float], *,
                     title: str, drifted: bool = False) -> str:
    """Reference (grey) against current (blue, red when the feature drifted)."""
    return histogram(labels, [("reference", reference, REF), ("current", current, BAD if drifted else CUR)],
                     title=title)


def sparkline(reference: Sequence[float], current: Sequence[float], *, drifted: bool,
              width: int = 120, height: int = 28) -> str:
    """A tiny paired histogram for a table row."""
    ref, cur = _share(reference), _share(current)
    n = max(len(ref), len(cur), 1)
    top = max([*ref, *cur, 0.01])
    slot = width / n
    colour = BAD if drifted else CUR
    parts = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
             'xmlns="http://www.w3.org/2000/svg" aria-hidden="true">']
    for i in range(n):
        for j, (values, fill) in enumerate(((ref, REF), (cur, colour))):
            value = values[i] if i < len(values) else 0.0
            h = (height - 2) * value / top
            parts.append(f'<rect x="{i * slot + j * slot * 0.45:.1f}" y="{height - h:.1f}" '
                         f'width="{slot * 0.42:.1f}" height="{h:.1f}" fill="{fill}"/>')
    parts.append("</svg>")
    return "".join(parts)


def bars(labels: Sequence[str], counts: Sequence[float], *, title: str, colour: str = CUR) -> str:
    """One series of counts per bin (a feature's training distribution, residuals)."""
    return histogram(labels, [("share", counts, colour)], title=title, height=150)


def confusion_matrix(classes: Sequence[str], matrix: Sequence[Sequence[int]], *, size: int = 360) -> str:
    """Rows are the true class, columns the predicted one; shade by the share of the row."""
    n = max(len(classes), 1)
    pad, top = 90, 40
    cell = (size - pad) / n
    size_y = top + cell * n
    middle = top + cell * n / 2
    parts = [f'<svg role="img" aria-label="confusion matrix" width="{size}" height="{size_y:.0f}" '
             f'viewBox="0 0 {size} {size_y:.0f}" xmlns="http://www.w3.org/2000/svg">'
             "<title>confusion matrix</title>",
             f'<text x="{pad + (size - pad) / 2:.1f}" y="12" text-anchor="middle">predicted</text>',
             f'<text x="12" y="{middle:.1f}" text-anchor="middle" '
             f'transform="rotate(-90 12 {middle:.1f})">true</text>']
    for i, name in enumerate(classes):
        parts.append(f'<text x="{pad + i * cell + cell / 2:.1f}" y="{top - 8}" text-anchor="middle">'
                     f"{e(_label(name, 10))}</text>")
        parts.append(f'<text x="{pad - 6}" y="{top + i * cell + cell / 2 + 4:.1f}" text-anchor="end">'
                     f"{e(_label(name, 10))}</text>")
    for i, row in enumerate(matrix):
        total = sum(row) or 1
        for j, count in enumerate(row):
            share = count / total
            alpha = (0.12 if i == j else 0.08) + 0.8 * share
            fill = f"rgba(26,127,55,{alpha:.2f})" if i == j else f"rgba(207,34,46,{alpha:.2f})"
            x, y = pad + j * cell, top + i * cell
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{cell - 2:.1f}" height="{cell - 2:.1f}" '
                         f'fill="{fill}"><title>true {e(classes[i])}, predicted {e(classes[j])}: {count}'
                         f"</title></rect>")
            parts.append(f'<text x="{x + cell / 2:.1f}" y="{y + cell / 2 + 4:.1f}" text-anchor="middle" '
                         f'style="fill:#1f2328">{number(count)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def threshold_bar(value: float | None, threshold: float, *, width: int = 120, height: int = 14) -> str:
    """How close a statistic is to its threshold: a bar with the threshold marked."""
    if value is None:
        return ""
    scale = max(value, threshold) * 1.25 or 1.0
    bad = value > threshold
    w = width * min(value / scale, 1.0)
    t = width * threshold / scale
    return (f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'xmlns="http://www.w3.org/2000/svg" aria-hidden="true"><rect x="0" y="3" width="{width}" '
            f'height="{height - 6}" fill="#f6f8fa"/><rect x="0" y="3" width="{w:.1f}" height="{height - 6}" '
            f'fill="{BAD if bad else CUR}"/><line x1="{t:.1f}" x2="{t:.1f}" y1="0" y2="{height}" '
            'stroke="#1f2328" stroke-width="1.5"/></svg>')
