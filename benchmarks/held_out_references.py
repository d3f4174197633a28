"""Healthy references learned on held-out healthy scans (``reference_fraction``).

    python benchmarks/held_out_references.py [--seeds 0 1 2] [--n-test 36]
                                             [--out benchmarks/results/held_out_references_cpu.md]

``fit`` learns the healthy references of the maps (the healthy residual per intensity,
each voxel's healthy maps) and ``offset_`` after training. From the scans the network
trained on, they measure residuals smaller than a new person's; ``reference_fraction``
holds healthy scans out of training to learn them instead. With 32 healthy subjects of
the demo's training brains (the demo's voxels, contrast and recipe, all three networks), per
seed, three models:

- ``16 trained, references on them``: the network of the third arm, its references
  learned again on its own 16 training subjects (``calibrate``; nothing retrained), so
  it differs from the third arm in the references alone;
- ``32 trained, references on them``: the same recipe trained on all 32;
- ``16 trained, references on the other 16``: ``reference_fraction=0.5``.

Each maps the cohort's 12 test subjects of the unseen brain (the demo's test set) and an
independent set of ``--n-test`` more (``random_state = seed + 2000``), scored with
``held_out.py``'s metrics (pixel AP pooled and per family, slice AUROC, volume AUROC).
Only public API is used.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import record_rows
from demo_recipes import COHORT, SETTINGS, demo_model_of
from demo_test_size import SEED_OFFSET
from held_out import evaluate
from map_flip import seconds
from map_median import report

from disyre_sk import CombinedDetector
from disyre_sk.datasets import make_brain_cohort

ARMS = (
    "16 trained, references on them",
    "32 trained, references on them",
    "16 trained, references on the other 16",
)
N_HEALTHY = 32


def demo_model(seed: int, reference_fraction) -> CombinedDetector:
    """The demo's whole model, unfitted, as the demo builds it (one DAG network per sign,
    1,000 and 500 steps, and the small-anomaly network, 500 steps), holding out
    ``reference_fraction``."""
    params = dict(
        SETTINGS,
        reference_fraction=reference_fraction,
        batch_size=16,
        n_steps=1000,
        warmup_steps=100,
        device="cpu",
        random_state=seed,
    )
    return demo_model_of(params)


def rows_of(seed: int, n_test: int, cohort_args: dict | None = None, pair=demo_model) -> list[dict]:
    """The three arms' rows for one seed: ``pair(seed, reference_fraction)`` builds the
    model, ``cohort_args`` the cohort (the demo's with 32 healthy subjects)."""
    cohort_args = dict(COHORT, n_healthy=N_HEALTHY) if cohort_args is None else cohort_args
    cohort = make_brain_cohort(**cohort_args, random_state=seed)
    larger = make_brain_cohort(
        **dict(cohort_args, n_healthy=0, n_test=n_test), random_state=seed + SEED_OFFSET
    )
    sets = {f"unseen brain, {len(cohort.X_test)}": cohort, f"new, {n_test}": larger}
    X = cohort.X_train
    t = time.perf_counter()
    held_out = pair(seed, 0.5).fit(X)
    fit_half = time.perf_counter() - t
    held = held_out.detectors_[0][1].history_["reference_samples"]
    trained = np.setdiff1d(np.arange(len(X)), held)
    own = copy.deepcopy(held_out).calibrate(X[trained])  # the same network
    t = time.perf_counter()
    whole = pair(seed, None).fit(X)
    fit_whole = time.perf_counter() - t
    rows = []
    for arm, model, fit_s in zip(ARMS, (own, whole, held_out), (fit_half, fit_whole, fit_half)):
        for name, test in sets.items():
            row = {"seed": seed, "test set": name, "references": arm, "fit_s": fit_s}
            row.update(evaluate(model.decision_map(test.X_test), test))
            rows.append(row)
        print(f"  seed {seed}, {arm}: done", flush=True)
    return rows


def fit_seconds(rows: list[dict]) -> str:
    """Each fit's seconds, once per seed: the first arm is the third's fit calibrated
    again, so only the second and third arms are named."""
    return seconds([r for r in rows if r["references"] != ARMS[0]], "references", "fit_s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n-test", type=int, default=36)
    ap.add_argument("--out", default="benchmarks/results/held_out_references_cpu.md")
    args = ap.parse_args()
    return record_rows(
        args.out,
        "Healthy references on held-out scans",
        [lambda seed=seed: rows_of(seed, args.n_test) for seed in args.seeds],
        lambda rows: (
            report(rows, list(ARMS), key="references")
            + f"\n\nFit seconds (all its networks and their references): {fit_seconds(rows)}."
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
