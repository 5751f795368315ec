"""The package's shape, as limits that hold for every change: module size, settings read at the edges only,
and no import cycle (imports inside functions included)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from segmentation.config import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "segmentation"
MAX_LINES = 450
# What only the edges may mention: the CLI, config, dag_defaults, the UI package and the task layer.
EDGE_ONLY = re.compile(r"os\.environ|getenv|get_settings\(\)|sys\.modules")


def modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def is_edge(path: Path) -> bool:
    relative = path.relative_to(PROJECT_ROOT).as_posix()
    return (
        relative in ("segmentation/cli.py", "segmentation/config.py", "segmentation/dag_defaults.py")
        or relative.startswith("segmentation/ui/")
        or "tasks" in relative
    )


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The package modules that ``path`` imports anywhere in it (module level or inside functions)."""
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{path}: the package uses absolute imports only"
            base = node.module or ""
            for alias in node.names:
                targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {t for t in targets if t in known}


def test_no_module_is_over_the_size_limit() -> None:
    sizes = {name: len(path.read_text().splitlines()) for name, path in modules().items()}
    assert not {name: n for name, n in sizes.items() if n > MAX_LINES}, f"modules over {MAX_LINES} lines"


def test_only_the_edges_read_the_environment_or_ask_whether_airflow_runs() -> None:
    offenders = {
        name: sorted(set(EDGE_ONLY.findall(path.read_text())))
        for name, path in modules().items()
        if not is_edge(path) and EDGE_ONLY.search(path.read_text())
    }
    assert not offenders, offenders


def test_there_is_no_import_cycle() -> None:
    known = modules()
    graph = {name: imports(path, known) - {name} for name, path in known.items()}
    # A package imports its own submodules to present them; that is not a cycle of the code's concerns.
    graph = {name: {t for t in targets if not name.startswith(t + ".")} for name, targets in graph.items()}
    cycles = []

    def visit(node: str, stack: list[str], done: set[str]) -> None:
        for target in sorted(graph[node]):
            if target in stack:
                cycles.append([*stack[stack.index(target) :], target])
            elif target not in done:
                visit(target, [*stack, target], done)
        done.add(node)

    done: set[str] = set()
    for name in sorted(graph):
        if name not in done:
            visit(name, [name], done)
    assert not cycles, cycles


def test_the_cycle_check_sees_imports_inside_functions() -> None:
    # alerts imports planning only inside record_failure: the graph must still hold that arrow.
    assert "segmentation.planning" in imports(PACKAGE / "alerts.py", modules())
