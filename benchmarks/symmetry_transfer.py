"""The symmetry prior (``map_symmetry``) on other unseen brains and contrasts than the demo's.

    python benchmarks/symmetry_transfer.py [--seeds 0 1 2] [--splits itk:t2 colin:t1]
                                           [--n-test 24] [--weights 0 0.5]
                                           [--out benchmarks/results/symmetry_transfer_cpu.md]

Each split ``brain:contrast`` trains the demo's pair of networks (its recipe,
``held_out_references.demo_model``) per seed on 16 healthy subjects of the two other
brains in that contrast, and maps ``--n-test`` subjects of the held-out brain. Each
``map_symmetry`` weight is set on all its networks, which are then calibrated on the
training scans (the same trained networks for every weight: only the prior differs).
Scored with ``held_out.py``'s metrics (pixel AP pooled over the lesioned volumes and per
family, slice AUROC, volume AUROC). Only public API is used.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cohort_bases, record_rows
from _demo_models import members
from held_out import evaluate
from held_out_references import demo_model
from map_flip import seconds
from map_median import report

from disyre_sk.datasets import make_brain_cohort


def split_cohort(held: str, contrast: str, n_test: int, seed: int):
    """The demo's cohort settings with ``held`` as the unseen brain, in ``contrast``."""
    return make_brain_cohort(
        n_healthy=16,
        n_test=n_test,
        voxel_size=3.0,
        contrast=contrast,
        random_state=seed,
        **cohort_bases(held),
    )


def rows_of(seed: int, split: str, n_test: int, weights, pair=demo_model) -> list[dict]:
    held, contrast = split.split(":")
    cohort = split_cohort(held, contrast, n_test, seed)
    model = pair(seed, None).fit(cohort.X_train)
    for _, det in members(model):
        det.set_params(verbose=False)
    rows = []
    for weight in weights:
        t = time.perf_counter()
        for _, det in members(model):
            det.set_params(map_symmetry=weight)
        model.calibrate(cohort.X_train)
        row = {"seed": seed, "test set": f"{held} {contrast}, {n_test}", "map_symmetry": weight}
        row.update(evaluate(model.decision_map(cohort.X_test), cohort))
        row["seconds"] = time.perf_counter() - t
        rows.append(row)
        print(f"  seed {seed}, {split}, map_symmetry={weight:g}: done", flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--splits", nargs="+", default=["itk:t2", "colin:t1"])
    ap.add_argument("--n-test", type=int, default=24)
    ap.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.5])
    ap.add_argument("--out", default="benchmarks/results/symmetry_transfer_cpu.md")
    args = ap.parse_args()
    return record_rows(
        args.out,
        "The symmetry prior on other brains and contrasts",
        [
            lambda seed=seed, split=split: rows_of(seed, split, args.n_test, args.weights)
            for split in args.splits
            for seed in args.seeds
        ],
        lambda rows: (
            report(rows, list(args.weights), key="map_symmetry")
            + "\n\nSeconds per arm (calibration and the test set's maps): "
            + seconds(rows, key="map_symmetry", group=("seed", "test set"))
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
