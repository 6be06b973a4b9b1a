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


# ------------------------------------------------------------------------------ layers

DOC = REPO / "docs" / "architecture.md"

#: imports that point up the layers today (module, imported module); remove an entry when it is gone
KNOWN_UPWARD_IMPORTS: set[tuple[str, str]] = set()


def layers_of_the_doc(text: str) -> list[list[str]]:
    """The layers of docs/architecture.md ("Layout"), top first: the numbered list's lines
    ``N. `path`, `path` — what they are``, each path relative to ``src/m3l`` (a folder ends with
    ``/``)."""
    import re

    section = text.split("## Layout", 1)[1].split("\n## ", 1)[0]
    layers = []
    for line in section.splitlines():
        match = re.match(r"(\d+)\. (.+?) — ", line)
        if match:
            assert int(match[1]) == len(layers) + 1, f"docs/architecture.md: layer {match[1]} is out of order"
            layers.append(re.findall(r"`([^`]+)`", match[2]))
    return layers


def layer_index(layers: list[list[str]], path: Path) -> int | None:
    """The layer of the module at ``path`` (relative to ``src/m3l``): its most specific entry, a
    file named or the innermost folder holding it."""
    best, depth = None, -1
    for index, entries in enumerate(layers):
        for entry in entries:
            hit = path.as_posix() == entry if not entry.endswith("/") else path.as_posix().startswith(entry)
            if hit and len(entry) > depth:
                best, depth = index, len(entry)
    return best


def upward_imports(graph: dict[str, set[str]], layers: list[list[str]], paths: dict[str, Path]) -> set[tuple[str, str]]:
    where = {name: layer_index(layers, path) for name, path in paths.items()}
    return {
        (a, b)
        for a, targets in graph.items()
        for b in targets
        if where[a] is not None and where[b] is not None and where[b] < where[a]
    }


def test_the_layer_check_finds_an_upward_import():
    layers = layers_of_the_doc("## Layout\n\n1. `run/`, `top.py` — fronts\n2. `data/` — data\n3. `data/low.py` — low\n")
    assert layers == [["run/", "top.py"], ["data/"], ["data/low.py"]]
    paths = {
        "m3l.run.a": Path("run/a.py"),
        "m3l.top": Path("top.py"),
        "m3l.data.x": Path("data/x.py"),
        "m3l.data.low": Path("data/low.py"),
    }
    assert layer_index(layers, Path("data/low.py")) == 2 and layer_index(layers, Path("data/x.py")) == 1
    graph = {
        "m3l.run.a": {"m3l.data.x"},
        "m3l.top": {"m3l.run.a"},
        "m3l.data.x": {"m3l.data.low"},
        "m3l.data.low": {"m3l.data.x", "m3l.top"},
    }
    assert upward_imports(graph, layers, paths) == {("m3l.data.low", "m3l.data.x"), ("m3l.data.low", "m3l.top")}


def test_imports_point_down_the_layers_of_the_doc():
    """docs/architecture.md lists the layers; a module imports only modules of its own layer or
    of a layer below (imports inside functions count), every module is in a layer, and every
    entry of the list names something that exists."""
    layers = layers_of_the_doc(DOC.read_text(encoding="utf-8"))
    assert len(layers) > 5, "docs/architecture.md: the numbered list of layers under 'Layout' is gone"
    modules = _modules()
    paths = {name: path.relative_to(SRC / "m3l") for name, path in modules.items()}
    unplaced = sorted(str(p) for name, p in paths.items() if layer_index(layers, p) is None)
    assert not unplaced, f"modules in no layer: add them to the list of layers in docs/architecture.md: {unplaced}"
    missing = [entry for entries in layers for entry in entries if not (SRC / "m3l" / entry).exists()]
    assert not missing, f"docs/architecture.md's layers name what does not exist: {missing}"
    found = upward_imports(import_graph(), layers, paths)
    new, gone = found - KNOWN_UPWARD_IMPORTS, KNOWN_UPWARD_IMPORTS - found
    shown = [f"{a} ({paths[a]}) imports {b} ({paths[b]})" for a, b in sorted(new)]
    assert not new, "imports pointing up the layers of docs/architecture.md: " + "; ".join(shown)
    assert not gone, f"these upward imports are gone: remove them from KNOWN_UPWARD_IMPORTS: {sorted(gone)}"
