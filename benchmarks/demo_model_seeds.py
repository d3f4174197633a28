"""How far the training seed alone moves the demo's figures: one cohort, several networks.

    python benchmarks/demo_model_seeds.py [--cohort-seed 0] [--model-seeds 0 1 2]
                                          [--n-test 36] [--pairs]
                                          [--out benchmarks/results/demo_model_seeds_cpu.md]

``disyre demo --seed S`` draws its cohort and its network from one seed, so the spread of
``demo_cpu.md`` over seeds mixes two things: which subjects were drawn and how the
training went. Here the cohort is fixed (the demo's, ``random_state = --cohort-seed``)
and only the detector's ``random_state`` changes: its initial weights, its patches, its
corruptions. Each model is the demo's whole model (``held_out_references.demo_model``:
its three networks as ``make_recipe("cpu")`` builds them, all seeded with the model
seed); model seed equal to the cohort seed is the demo
itself, so its rows repeat ``demo_cpu.md``'s. With ``--pairs``, each two consecutive
models' maps are also averaged (each model's own map, its networks joined as the demo
joins them, then the mean of the two): does training twice buy a steadier, better
model?
Every model maps the demo's 12 test subjects and the larger independent set of
``demo_test_size.py`` (``--n-test`` subjects of the same unseen brain,
``random_state = cohort seed + 2000``), scored with ``held_out.py``'s metrics beside the
two intensity thresholds. Only public API is used.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, git_commit, hardware, md_table, now, write_results
from demo_recipes import COHORT, SETTINGS, SPECIALIST, spread
from demo_test_size import SEED_OFFSET
from false_positives import fmt
from held_out import FAMILIES, baselines, evaluate
from held_out_references import demo_model

from disyre_sk import CombinedDetector
from disyre_sk.datasets import make_brain_cohort

METRICS = ("pixel_ap", "slice_auroc", "volume_auroc")
PAIR = "DISYRE, mean of two models"


def detector(model_seed: int) -> CombinedDetector:
    """The demo's model (all its networks, not fitted), seeded with ``model_seed``."""
    return demo_model(model_seed, None)


def report(rows: list[dict]) -> str:
    families = [f for f in FAMILIES if any(r.get(f) is not None for r in rows)]
    sets = list(dict.fromkeys(r["test set"] for r in rows))
    summary = []
    for method in ("DISYRE", PAIR):
        for s in sets:
            sel = [r for r in rows if r["test set"] == s and r["method"] == method]
            if sel:
                summary.append(
                    [s, method, len(sel), *(spread([r[k] for r in sel]) for k in METRICS)]
                )
    per_model = [
        [
            r["test set"],
            r.get("model seed", ""),
            r["method"],
            *(fmt(r.get(k), ".3f") for k in (*METRICS, *families)),
            fmt(r.get("fit_s"), ".0f"),
        ]
        for r in rows
    ]
    return (
        "### DISYRE (all networks) over model seeds: min / mean / max\n\n"
        + md_table(
            ["test set", "method", "models", "pixel AP", "slice AUROC", "volume AUROC"], summary
        )
        + "\n\n### every model (pixel AP per family in the middle columns)\n\n"
        + md_table(
            [
                "test set",
                "model seed",
                "method",
                "pixel AP",
                "slice AUROC",
                "volume AUROC",
                *families,
                "fit s",
            ],
            per_model,
        )
    )


def pair_rows(seeds: list[int], maps: dict, sets: dict, fit_s: dict) -> list[dict]:
    """The last two models' maps averaged, scored on every test set: a row per set."""
    a, b = seeds[-2:]
    return [
        {
            "test set": name,
            "model seed": f"{a}+{b}",
            "method": PAIR,
            **evaluate((maps[a][name] + maps[b][name]) / 2, cohort),
            "fit_s": fit_s[a] + fit_s[b],
        }
        for name, cohort in sets.items()
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cohort-seed", type=int, default=0)
    ap.add_argument("--model-seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n-test", type=int, default=36)
    ap.add_argument(
        "--pairs",
        action="store_true",
        help="also score the mean map of each two consecutive models (1st+2nd, 3rd+4th, ...)",
    )
    ap.add_argument("--out", default="benchmarks/results/demo_model_seeds_cpu.md")
    args = ap.parse_args()
    info = {"command": command_line(), "commit": git_commit(), "date": now(), **hardware("cpu")}
    t0 = time.perf_counter()
    demo = make_brain_cohort(**COHORT, random_state=args.cohort_seed)
    larger = make_brain_cohort(
        **{**COHORT, "n_healthy": 0, "n_test": args.n_test},
        random_state=args.cohort_seed + SEED_OFFSET,
    )
    sets = {"demo's, 12": demo, f"new, {args.n_test}": larger}
    rows = [
        {"test set": name, "method": method, **evaluate(maps, cohort)}
        for name, cohort in sets.items()
        for method, maps in baselines(cohort).items()
    ]
    head = (
        f"Cohort seed {args.cohort_seed} ({COHORT}); the larger test set: {args.n_test} "
        f"subjects, `random_state = {args.cohort_seed + SEED_OFFSET}`. First network: "
        f"{SETTINGS}, batch 16, 1,000 steps; small-anomaly network: {SPECIALIST}; model "
        f"seeds {args.model_seeds}.\n\n"
    )
    maps, fit_s, done = {}, {}, []
    for model_seed in args.model_seeds:
        print(f"model seed {model_seed}...", flush=True)
        det = detector(model_seed)
        t = time.perf_counter()
        det.fit(demo.X_train)
        fit_s[model_seed] = time.perf_counter() - t
        maps[model_seed] = {name: det.decision_map(c.X_test) for name, c in sets.items()}
        for name, cohort in sets.items():
            r = evaluate(maps[model_seed][name], cohort)
            rows.append(
                {
                    "test set": name,
                    "model seed": model_seed,
                    "method": "DISYRE",
                    **r,
                    "fit_s": fit_s[model_seed],
                }
            )
        done.append(model_seed)
        if args.pairs and len(done) % 2 == 0:
            rows += pair_rows(done, maps, sets, fit_s)
        if not args.pairs or len(done) % 2 == 0:
            maps.clear()  # only a pair's first model waits for its second
        body = head + report(rows)
        body += f"\n\nRun time so far: {time.perf_counter() - t0:.0f} s. Raw: the JSON beside."
        path = write_results(
            args.out, "The demo's figures over training seeds", info, body, raw=rows
        )
    print(Path(path).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
