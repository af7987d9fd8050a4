"""The supported API is deliberate: one sorted ``corral.__all__`` that holds every error of the tree,
every name the README's Python API uses, and nothing that does not resolve; tests/typing/api.py uses
each name in a typed way (mypy checks it there), and the README points into no private module."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import re
import textwrap
from pathlib import Path

import corral
import corral.errors

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
TYPING_API = ROOT / "tests" / "typing" / "api.py"


def _section(markdown: str, heading: str) -> str:
    """The text under ``## heading``, up to the next heading of the same level."""
    start = markdown.index(f"\n## {heading}\n")
    end = markdown.find("\n## ", start + 1)
    return markdown[start : end if end != -1 else None]


def _corral_names(tree: ast.AST) -> set[str]:
    """Names a piece of Python takes from ``corral``: ``from corral import X`` and ``corral.X``."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "corral":
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Attribute) and ast.unparse(node.value) == "corral":
            names.add(node.attr)
    return names


def _is_public_module(name: str) -> bool:
    return not name.startswith("_") and importlib.util.find_spec(f"corral.{name}") is not None


def test_all_is_sorted_unique_and_resolves() -> None:
    assert corral.__all__ == sorted(set(corral.__all__))
    assert [name for name in corral.__all__ if not hasattr(corral, name)] == []


def test_every_public_error_of_the_tree_is_exported() -> None:
    tree = {
        name: cls
        for name, cls in vars(corral.errors).items()
        if inspect.isclass(cls)
        and issubclass(cls, BaseException)
        and cls.__module__ == "corral.errors"
        and not name.startswith("_")
    }
    assert "BudgetReached" in tree and "StoreError" in tree  # the scan sees the tree
    assert sorted(set(tree) - set(corral.__all__)) == []
    assert all(getattr(corral, name) is cls for name, cls in tree.items())
    assert sorted(corral.errors.__all__) == sorted(tree)


def test_every_exported_name_is_pinned_by_the_typing_check() -> None:
    used = _corral_names(ast.parse(TYPING_API.read_text(encoding="utf-8")))
    assert sorted(set(corral.__all__) - used) == []


def test_the_readme_python_api_names_only_exported_names() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)
    assert blocks, "the README has no Python example"
    used: set[str] = set()
    for block in blocks:
        used |= _corral_names(ast.parse(textwrap.dedent(block)))
    assert "Extractor" in used
    assert sorted(used - set(corral.__all__)) == []

    # The prose of the Python API section: `corral.X` is an exported name or a public module.
    prose = _section(README, "The Python API")
    named = set(re.findall(r"\bcorral\.(\w+)", prose))
    assert "run" in named
    assert sorted(n for n in named if n not in corral.__all__ and not _is_public_module(n)) == []


def test_the_readme_points_into_no_private_module() -> None:
    private = re.findall(r"\bcorral(?:\.\w+)*\._\w+", README)
    assert private == []
