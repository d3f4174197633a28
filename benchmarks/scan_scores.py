"""Scan-level scores from the demo's maps: which reduction tells lesioned scans apart.

    python benchmarks/scan_scores.py [--seeds 0 1 2] [--demo-dirs DIR ...] [--n-test 36]
                                     [--out benchmarks/results/scan_scores_cpu.md]

A scan's score reduces its map to one number; the demo (and ``score_samples`` by
default) takes the mean of the top 1 % of the foreground values. Each demo model
(``disyre demo --seed S``, or a folder it wrote, given with ``--demo-dirs``; both
networks, as the demo reports it) maps the demo's 12 test subjects and
``demo_test_size.py``'s independent larger set (``--n-test`` subjects,
``random_state = seed + 2000``) once; each reduction below is scored by volume AUROC
(lesioned against healthy scans):

- ``top 0.1 %``, ``top 1 %`` (the demo's), ``top 5 %``: the mean of the largest map values;
- ``max``: the largest one;
- ``blob > t``: the largest connected cluster's mass above ``t`` (the sum of ``map - t``
  over a 3-D component of ``map > t``), for a compact lesion against scattered spots;
- ``excess > t``: the whole scan's mass above ``t``.

``t`` is in the map's units (location z-scores for the demo's models). Only public API
is used.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import md_table
from _demo_models import demo_meta, demo_model_parser, load_demo, run_on_demo_models
from demo_recipes import spread
from map_median import evaluation_sets

from disyre_sk.metrics import sample_auroc


def top_mean(values: np.ndarray, fraction: float) -> float:
    """Mean of the largest ``fraction`` of ``values`` (at least one)."""
    v = np.sort(values)
    return float(v[-max(1, int(fraction * v.size)) :].mean())


def blob_mass(scan_map: np.ndarray, foreground: np.ndarray, t: float) -> float:
    """The largest 3-D connected cluster's mass above ``t``; 0 without one."""
    labels, n = ndi.label((scan_map > t) & foreground)
    if n == 0:
        return 0.0
    mass = ndi.sum(scan_map - t, labels, index=np.arange(1, n + 1))
    return float(np.max(mass))


REDUCTIONS = {
    "top 0.1 %": lambda m, f: top_mean(m[f], 0.001),
    "top 1 %": lambda m, f: top_mean(m[f], 0.01),
    "top 5 %": lambda m, f: top_mean(m[f], 0.05),
    "max": lambda m, f: float(m[f].max()),
    "blob > 3": lambda m, f: blob_mass(m, f, 3.0),
    "blob > 5": lambda m, f: blob_mass(m, f, 5.0),
    "excess > 3": lambda m, f: float(np.maximum(m[f] - 3.0, 0).sum()),
    "excess > 5": lambda m, f: float(np.maximum(m[f] - 5.0, 0).sum()),
}
REFERENCE = "top 1 %"


def rows_of(folder: Path, n_test: int) -> list[dict]:
    meta = demo_meta(folder)
    _, seed, model = load_demo(folder, whole=True)
    rows = []
    for name, cohort in evaluation_sets(meta, n_test).items():
        maps, fg = model.decision_map(cohort.X_test), cohort.brain_masks_test
        lesioned = np.array([f != "healthy" for f in cohort.families_test], dtype=int)
        row = {"seed": seed, "test set": name}
        for key, reduce in REDUCTIONS.items():
            scores = np.array([reduce(m, f) for m, f in zip(maps, fg)])
            row[key] = sample_auroc(scores, lesioned)
        rows.append(row)
        print(f"  seed {seed}, {name}: done", flush=True)
    return rows


def report(rows: list[dict]) -> str:
    sets = list(dict.fromkeys(r["test set"] for r in rows))
    summary = []
    for key in REDUCTIONS:
        cells = []
        for s in sets:
            sel = [r for r in rows if r["test set"] == s]
            up = sum(r[key] > r[REFERENCE] for r in sel)
            down = sum(r[key] < r[REFERENCE] for r in sel)
            note = "" if key == REFERENCE else f" ({up} up, {down} down)"
            cells.append(spread([r[key] for r in sel]) + note)
        summary.append([key, *cells])
    per_seed = [[r["seed"], r["test set"], *(f"{r[k]:.3f}" for k in REDUCTIONS)] for r in rows]
    return (
        f"Volume AUROC of each scan score; the counts compare each seed with `{REFERENCE}` "
        "(the demo's and `score_samples`' default).\n\n"
        "### min / mean / max over seeds\n\n"
        + md_table(["scan score", *sets], summary)
        + "\n\n### per seed\n\n"
        + md_table(["seed", "test set", *REDUCTIONS], per_seed)
    )


def main() -> int:
    ap = demo_model_parser(__doc__, "benchmarks/results/scan_scores_cpu.md")
    args = ap.parse_args()
    return run_on_demo_models(
        args,
        "Scan-level scores from the demo's maps",
        lambda folder: rows_of(folder, args.n_test),
        report,
    )


if __name__ == "__main__":
    sys.exit(main())
