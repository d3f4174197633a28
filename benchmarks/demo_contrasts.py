"""The demo's CPU recipe on other contrasts: T1 and FLAIR besides the demo's T2.

    python benchmarks/demo_contrasts.py [--seeds 0 1 2] [--contrasts t1 flair] [--n-test 36]
                                        [--out benchmarks/results/demo_contrasts_cpu.md]

The demo's recipe (all its networks, its map settings) was chosen on T2, where every lesion
family but the cavities is brighter than the tissue around it, and its second network
learns small *bright* anomalies only. ``disyre fit --recipe cpu`` trains the same recipe
on whatever contrast a user has. Here it is trained, per seed and contrast, on the
demo's cohort rendered in that contrast (``make_brain_cohort(contrast=...)``: training
subjects from MNI152 and the ITK brain, test subjects from Colin27; on T1 every family
is darker than its surroundings, on FLAIR all but the cavities brighter) exactly as the
demo trains it (``held_out_references.demo_model``), and maps the 12 test subjects of the
unseen brain and an independent set of ``--n-test`` more (``random_state = seed +
2000``). Rows: the recipe as it is (``demo``); its first network alone; the first
network plus the small-anomaly network trained on anomalies of either sign instead
(``small_anomaly_specialist(p_bright=0.5)``, added at the demo's second weight: a
``CombinedDetector``'s map is its members' weighted sum); the two intensity thresholds.
Scored with ``held_out.py``'s metrics (pixel AP pooled over the lesioned volumes and per
family, slice AUROC, volume AUROC). Only public API is used.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import md_table, record_rows
from demo_recipes import COHORT, SPECIALIST, spread
from demo_test_size import SEED_OFFSET
from held_out import FAMILIES, baselines, evaluate, row_cells
from held_out_references import demo_model

from disyre_sk import small_anomaly_specialist
from disyre_sk.datasets import make_brain_cohort

DEMO = "DISYRE, the demo's recipe"
FIRST = "DISYRE, first network alone"
EITHER = "DISYRE, small-anomaly network of either sign"
METRICS = ("pixel_ap", "slice_auroc", "volume_auroc")


def rows_of(
    seed: int,
    contrast: str,
    n_test: int,
    cohort_args: dict | None = None,
    pair=demo_model,
    specialist: dict | None = None,
) -> list[dict]:
    """Every method's rows on both test sets for one seed and contrast: ``pair(seed,
    None)`` builds the demo's model, ``cohort_args`` the cohort (the demo's),
    ``specialist`` the either-sign network's ``patch_size`` and ``n_steps`` (the
    demo's)."""
    kw = dict(COHORT if cohort_args is None else cohort_args, contrast=contrast)
    small = dict(patch_size=SPECIALIST["patch_size"], n_steps=SPECIALIST["n_steps"])
    small.update(specialist or {})
    cohort = make_brain_cohort(**kw, random_state=seed)
    larger = make_brain_cohort(
        **dict(kw, n_healthy=0, n_test=n_test), random_state=seed + SEED_OFFSET
    )
    t = time.perf_counter()
    model = pair(seed, None).fit(cohort.X_train)
    fit_pair = time.perf_counter() - t
    first, weight = model.detectors_[0][1], model.weights_[-1]
    t = time.perf_counter()
    either = small_anomaly_specialist(first, **small, p_bright=0.5).fit(cohort.X_train)
    fit_either = time.perf_counter() - t
    rows = []
    for name, test in {
        f"unseen brain, {len(cohort.X_test)}": cohort,
        f"new, {n_test}": larger,
    }.items():
        base = first.decision_map(test.X_test)
        maps = {
            DEMO: (model.decision_map(test.X_test), fit_pair),
            FIRST: (base, None),
            EITHER: (base + weight * either.decision_map(test.X_test), None),
            **{k: (v, None) for k, v in baselines(test).items()},
        }
        for method, (m, fit_s) in maps.items():
            row = {"seed": seed, "contrast": contrast, "test set": name, "method": method}
            row.update(evaluate(m, test))
            if fit_s is not None:
                row["fit_s"] = fit_s
            rows.append(row)
    rows[0]["fit_either_s"] = fit_either
    print(f"  seed {seed}, {contrast}: done", flush=True)
    return rows


