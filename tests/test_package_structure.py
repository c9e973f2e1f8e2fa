"""The package's shape stays readable: few top-level modules, stages as subpackages, small
modules, no module reaching back to the package root, and no import cycles.

Imports are read from the source (ast), not by importing: only module-level imports count,
since imports inside functions (torch, matplotlib) are how thinct keeps its start fast, and
those under ``if TYPE_CHECKING:`` never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

from helpers.paths import ROOT

PACKAGE = ROOT / "src" / "thinct"
MAX_TOP_LEVEL_MODULES = 12
MAX_LINES = 500
STAGES = ("io", "resample", "models", "inference", "batch", "data", "train", "evaluate")
STAGES += ("structure", "integrations", "node", "cli")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def module_level_imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of each import that runs when the module is imported."""
    found: list[tuple[str, list[str]]] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                found.extend((alias.name, []) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.append((node.module, [alias.name for alias in node.names]))
            elif isinstance(node, ast.If) and not _is_type_checking(node):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    return found


def internal_dependencies(known: dict[str, Path]) -> dict[str, set[str]]:
    """thinct module -> the thinct modules its import runs (``from thinct.x import y`` counts
    ``thinct.x.y`` when that is a module, and ``thinct.x``, whose ``__init__`` runs first)."""
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        targets: set[str] = set()
        for module, names in module_level_imports(path):
            if module != "thinct" and not module.startswith("thinct."):
                continue
            targets.add(module)
            targets.update(f"{module}.{n}" for n in names if f"{module}.{n}" in known)
        # A package's __init__ runs before its modules anyway: an edge back to it is no cycle.
        graph[name] = {t for t in targets if t in known and not (name + ".").startswith(t + ".")}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the modules along it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := walk(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := walk(node)):
            return cycle
    return None


def test_few_top_level_modules_and_the_stages_as_subpackages():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top
    for stage in STAGES:
        assert (PACKAGE / stage / "__init__.py").is_file(), stage


def test_no_module_is_longer_than_the_limit():
    lines = {name: len(p.read_text(encoding="utf-8").splitlines()) for name, p in modules().items()}
    assert {name: n for name, n in lines.items() if n > MAX_LINES} == {}


def test_no_module_imports_the_package_root():
    offenders = [
        name
        for name, path in modules().items()
        if name != "thinct" and any(module == "thinct" for module, _ in module_level_imports(path))
    ]
    assert offenders == []


def test_no_import_cycles():
    assert find_cycle(internal_dependencies(modules())) is None


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
