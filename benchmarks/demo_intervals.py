"""How far the demo's slice and volume AUROC can move with the test subjects drawn: intervals.

    python benchmarks/demo_intervals.py [--seeds 0 1 2] [--demo-dirs DIR ...] [--n-test 36]
                                        [--out benchmarks/results/demo_intervals_cpu.md]

``disyre demo`` scores 12 test subjects (4 healthy, 8 lesioned): its volume AUROC rests on
32 healthy/lesioned pairs, its slice AUROC on the slices of 12 volumes that share their
volume's anatomy and lesion. Each demo model (``disyre demo --seed S``, or a folder it
wrote, given with ``--demo-dirs``) maps the demo's 12 and ``demo_test_size.py``'s
independent ``--n-test`` (``random_state = S + 2000``), nothing retrained; each figure gets
the 95 % percentile bootstrap interval the demo now prints
(:func:`disyre_sk.metrics.bootstrap_interval`: 1,000 resamples of whole test volumes,
healthy and lesioned resampled apart, seeded with the demo's seed), beside the two
intensity thresholds. Scores as ``held_out.py``'s (the demo's): slices axial with >= 2 %
brain, scored by their top 5 %; volumes by their top 1 %. Only public API is used.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import md_table
from _demo_models import demo_cohort, demo_model_parser, load_demo, run_on_demo_models
from demo_test_size import DEMO_NAMES, SEED_OFFSET
from held_out import baselines, top_count, volume_scores

from disyre_sk.metrics import bootstrap_interval, sample_auroc, slice_labels, slice_scores

N_RESAMPLES = 1000
CONFIDENCE = 0.95
METRICS = ("slice_auroc", "volume_auroc")


def auroc_with_intervals(maps: np.ndarray, cohort, seed: int) -> dict:
    """Slice and volume AUROC of ``maps`` and their bootstrap intervals (the demo's)."""
    fg, masks = cohort.brain_masks_test, cohort.masks_test
    lesioned = np.array([f != "healthy" for f in cohort.families_test])
    keep = fg.mean(axis=(2, 3)) >= 0.02
    s = slice_scores(maps, axis=1, reduction="topk", k=0.05, foreground=fg)
    y = slice_labels(masks, axis=1)
    v = volume_scores(maps, fg)
    stats = {
        "slice_auroc": lambda i: sample_auroc(s[i][keep[i]], y[i][keep[i]]),
        "volume_auroc": lambda i: sample_auroc(v[i], lesioned[i]),
    }
    out = {}
    for name, stat in stats.items():
        out[name] = stat(np.arange(len(maps)))
        out[name + "_interval"] = list(
            bootstrap_interval(
                stat,
                lesioned,
                n_resamples=N_RESAMPLES,
                confidence=CONFIDENCE,
                random_state=seed,
            )
        )
    return out


def volume_rows(maps: np.ndarray, cohort) -> list[dict]:
    """Each lesioned volume of a test set: its lesion's size against the voxels the volume
    score averages (the top 1 % of its brain), its score, and how many healthy volumes
    score at least as high (each such pair lowers the volume AUROC)."""
    fg, masks = cohort.brain_masks_test, cohort.masks_test
    scores = volume_scores(maps, fg)
    healthy = np.array([f == "healthy" for f in cohort.families_test])
    return [
        {
            "volume": i,
            "family": f,
            "lesion_voxels": int(masks[i][fg[i]].sum()),
            "top_1pct_voxels": top_count(fg[i]),
            "score": float(scores[i]),
            "healthy_at_or_above": int((scores[healthy] >= scores[i]).sum()),
        }
        for i, f in enumerate(cohort.families_test)
        if f != "healthy"
    ]


def test_set_rows(det, cohort, seed: int) -> tuple[list[dict], list[dict]]:
    """The methods' figures with intervals, and DISYRE's per-volume rows."""
    named = {DEMO_NAMES.get(k, k): m for k, m in baselines(cohort).items()}
    maps = {"DISYRE": det.decision_map(cohort.X_test), **named}
    rows = [{"method": k, **auroc_with_intervals(m, cohort, seed)} for k, m in maps.items()]
    return rows, volume_rows(maps["DISYRE"], cohort)


def one_run(folder: Path, n_test: int) -> dict:
    """The folder's model and the baselines on the demo's 12 and on ``n_test`` new ones."""
    meta = json.loads((folder / "metrics.json").read_text())
    _, seed, det = load_demo(folder, whole=True)  # the model as the demo reports it
    demo, new = demo_cohort(meta), demo_cohort(meta, n_test, SEED_OFFSET)
    sets = {f"demo's, {len(demo.families_test)}": demo, f"new, {n_test}": new}
    parts = {}
    for label, c in sets.items():
        rows, volumes = test_set_rows(det, c, seed)
        n_healthy = list(c.families_test).count("healthy")
        parts[label] = {
            "healthy": n_healthy,
            "lesioned": len(c.families_test) - n_healthy,
            "rows": rows,
            "volumes": volumes,
        }
    return {"seed": seed, "folder": str(folder), "sets": parts}


def fmt_interval(row: dict, key: str) -> str:
    low, high = row[key + "_interval"]
    return f"{row[key]:.3f} ({low:.3f}-{high:.3f})"


def report(runs: list[dict]) -> str:
    labels = list(runs[0]["sets"])
    rows = []
    for run in runs:
        for label in labels:
            part = run["sets"][label]
            for r in part["rows"]:
                rows.append(
                    [
                        run["seed"],
                        label,
                        f"{part['healthy']} / {part['lesioned']}",
                        r["method"],
                        *(fmt_interval(r, k) for k in METRICS),
                    ]
                )
    widths = []
    for label in labels:
        disyre = [run["sets"][label]["rows"][0] for run in runs]
        widths.append(
            [
                label,
                *(
                    " / ".join(
                        f"{r[k + '_interval'][1] - r[k + '_interval'][0]:.3f}" for r in disyre
                    )
                    for k in METRICS
                ),
            ]
        )
    demo_label = labels[0]
    volumes = [
        [
            run["seed"],
            v["volume"],
            v["family"],
            v["lesion_voxels"],
            v["top_1pct_voxels"],
            f"{v['score']:.3f}",
            f"{v['healthy_at_or_above']} of {run['sets'][demo_label]['healthy']}",
        ]
        for run in runs
        for v in run["sets"][demo_label]["volumes"]
    ]
    return (
        f"Seeds {[r['seed'] for r in runs]}. Each figure with its {CONFIDENCE:.0%} percentile "
        f"bootstrap interval ({N_RESAMPLES} resamples of whole test volumes, healthy and "
        "lesioned resampled apart, `random_state` = the demo's seed). The new test set is "
        f"`demo_test_size.py`'s (`random_state = seed + {SEED_OFFSET}`). A percentile interval "
        "of four healthy volumes is rough (a figure of 1.000 gets the interval 1.000-1.000): "
        "read it as the scale of the uncertainty."
        "\n\n### DISYRE: width of the interval, per seed\n\n"
        + md_table(["test set", "slice AUROC", "volume AUROC"], widths)
        + "\n\n### per seed: figure (interval)\n\n"
        + md_table(
            ["seed", "test set", "healthy / lesioned", "method", "slice AUROC", "volume AUROC"],
            rows,
        )
        + f"\n\n### DISYRE's volume scores of the lesioned volumes ({demo_label})\n\n"
        "A volume's score is the mean of its top 1 % brain map values; a lesion smaller "
        "than that many voxels can raise it only by values far above the rest of the map. "
        "The last column counts the healthy test volumes that score at least as high.\n\n"
        + md_table(
            [
                "seed",
                "volume",
                "family",
                "lesion voxels",
                "top 1 % voxels",
                "score",
                "healthy at or above",
            ],
            volumes,
        )
    )


def main() -> int:
    args = demo_model_parser(__doc__, "benchmarks/results/demo_intervals_cpu.md").parse_args()
    return run_on_demo_models(
        args,
        "Intervals of the demo's slice and volume AUROC",
        lambda folder: [one_run(folder, args.n_test)],
        report,
    )


if __name__ == "__main__":
    sys.exit(main())
