"""The demo's three networks trained one after the other or side by side (``n_jobs``).

    python benchmarks/parallel_fit.py [--steps 400] [--rounds 2] [--seed 0]
                                      [--out benchmarks/results/parallel_fit_cpu.md]

``make_recipe("cpu")`` is three small networks (bright, dark and small-anomaly). On a CPU
one training step of such a network uses a second thread poorly, so
``CombinedDetector(n_jobs=2)`` trains two at a time, each in its own process on one of
the two cores, where ``n_jobs=None`` trains them one after the other on both. This fits
the recipe both ways on the demo's training subjects (16 of two real brains, 3 mm),
the ways alternating round by round so that a busy machine slows them alike, and
records the wall time of each fit and the ratio within each round. The first network
takes ``--steps`` steps, the others half as many (the recipe's ratio). Each member draws
the same random numbers either way: the largest difference of the two fits' maps of the
demo's 12 test subjects (z-scores) says what the thread count moves. Only public API.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, git_commit, hardware, md_table, now, write_results
from demo_recipes import COHORT

from disyre_sk import make_recipe
from disyre_sk.datasets import make_brain_cohort

WAYS = {"one after the other (n_jobs=None)": None, "side by side (n_jobs=2)": 2}


def cohort(seed: int):
    """The demo's cohort: training subjects from MNI152 and the ITK brain, tests from
    Colin27, 3 mm, T2."""
    return make_brain_cohort(**COHORT, random_state=seed)


def fit_once(data, steps: int, seed: int, n_jobs: int | None):
    """Fit the recipe's model; return it and the wall seconds of ``fit``."""
    model = make_recipe("cpu", n_steps=steps, device="cpu", random_state=seed)
    model.set_params(n_jobs=n_jobs)
    start = time.perf_counter()
    model.fit(data.X_train)
    return model, time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=400, help="the first network's steps")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/parallel_fit_cpu.md"))
    args = ap.parse_args()
    provenance = {"command": command_line(), "commit": git_commit(), "date": now()}
    provenance.update(hardware("cpu"))
    t0 = time.perf_counter()
    data = cohort(args.seed)
    seconds: dict[str, list[float]] = {way: [] for way in WAYS}
    maps = {}
    for r in range(args.rounds):
        for way, n_jobs in WAYS.items():
            model, s = fit_once(data, args.steps, args.seed, n_jobs)
            seconds[way].append(s)
            if r == 0:
                maps[way] = model.decision_map(data.X_test)
            print(f"round {r}: {way}: {s:.1f} s", flush=True)
    sequential, parallel = (seconds[w] for w in WAYS)
    ratios = [a / b for a, b in zip(sequential, parallel)]
    a, b = (maps[w] for w in WAYS)
    diff = float(np.abs(a - b).max())
    rows = [
        [r, f"{sequential[r]:.1f}", f"{parallel[r]:.1f}", f"{ratios[r]:.2f}x"]
        for r in range(args.rounds)
    ]
    body = (
        f"`make_recipe('cpu', n_steps={args.steps})`: networks of {args.steps}, "
        f"{args.steps // 2} and {args.steps // 2} steps, fitted on the demo's 16 training "
        f"subjects (cohort seed {args.seed}), torch threads {torch.get_num_threads()} in "
        "this process; wall seconds of `fit` (training, each network's healthy references, "
        "and the combination's threshold), the two ways alternating.\n\n"
        + md_table(
            ["round", *(f"{w}, s" for w in WAYS), "speed-up (same round)"],
            rows,
        )
        + f"\n\nMedian speed-up {statistics.median(ratios):.2f}x. Largest absolute "
        f"difference between the two fits' maps of the 12 test subjects (z-scores; the "
        f"maps' 99th percentile is {float(np.percentile(a, 99)):.2f}): {diff:.2e}.\n\n"
        f"Run time: {time.perf_counter() - t0:.0f} s. Raw: the JSON beside."
    )
    raw = {"seconds": seconds, "ratios": ratios, "max_map_difference": diff, "steps": args.steps}
    path = write_results(
        args.out,
        "Training the demo's networks one after the other or side by side",
        provenance,
        body,
        raw,
    )
    print(f"Wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
