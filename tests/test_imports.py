"""`analysis` imports without cycles, and `abm` does not import it when loaded.

A cycle between modules works in one import order and fails in another (a name asked of a
module half initialised), so it hides behind imports moved into functions. Checked twice:
from the source (every import of an `analysis` module in another, those inside functions
included, so none of them can be one that only dodges a cycle), and by importing each module
first in an interpreter of its own and then every other one.
"""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = "analysis"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted((ROOT / PACKAGE).rglob("*.py"))}


def _imported(node: ast.Import | ast.ImportFrom, modules: set[str]) -> set[str]:
    """The modules of `modules` that executing the import statement `node` may run."""
    if isinstance(node, ast.Import):
        names = {a.name for a in node.names}
    else:
        base = node.module or ""
        names = {base} | {f"{base}.{a.name}" for a in node.names}
    found = set()
    for name in names:
        parts = name.split(".")
        # Importing a.b.c runs the packages a and a.b first.
        found |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    return found & modules


def _graph() -> dict[str, set[str]]:
    """module -> the analysis modules it imports (anywhere in it), but its own packages:
    Python has begun those before the module runs, whatever the order."""
    names = set(MODULES)
    graph = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        parents = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        if path.name == "__init__.py":
            parents.add(name)
        targets: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                targets |= _imported(node, names)
        graph[name] = targets - parents - {name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of `graph` as a path [a, b, ..., a], or [] when there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return []


def test_the_import_graph_of_analysis_has_no_cycle() -> None:
    graph = _graph()
    # Not vacuous: the graph sees the imports that once closed a cycle, and the package
    # imports its submodules.
    assert "analysis.statistics" in graph["analysis.report"]
    assert "analysis.markdown" in graph["analysis.sweep.report"]
    assert "analysis.sweep.report" in graph["analysis.sweep"]
    assert _cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert not (cycle := _cycle(graph)), " -> ".join(cycle)


@pytest.mark.slow  # an interpreter loading the analysis stack: about 4 s
def test_each_analysis_module_imports_first_and_the_rest_after_it() -> None:
    """In a fresh interpreter, per module: forget every `analysis` module, import this one,
    then all the others. (Only `analysis` is forgotten: `abm` never imports it when loaded,
    next test, so what stays loaded cannot hold on to an `analysis` module.)"""
    code = """
import importlib, json, sys, traceback
names = json.loads(sys.argv[1])
failed = {}
for first in names:
    for loaded in [m for m in sys.modules if m == "analysis" or m.startswith("analysis.")]:
        del sys.modules[loaded]
    for name in [first, *(n for n in names if n != first)]:
        try:
            importlib.import_module(name)
        except Exception:
            failed[f"{first} first, then {name}"] = traceback.format_exc(limit=-3)
            break
print(json.dumps(failed))
"""
    done = subprocess.run([sys.executable, "-c", code, json.dumps(sorted(MODULES))],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {}


def test_every_name_an_analysis_module_exports_is_defined() -> None:
    """`from analysis.x import *` works: each name in a module's `__all__` is there."""
    missing = {name: [n for n in module.__all__ if not hasattr(module, n)]
               for name in MODULES
               if hasattr(module := importlib.import_module(name), "__all__")}
    assert {k: v for k, v in missing.items() if v} == {}
    assert "analysis.markdown" in missing  # not vacuous: the modules were read


def test_abm_does_not_import_analysis_when_loaded() -> None:
    """`abm` calls `analysis` only from inside functions (the CLI), never when a module
    loads: statements at module level, in classes included, import no `analysis` module."""
    found = []
    for path in sorted((ROOT / "abm").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        todo: list[ast.AST] = list(tree.body)
        while todo:
            node = todo.pop()
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                continue
            if isinstance(node, ast.Import | ast.ImportFrom) and _imported(node, set(MODULES)):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            todo.extend(ast.iter_child_nodes(node))
    assert found == []
