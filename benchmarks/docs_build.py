"""Time of the documentation build and of each gallery example, from a clean state.

    python benchmarks/docs_build.py [--threads N] [--no-standalone]

Removes earlier build output, runs the README's docs command
(``python -m sphinx -W --keep-going -b html docs docs/_build/html``, which runs every
gallery example), checks the built pages with ``docs/check_html.py``, then runs each
example once more on its own, to measure its CPU time. Writes
``benchmarks/results/docs_build.md``.

Wall-clock times on a shared machine grow with its load; CPU seconds of a one-thread run
do not, so they are the figure to hold against the gallery's "about a minute on a CPU".
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import REPO, command_line, git_commit, hardware, md_table, now, write_results

DOCS = REPO / "docs"
OUTPUTS = ("_build", "auto_examples", "gen_modules", "sg_execution_times.rst")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str], env: dict[str, str]) -> tuple[int, float, float, str]:
    """Exit status, wall seconds, CPU seconds (user + system) and output of ``cmd``."""
    cpu0, t0 = _children_cpu(), time.perf_counter()
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    return result.returncode, wall, cpu, result.stdout + result.stderr


def gallery_times() -> dict[str, float]:
    """Per-example wall seconds that sphinx-gallery recorded during the build."""
    times = {}
    table = DOCS / "auto_examples" / "sg_execution_times.rst"
    if not table.is_file():
        table = DOCS / "sg_execution_times.rst"
    text = table.read_text() if table.is_file() else ""
    # Rows look like: "   * - :ref:`sphx_glr_auto_examples_plot_x.py` (``plot_x.py``)
    #                    - 00:41.123"
    for name, minutes, seconds in re.findall(
        r"\(``(plot_\w+)\.py``\)\s*\n\s*- (\d+):(\d+\.\d+)", text
    ):
        times[name] = 60 * int(minutes) + float(seconds)
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch/OpenMP threads of the build and of the examples run alone (default: 1, "
        "what docs/conf.py sets when OMP_NUM_THREADS is not set)",
    )
    ap.add_argument(
        "--no-standalone",
        action="store_true",
        help="skip running each example on its own (CPU seconds per example)",
    )
    ap.add_argument("--out", default=str(HERE / "results" / "docs_build.md"))
    args = ap.parse_args()

    env = dict(os.environ, MPLBACKEND="Agg")
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(args.threads)
    torch.set_num_threads(args.threads)  # only so that hardware() reports the threads used
    info = {"command": command_line(), "commit": git_commit(), "date": now(), **hardware("cpu")}

    for name in OUTPUTS:
        path = DOCS / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    build = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html"]
    build += ["docs", "docs/_build/html"]
    print("building:", " ".join(build[1:]), flush=True)
    rc, wall, cpu, log = timed(build, env)
    if rc != 0:
        print(log[-6000:], file=sys.stderr)
        print(f"the docs build failed (exit status {rc})", file=sys.stderr)
        return 1
    check = [sys.executable, "docs/check_html.py", "docs/_build/html"]
    check_rc, _, _, check_log = timed(check, env)
    print(check_log.strip(), flush=True)
    sg = gallery_times()

    rows = []
    examples = sorted((REPO / "examples").glob("plot_*.py"))
    for example in examples:
        row = [f"`{example.name}`", f"{sg[example.stem]:.0f}" if example.stem in sg else None]
        if not args.no_standalone:
            ex_rc, ex_wall, ex_cpu, ex_log = timed([sys.executable, str(example)], env)
            if ex_rc != 0:
                print(ex_log[-3000:], file=sys.stderr)
            row += [f"{ex_wall:.0f}", f"{ex_cpu:.0f}" if ex_rc == 0 else "failed"]
        print("  " + " | ".join(str(v) for v in row), flush=True)
        rows.append(row)

    headers = ["example", "in the build: wall (s)"]
    if not args.no_standalone:
        headers += ["alone: wall (s)", "alone: CPU (s)"]
    body = [
        "## The build",
        "",
        "`python -m sphinx -W --keep-going -b html docs docs/_build/html` from a clean "
        "state (no `docs/_build`, `docs/auto_examples`, `docs/gen_modules`): user guide, "
        "API reference, and the gallery, whose examples all run.",
        "",
        md_table(
            ["wall (s)", "CPU, user + system (s)", "docs/check_html.py"],
            [[f"{wall:.0f}", f"{cpu:.0f}", "passed" if check_rc == 0 else "FAILED"]],
        ),
        "",
        "## The gallery examples",
        "",
        "Wall seconds of each example inside the build (sphinx-gallery's own record, "
        "`docs/auto_examples/sg_execution_times.rst`); then each example run alone "
        "(`python examples/<name>`), wall and CPU seconds. Wall time includes waiting for "
        "a shared CPU; CPU time does not.",
        "",
        md_table(headers, rows),
    ]
    path = write_results(args.out, "Documentation build time", info, "\n".join(body))
    print(f"\nwrote {path}")
    return 0 if check_rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
