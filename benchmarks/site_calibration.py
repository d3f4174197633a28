"""Calibrating the demo's models on healthy scans they were not trained on.

    python benchmarks/site_calibration.py [--seeds 0 1 2] [--demo-dirs DIR ...]
                                          [--n-calibration 16] [--n-test 36]
                                          [--out benchmarks/results/site_calibration_cpu.md]

``fit`` learns the healthy references of the maps (the healthy residual per intensity,
each voxel's healthy maps) and the threshold ``offset_`` from the training scans, which
the network has seen: their residuals are smaller than a new person's. ``calibrate(X)``
learns them again from other healthy scans, keeping the network. Each demo model
(``disyre demo --seed S``, or a folder it wrote, given with ``--demo-dirs``; the model
as the demo reports it, both networks) maps the demo's 12 test subjects and
``demo_test_size.py``'s independent set (``--n-test`` subjects, ``random_state = seed +
2000``) three ways:

- as fitted;
- calibrated on ``--n-calibration`` new healthy subjects of the *training* brains
  (MNI152 and the ITK scan; ``random_state = seed + 3000``): held-out healthy scans,
  nothing of the test brain;
- calibrated on as many healthy subjects of the *test* brain (Colin27; ``random_state =
  seed + 3000``), none of them a test subject: a site's own healthy scans. Here every
  test subject is rendered from that one brain, so this is an upper bound of what a
  site's healthy scans (other people) would give.

Scored with ``held_out.py``'s metrics (pixel AP pooled and per family, slice AUROC,
volume AUROC) and the share of the healthy test scans that ``predict`` flags at the
model's ``offset_`` (the model's false alarms). Only public API is used.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import md_table
from _demo_models import demo_meta, demo_model_parser, load_demo, run_on_demo_models
from demo_recipes import spread
from held_out import FAMILIES, evaluate
from map_median import evaluation_sets

from disyre_sk.datasets import make_brain_cohort

CALIBRATION_OFFSET = 3000  # demo_test_size.py's test subjects use + 2000
METRICS = ("pixel_ap", "slice_auroc", "volume_auroc", "healthy_flagged")
WAYS = ("as fitted", "calibrated: training brains", "calibrated: test brain")


def calibration_scans(meta: dict, way: str, n: int):
    """Healthy scans to calibrate on: new subjects of the training brains or of the test
    brain, on the demo's grid and contrast; None for the model as fitted."""
    if way == "as fitted":
        return None
    c = meta["cohort"]
    bases = tuple(c["train_bases"] if way.endswith("training brains") else c["test_bases"])
    seed = int(meta["settings"]["random_state"]) + CALIBRATION_OFFSET
    cohort = make_brain_cohort(
        n_healthy=n,
        n_test=0,
        voxel_size=c["voxel_size"],
        contrast=c["contrast"],
        train_bases=bases,
        test_bases=tuple(c["test_bases"]),
        random_state=seed,
    )
    return cohort.X_train


def rows_of(folder: Path, n_calibration: int, n_test: int) -> list[dict]:
    rows, meta = [], demo_meta(folder)
    sets = evaluation_sets(meta, n_test)
    for way in WAYS:
        _, seed, model = load_demo(folder, whole=True)  # a fresh copy: calibrate changes it
        X_cal = calibration_scans(meta, way, n_calibration)
        cal_s = None
        if X_cal is not None:
            t = time.perf_counter()
            model.calibrate(X_cal)
            cal_s = time.perf_counter() - t
        for name, cohort in sets.items():
            healthy = np.array([f == "healthy" for f in cohort.families_test])
            maps = model.decision_map(cohort.X_test)
            flags = model.predict(cohort.X_test[healthy])  # only they count: map no more
            rows.append(
                {
                    "seed": seed,
                    "test set": name,
                    "way": way,
                    "calibration_s": cal_s,
                    "healthy_flagged": float((flags == -1).mean()),
                    **evaluate(maps, cohort),
                }
            )
        print(f"  seed {seed}, {way}: done", flush=True)
    return rows


def report(rows: list[dict], n_calibration: int) -> str:
    families = [f for f in FAMILIES if any(r.get(f) is not None for r in rows)]
    sets = list(dict.fromkeys(r["test set"] for r in rows))
    summary = []
    for test_set in sets:
        for way in WAYS:
            sel = [r for r in rows if r["test set"] == test_set and r["way"] == way]
            summary.append(
                [test_set, way, *(spread([r[k] for r in sel]) for k in (*METRICS, *families))]
            )
    per_seed = [
        [
            r["seed"],
            r["test set"],
            r["way"],
            *(f"{r[k]:.3f}" if r.get(k) is not None else "—" for k in (*METRICS, *families)),
        ]
        for r in rows
    ]
    heads = ["pixel AP", "slice AUROC", "volume AUROC", "healthy flagged", *families]
    return (
        f"Calibration sets: {n_calibration} healthy subjects each. 'healthy flagged': share "
        "of the test set's healthy scans that `predict` flags at the model's `offset_` "
        "(contamination 'auto': 1 % of the healthy scans it was set on).\n\n"
        "### min / mean / max over seeds\n\n"
        + md_table(["test set", "model", *heads], summary)
        + "\n\n### per seed\n\n"
        + md_table(["seed", "test set", "model", *heads], per_seed)
    )


def main() -> int:
    ap = demo_model_parser(__doc__, "benchmarks/results/site_calibration_cpu.md")
    ap.add_argument("--n-calibration", type=int, default=16)
    args = ap.parse_args()
    if args.n_calibration < 2:
        ap.error("--n-calibration must be at least 2")
    return run_on_demo_models(
        args,
        "Calibrating the demo's models on healthy scans they were not trained on",
        lambda folder: rows_of(folder, args.n_calibration, args.n_test),
        lambda rows: report(rows, args.n_calibration),
    )


if __name__ == "__main__":
    sys.exit(main())
