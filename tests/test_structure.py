"""The package's shape, enforced (CONTRIBUTING.md, "The import rule"): data flows one way, audio -> tags -> plan ->
stems -> files, so each part imports only the parts below it, there are no import circles, and no function grows
past what a reader can follow.

Every module under autosep/ is parsed with ``ast`` (nothing is imported, so the test is fast and sees lazy imports
inside functions too).
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "autosep"
SHARED = ("errors", "model_files", "devices", "downloads", "waveforms", "logs", "stopping")  # the small shared modules
# What each part may never import, at any level (a lazy import inside a function counts as well).
FORBIDDEN = {
    "separator": ("pipeline", "commands", "cli", "web", "eval", "taggers", "video"),
    "taggers": ("pipeline", "commands", "cli", "web", "eval", "separator", "video"),
    "pipeline": ("commands", "cli", "web", "eval"),
    "video": ("pipeline", "commands", "cli", "web", "eval", "separator", "taggers"),
    # The subcommands sit side by side under cli: they share commands/options.py, never each other or cli.
    "commands": ("cli", "web", "eval"),
    "eval": ("cli", "web"),
    "web": ("cli", "eval"),
    **{name: ("pipeline", "taggers", "separator", "video", "commands", "cli", "web", "eval", "__main__")
       for name in SHARED},
}
MAX_FUNCTION_LINES = 80
# Functions allowed past MAX_FUNCTION_LINES, each with the reason (keep it empty: split the function instead).
LONG_FUNCTION_EXCEPTIONS: dict[str, str] = {}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, dotted
    target: str  # the imported autosep module, dotted
    line: int
    module_level: bool  # runs when the source is imported (not inside a function, not under TYPE_CHECKING)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _resolve(source: str, is_package: bool, node: ast.ImportFrom | ast.Import, known: dict[str, Path]) -> list[str]:
    """The autosep modules an import statement loads: ``from .x import y`` is ``x.y`` when y is a module."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name.split(".")[0] == "autosep"]
    if node.level:
        base = source.split(".") if is_package else source.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    if prefix.split(".")[0] != "autosep":
        return []
    targets = [f"{prefix}.{alias.name}" for alias in node.names if f"{prefix}.{alias.name}" in known]
    if len(targets) < len(node.names):
        targets.append(prefix)  # names defined in the module (or package __init__) itself
    return targets


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


@functools.cache
def imports() -> tuple[Import, ...]:
    known = modules()
    found: list[Import] = []
    for name, path in known.items():
        is_package = path.name == "__init__.py"

        def visit(node: ast.AST, module_level: bool) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    for target in _resolve(name, is_package, child, known):
                        found.append(Import(name, target, child.lineno, module_level))
                elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                    visit(child, False)
                elif isinstance(child, ast.If) and _is_type_checking(child):
                    visit(child, False)
                else:
                    visit(child, module_level)

        visit(ast.parse(path.read_text(encoding="utf-8"), str(path)), True)
    return tuple(found)


def part(module: str) -> str:
    """The part a module belongs to: ``autosep.pipeline.batch`` -> ``pipeline``, ``autosep.cli`` -> ``cli``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "autosep"


def test_the_parser_sees_the_package():
    """Guards the test itself: it must see the imports everyone knows are there."""
    found = {(i.source, i.target) for i in imports()}
    assert ("autosep.cli", "autosep.pipeline.api") in found
    assert ("autosep.pipeline.batch", "autosep.errors") in found
    assert len(modules()) > 50


def test_the_top_level_is_the_parts_the_commands_and_a_few_shared_modules():
    """Beside cli.py stand only the packages and the small shared modules: a new loose module is either shared
    (listed in SHARED, so the import rule checks it) or belongs in one of the parts."""
    loose = {path.stem for path in PACKAGE.glob("*.py")} - {"__init__", "__main__", "cli"}
    assert loose == set(SHARED)
    assert len(loose) <= 7


@pytest.mark.parametrize("lower", sorted(FORBIDDEN))
def test_no_upward_imports(lower: str):
    upward = [f"{i.source}:{i.line} imports {i.target}" for i in imports()
              if part(i.source) == lower and part(i.target) in FORBIDDEN[lower]]
    assert not upward, f"{lower} must not import {', '.join(FORBIDDEN[lower])}:\n" + "\n".join(upward)


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import circle among ``edges`` (module -> modules it imports at module level), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_circles():
    edges: dict[str, set[str]] = {}
    for i in imports():
        if i.module_level and i.target != i.source:
            edges.setdefault(i.source, set()).add(i.target)
    cycle = find_cycle(edges)
    assert cycle is None, "import circle at module level: " + " -> ".join(cycle or [])


def function_lengths(tree: ast.AST, module: str) -> dict[str, int]:
    """``module:Class.function`` -> its length in lines (decorators and docstring included), for every function."""
    lengths: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                lengths[f"{module}:{prefix}{child.name}"] = child.end_lineno - first + 1
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")

    visit(tree, "")
    return lengths


def long_functions() -> dict[str, int]:
    """Every function in the package longer than MAX_FUNCTION_LINES, with its length."""
    long: dict[str, int] = {}
    for name, path in modules().items():
        lengths = function_lengths(ast.parse(path.read_text(encoding="utf-8"), str(path)), name)
        long.update((function, lines) for function, lines in lengths.items() if lines > MAX_FUNCTION_LINES)
    return long


def test_no_function_over_80_lines():
    found = long_functions()
    long = {name: lines for name, lines in found.items() if name not in LONG_FUNCTION_EXCEPTIONS}
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines (split them into named steps):\n" + "\n".join(
        f"{name}: {lines} lines" for name, lines in sorted(long.items()))
    stale = sorted(set(LONG_FUNCTION_EXCEPTIONS) - set(found))  # an exception outlives its function's split
    assert not stale, f"no longer over {MAX_FUNCTION_LINES} lines, remove from LONG_FUNCTION_EXCEPTIONS: {stale}"


def test_long_functions_are_found():
    """Guards the measure itself: a function of 81 lines is long, one of 80 is not, methods are named by class."""
    body = "\n".join(f"    x{i} = {i}" for i in range(79))
    tree = f"class Holder:\n    def method(self):\n    {body.replace(chr(10), chr(10) + '    ')}\n        return 1\n"
    source = f"def short():\n{body}\n\n\ndef long():\n{body}\n    y = 0\n    return y\n\n\n{tree}"
    assert function_lengths(ast.parse(source), "m") == {"m:short": 80, "m:long": 82, "m:Holder.method": 81}

