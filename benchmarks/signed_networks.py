"""One DAG network per sign against one network for both, on T2, FLAIR and T1.

    python benchmarks/signed_networks.py [--seeds 0 1 2] [--contrasts t2 flair t1]
                                         [--n-test 36]
                                         [--out benchmarks/results/signed_networks_cpu.md]

DAG's intensity bias brightens an anomaly or darkens it (``p_bright``, one half by
default), so a single network learns to undo both signs within its steps. Here, per
seed and contrast, on the demo's cohort rendered in that contrast (training subjects
from MNI152 and the ITK brain, test subjects from Colin27):

- ``previous recipe``: one DAG network of either sign (1,000 steps) plus the
  small-anomaly network at half the weight, the demo's model before it split by sign;
- ``one network per sign``: a network that learns brightening anomalies only (1,000
  steps) plus a copy that learns darkening ones only (500 steps), maps added;
- ``the demo's recipe``: both signed networks and the small-anomaly network, built and
  joined as the demo builds and joins them (``held_out_references.demo_model``: the
  voxelwise maximum at equal weights; records made before the demo took the maximum
  summed them, the small-anomaly map at half the weight);
- the two intensity thresholds.

The small-anomaly network is fitted once, inside the demo's model, and its map reused for
the previous recipe: it copies the first network's settings except its corruption, which
it sets itself, so the previous recipe's own would be the same network (same seed, same
steps). A ``CombinedDetector``'s map joins its members' weighted maps, so the arms are
joined from the members' maps, each network mapping once. Each maps the 12 test
subjects of the unseen brain and an independent set of ``--n-test`` more
(``random_state = seed + 2000``), scored with ``held_out.py``'s metrics. Only public API
is used.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import md_table
from demo_contrasts import METRICS, contrasts_main, per_seed_table, summary_table
from demo_recipes import COHORT, SETTINGS
from demo_test_size import SEED_OFFSET
from held_out import FAMILIES, baselines, evaluate
from held_out_references import demo_model

from disyre_sk import DISYREDetector, make_recipe
from disyre_sk.datasets import make_brain_cohort

PREVIOUS = "DISYRE, previous recipe (either sign + small)"
SIGNED = "DISYRE, one network per sign"
DEMO = "DISYRE, the demo's recipe (per sign + small)"
# The small-anomaly map's weight in the previous recipe, which summed it: the recipe's
# weight for the sum.
PREVIOUS_FOCI_WEIGHT = make_recipe("cpu", combination="sum").weights[-1]


def previous_first(seed: int) -> DISYREDetector:
    """The previous recipe's first network, unfitted: DAG of either sign, 1,000 steps."""
    return DISYREDetector(
        **SETTINGS,
        batch_size=16,
        n_steps=1000,
        warmup_steps=100,
        device="cpu",
        random_state=seed,
    )


def rows_of(
    seed: int,
    contrast: str,
    n_test: int,
    cohort_args: dict | None = None,
    model=demo_model,
    first=previous_first,
) -> list[dict]:
    """Every arm's rows on both test sets for one seed and contrast: ``model(seed, None)``
    builds the demo's model (members ``bright``, ``dark``, ``foci``), ``first(seed)`` the
    previous recipe's first network, ``cohort_args`` the cohort (the demo's)."""
    kw = dict(COHORT if cohort_args is None else cohort_args, contrast=contrast)
    cohort = make_brain_cohort(**kw, random_state=seed)
    larger = make_brain_cohort(
        **dict(kw, n_healthy=0, n_test=n_test), random_state=seed + SEED_OFFSET
    )
    t = time.perf_counter()
    demo = model(seed, None).fit(cohort.X_train)
    fit_demo = time.perf_counter() - t
    t = time.perf_counter()
    either = first(seed).fit(cohort.X_train)
    fit_first = time.perf_counter() - t
    names = [n for n, _ in demo.detectors_]
    if names != ["bright", "dark", "foci"]:
        raise RuntimeError(f"the demo's model has members {names}, not bright, dark, foci")
    weights = dict(zip(names, demo.weights_))
    rows = []
    for name, test in {
        f"unseen brain, {len(cohort.X_test)}": cohort,
        f"new, {n_test}": larger,
    }.items():
        raw = {n: det.decision_map(test.X_test) for n, det in demo.detectors_}
        m = {n: weights[n] * raw[n] for n in names}
        signed = m["bright"] + m["dark"]
        joined = (
            np.maximum.reduce([m[n] for n in names])
            if demo.combination == "max"
            else signed + m["foci"]
        )
        previous = either.decision_map(test.X_test) + PREVIOUS_FOCI_WEIGHT * raw["foci"]
        maps = {
            PREVIOUS: (previous, fit_first),
            SIGNED: (signed, None),
            DEMO: (joined, fit_demo),
            **{k: (v, None) for k, v in baselines(test).items()},
        }
        for method, (mp, fit_s) in maps.items():
            row = {"seed": seed, "contrast": contrast, "test set": name, "method": method}
            row.update(evaluate(mp, test))
            if fit_s is not None:
                row["fit_s"] = fit_s
            rows.append(row)
    print(f"  seed {seed}, {contrast}: done", flush=True)
    return rows


def report(rows: list[dict]) -> str:
    """Summary over the seeds, the demo's recipe against the previous one seed by seed,
    then every row."""
    against = []
    for key in dict.fromkeys((r["contrast"], r["test set"], r["seed"]) for r in rows):
        sel = {r["method"]: r for r in rows if (r["contrast"], r["test set"], r["seed"]) == key}
        if DEMO not in sel or PREVIOUS not in sel:
            continue
        new, old = sel[DEMO], sel[PREVIOUS]
        cells = [f"{old[k]:.3f} → {new[k]:.3f}" for k in METRICS]
        up = [f for f in FAMILIES if new.get(f) is not None and new[f] > old[f]]
        down = [f for f in FAMILIES if new.get(f) is not None and new[f] < old[f]]
        against.append([*key, *cells, ", ".join(up) or "none", ", ".join(down) or "none"])
    return (
        summary_table(rows)
        + "\n\n### the demo's recipe against the previous one (previous → demo's)\n\n"
        + md_table(
            [
                "contrast",
                "test set",
                "seed",
                "pixel AP",
                "slice AUROC",
                "volume AUROC",
                "families up",
                "families down",
            ],
            against,
        )
        + "\n\n"
        + per_seed_table(rows)
        + "\n\nFit seconds: the demo's three networks together (its row); the previous "
        "recipe's first network alone (its row; its small-anomaly network is the demo's)."
    )


def main() -> int:
    return contrasts_main(
        __doc__,
        "One DAG network per sign against one network for both",
        ["t2", "flair", "t1"],
        "benchmarks/results/signed_networks_cpu.md",
        rows_of,
        report,
    )


if __name__ == "__main__":
    sys.exit(main())
