"""The layers import only downwards: store <- etl, store <- models; etl and models know
nothing of each other, and neither store nor etl needs torch.

Every module's imports are read with :mod:`ast` (imports inside functions and under
``TYPE_CHECKING`` included: a deferred import is still a dependency), so the test needs
none of the modules to import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Folder in the repository -> the package it installs as (pyproject's package-dir).
PACKAGES = {"store": "sozstore.store", "etl": "sozstore.etl", "models": "sozstore.models",
            "sql": "sozstore.sql"}

#: (layer, forbidden import prefix, why)
RULES = [
    ("store", "sozstore.etl", "the store is read by every layer and knows none of them"),
    ("store", "sozstore.models", "the store is read by every layer and knows none of them"),
    ("models", "sozstore.etl", "models read what the store holds, not how the ETL made it"),
    ("etl", "sozstore.models", "the ETL writes the store and knows nothing of models"),
    ("store", "torch", "reading the store must not need torch"),
    ("etl", "torch", "the ETL must not need torch"),
]


def module_name(path: Path) -> str:
    """The dotted module name of a file of one of :data:`PACKAGES`."""
    rel = path.relative_to(REPO).with_suffix("")
    parts = [PACKAGES[rel.parts[0]], *rel.parts[1:]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_in(source: str, module: str, *, is_package: bool = False
               ) -> list[tuple[str, int]]:
    """Every module that ``source`` (the module ``module``) imports, absolute, with its
    line number."""
    tree = ast.parse(source)
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.append((target, node.lineno))
            # `from sozstore import etl` imports the subpackage itself
            found.extend((f"{target}.{alias.name}", node.lineno) for alias in node.names)
    return found


def imports_of(path: Path) -> list[tuple[str, int]]:
    """Every module the file ``path`` imports (see :func:`imports_in`)."""
    return imports_in(path.read_text(), module_name(path), is_package=path.name == "__init__.py")


def layer_files(layer: str) -> list[Path]:
    return sorted((REPO / layer).rglob("*.py"))


def test_module_names_and_relative_imports() -> None:
    """The helpers themselves: names follow pyproject's package-dir, relative and deferred
    imports resolve against the package."""
    assert module_name(REPO / "store" / "duck.py") == "sozstore.store.duck"
    assert module_name(REPO / "etl" / "features" / "__init__.py") == "sozstore.etl.features"
    source = ("from ..data import x\nfrom . import dcgru\nimport torch.nn\n"
              "def f():\n    from sozstore.etl import config\n")
    targets = {name for name, _ in imports_in(source, "sozstore.models.nn.probe")}
    assert {"sozstore.models.data", "sozstore.models.nn.dcgru", "torch.nn",
            "sozstore.etl.config"} <= targets
    package = {name for name, _ in imports_in("from .store import Store\n", "sozstore.store",
                                              is_package=True)}
    assert "sozstore.store.store" in package


@pytest.mark.parametrize(("layer", "forbidden", "why"), RULES,
                         ids=[f"{layer}-not-{forbidden}" for layer, forbidden, _ in RULES])
def test_layer_does_not_import(layer: str, forbidden: str, why: str) -> None:
    files = layer_files(layer)
    assert files, f"no modules under {layer}/"
    offenders = sorted({f"{path.relative_to(REPO)}:{line} imports {name}"
                        for path in files for name, line in imports_of(path)
                        if name == forbidden or name.startswith(forbidden + ".")})
    assert not offenders, f"{layer}/ must not import {forbidden} ({why}):\n" + \
        "\n".join(offenders)
