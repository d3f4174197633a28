"""Mutation check: do the tests fail when the core code is subtly wrong?

    python benchmarks/mutation.py [--per-module 12] [--groups metrics corruption inference]
                                  [--out benchmarks/results/mutation_cpu.md]

Each mutant changes one operator or constant in one module of the core (``+`` for
``-``, ``<`` for ``<=``, ``and`` for ``or``, a constant ``c`` for ``c + 1``, ``True``
for ``False`` …), in a copy of the repository, and runs that module's tests there; the
mutant is *killed* when the tests fail (or run past the time limit). Mutation points
are drawn evenly over each module with a fixed seed, so a run is reproducible; points
in docstrings, messages and type hints are not mutated. The share of killed mutants is
reported per group, with every mutant (module, line, change, outcome) in the JSON
beside the table. Survivors are where a wrong implementation would pass the tests.
"""

from __future__ import annotations

import argparse
import ast
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, git_commit, hardware, md_table, now, write_results

REPO = Path(__file__).resolve().parents[1]
GROUPS = {
    "metrics": (
        [
            "metrics/_core.py",
            "metrics/_pixel.py",
            "metrics/_sample.py",
            "metrics/_accumulator.py",
        ],
        ["tests/test_metrics.py"],
    ),
    "corruption": (
        [
            "corruption/shapes.py",
            "corruption/intensity.py",
            "corruption/fpi.py",
            "corruption/compose.py",
            "corruption/gaussian.py",
            "corruption/mixture.py",
        ],
        ["tests/test_corruption.py"],
    ),
    "inference": (["_engine/inference.py"], ["tests/test_inference.py"]),
}
SWAPS = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Div,
    ast.Pow: ast.Mult,
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.And: ast.Or,
    ast.Or: ast.And,
}


@dataclass
class Mutant:
    module: str
    line: int
    change: str
    outcome: str = ""
    seconds: float = 0.0


def _points(tree: ast.AST) -> list[tuple[ast.AST, str]]:
    """Nodes that can be mutated, with a description; skips docstrings and annotations."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            if isinstance(getattr(body[0], "value", None), ast.Constant):
                skip.add(id(body[0].value))
        for field in ("annotation", "returns"):
            sub = getattr(node, field, None)
            if sub is not None:
                skip.update(id(n) for n in ast.walk(sub))
        if isinstance(node, ast.JoinedStr):  # messages
            skip.update(id(n) for n in ast.walk(node))
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") in (
            "ValueError",
            "TypeError",
        ):
            skip.update(id(n) for n in ast.walk(node))
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.BinOp) and type(node.op) in SWAPS:
            out.append((node, f"{type(node.op).__name__} -> {SWAPS[type(node.op)].__name__}"))
        elif isinstance(node, ast.BoolOp) and type(node.op) in SWAPS:
            out.append((node, f"{type(node.op).__name__} -> {SWAPS[type(node.op)].__name__}"))
        elif isinstance(node, ast.Compare) and type(node.ops[0]) in SWAPS:
            out.append(
                (node, f"{type(node.ops[0]).__name__} -> {SWAPS[type(node.ops[0])].__name__}")
            )
        elif isinstance(node, ast.Constant) and type(node.value) in (int, float):
            out.append((node, f"{node.value!r} -> {node.value + 1!r}"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
            out.append((node, f"{node.value!r} -> {not node.value!r}"))
    return out


def _mutate(source: str, index: int) -> tuple[str, int, str]:
    tree = ast.parse(source)
    node, change = _points(tree)[index]
    if isinstance(node, (ast.BinOp, ast.BoolOp)):
        node.op = SWAPS[type(node.op)]()
    elif isinstance(node, ast.Compare):
        node.ops[0] = SWAPS[type(node.ops[0])]()
    elif isinstance(node.value, bool):
        node.value = not node.value
    else:
        node.value = node.value + 1
    return ast.unparse(tree), node.lineno, change


def run(args) -> list[Mutant]:
    rng = random.Random(0)
    results: list[Mutant] = []
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "repo"
        shutil.copytree(REPO / "disyre_sk", copy / "disyre_sk")
        shutil.copytree(REPO / "tests", copy / "tests")
        shutil.copy(REPO / "pyproject.toml", copy / "pyproject.toml")
        for group in args.groups:
            modules, tests = GROUPS[group]
            for module in modules:
                path = copy / "disyre_sk" / module
                original = path.read_text()
                n = len(_points(ast.parse(original)))
                picks = sorted(rng.sample(range(n), min(n, args.per_module)))
                for index in picks:
                    mutated, line, change = _mutate(original, index)
                    path.write_text(mutated)
                    t = time.perf_counter()
                    try:
                        proc = subprocess.run(
                            [
                                sys.executable,
                                "-m",
                                "pytest",
                                "-x",
                                "-q",
                                "-p",
                                "no:cacheprovider",
                                *tests,
                            ],
                            cwd=copy,
                            capture_output=True,
                            timeout=args.timeout,
                        )
                        outcome = "survived" if proc.returncode == 0 else "killed"
                    except subprocess.TimeoutExpired:
                        outcome = "killed (time limit)"
                    finally:
                        path.write_text(original)
                    m = Mutant(f"{group}: {module}", line, change, outcome, time.perf_counter() - t)
                    results.append(m)
                    print(f"{m.outcome:20s} {m.module}:{m.line} {m.change}", flush=True)
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--groups", nargs="+", default=list(GROUPS), choices=GROUPS)
    ap.add_argument("--per-module", type=int, default=12)
    ap.add_argument("--timeout", type=int, default=600)
    ap.add_argument("--out", default="benchmarks/results/mutation_cpu.md")
    args = ap.parse_args(argv)
    info = {"command": command_line(), "commit": git_commit(), "date": now(), **hardware("cpu")}
    t0 = time.perf_counter()
    mutants = run(args)
    rows = []
    for group in args.groups:
        mine = [m for m in mutants if m.module.startswith(f"{group}:")]
        killed = sum(m.outcome.startswith("killed") for m in mine)
        rows.append([group, len(mine), killed, f"{100 * killed / max(len(mine), 1):.0f} %"])
    survivors = [m for m in mutants if m.outcome == "survived"]
    body = "\n\n".join(
        [
            f"Up to {args.per_module} mutants per module, drawn with a fixed seed; each runs "
            "its group's tests in a copy of the repository (`pytest -x`).",
            md_table(["group", "mutants", "killed", "share killed"], rows),
            "Survivors (a change the tests do not notice):\n\n"
            + (
                "\n".join(f"- `{m.module}` line {m.line}: {m.change}" for m in survivors)
                or "- none"
            ),
            f"Run time: {time.perf_counter() - t0:.0f} s. Every mutant: the JSON file of the "
            "same name.",
        ]
    )
    path = write_results(args.out, "Mutation check of the core", info, body)
    Path(path).with_suffix(".json").write_text(json.dumps([asdict(m) for m in mutants], indent=1))
    print(Path(path).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
