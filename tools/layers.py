#!/usr/bin/env python3
"""The library's layers, declared once, and the picture of its imports (``make layers``).

Each package of ``library/`` may import the packages of its own layer and those below, never
one above: the arrows point down. The image kit (``vision``) stands above the core, which
never imports it; ``library/__init__.py`` (the public API) names what any layer offers.
Imports under ``if TYPE_CHECKING:`` name types for the type checker and load nothing: they
are no arrow (the contract names the recorder it returns).

    .venv/bin/python tools/layers.py      # the layers, each package's imports, arrows up
"""

from __future__ import annotations

import ast
import os
import sys
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBRARY = os.path.join(ROOT, "library")

# From the bottom: base I/O, quiet TensorFlow and errors; the project contract; configuration;
# data; what a run writes; transfer learning; the recorders; what a person watching is told;
# the engine; searches; the command line. The kit above the core, below the command line.
LAYERS = (
    ("base",),
    ("contract",),
    ("config",),
    ("data",),
    ("outputs",),
    ("transfer",),
    ("recorders",),
    ("monitor",),
    ("engine",),
    ("search", "vision"),
    ("cli",),
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def imports() -> dict[str, dict[str, list[str]]]:
    """``{package: {imported package: [file:line, ...]}}`` of the library's own imports."""
    found: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for folder, _, files in os.walk(LIBRARY):
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            relative = os.path.relpath(path, LIBRARY)
            if relative == "__init__.py":
                continue  # the public API: it names every layer's offer
            package = relative.split(os.sep)[0].removesuffix(".py")
            with open(path, encoding="utf-8") as stream:
                tree = ast.parse(stream.read(), path)
            typing_only = {
                id(inner)
                for block in ast.walk(tree)
                if isinstance(block, ast.If) and ast.unparse(block.test) == "TYPE_CHECKING"
                for inner in ast.walk(block)
            }
            for node in ast.walk(tree):
                if id(node) in typing_only:
                    continue  # names for the type checker: nothing loads, no arrow
                modules = []
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    modules = [node.module]
                for module in modules:
                    parts = module.split(".")
                    if parts[0] == "library" and len(parts) > 1 and parts[1] != package:
                        where = f"{os.path.relpath(path, ROOT)}:{node.lineno}"
                        found[package][parts[1]].append(where)
    return found


def arrows_up(found) -> list[str]:
    """Each import of a package from a layer above its own (or of an undeclared one)."""
    wrong = []
    for package, targets in found.items():
        for target, places in targets.items():
            if package not in RANK or target not in RANK or RANK[target] > RANK[package]:
                wrong += [f"{place}: {package} imports {target}" for place in places]
            elif RANK[target] == RANK[package]:  # the kit and the searches stand apart
                wrong += [f"{place}: {package} imports {target} (same layer)" for place in places]
    return sorted(wrong)


def picture(found) -> str:
    lines = []
    for rank in reversed(range(len(LAYERS))):
        for package in LAYERS[rank]:
            below = sorted(found.get(package, {}), key=lambda t: -RANK.get(t, -1))
            lines.append(f"{rank:2d} {package:10s} -> {', '.join(below) or '(nothing)'}")
    return "\n".join(lines)


def main() -> int:
    found = imports()
    print(picture(found))
    wrong = arrows_up(found)
    for line in wrong:
        print(f"arrow up: {line}")
    if not wrong:
        print("every arrow points down")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
