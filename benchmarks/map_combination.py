"""How the demo's networks' maps make one: their weighted sum against their maximum.

    python benchmarks/map_combination.py [--seeds 0 1 2] [--demo-dirs DIR ...] [--n-test 36]
                                         [--out benchmarks/results/map_combination_cpu.md]

The demo's model is three networks (DAG anomalies that brighten, that darken, and small
sharp ones), each map a z-score against the healthy training maps at every voxel. The
demo first added them at weights 1, 1 and 0.5: where one network sees a lesion the
others see nothing, and their noise is added to it; the maximum, which the demo now
takes at weights 1, 1 and 1, keeps at each voxel the network that sees it most. Each
demo model (``disyre demo --seed S``, or a folder it wrote, given with ``--demo-dirs``)
maps two test sets of the unseen brain with its ``CombinedDetector`` set
(``set_params``, nothing refitted) to each combination below: the demo's own 12 subjects
and ``demo_test_size.py``'s independent larger set (``--n-test`` subjects,
``random_state = seed + 2000``), scored with ``held_out.py``'s metrics. Only public API
is used.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _demo_models import demo_model_parser, load_demo, run_on_demo_models
from held_out import evaluate
from map_median import evaluation_sets, report

# name -> (combination, weights of bright, dark, foci); the first is the reference (the
# demo's sum before it took the maximum), the second the demo's.
COMBINATIONS = {
    "sum 1/1/0.5": ("sum", [1.0, 1.0, 0.5]),
    "max 1/1/1": ("max", [1.0, 1.0, 1.0]),
    "max 1/1/0.5": ("max", [1.0, 1.0, 0.5]),
}


def rows_of(folder: Path, n_test: int) -> list[dict]:
    meta, seed, model = load_demo(folder, whole=True)
    names = [n for n, _ in model.detectors_]
    if names != ["bright", "dark", "foci"]:
        raise SystemExit(f"{folder}: expected the demo's networks bright, dark, foci; got {names}")
    rows = []
    for name, cohort in evaluation_sets(meta, n_test).items():
        for label, (how, weights) in COMBINATIONS.items():
            # Read when mapping: the fitted members stay as they are.
            model.set_params(combination=how, weights=weights)
            rows.append(
                {
                    "seed": seed,
                    "test set": name,
                    "combination": label,
                    **evaluate(model.decision_map(cohort.X_test), cohort),
                }
            )
    return rows


def main() -> int:
    ap = demo_model_parser(__doc__, "benchmarks/results/map_combination_cpu.md")
    args = ap.parse_args()
    labels = list(COMBINATIONS)
    return run_on_demo_models(
        args,
        "Sum or maximum of the demo's networks' maps",
        lambda folder: rows_of(folder, args.n_test),
        lambda rows: report(rows, labels, key="combination"),
    )


if __name__ == "__main__":
    sys.exit(main())
