"""The shape of the code (docs/architecture.md): no import circles in ``src/`` (imports inside
functions count).

A ratchet: the known debts are listed here and must shrink, never grow; an entry that is no
longer true fails too, so that the list stays the truth. (There is no line budget: a module is
split where it holds two jobs, which no line count can tell.)
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

SRC = REPO / "src"

#: circles that exist today (docs/architecture.md, "Known debts"); remove an entry when it is gone
KNOWN_CIRCLES: set[frozenset[str]] = set()


def _modules() -> dict[str, Path]:
    found = {}
    for path in (SRC / "m3l").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(tree: ast.AST, package: str) -> list[str]:
    """Every ``m3l`` module imported anywhere in ``tree``: inside functions and under
    ``if TYPE_CHECKING:`` too (a circle for the type checker is still a circle to a reader)."""
    names: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names.append(base)
            names.extend(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return [n for n in names if n == "m3l" or n.startswith("m3l.")]


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for target in _imports(ast.parse(path.read_text()), package):
            while target and target not in modules:
                target = target.rpartition(".")[0]
            # a module needs its parent packages imported first anyway: that edge is no circle
            if target and target != name and not name.startswith(target + "."):
                graph[name].add(target)
    return graph


def circles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[frozenset[str]] = set()

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.add(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_the_circle_finder_finds_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == {frozenset({"a", "b", "c"})}
    tree = ast.parse("import os\ndef f():\n    from m3l.x import y\nif TYPE_CHECKING:\n    from . import z\n")
    assert _imports(tree, "m3l.pkg") == ["m3l.x", "m3l.x.y", "m3l.pkg", "m3l.pkg.z"]


def test_no_new_import_circles():
    found = circles(import_graph())
    new = found - KNOWN_CIRCLES
    gone = KNOWN_CIRCLES - found
    assert not new, f"import circles (imports inside functions count): {[sorted(c) for c in new]}"
    assert not gone, f"these circles are gone: remove them from KNOWN_CIRCLES: {[sorted(c) for c in gone]}"
