"""The layer table of the design holds: a package imports only packages below it, and no two
modules import each other (directly or around a longer loop). Every import counts, also those
inside functions and under TYPE_CHECKING."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "nemotron"

# top to bottom; a layer may import the layers after it
LAYERS = ["cli", "report", "launch", "stages", "backends", "data", "lineage", "config",
          "profiles", "recipes", "errors", "strictness"]  # strictness: pydantic base rules
OUTSIDE = {"testing", "__main__", "__init__"}  # test infrastructure and the entry shims


def _module(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    package = _module(path) if path.name == "__init__.py" else _module(path).rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            found.add(name)
            found |= {f"{name}.{a.name}" for a in node.names}
    return {n for n in found if n == "nemotron" or n.startswith("nemotron.")}


def _graph() -> dict[str, set[str]]:
    modules = {_module(p): p for p in SRC.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        graph[name] = {imp for imp in _imports(path) if imp in modules and imp != name}
    return graph


def _layer(module: str) -> str:
    return module.split(".")[1] if module.count(".") else "__init__"


def test_no_module_imports_a_layer_above_it():
    wrong = []
    for module, deps in _graph().items():
        mine = _layer(module)
        if mine in OUTSIDE:
            continue
        for dep in deps:
            theirs = _layer(dep)
            if theirs in OUTSIDE or theirs == mine:
                if theirs == "testing":
                    wrong.append(f"{module} -> {dep} (testing is for tests and scripts)")
                continue
            if LAYERS.index(theirs) < LAYERS.index(mine):
                wrong.append(f"{module} ({mine}) -> {dep} ({theirs})")
    assert not wrong, "imports going up the layer table:\n" + "\n".join(sorted(wrong))


def test_no_import_cycles():
    graph = _graph()
    # a package imports its own modules' names through __init__; a module importing its
    # package's __init__ is not a cycle of design, so __init__ edges to children are left out
    edges = {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in graph.items()}
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(edges.get(node, ())):
            if state.get(dep) == 1:
                cycles.append(" -> ".join([*stack[stack.index(dep):], dep]))
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)
