"""The layout shows the architecture: small modules, no import cycles, no upward imports.

Layers, bottom up: ``api`` (types, reasons, labels, CRD generation); the I/O-free ``core`` with
the shared libraries (``storage``, ``artifacts``, ``termination``, ``compiled``); then the
deployables, each importing only downwards: the ``operator``, the ``jobs``, ``serving``, the kubectl
plugin ``cli`` (and ``reports``, which the operator, the Jobs and the plugin render).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "operator" / "loopwright"
MAX_LINES = 400

BASE = {"api", "storage", "artifacts", "termination", "compiled"}
ALLOWED = {
    "api": {"api"},
    "storage": set(),
    "artifacts": {"storage"},
    "termination": set(),
    "compiled": {"storage", "compiled"},
    "core": {*BASE, "core"},
    "reports": {*BASE, "core", "reports"},
    "operator": {*BASE, "core", "reports", "operator"},
    "jobs": {*BASE, "core", "reports", "jobs"},
    "serving": {*BASE, "core", "serving"},
    "cli": {"api", "storage", "reports", "cli"},
}
SHARED = {"loopwright.jobs.contract"}
"""The Jobs' contract (exit codes, container, summary) is I/O-free: the operator builds Jobs to it and
the core reads their outcomes by it."""


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> Iterator[str]:
    """The loopwright modules ``path`` imports when it runs (TYPE_CHECKING blocks excluded)."""
    tree = ast.parse(path.read_text())
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
               and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("loopwright"):
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                yield child if child in modules else node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("loopwright"))


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        # Importing a module runs its packages' __init__ anyway: edges to ancestors say nothing.
        graph[name] = {m for m in _imports(path, modules)
                       if m in modules and m != "loopwright" and not name.startswith(m + ".")}
    return graph


def test_no_module_is_over_the_limit() -> None:
    lines = {str(p.relative_to(PACKAGE)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    over = {p: n for p, n in lines.items() if n > MAX_LINES}
    assert not over, f"modules over {MAX_LINES} lines (split them by concern): {over}"


def test_no_upward_imports() -> None:
    upward = sorted(f"{a} -> {b}" for a, targets in _graph().items() for b in targets
                    if _layer(b) not in ALLOWED[_layer(a)] and b not in SHARED)
    assert not upward, "imports against the layers:\n" + "\n".join(upward)


def test_no_import_cycles() -> None:
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = stack[stack.index(node):]
            del stack[stack.index(node):]
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert not cycles, f"import cycles: {cycles}"


def test_every_layer_is_known() -> None:
    assert {_layer(m) for m in _modules()} - {""} <= set(ALLOWED)
