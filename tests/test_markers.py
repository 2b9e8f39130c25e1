"""The test markers mean what pyproject.toml says, so that `pytest -m "not slow"` (and
`not browser`, `not dask`) leave out what they name: every test file that drives a browser
carries `browser`, every test that starts a Dask scheduler carries `dask` (both also `slow`:
a server or a cluster costs seconds), and each registered marker marks something. Read from
the test files' source (no collection)."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

from tests.conftest import ROOT

TESTS = ROOT / "tests"
FILES = sorted(TESTS.glob("test_*.py"))
#: The fixtures that start a Dask scheduler and workers (tests/test_sweep_dask.py).
DASK_FIXTURES = {"cluster", "unprofiled_cluster"}
#: Calls that start a Dask scheduler in the test's own process.
DASK_STARTERS = {"LocalCluster"}
#: The helper module that starts the viz server and headless Chromium.
BROWSER_MODULES = {"browser", "tests.browser"}


def _marks(node: ast.expr) -> set[str]:
    """The names X of every `pytest.mark.X` (called or not) inside `node`."""
    return {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)
            and isinstance(n.value, ast.Attribute) and n.value.attr == "mark"}


def _module_marks(tree: ast.Module) -> set[str]:
    return {m for node in tree.body if isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets)
            for m in _marks(node.value)}


def _tests(tree: ast.Module) -> list[ast.FunctionDef]:
    return [node for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")]


def _imports(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def test_the_markers_are_registered_and_each_marks_something() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]
    options = config["ini_options"]
    assert "--strict-markers" in options["addopts"]
    registered = {line.split(":")[0].strip() for line in options["markers"]}
    assert {"slow", "browser", "dask"} <= registered
    used = set()
    for path in FILES:
        tree = _parse(path)
        used |= _module_marks(tree)
        for test in _tests(tree):
            used |= {m for d in test.decorator_list for m in _marks(d)}
    assert {"slow", "browser", "dask"} <= used, sorted(registered - used)


def test_the_checks_below_see_the_browser_and_dask_tests() -> None:
    """Not vacuous: the files known to start a browser or a cluster are the ones found."""
    browser = {p.name for p in FILES if _imports(_parse(p)) & BROWSER_MODULES}
    dask = {p.name for p in FILES for t in _tests(_parse(p))
            if {a.arg for a in t.args.args} & DASK_FIXTURES}
    assert "test_viz_browser.py" in browser
    assert {"test_sweep_dask.py", "test_design_dask.py"} <= dask


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_a_file_that_drives_a_browser_carries_the_browser_marker(path: Path) -> None:
    tree = _parse(path)
    if _imports(tree) & BROWSER_MODULES:
        assert {"browser", "slow"} <= _module_marks(tree), (
            f"{path.name} uses tests/browser.py: give it "
            "pytestmark = [pytest.mark.browser, pytest.mark.slow]")


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_a_test_that_starts_a_dask_scheduler_carries_the_dask_marker(path: Path) -> None:
    tree = _parse(path)
    module = _module_marks(tree)
    starts = {n.func.attr if isinstance(n.func, ast.Attribute) else getattr(n.func, "id", "")
              for n in ast.walk(tree) if isinstance(n, ast.Call)} & DASK_STARTERS
    if starts:
        assert {"dask", "slow"} <= module, (
            f"{path.name} calls {sorted(starts)}: mark the file dask and slow")
    for test in _tests(tree):
        args = {a.arg for a in test.args.args + test.args.kwonlyargs}
        if args & DASK_FIXTURES:
            marks = module | {m for d in test.decorator_list for m in _marks(d)}
            assert {"dask", "slow"} <= marks, (
                f"{path.name}::{test.name} starts a Dask cluster ({sorted(args & DASK_FIXTURES)})"
                f" but is not marked dask and slow")
