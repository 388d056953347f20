"""The import graph of pipelines/, state/, schemas/ and scripts/: no cycles, and no lazy loader that could hide one.

Read from the source (ast), not by importing, so the test is fast and sees every module. An edge
A -> B is an import of B anywhere in A: at module level, or inside a function, where an import
that closes a cycle would only move the failure to run time. Importing ``a.b.c`` also runs the
``__init__`` of ``a`` and ``a.b``, so those are edges too, except towards A's own packages (their
``__init__`` has already started when A runs). Imports under ``if TYPE_CHECKING:`` never run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pipelines", "state", "schemas", "scripts")


def _modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


MODULES = _modules()


def _imported(tree: ast.Module) -> Iterator[str]:
    """Every project module an import statement of ``tree`` names (not those under TYPE_CHECKING)."""
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
               for n in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)  # `from pkg import submodule`


def _edges(name: str) -> set[str]:
    parts = name.split(".")
    own_packages = {".".join(parts[:i]) for i in range(1, len(parts))}
    if MODULES[name].name == "__init__.py":
        own_packages.add(name)
    out = set()
    for target in _imported(ast.parse(MODULES[name].read_text())):
        target_parts = target.split(".")
        for i in range(1, len(target_parts) + 1):  # the module and the packages whose __init__ runs first
            prefix = ".".join(target_parts[:i])
            if prefix in MODULES and prefix not in own_packages:
                out.add(prefix)
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module, or with a self-loop (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_project_modules_are_found() -> None:
    assert {"schemas.errors", "pipelines.errors", "state.errors", "state.replay.engine", "scripts.cli"} <= set(MODULES)


def test_no_import_cycles() -> None:
    """Scenario: every import of every module, function-level ones included. We expect no cycle."""
    graph = {name: _edges(name) for name in MODULES}
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle_through_a_package_init() -> None:
    """Scenario: the shape state.replay once had (its __init__ re-exporting the engine). We expect the cycle."""
    graph = {"r": {"r.engine"}, "r.engine": {"snapshots"}, "snapshots": {"r", "r.foldstate"}, "r.foldstate": set()}
    assert _cycles(graph) == [["r", "r.engine", "snapshots"]]


def test_no_lazy_module_loader() -> None:
    """Scenario: a package that loads names on first access (PEP 562 ``__getattr__``, importlib) can hide a cycle.
    We expect none: every name is imported from the module that defines it."""
    lazy = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        if any(isinstance(node, ast.FunctionDef) and node.name in ("__getattr__", "__dir__") for node in tree.body):
            lazy.append(f"{name}: module-level __getattr__/__dir__")
        if any(isinstance(node, (ast.Import, ast.ImportFrom)) and "importlib" in ast.unparse(node) for node in ast.walk(tree)):
            lazy.append(f"{name}: importlib")
    assert lazy == []
