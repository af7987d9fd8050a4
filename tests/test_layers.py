"""The package's import graph, read from the source (every import, also those inside functions):
no cycles, and the command line at the top, imported by nothing but itself (issue 16). A library
module that needs something the CLI has is a sign that it belongs lower down: move it there."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from conftest import ROOT

SRC = ROOT / "src"


def is_cli(name: str) -> bool:
    """The command line: ``corral.cli`` and its ``cli_*`` modules (not ``corral._extractor``)."""
    return name == "corral.cli" or name.startswith(("corral.cli.", "corral.cli_"))


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted((SRC / "corral").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported(name: str, path: Path, known: dict[str, Path]) -> Iterator[str]:
    """The corral modules ``name`` imports (``from corral.x import y`` is corral.x, and corral.x.y
    when that is a module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        yield from (target for target in targets if target in known and target != name)


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: set(imported(name, path, known)) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root, targets in edges.items():
        if root in index:
            continue
        work = [(root, iter(sorted(targets)))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_reader_of_the_graph_sees_a_cycle_and_a_lazy_import() -> None:
    # The checks below are only as good as this reader: a cycle through an import inside a function.
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(edges) == [["a", "b", "c"]]
    edges = graph()
    assert "corral.jobs" in edges["corral.serve.jobs"]
    assert "corral.report._html" in edges["corral.cli.report"]  # imported inside check_report


def test_no_module_imports_itself_round_a_cycle() -> None:
    assert cycles(graph()) == []


def test_nothing_below_the_command_line_imports_it() -> None:
    upward = sorted(
        f"{name} imports {target}"
        for name, targets in graph().items()
        if not is_cli(name)
        for target in targets
        if is_cli(target)
    )
    assert upward == []
