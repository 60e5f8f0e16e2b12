"""The import graph of `jaxdyn/`: no cycle, and no underscore-prefixed name crosses a module.

Parsed with `ast` (module-level and function-local imports alike), so a cycle hidden in a function
or behind `try/except ImportError` counts too.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "jaxdyn"


def _modname(path: pathlib.Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _resolve(mod: str, is_pkg: bool, level: int, target: str | None) -> str:
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _graph():
    modules = {_modname(p): p for p in ROOT.rglob("*.py")}
    edges: dict[str, set] = {m: set() for m in modules}
    crossings = []
    for mod, path in modules.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                src = _resolve(mod, is_pkg, node.level, node.module) if node.level else node.module
                if not src or not src.startswith("jaxdyn"):
                    continue
                for alias in node.names:
                    sub = f"{src}.{alias.name}"
                    if sub in modules:  # `from . import _x` imports a module, not a name
                        edges[mod].add(sub)
                        continue
                    edges[mod].add(src)
                    if alias.name.startswith("_"):
                        crossings.append(f"{mod}: from {src} import {alias.name}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("jaxdyn") and alias.name in modules:
                        edges[mod].add(alias.name)
    for m in edges:
        edges[m].discard(m)
        edges[m] = {e for e in edges[m] if e in modules}
    return edges, crossings


def test_graph_is_parsed():
    edges, _ = _graph()
    assert "jaxdyn._integrate" in edges and "jaxdyn._solution" in edges["jaxdyn._integrate"]


def test_no_import_cycle():
    edges, _ = _graph()
    # a package's __init__ re-exporting its submodules is not a cycle of the submodules
    deps = {m: {e for e in es if not (m.startswith(e + ".") )} for m, es in edges.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(deps[m]):
            if state.get(n) == 1:
                cycle = stack[stack.index(n):] + [n]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(deps):
        if m not in state:
            visit(m)


def test_no_underscore_name_crosses_a_module():
    _, crossings = _graph()
    assert not crossings, "underscore names imported across modules:\n" + "\n".join(crossings)
