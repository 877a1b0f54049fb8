"""The structure docs/ARCHITECTURE.md describes: no import cycles (function-level imports included), a small engine
top level, and an editor that uses only the names the engine's public API lists."""
from __future__ import annotations

import ast

import grimp
import pytest

import engine
from tests.conftest import REPO


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph("engine", "editor", include_external_packages=False)


def _cycle(graph) -> list[str] | None:
    """One import cycle among the modules, or None (depth-first search, every import statement counted)."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.find_modules_directly_imported_by(m)):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph.modules):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_there_are_no_import_cycles(graph):
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_cycle_finder_finds_a_cycle():
    g = grimp.ImportGraph()
    for a, b in (("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.c", "p.d")):
        g.add_import(importer=a, imported=b)
    assert _cycle(g) == ["p.a", "p.b", "p.c", "p.a"]


def test_the_engine_top_level_holds_at_most_eight_modules():
    modules = sorted(p.name for p in (REPO / "engine").glob("*.py") if p.name != "__init__.py")
    assert len(modules) <= 8, modules


def test_the_editor_imports_only_the_public_names_of_the_engine():
    public = set(engine.__all__)
    assert all(hasattr(engine, name) for name in public)
    used = set()
    for path in (REPO / "editor").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "engine":
                assert node.module == "engine", f"{path.relative_to(REPO)} imports {node.module}"
                used |= {a.name for a in node.names}
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("engine") for a in node.names), path
    assert used <= public, sorted(used - public)
