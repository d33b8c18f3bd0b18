"""``get --watch``: keep the objects current with API watches and redraw as the loop moves.

One thread per kind lists, then watches from the list's resourceVersion, as an informer
does; a watch that ends (the server's timeout, a dropped connection, 410 Gone) lists again.
The screen is redrawn when an object changes and every second (ages move on), in place on
a terminal; to a pipe, a new picture is printed only when it differs from the last one.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from loopwright.api import names
from loopwright.cli.errors import CliError
from loopwright.cli.fmt import Obj, name

if TYPE_CHECKING:
    from loopwright.cli.commands import Context
    from loopwright.cli.loop import Objects

REDRAW_SECONDS = 1.0
RETRY_SECONDS = 2.0
SHORTEST_WATCH = 1.0
"""A watch that ended sooner than this is not restarted at once (no busy loop against a server that
ends every watch immediately)."""
HOME, CLEAR_LINE, CLEAR_BELOW = "\x1b[H", "\x1b[K", "\x1b[J"


class Cache:
    """The namespace's objects of every kind, kept current by one watching thread per kind."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.lock = threading.Lock()
        self.changed = threading.Event()
        self.objects: dict[names.KindName, dict[str, Obj]] = {k: {} for k in names.LOOP}
        self.problem: str | None = None

    def snapshot(self) -> Objects:
        with self.lock:
            return {k: list(v.values()) for k, v in self.objects.items()}

    def _replace(self, kind: names.KindName, items: Sequence[Obj]) -> None:
        with self.lock:
            self.objects[kind] = {name(o): o for o in items}
        self.changed.set()

    def _apply(self, kind: names.KindName, event: dict[str, object]) -> str | None:
        """Apply one watch event; returns the resourceVersion to go on from (None: list again)."""
        obj = event.get("object")
        if not isinstance(obj, dict):
            return None
        if event.get("type") == "ERROR":
            return None  # typically 410 Gone: the resourceVersion is too old
        version = str((obj.get("metadata") or {}).get("resourceVersion", ""))
        if event.get("type") == "BOOKMARK":
            return version
        with self.lock:
            if event.get("type") == "DELETED":
                self.objects[kind].pop(name(obj), None)
            else:
                self.objects[kind][name(obj)] = obj
        self.changed.set()
        return version

    def run(self, kind: names.KindName, first: tuple[Sequence[Obj], str]) -> None:
        items: Sequence[Obj]
        items, version = first
        while True:
            self._replace(kind, items)
            started = time.monotonic()
            try:
                for event in self.ctx.api.watch(kind, resource_version=version):
                    next_version = self._apply(kind, event)
                    if next_version is None:
                        break
                    version = next_version
                self.problem = None
                time.sleep(max(0.0, SHORTEST_WATCH - (time.monotonic() - started)))
                items, version = self.ctx.api.list(kind)
            except (CliError, OSError, ValueError) as exc:
                self.problem = f"watch of {kind.plural}: {exc}; retrying"
                self.changed.set()
                time.sleep(RETRY_SECONDS)
                try:
                    items, version = self.ctx.api.list(kind)
                except (CliError, OSError, ValueError):
                    continue


def fit_height(lines: list[str], height: int | None = None) -> list[str]:
    """The lines a terminal shows without scrolling (a redraw from the top must stay on screen)."""
    rows = (height or shutil.get_terminal_size().lines) - 1
    if len(lines) <= rows:
        return lines
    hidden = len(lines) - rows + 1
    return [*lines[:max(rows - 1, 0)], f"... {hidden} more lines: a taller terminal shows them"]


def follow(ctx: Context, render: Callable[[Objects], list[str]], *, frames: int | None = None) -> None:
    """Draw ``render(objects)`` until interrupted (or ``frames`` pictures were drawn); a render error
    (the model is gone) is shown, not fatal."""
    cache = Cache(ctx)
    firsts = {kind: ctx.api.list(kind) for kind in names.LOOP}  # fails here, once, on RBAC or no cluster
    for kind, first in firsts.items():
        threading.Thread(target=cache.run, args=(kind, first), daemon=True,
                         name=f"watch-{kind.plural}").start()
    tty = ctx.out.isatty()
    last: list[str] | None = None
    drawn = 0
    while frames is None or drawn < frames:
        cache.changed.wait(REDRAW_SECONDS)
        cache.changed.clear()
        try:
            lines = render(cache.snapshot())
        except CliError as exc:
            lines = [f"error: {exc}"]
        if cache.problem:
            lines = [*lines, "", cache.problem]
        if tty:
            shown = fit_height(lines)
            ctx.out.write(HOME + "".join(f"{line}{CLEAR_LINE}\n" for line in shown) + CLEAR_BELOW)
        elif lines != last:
            ctx.out.write("\n".join(lines) + "\n\n")
        else:
            continue
        ctx.out.flush()
        last = lines
        drawn += 1
