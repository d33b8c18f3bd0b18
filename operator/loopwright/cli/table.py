"""Tables and trees of text, laid out to the terminal's width (pure: a Style in, lines out)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from loopwright.cli.style import BOLD, Health, Style, cut, pad, width

GAP = 2
MIN_COLUMN = 4


@dataclass(frozen=True)
class Cell:
    """One cell: its text, coloured as ``health`` (or not at all)."""

    text: str
    health: Health = Health.NONE

    @classmethod
    def of(cls, value: Cell | str) -> Cell:
        return value if isinstance(value, Cell) else cls(value)


@dataclass
class Node:
    """One row of a tree and the rows below it."""

    name: str
    kind: str
    health: Health = Health.NONE
    status: str = ""
    age: str = ""
    info: str = ""
    children: list[Node] = field(default_factory=list)


def _fit(widths: list[int], limit: int | None) -> list[int]:
    """Column widths that fit ``limit``: the last column gives way first, then the widest ones."""
    if limit is None:
        return widths
    widths = list(widths)
    over = sum(widths) + GAP * (len(widths) - 1) - limit
    if over <= 0:
        return widths
    last = len(widths) - 1
    give = min(over, max(widths[last] - 10, 0))
    widths[last] -= give
    over -= give
    while over > 0:
        widest = max(range(len(widths)), key=lambda i: widths[i])
        if widths[widest] <= MIN_COLUMN:
            break
        widths[widest] -= 1
        over -= 1
    return widths


def table(headers: Sequence[str], rows: Sequence[Sequence[Cell | str]], style: Style) -> list[str]:
    """Aligned columns under bold headers; cells cut with an ellipsis where the terminal is narrow."""
    cells = [[Cell.of(c) for c in row] for row in rows]
    natural = [max([width(h), *(width(r[i].text) for r in cells)]) for i, h in enumerate(headers)]
    widths = _fit(natural, style.width)
    out = [_line([Cell(h) for h in headers], widths, style, header=True)]
    out += [_line(row, widths, style) for row in cells]
    return out


def _line(row: Sequence[Cell], widths: Sequence[int], style: Style, *, header: bool = False) -> str:
    parts = []
    for i, (cell, w) in enumerate(zip(row, widths, strict=True)):
        text = cut(style.text(cell.text), w, ellipsis=style.ellipsis)
        if i < len(row) - 1:
            text = pad(text, w)
        parts.append(style.paint(text, BOLD) if header else style.health(text, cell.health))
    return (" " * GAP).join(parts).rstrip()


def tree_rows(roots: Sequence[Node], style: Style) -> list[list[Cell]]:
    """The nodes as table rows, the NAME column drawn as a tree with a status symbol per node."""
    branch, last, through, blank = style.tree
    rows: list[list[Cell]] = []

    def walk(node: Node, lead: str, joint: str) -> None:
        symbol = style.symbol(node.health)
        rows.append([Cell(f"{lead}{joint}{symbol} {node.name}", node.health), Cell(node.kind),
                     Cell(node.status, node.health), Cell(node.age), Cell(node.info)])
        below = lead + ((blank if joint == last else through) if joint else "")
        for i, child in enumerate(node.children):
            walk(child, below, last if i == len(node.children) - 1 else branch)

    for root in roots:
        walk(root, "", "")
    return rows


TREE_HEADERS = ("NAME", "KIND", "STATUS", "AGE", "INFO")


def tree(roots: Sequence[Node], style: Style) -> list[str]:
    return table(TREE_HEADERS, tree_rows(roots, style), style)


def fields(pairs: Sequence[tuple[str, Cell | str]], style: Style) -> list[str]:
    """``Label:  value`` lines with the values aligned (a header block, as kubectl describe)."""
    label_width = max((width(label) for label, _ in pairs), default=0) + 2
    lines = []
    for label, value in pairs:
        cell = Cell.of(value)
        text = style.text(cell.text)
        if style.width is not None:
            text = cut(text, max(style.width - label_width, 10), ellipsis=style.ellipsis)
        lines.append(pad(f"{label}:", label_width) + style.health(text, cell.health))
    return lines
