"""The demo's models on a test set three times larger: how much its figures can move.

    python benchmarks/demo_test_size.py [--seeds 0 1 2] [--demo-dirs DIR ...] [--n-test 36]
                                        [--out benchmarks/results/demo_test_size_cpu.md]

``disyre demo`` maps 12 test subjects (4 healthy, 8 lesioned), so its volume AUROC rests on
32 healthy/lesioned pairs and one volume moves it by 1/8. Here each demo model (``disyre
demo --seed S``, or a folder it wrote, given with ``--demo-dirs``) maps a second,
independent test set of the same kind: ``--n-test`` subjects (a third healthy) rendered
from the same unseen brain with another seed (``random_state = S + 2000``, so no subject
repeats the demo's), nothing retrained. Both sets are scored with the demo's own
metrics (``held_out.py``'s: pixel AP pooled over the lesioned volumes and per family,
slice AUROC on axial slices with >= 2 % brain scored by their top 5 %, volume AUROC
scored by the top 1 %), beside the two intensity thresholds. Only public API is used.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import md_table
from _demo_models import demo_cohort, demo_model_parser, load_demo, run_on_demo_models
from false_positives import fmt
from held_out import FAMILIES, baselines, evaluate

SEED_OFFSET = 2000  # false_positives.py uses +1000 for its new training-brain subjects
METRICS = ("pixel_ap", "slice_auroc", "volume_auroc")
# held_out.py's baseline names, as the demo prints them.
DEMO_NAMES = {
    "intensity (bright)": "intensity threshold (bright)",
    "intensity |x - median|": "intensity threshold |x - median|",
}


def demo_rows(meta: dict) -> list[dict]:
    """The demo's own figures (its 12 test subjects), from its ``metrics.json``."""
    rows = []
    for r in meta["results"]:
        name = "DISYRE" if r["method"].startswith("DISYRE") else r["method"]
        rows.append(
            {
                "method": name,
                **{k: r[k] for k in METRICS},
                **{f: r["pixel_ap_per_family"].get(f) for f in FAMILIES},
            }
        )
    return rows


def larger_rows(folder: Path, meta: dict, n_test: int) -> tuple[list[dict], list[str]]:
    """Scores of the folder's model and the baselines on a new, larger test set."""
    cohort = demo_cohort(meta, n_test, SEED_OFFSET)
    _, _, det = load_demo(folder, whole=True)  # the model as the demo reports it
    named = {DEMO_NAMES.get(k, k): v for k, v in baselines(cohort).items()}
    maps = {"DISYRE": det.decision_map(cohort.X_test), **named}
    rows = [{"method": name, **evaluate(m, cohort)} for name, m in maps.items()]
    return rows, list(cohort.families_test)


def report(runs: list[dict], n_test: int) -> str:
    # Only the families some test set holds get a column.
    families = [
        f
        for f in FAMILIES
        if any(r.get(f) is not None for run in runs for r in run["demo"] + run["larger"])
    ]
    header = ["seed", "test set", "method", "pixel AP", "slice AUROC", "volume AUROC", *families]
    rows = []
    for run in runs:
        for label, key in (("demo's, 12", "demo"), (f"new, {n_test}", "larger")):
            for r in run[key]:
                rows.append(
                    [
                        run["seed"],
                        label,
                        r["method"],
                        *(fmt(r.get(k), ".3f") for k in (*METRICS, *families)),
                    ]
                )
    spread = []
    for key, label in (("demo", "demo's, 12"), ("larger", f"new, {n_test}")):
        values = {k: [run[key][0][k] for run in runs] for k in METRICS}
        spread.append(
            [label, *(" / ".join(f"{v:.3f}" for v in sorted(values[k])) for k in METRICS)]
        )
    n_h = [run["families"].count("healthy") for run in runs]
    return (
        f"Seeds {[r['seed'] for r in runs]}. The new test set: {n_test} subjects of the demo's "
        f"unseen brain per seed ({n_h[0]} healthy), `random_state = seed + {SEED_OFFSET}`; the "
        "demo's rows are read from its `metrics.json` (the same metrics on its 12 subjects)."
        "\n\n### DISYRE, one value per seed, sorted\n\n"
        + md_table(["test set", "pixel AP", "slice AUROC", "volume AUROC"], spread)
        + "\n\n### per seed (pixel AP per family in the last columns)\n\n"
        + md_table(header, rows)
    )


def one_run(folder: Path, n_test: int) -> dict:
    """The demo's own rows (from its ``metrics.json``) and the larger set's, for one model."""
    meta = json.loads((folder / "metrics.json").read_text())
    larger, families = larger_rows(folder, meta, n_test)
    return {
        "seed": int(meta["settings"]["random_state"]),
        "folder": str(folder),
        "families": families,
        "demo": demo_rows(meta),
        "larger": larger,
    }


def main() -> int:
    args = demo_model_parser(__doc__, "benchmarks/results/demo_test_size_cpu.md").parse_args()
    return run_on_demo_models(
        args,
        "The demo's models on a larger test set",
        lambda folder: [one_run(folder, args.n_test)],
        lambda runs: report(runs, args.n_test),
    )


if __name__ == "__main__":
    sys.exit(main())
