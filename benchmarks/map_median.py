"""A median filter of the finished map (``map_median``) on the demo's models.

    python benchmarks/map_median.py [--seeds 0 1 2] [--demo-dirs DIR ...] [--sizes 0 3 5]
                                    [--n-test 36] [--out benchmarks/results/map_median_cpu.md]

The field's evaluation pipelines median-filter anomaly maps before scoring them. Here
each demo model (``disyre demo --seed S``, or a folder it wrote, given with
``--demo-dirs``) maps two test sets of the unseen brain with ``map_median`` set to each
of ``--sizes`` at predict time (``set_params``, nothing refitted; 0 is the demo as it
is): the demo's own 12 subjects and ``demo_test_size.py``'s independent larger set
(``--n-test`` subjects, ``random_state = seed + 2000``). Scored with ``held_out.py``'s
metrics (pixel AP pooled over the lesioned volumes and per family, slice AUROC, volume
AUROC). The intensity baselines on the same sets are in ``demo_test_size_cpu.md``. Only
public API is used.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import md_table
from _demo_models import demo_cohort, demo_model_parser, load_demo, run_on_demo_models
from demo_recipes import spread
from demo_test_size import SEED_OFFSET
from false_positives import fmt
from held_out import FAMILIES, evaluate

METRICS = ("pixel_ap", "slice_auroc", "volume_auroc")


def evaluation_sets(meta: dict, n_test: int, **overrides) -> dict:
    """The demo's cohort (its 12 test subjects) and the larger independent set;
    ``overrides`` go to ``make_brain_cohort`` for both (e.g. ``bias_field``)."""
    return {
        f"demo's, {meta['cohort']['n_test']}": demo_cohort(meta, **overrides),
        f"new, {n_test}": demo_cohort(meta, n_test, SEED_OFFSET, **overrides),
    }


def rows_of(folder: Path, sizes: list[int], n_test: int) -> list[dict]:
    meta, seed, det = load_demo(folder)
    rows = []
    for name, cohort in evaluation_sets(meta, n_test).items():
        for size in sizes:
            det.set_params(map_median=size)
            rows.append(
                {
                    "seed": seed,
                    "test set": name,
                    "map_median": size,
                    **evaluate(det.decision_map(cohort.X_test), cohort),
                }
            )
    return rows


def report(rows: list[dict], sizes: list, key: str = "map_median") -> str:
    """The table of ``rows`` whose setting ``key`` takes each of ``sizes`` (the first is
    the reference of the "up" counts)."""
    families = [f for f in FAMILIES if any(r.get(f) is not None for r in rows)]
    sets = list(dict.fromkeys(r["test set"] for r in rows))
    seeds = sorted({r["seed"] for r in rows})
    base = {(r["seed"], r["test set"]): r for r in rows if r[key] == sizes[0]}
    summary = []
    for s in sets:
        for size in sizes:
            sel = [r for r in rows if r["test set"] == s and r[key] == size]
            cells = []
            for k in METRICS:
                up = sum(r[k] > base[(r["seed"], s)][k] for r in sel)
                cells.append(
                    spread([r[k] for r in sel])
                    + ("" if size == sizes[0] else f" ({up} of {len(sel)} up)")
                )
            summary.append([s, size, *cells])
    per_seed = [
        [
            r["seed"],
            r["test set"],
            r[key],
            *(fmt(r.get(k), ".3f") for k in (*METRICS, *families)),
        ]
        for r in rows
    ]
    return (
        f"Seeds {seeds}; `{key}` in {sizes} (the first is the reference of the 'up' "
        "counts: seeds whose figure rose above it).\n\n"
        "### DISYRE: min / mean / max over seeds\n\n"
        + md_table(["test set", key, "pixel AP", "slice AUROC", "volume AUROC"], summary)
        + "\n\n### per seed (pixel AP per family in the last columns)\n\n"
        + md_table(
            [
                "seed",
                "test set",
                key,
                "pixel AP",
                "slice AUROC",
                "volume AUROC",
                *families,
            ],
            per_seed,
        )
    )


def main() -> int:
    ap = demo_model_parser(__doc__, "benchmarks/results/map_median_cpu.md")
    ap.add_argument("--sizes", type=int, nargs="+", default=[0, 3, 5])
    args = ap.parse_args()
    return run_on_demo_models(
        args,
        "A median filter of the map",
        lambda folder: rows_of(folder, args.sizes, args.n_test),
        lambda rows: report(rows, args.sizes),
    )


if __name__ == "__main__":
    sys.exit(main())
