"""The package's internal import graph, in layers: what each module imports from the package.

    python scripts/import_layers.py            # print the graph as reStructuredText

A module's layer is one more than the highest layer it imports at module level, so
imports always point down; an import inside a function (deferred, to keep start-up
light or to reach an optional dependency) is listed apart. Importing a module of a
subpackage from outside it also counts as importing the subpackage, whose
``__init__.py`` Python runs first. The documentation build runs
this to draw the architecture page, and ``tests/test_architecture.py`` checks that the
module-level graph has no cycle.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "disyre_sk"
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(current: str, is_package: bool, level: int, target: str | None) -> str:
    base = current.split(".") if is_package else current.split(".")[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join([*base, target] if target else base)


def imports(path: Path) -> tuple[set[str], set[str]]:
    """``(module-level, deferred)`` package modules that ``path`` imports."""
    name, tree = module_name(path), ast.parse(path.read_text())
    is_package = path.name == "__init__.py"
    known = {module_name(p) for p in PACKAGE.rglob("*.py")}
    top, deferred = set(), set()

    def targets(node) -> set[str]:
        out = set()
        if isinstance(node, ast.Import):
            out = {a.name for a in node.names if a.name.startswith("disyre_sk")}
        elif isinstance(node, ast.ImportFrom):
            mod = (
                _resolve(name, is_package, node.level, node.module)
                if node.level
                else (node.module or "")
            )
            if mod.startswith("disyre_sk"):
                for a in node.names:
                    sub = f"{mod}.{a.name}"
                    out.add(sub if sub in known else mod)
        out = {t for t in out if t in known and t != name}
        # Importing ``disyre_sk.pkg.mod`` from outside ``pkg`` first runs ``pkg/__init__.py``:
        # an edge to the package too, so a cycle through its facade is not missed.
        own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}
        parents = {".".join(t.split(".")[:i]) for t in out for i in range(2, t.count(".") + 1)}
        return out | {p for p in parents if p in known and p not in own}

    # Anything outside a function body runs at import (class bodies, try and if blocks
    # included); inside a function, only when it is called.
    def visit(node, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            (deferred if in_function else top).update(targets(child))
            visit(child, in_function or isinstance(child, _FUNCTIONS))

    visit(tree, False)
    return top, deferred - top


def graph() -> dict[str, tuple[set[str], set[str]]]:
    return {module_name(p): imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def cycles(g) -> list[list[str]]:
    """Cycles of the module-level graph (an empty list when imports all point down)."""
    found, state, stack = [], {}, []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(g[node][0]):
            if state.get(nxt) == 1:
                found.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(g):
        if node not in state:
            visit(node)
    return found


def layers(g) -> dict[str, int]:
    depth: dict[str, int] = {}

    def level(node, seen=()):
        if node not in depth:
            below = [level(n, (*seen, node)) for n in g[node][0] if n not in seen]
            depth[node] = 1 + max(below, default=-1)
        return depth[node]

    for node in g:
        level(node)
    return depth


def rst(g) -> str:
    depth = layers(g)
    lines = [
        ".. list-table:: Modules by layer (imports point to lower layers)",
        "   :header-rows: 1",
        "",
        "   * - layer",
        "     - module",
        "     - imports at module level",
        "     - deferred imports",
    ]
    for node in sorted(g, key=lambda n: (depth[n], n)):
        top, deferred = g[node]
        lines += [
            f"   * - {depth[node]}",
            f"     - ``{node}``",
            "     - " + (", ".join(f"``{m}``" for m in sorted(top)) or "—"),
            "     - " + (", ".join(f"``{m}``" for m in sorted(deferred)) or "—"),
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    g = graph()
    found = cycles(g)
    if found:
        print("import cycles:", *(" -> ".join(c) for c in found), sep="\n", file=sys.stderr)
        sys.exit(1)
    print(rst(g))
