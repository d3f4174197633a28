"""Mirrored restorations (``map_flip``) on the demo's models.

    python benchmarks/map_flip.py [--seeds 0 1 2] [--demo-dirs DIR ...] [--n-test 36]
                                  [--out benchmarks/results/map_flip_cpu.md]

``map_flip=True`` restores every slice as it is and mirrored along its last axis (the
axis the training augmentation mirrors) and averages the two restorations before the
residual. Each demo model (``disyre demo --seed S``, or a folder it wrote, given with
``--demo-dirs``; the model as the demo reports it, every network) is set to each value
on every network and calibrated on the demo's own training scans (``calibrate``, so
that both arms learn their healthy references, residual profile, location reference
and threshold, from the same scans with their own maps; nothing is retrained). It then
maps the demo's 12 test subjects and ``demo_test_size.py``'s independent larger set
(``--n-test`` subjects, ``random_state = seed + 2000``), scored with ``held_out.py``'s
metrics (pixel AP pooled over the lesioned volumes and per family, slice AUROC, volume
AUROC), with the seconds each arm took (calibration and both sets' maps). Only public
API is used.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _demo_models import (
    demo_cohort,
    demo_meta,
    demo_model_parser,
    load_demo,
    members,
    run_on_demo_models,
)
from held_out import evaluate
from map_median import evaluation_sets, report

VALUES = (False, True)


def setting_rows(folder: Path, n_test: int, key: str, values) -> list[dict]:
    """One arm per value of the predict-time setting ``key``: a fresh copy of the demo's
    model, the value set on every network, calibrated on the demo's training scans, then
    both test sets mapped and scored, with the arm's seconds."""
    rows, meta = [], demo_meta(folder)
    sets = evaluation_sets(meta, n_test)
    for value in values:
        _, seed, model = load_demo(folder, whole=True)  # a fresh copy: calibrate changes it
        t = time.perf_counter()
        for _, det in members(model):
            det.set_params(**{key: value})
        model.calibrate(demo_cohort(meta).X_train)
        for name, cohort in sets.items():
            row = {"seed": seed, "test set": name, key: value}
            row.update(evaluate(model.decision_map(cohort.X_test), cohort))
            rows.append(row)
        for row in rows[-len(sets) :]:
            row["seconds"] = time.perf_counter() - t
        print(f"  seed {seed}, {key}={value}: done", flush=True)
    return rows


def rows_of(folder: Path, n_test: int) -> list[dict]:
    return setting_rows(folder, n_test, "map_flip", VALUES)


def seconds(
    rows: list[dict], key: str = "map_flip", field: str = "seconds", group=("seed",)
) -> str:
    """Each arm's ``field`` (by default its seconds: calibration and both sets' maps),
    once per value of ``key`` within each ``group`` of rows (the seed first; by default
    the seed alone), however many test sets repeat it."""
    arms = {(tuple(r[g] for g in group), r[key]): r[field] for r in rows}
    return ", ".join(
        f"seed {' '.join(map(str, names))} {arm}: {s:.0f}" for (names, arm), s in arms.items()
    )


def main() -> int:
    ap = demo_model_parser(__doc__, "benchmarks/results/map_flip_cpu.md")
    args = ap.parse_args()
    return run_on_demo_models(
        args,
        "Mirrored restorations of the map",
        lambda folder: rows_of(folder, args.n_test),
        lambda rows: (
            report(rows, list(VALUES), key="map_flip")
            + "\n\nSeconds per arm (calibration and both sets' maps): "
            + seconds(rows)
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