def summary_table(rows: list[dict]) -> str:
    """Min / mean / max over the seeds per contrast, test set and method."""
    summary = []
    for key in dict.fromkeys((r["contrast"], r["test set"], r["method"]) for r in rows):
        sel = [r for r in rows if (r["contrast"], r["test set"], r["method"]) == key]
        summary.append([*key, len(sel), *(spread([r[k] for r in sel]) for k in METRICS)])
    return "### min / mean / max over seeds\n\n" + md_table(
        ["contrast", "test set", "method", "seeds", "pixel AP", "slice AUROC", "volume AUROC"],
        summary,
    )


def per_seed_table(rows: list[dict]) -> str:
    """Every row: pooled and per-family AP, slice and volume AUROC, fit seconds."""
    header = ["seed", "method", "pixel AP", *FAMILIES, "slice AUROC", "vol. AUROC", "fit s"]
    per_seed = [[r["contrast"], r["test set"], *row_cells(r)] for r in rows]
    return "### per seed\n\n" + md_table(["contrast", "test set", *header], per_seed)


def contrasts_main(doc: str, title: str, contrasts: list, out: str, rows_of, report) -> int:
    """The command line of a script that runs ``rows_of(seed, contrast, n_test)`` per
    seed and contrast and records the rows under ``title`` with ``report``."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--contrasts", nargs="+", choices=["t1", "t2", "flair"], default=contrasts)
    ap.add_argument("--n-test", type=int, default=36)
    ap.add_argument("--out", default=out)
    args = ap.parse_args()
    return record_rows(
        args.out,
        title,
        [
            lambda seed=seed, c=c: rows_of(seed, c, args.n_test)
            for c in args.contrasts
            for seed in args.seeds
        ],
        report,
    )


def report(rows: list[dict]) -> str:
    """Summary over the seeds per contrast, test set and method, then every row."""
    stronger = []
    for key in dict.fromkeys((r["contrast"], r["test set"], r["seed"]) for r in rows):
        sel = {r["method"]: r for r in rows if (r["contrast"], r["test set"], r["seed"]) == key}
        demo = sel[DEMO]
        thresholds = [r for m, r in sel.items() if m.startswith("intensity")]
        ahead = [
            f
            for f in FAMILIES
            if demo.get(f) is not None and demo[f] > max(r[f] for r in thresholds)
        ]
        present = [f for f in FAMILIES if demo.get(f) is not None]
        best = max(r["pixel_ap"] for r in thresholds)
        stronger.append(
            [
                *key,
                f"{demo['pixel_ap'] / best:.1f}x" if best > 0 else "—",
                f"{len(ahead)} of {len(present)}: {', '.join(ahead) or 'none'}",
            ]
        )
    return (
        summary_table(rows)
        + "\n\n### the demo's recipe against the stronger intensity threshold\n\n"
        + md_table(
            ["contrast", "test set", "seed", "pooled AP ratio", "families where it is ahead"],
            stronger,
        )
        + "\n\n"
        + per_seed_table(rows)
        + "\n\nFit seconds: the demo's networks together; the small-anomaly network of "
        "either sign alone: "
        + ", ".join(
            f"seed {r['seed']} {r['contrast']} {r['fit_either_s']:.0f}"
            for r in rows
            if "fit_either_s" in r
        )
        + "."
    )


def main() -> int:
    return contrasts_main(
        __doc__,
        "The demo's CPU recipe on other contrasts",
        ["t1", "flair"],
        "benchmarks/results/demo_contrasts_cpu.md",
        rows_of,
        report,
    )


if __name__ == "__main__":
    sys.exit(main())
