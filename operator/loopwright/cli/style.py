"""Colour, symbols and width, following the terminal: pure once the terminal has been asked.

Colour is on only for a terminal, and off with ``NO_COLOR`` (https://no-color.org),
``TERM=dumb`` or ``--no-color``. Width is the terminal's; output to a pipe or file is
never cut. Symbols fall back to ASCII when the output encoding cannot show them.
"""

from __future__ import annotations

import os
import shutil
import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from typing import TextIO


class Health(StrEnum):
    """How good a thing is; decides its symbol and colour."""

    OK = "ok"
    PROGRESS = "progress"
    PENDING = "pending"
    PAUSED = "paused"
    WARN = "warn"
    BAD = "bad"
    UNKNOWN = "unknown"
    NONE = "none"


_SYMBOLS = {Health.OK: "✔", Health.PROGRESS: "⟳", Health.PENDING: "◌", Health.PAUSED: "॥",
            Health.WARN: "⚠", Health.BAD: "✖", Health.UNKNOWN: "?", Health.NONE: " "}
_ASCII = {Health.OK: "+", Health.PROGRESS: "~", Health.PENDING: ".", Health.PAUSED: "|",
          Health.WARN: "!", Health.BAD: "x", Health.UNKNOWN: "?", Health.NONE: " "}
_COLOURS = {Health.OK: "32", Health.PROGRESS: "36", Health.PENDING: "33", Health.PAUSED: "33",
            Health.WARN: "33", Health.BAD: "31", Health.UNKNOWN: "90", Health.NONE: ""}
DIM = "90"
BOLD = "1"
TREE_UNICODE = ("├─", "└─", "│ ", "  ")
TREE_ASCII = ("|-", "`-", "| ", "  ")


@dataclass(frozen=True)
class Style:
    """How to draw: colours on or off, the width to fit (None: never cut), unicode or ASCII."""

    color: bool = False
    width: int | None = None
    unicode: bool = True

    @classmethod
    def for_stream(cls, stream: TextIO, *, no_color: bool = False) -> Style:
        tty = stream.isatty()
        color = (tty and not no_color and "NO_COLOR" not in os.environ
                 and os.environ.get("TERM") != "dumb")
        width = shutil.get_terminal_size().columns if tty else None
        encoding = getattr(stream, "encoding", None) or "ascii"
        try:
            "".join(_SYMBOLS.values()).encode(encoding)
            "".join(TREE_UNICODE).encode(encoding)
            unicode = True
        except (UnicodeEncodeError, LookupError):
            unicode = False
        return cls(color=color, width=width, unicode=unicode)

    def symbol(self, health: Health) -> str:
        return (_SYMBOLS if self.unicode else _ASCII)[health]

    def paint(self, text: str, code: str) -> str:
        if not self.color or not code or not text:
            return text
        return f"\x1b[{code}m{text}\x1b[0m"

    def health(self, text: str, health: Health) -> str:
        return self.paint(text, _COLOURS[health])

    @property
    def tree(self) -> tuple[str, str, str, str]:
        """Branch, last branch, continuation, blank."""
        return TREE_UNICODE if self.unicode else TREE_ASCII

    @property
    def ellipsis(self) -> str:
        return "…" if self.unicode else "~"

    def text(self, value: str) -> str:
        """``value`` with characters the output cannot show replaced (ASCII mode)."""
        if self.unicode:
            return value
        return value.encode("ascii", "replace").decode()


def width(text: str) -> int:
    """Columns ``text`` takes in a terminal (wide East Asian characters take two)."""
    if text.isascii():
        return len(text)
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 0 if unicodedata.combining(c) else 1
               for c in text)


def cut(text: str, columns: int, *, ellipsis: str = "…") -> str:
    """``text`` shortened to ``columns`` with an ellipsis."""
    if width(text) <= columns:
        return text
    if columns <= 1:
        return text[:max(columns, 0)]
    out, used = [], 0
    for c in text:
        w = width(c)
        if used + w > columns - 1:
            break
        out.append(c)
        used += w
    return "".join(out) + ellipsis


def pad(text: str, columns: int) -> str:
    return text + " " * max(columns - width(text), 0)
