"""A specialist for small anomalies: a second network whose map is added to the demo's.

    python benchmarks/specialist_maps.py [--seeds 0 1 2] [--new-test 36]
                                         [--weights 0.25 0.5 1]
                                         [--out benchmarks/results/specialist_maps_cpu.md]

The demo's network misses the foci: lesions of a voxel or two that DAG's shapes (2 px and
up, blurred up to 5 px) rarely show, and a quarter of small anomalies among DAG's costs
the larger lesions at this budget (``demo_recipes_smallbright_cpu.md``). Here the two
tasks get a network each, on the demo's protocol (``demo_recipes.py``: healthy training
subjects from MNI152 and the ITK brain, test subjects from Colin27, T2, 3 mm): the demo's
recipe (``demo_recipes.py``'s ``b16x1000``), and the same recipe trained only on small,
sharp, bright DAG anomalies
(``DAGCorruption(size_range=(0.1, 0.35), sigma_range=(0, 1), p_bright=1)``). Both maps are
location-standardised (z-scores against the healthy training maps at each voxel), so
they add on one scale: rows for each alone, for ``demo + w * specialist`` at each
``--weights`` value, and for their voxelwise maximum. ``--new-test N`` also maps N
independent test subjects of the unseen brain per seed (``demo_test_size.py``'s draw,
rows marked ``new N``). Baselines and metrics as in ``demo_recipes.py`` (pixel AP pooled
and per family, slice and volume AUROC); fit seconds of a combination are the two fits'
sum. Only public API is used.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, git_commit, hardware, md_table, now, write_results
from demo_recipes import (
    COHORT,
    MAP_RECIPES,
    SETTINGS,
    fit_detector,
    mapped_cohorts,
    small_anomalies,
    spread,
)
from held_out import FAMILIES, baselines, evaluate, row_cells

from disyre_sk.corruption import DAGCorruption
from disyre_sk.datasets import make_brain_cohort

BATCH, STEPS, _ = MAP_RECIPES["b16x1000"]  # the demo's recipe


def specialist_corruption() -> DAGCorruption:
    """demo_recipes.py's small, sharp anomalies, always brightening."""
    return small_anomalies(p_bright=1.0)


def _small_patch_corruption(p_bright: float = 1.0) -> DAGCorruption:
    """The same anomalies in pixels at 16-px patches: the box spans the whole patch."""
    return DAGCorruption(
        box_fraction=1.0, size_range=(0.1, 0.35), sigma_range=(0.0, 1.0), p_bright=p_bright
    )


def _either_sign_corruption() -> DAGCorruption:
    """As :func:`_small_patch_corruption`, brightening or darkening with equal chance."""
    return _small_patch_corruption(p_bright=0.5)


# Cheaper specialists, for a demo that fits both networks in its budget: name -> (steps,
# overrides of the demo's settings). "b16x1000" is the specialist of the record.
SPECIALISTS = {
    "b16x1000": (None, {}),  # None: the demo's steps
    "b16x500": (500, {}),
    "p16_b16x1000": (None, {"patch_size": 16, "corruption": _small_patch_corruption}),
    "p16_b16x500": (500, {"patch_size": 16, "corruption": _small_patch_corruption}),
    # Small dark lesions too: either sign, twice the patches per step so that each sign
    # gets as many as the bright-only specialist's.
    "both_p16_b32x500": (
        500,
        {"patch_size": 16, "corruption": _either_sign_corruption, "batch_size": 32},
    ),
}


def specialist_settings(name: str, settings: dict) -> tuple[dict, int]:
    """A specialist's detector settings (a fresh corruption) and steps."""
    steps, overrides = SPECIALISTS[name]
    overrides = {k: v() if callable(v) else v for k, v in overrides.items()}
    return {**settings, "corruption": specialist_corruption(), **overrides}, steps or STEPS


def combined(
    demo: np.ndarray, specialist: np.ndarray, weights, name: str = "specialist"
) -> dict[str, np.ndarray]:
    """The specialist's map alone, ``demo + w * specialist`` for each weight, and the
    maximum (the demo's own map is :func:`run`'s)."""
    maps = {name: specialist}
    for w in weights:
        maps[f"demo + {w:g} x {name}"] = demo + w * specialist
    maps[f"max(demo, {name})"] = np.maximum(demo, specialist)
    return maps


