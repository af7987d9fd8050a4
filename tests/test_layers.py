"""The package's import contract, read from the source (every import, also those inside functions):
no cycles, and layers whose arrows only point down (issue 16):

    cli → serve, report → evaluation, frames → documents → jobs → _extractor → engine → store, io, cost
        → backends → schema → _validation → types → errors
    (sim, the test double, stands beside: it uses only the bottom)

A module may import its own layer's package and any layer below, never one above; the packages that
share a layer stay independent of each other. A module that needs something from above is a sign
that it, or that thing, belongs elsewhere: move it, do not silence this."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests._support import ROOT

SRC = ROOT / "src"


#: top to bottom; a layer may import itself and what is below it
LAYERS: tuple[tuple[str, ...], ...] = (
    ("corral.cli",),
    ("corral.serve", "corral.report"),
    ("corral.evaluation", "corral.frames"),
    ("corral.documents",),
    ("corral.jobs",),
    ("corral._extractor",),
    ("corral.engine",),
    ("corral.store", "corral.io", "corral.cost"),
    ("corral.backends",),
    ("corral.schema",),
    ("corral._validation",),
    ("corral.types",),
    ("corral.errors",),
)
#: may import the package itself (its version); nothing else may (it is the whole public surface)
SEES_THE_PACKAGE = ("corral.cli", "corral.serve")
#: beside the layers: what each may import (besides itself)
BESIDE = {"corral.sim": ("corral.schema", "corral._validation", "corral.types", "corral.errors")}


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


def place(name: str) -> tuple[int, str] | None:
    """The layer (0: top) and the package of module ``name``; None for the package's __init__."""
    for depth, packages in enumerate(LAYERS):
        for package in packages:
            if name == package or name.startswith(package + "."):
                return depth, package
    return None


def test_every_module_has_a_place() -> None:
    unplaced = [name for name in graph() if name != "corral" and place(name) is None and not _beside(name)]
    assert unplaced == [], "add the new module's package to LAYERS (or BESIDE)"


def violations(edges: dict[str, set[str]]) -> list[str]:
    """Every import that breaks the layers."""
    wrong = []
    for name, targets in edges.items():
        own, beside = place(name), _beside(name)
        for target in sorted(targets):
            theirs = place(target)
            if target == "corral":
                if own is None or own[1] not in SEES_THE_PACKAGE:
                    wrong.append(f"{name} imports corral itself (import what it needs from its module)")
            elif beside is not None:
                if not target.startswith((beside, *BESIDE[beside])):
                    wrong.append(f"{name} (beside the layers) imports {target}")
            elif own is not None and theirs is not None:
                if theirs[0] < own[0] or (theirs[0] == own[0] and theirs[1] != own[1]):
                    wrong.append(f"{name} imports {target}, which is above it or beside it")
            elif own is not None and _beside(target) is not None and own[1] != "corral.cli":
                wrong.append(f"{name} imports {target} (only the command line runs the simulator)")
    return wrong


def test_arrows_only_point_down_and_the_packages_of_a_layer_stay_apart() -> None:
    assert violations(graph()) == []


def test_the_contract_catches_an_upward_arrow_a_sideways_one_and_the_simulator() -> None:
    edges = {
        "corral.engine._scheduler": {"corral.jobs._open", "corral.store", "corral.errors"},
        "corral.store._jobs": {"corral.io.items"},
        "corral.serve.app": {"corral", "corral.sim"},
        "corral.sim.server": {"corral.backends.base", "corral.schema"},
    }
    assert violations(edges) == [
        "corral.engine._scheduler imports corral.jobs._open, which is above it or beside it",
        "corral.store._jobs imports corral.io.items, which is above it or beside it",
        "corral.serve.app imports corral.sim (only the command line runs the simulator)",
        "corral.sim.server (beside the layers) imports corral.backends.base",
    ]


def _beside(name: str) -> str | None:
    return next((package for package in BESIDE if name == package or name.startswith(package + ".")), None)
