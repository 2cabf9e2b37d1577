"""The layering rules of docs/development.md, checked on the source: the stages never import the shapes world (it is
a plugin on top of them), and no two modules import each other, directly or through others."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
STAGES = ("data", "models", "numerics", "candidates", "annotations", "pairs", "training", "evaluation")
WORLD_BENCHMARK = "vlpref.evaluation.world"  # the one stage module that is the world's: its benchmark


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """vlpref modules imported anywhere in the file (top level or inside functions), resolved to modules."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from vlpref.pairs import strategies` imports the module vlpref.pairs.strategies
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                     for alias in node.names]
        found.update(name for name in names if name.startswith("vlpref"))
    return found


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in (SRC / "vlpref").rglob("*.py")}
    return {name: imports_of(path, set(files)) - {name} for name, path in files.items()}


def test_the_stages_do_not_import_the_world():
    offenders = sorted(f"{module} imports {target}" for module, targets in graph().items()
                       for target in targets if target.startswith("vlpref.world")
                       and module.split(".")[1] in STAGES and module != WORLD_BENCHMARK)
    assert offenders == []


def test_no_import_cycles():
    edges = graph()
    cycles = []

    def visit(node: str, path: list[str], on_path: set[str], done: set[str]) -> None:
        for target in sorted(edges.get(node, ())):
            if target in on_path:
                cycles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in done and target in edges:
                visit(target, [*path, target], on_path | {target}, done)
        done.add(node)

    done: set[str] = set()
    for start in sorted(edges):
        if start not in done:
            visit(start, [start], {start}, done)
    assert cycles == []


@pytest.mark.parametrize("package", ["numerics"])
def test_numerics_holds_no_file_reader_or_prompt(package):
    """numerics/ is training maths only: no file I/O, no judge prompts."""
    for path in (SRC / "vlpref" / package).glob("*.py"):
        text = path.read_text()
        assert "open(" not in text and "read_text(" not in text and "json.load" not in text, path


def test_no_file_over_500_lines():
    long = {str(p.relative_to(SRC)): n for p in (SRC / "vlpref").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 500}
    assert long == {}