def run(
    seed: int,
    weights=(0.25, 0.5, 1.0),
    new_test: int = 0,
    cohort_settings: dict = COHORT,
    settings: dict = SETTINGS,
    specialists=("b16x1000",),
) -> list[dict]:
    """Fit the demo's network and each specialist on one seed's cohort; a row per map and
    test set. With the record's specialist alone, its rows say "specialist"; other
    specialists are named."""
    cohort = make_brain_cohort(**cohort_settings, random_state=seed)
    demo, demo_s = fit_detector(settings, BATCH, STEPS, cohort.X_train, seed)
    fitted = {}
    for name in specialists:
        spec_settings, steps = specialist_settings(name, settings)
        label = "specialist" if tuple(specialists) == ("b16x1000",) else f"specialist {name}"
        batch = spec_settings.pop("batch_size", BATCH)
        fitted[label] = fit_detector(spec_settings, batch, steps, cohort.X_train, seed)
    sets = mapped_cohorts(cohort, cohort_settings, seed, new_test)
    rows = []
    for suffix, test in sets.items():
        demo_map = demo.decision_map(test.X_test)
        maps, fit_s = {"demo": demo_map}, {"demo": demo_s}
        for label, (special, special_s) in fitted.items():
            for name, m in combined(
                demo_map, special.decision_map(test.X_test), weights, label
            ).items():
                maps[name] = m
                fit_s[name] = special_s if name == label else demo_s + special_s
        if len(fitted) > 1:
            # Every specialist at once: one network per kind of small anomaly.
            every = sum(special.decision_map(test.X_test) for special, _ in fitted.values())
            for w in weights:
                maps[f"demo + {w:g} x every specialist"] = demo_map + w * every
                fit_s[f"demo + {w:g} x every specialist"] = demo_s + sum(
                    t for _, t in fitted.values()
                )
        for name, m in maps.items():
            rows.append(
                dict(seed=seed, method=name + suffix, fit_s=fit_s[name], **evaluate(m, test))
            )
        for name, m in baselines(test).items():
            rows.append(dict(seed=seed, method=name + suffix, **evaluate(m, test)))
    return rows


def write(args, info, rows, elapsed) -> Path:
    summary = []
    for m in dict.fromkeys(r["method"] for r in rows):
        sel = [r for r in rows if r["method"] == m]
        foci = [r["foci"] for r in sel if r.get("foci") is not None]
        summary.append(
            [m, len(sel)]
            + [spread([r[k] for r in sel]) for k in ("pixel_ap", "slice_auroc", "volume_auroc")]
            + [spread(foci) if foci else "—"]
            + [f"{np.mean([r['fit_s'] for r in sel]):.0f}" if "fit_s" in sel[0] else ""]
        )
    body = "\n\n".join(
        [
            f"Cohort: {COHORT}. Both detectors: {SETTINGS}, batch {BATCH}, {STEPS} steps; the "
            f"specialist's corruption: {specialist_corruption()!r}."
            + "".join(
                f" Specialist {n}: {specialist_settings(n, {})[1]} steps, "
                f"{ {k: v for k, v in specialist_settings(n, {})[0].items()} }."
                for n in args.specialists
                if n != "b16x1000"
            ),
            "### min / mean / max over seeds",
            md_table(
                ["map", "seeds", "pixel AP", "slice AUROC", "volume AUROC", "foci AP", "fit s"],
                summary,
            ),
            "### per seed",
            md_table(
                ["seed", "map", "pixel AP", *FAMILIES, "slice AUROC", "vol. AUROC", "fit s"],
                [row_cells(r) for r in rows],
            ),
            f"Run time so far: {elapsed:.0f} s. Raw rows: the JSON beside.",
        ]
    )
    title = "A specialist network for small anomalies beside the demo's"
    return write_results(args.out, title, info, body, raw=rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--weights", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    ap.add_argument("--new-test", type=int, default=36)
    ap.add_argument(
        "--specialists",
        nargs="+",
        choices=list(SPECIALISTS),
        default=["b16x1000"],
        help="specialist recipes to fit beside the demo's network (steps, patch size)",
    )
    ap.add_argument("--out", default="benchmarks/results/specialist_maps_cpu.md")
    args = ap.parse_args()
    if any(w <= 0 for w in args.weights):
        ap.error("--weights must be positive")
    info = {"command": command_line(), "commit": git_commit(), "date": now(), **hardware("cpu")}
    rows: list[dict] = []
    t0 = time.perf_counter()
    for seed in args.seeds:
        print(f"seed {seed}...", flush=True)
        rows += run(seed, args.weights, args.new_test, specialists=args.specialists)
        path = write(args, info, rows, time.perf_counter() - t0)
    print(Path(path).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
