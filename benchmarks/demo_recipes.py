"""The demo's recipe against its neighbours: batch size, corruption and context.

    python benchmarks/demo_recipes.py [--seeds 0 1 2] [--recipes b64x300 b16x1200 ...]
                                      [--voxel-size 3] [--contrast t2] [--families ...]
                                      [--new-test 0]
                                      [--out benchmarks/results/demo_recipes_cpu.md]

The demo's protocol (``disyre demo``): healthy training subjects rendered from MNI152 and
the ITK brain, healthy and lesioned test subjects from Colin27, a brain no training
subject comes from; T2, 3 mm voxels, 16 training and 12 test subjects. Each recipe trains
on the same number of pixels (19,200 patches of 32 pixels, or 4,800 of 64: the whole
64 x 51 slice) split into fewer or more optimiser steps, with the demo's other settings
(``SETTINGS`` below, the same as ``disyre_sk/_demo.py``'s CPU setting; a test keeps the
two in step) unless the recipe overrides them: ``fpi`` recipes train with FPI instead of
DAG, ``mix`` recipes with a DAG/FPI mixture, ``*64`` recipes on whole slices, ``r1``
recipes with one residual block per level instead of two, ``across0`` recipes without
smoothing the maps across neighbouring slices (``map_smoothing_across=0``; the demo
uses 2 slices; the location reference is learned with each recipe's own setting, so
this needs a fit of its own), ``smallshapes`` recipes with DAG anomalies down to 0.8 px
semi-axes (``DAGCorruption(size_range=(0.1, 1.0))``; the default's smallest is 2 px),
``n32`` recipes with 32 healthy training subjects instead of 16 (the same test
subjects), ``dagnoise`` recipes with a quarter of the patches corrupted by Gaussian noise
instead of DAG (``Mixture([DAGCorruption(), GaussianCorruption()], weights=(3, 1))``),
``smallbright`` recipes with a quarter of the patches given a small, sharp, bright DAG
anomaly instead (semi-axes 0.8 to 2.8 px, blur sigma up to 1 px, the bias always
brightening: ``DAGCorruption(size_range=(0.1, 0.35), sigma_range=(0, 1), p_bright=1)``),
``smallsharp`` recipes with the same small, sharp anomalies brightening or darkening
(``p_bright=0.5``, DAG's own), ``smallbright8`` recipes with an eighth of the patches
given the small bright ones (weights 7 to 1), ``dark`` recipes with DAG's intensity bias
darkening only (``DAGCorruption(p_bright=0)``),
``add`` recipes with the published additive severity conditioning instead of
scale/shift, ``s25_50`` recipes restoring at severities 0.25 and 0.5 instead of 1.
``--new-test N`` also maps N independent test subjects of the unseen brain per seed
(``demo_test_size.py``'s draw, ``random_state = seed + 2000``; rows marked ``new N``).
Every detector is
fitted with ``map_standardization='location'`` and maps the test subjects twice: with
it, and with it switched off at predict time (``set_params``), so the two maps come from
one network. Baselines: intensity thresholding one-sided and two-sided
(``|x - brain median|``).

Metrics as in ``held_out.py``: pixel AP pooled over the brain voxels of the lesioned test
volumes and per family; slice AUROC (axial slices with >= 2 % brain; score: mean of the
top 5 % map values); volume AUROC (score: mean of the top 1 %). Fit seconds include the
mapping of the training subjects that sets ``offset_``. Every row goes to a JSON beside
the table. Only public API is used.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, git_commit, hardware, md_table, now, write_results
from demo_test_size import SEED_OFFSET
from held_out import FAMILIES, DAGFPIMixture, baselines, evaluate, row_cells

from disyre_sk import CombinedDetector, DISYREDetector, make_recipe
from disyre_sk.corruption import DAGCorruption, GaussianCorruption, Mixture
from disyre_sk.datasets import make_brain_cohort
from disyre_sk.nn import UNet

COHORT = dict(
    n_healthy=16,
    n_test=12,
    voxel_size=3.0,
    contrast="t2",
    train_bases=("mni", "itk"),
    test_bases=("colin",),
)
# The demo's CPU setting without batch size and steps (disyre_sk/_demo.py).
SETTINGS = dict(
    patch_size=32,
    widths=(16, 32, 64),
    attention_levels=(),
    corruption="dag",
    learning_rate=1e-3,
    window_size="slice",
    severities=(1.0,),
    map_smoothing=1.0,
    map_smoothing_across=2.0,
    map_normalization="intensity",
    map_standardization="location",
    map_erosion=2,
    map_median=3,
    map_symmetry=0.5,
    inference_batch_size=64,
)
# The demo's small-anomaly network (the CPU recipe, make_recipe): its patch size, its steps when
# the first network takes the demo's 1,000, and the weight of its map.
SPECIALIST = dict(patch_size=16, n_steps=500, weight=1.0)
# The demo's dark network (the CPU recipe, make_recipe): a copy of the first network that learns
# darkening DAG anomalies only, the first one then brightening ones only; its steps when
# the first network takes the demo's 1,000, and the weight of its map.
DARK = dict(n_steps=500, weight=1.0)


def demo_model_of(params: dict, specialist: bool = True) -> CombinedDetector:
    """The demo's model, unfitted, from ``DISYREDetector`` parameters (``n_steps``
    included): ``make_recipe("cpu")`` with ``params`` in place of the recipe's, a DAG
    network that brightens only (``bright``), a copy that darkens only (``dark``) and,
    with ``specialist``, the small-anomaly network (``foci``), the added networks' steps
    scaled with ``n_steps`` as the demo scales them (a test keeps this equal to what
    ``disyre demo`` builds)."""
    return make_recipe("cpu", small_anomaly_network=specialist, **params)


# name -> (batch size, steps, overrides of SETTINGS): the same pixels each (19,200 patches
# of 32 px); warm-up a tenth of the steps.
RECIPES = {
    "b64x300": (64, 300, {}),
    "b16x1200": (16, 1200, {}),
    "b8x2400": (8, 2400, {}),
    "fpi32_b16x1200": (16, 1200, {"corruption": "fpi"}),
    "mix32_b16x1200": (16, 1200, {"corruption": "mix"}),
    "dag64_b4x1200": (4, 1200, {"patch_size": 64}),
    "fpi64_b4x1200": (4, 1200, {"corruption": "fpi", "patch_size": 64}),
    "mix64_b4x1200": (4, 1200, {"corruption": "mix", "patch_size": 64}),
    "r1_b16x1200": (16, 1200, {"n_res_blocks": 1}),
}
# The demo itself (1,000 steps) against the demo with one map setting changed.
MAP_RECIPES = {
    "b16x1000": (16, 1000, {}),
    "across0_b16x1000": (16, 1000, {"map_smoothing_across": 0.0}),
}
# The setting of an outside check on real lesion shapes (1,500 steps whatever the patch:
# not equal pixels): FPI on nearly whole slices at batch 8 against DAG on the demo's
# patches and on the same context; meant for --voxel-size 2, where 96 px spans a slice.
CHECK_RECIPES = {
    "dag32_b16x1500": (16, 1500, {}),
    "fpi96_b8x1500": (8, 1500, {"corruption": "fpi", "patch_size": 96}),
    "dag96_b8x1500": (8, 1500, {"patch_size": 96}),
}
# The demo against the demo with one training setting changed: anomalies down to a
# tenth of the box's half side (0.8 px semi-axes instead of 2 px), and twice the healthy
# training subjects (the demo's 16 and 16 more, drawn after them from the same seed; the
# test subjects stay the demo's), and a quarter of Gaussian noise or of small bright
# anomalies instead of DAG's own.
TRAINING_RECIPES = {
    "smallshapes_b16x1000": (16, 1000, {"corruption": "dag_small"}),
    "n32_b16x1000": (16, 1000, {"n_healthy": 32}),
    "dagnoise_b16x1000": (16, 1000, {"corruption": "dag_noise"}),
    "smallbright_b16x1000": (16, 1000, {"corruption": "dag_smallbright"}),
    "smallsharp_b16x1000": (16, 1000, {"corruption": "dag_smallsharp"}),
    "smallbright8_b16x1000": (16, 1000, {"corruption": "dag_smallbright8"}),
    "dark_b16x1000": (16, 1000, {"corruption": "dag_dark"}),
}
# How the network takes the severity, and the severities the map restores at: the demo
# before scale/shift conditioning (additive, as published, at 0.25 and 0.5) and
# scale/shift at those severities; b16x1000 is the demo now (scale/shift, severity 1).
CONDITIONING_RECIPES = {
    "add_s25_50_b16x1000": (16, 1000, {"network": "add", "severities": (0.25, 0.5)}),
    "film_s25_50_b16x1000": (16, 1000, {"severities": (0.25, 0.5)}),
}
ALL_RECIPES = {
    **RECIPES,
    **MAP_RECIPES,
    **CHECK_RECIPES,
    **TRAINING_RECIPES,
    **CONDITIONING_RECIPES,
}


def small_anomalies(p_bright: float) -> DAGCorruption:
    """Small (0.8-2.8 px semi-axes at 32-px patches), sharp (blur <= 1 px) DAG anomalies."""
    return DAGCorruption(size_range=(0.1, 0.35), sigma_range=(0.0, 1.0), p_bright=p_bright)


def _with_small_anomalies(p_bright: float, weights: tuple[int, int] = (3, 1)) -> Mixture:
    """DAG, with a share of the patches (a quarter by default) given a small anomaly."""
    return Mixture([DAGCorruption(), small_anomalies(p_bright)], weights=weights)


# Corruptions a recipe names: a fresh object per fit.
CORRUPTIONS = {
    "mix": DAGFPIMixture,
    "dag_small": lambda: DAGCorruption(size_range=(0.1, 1.0)),
    # A quarter of the patches get Gaussian noise instead of a DAG anomaly: the noise
    # ablation alone removes one-voxel outliers that DAG's shapes (2 px and up) never show.
    "dag_noise": lambda: Mixture([DAGCorruption(), GaussianCorruption()], weights=(3, 1)),
    # A quarter of the patches get a small, sharp, bright anomaly: the white-matter spots
    # the network leaves (restoration_probe*.md), which DAG's shapes (2 px and up, blurred
    # up to 5 px, brightening half the time) rarely show.
    "dag_smallbright": lambda: _with_small_anomalies(p_bright=1.0),
    # The same, brightening or darkening: is it the size or the sign that counts?
    "dag_smallsharp": lambda: _with_small_anomalies(p_bright=0.5),
    # An eighth instead of a quarter: less of the budget taken from DAG's own anomalies.
    "dag_smallbright8": lambda: _with_small_anomalies(p_bright=1.0, weights=(7, 1)),
    # DAG's intensity bias darkening only: on T1 nearly every lesion is darker than the
    # tissue around it, and half of DAG's anomalies brighten tissue there.
    "dag_dark": lambda: DAGCorruption(p_bright=0.0),
}


# Networks a recipe names: the published additive severity conditioning.
NETWORKS = {"add": functools.partial(UNet, conditioning="add")}


def run(recipe: str, seed: int, cohort_settings: dict = COHORT, new_test: int = 0) -> list[dict]:
    """Fit one recipe on one seed's cohort; rows for the demo's test subjects and, with
    ``new_test``, for that many independent ones (``demo_test_size.py``'s draw)."""
    cohort = make_brain_cohort(**cohort_settings, random_state=seed)
    batch, steps, overrides = ALL_RECIPES[recipe]
    settings = {**SETTINGS, **overrides}
    if settings["corruption"] in CORRUPTIONS:
        settings["corruption"] = CORRUPTIONS[settings["corruption"]]()
    if "network" in settings:
        settings["network"] = NETWORKS[settings["network"]]
    x_train = training_subjects(cohort, cohort_settings, seed, settings.pop("n_healthy", None))
    det, fit_s = fit_detector(settings, batch, steps, x_train, seed)
    sets = mapped_cohorts(cohort, cohort_settings, seed, new_test)
    rows = []
    for suffix, test in sets.items():
        for option in ("location", None):
            det.set_params(map_standardization=option)
            maps = det.decision_map(test.X_test)
            name = f"DISYRE {recipe}" + (", location z" if option else ", plain") + suffix
            rows.append(dict(seed=seed, method=name, fit_s=fit_s, **evaluate(maps, test)))
        for name, maps in baselines(test).items():
            rows.append(dict(seed=seed, method=name + suffix, **evaluate(maps, test)))
    return rows


def mapped_cohorts(cohort, cohort_settings: dict, seed: int, new_test: int) -> dict:
    """Row-name suffix -> cohort: the seed's own test subjects and, with ``new_test``, that
    many independent ones of the same brains (``demo_test_size.py``'s draw)."""
    sets = {"": cohort}
    if new_test:
        other = {**cohort_settings, "n_healthy": 0, "n_test": new_test}
        sets[f", new {new_test}"] = make_brain_cohort(**other, random_state=seed + SEED_OFFSET)
    return sets


def fit_detector(settings: dict, batch: int, steps: int, x_train, seed: int):
    """Fit a detector of ``settings`` on the CPU, a tenth of the steps as warm-up.

    Returns the detector and the fit's seconds (the mapping of the training subjects that
    sets ``offset_`` included).
    """
    det = DISYREDetector(
        **settings,
        batch_size=batch,
        n_steps=steps,
        warmup_steps=steps // 10,
        device="cpu",
        random_state=seed,
    )
    t = time.perf_counter()
    det.fit(x_train)
    return det, time.perf_counter() - t


def training_subjects(cohort, cohort_settings: dict, seed: int, n_healthy: int | None):
    """The cohort's training subjects, or ``n_healthy`` of them with the same test set.

    A cohort draws its training subjects before its test subjects from one seed, so a
    larger cohort of the same seed starts with the same training subjects and draws
    different test subjects after them: its training subjects are taken, the test
    subjects stay ``cohort``'s.
    """
    if n_healthy is None or n_healthy == len(cohort.X_train):
        return cohort.X_train
    larger = make_brain_cohort(
        **{**cohort_settings, "n_healthy": n_healthy}, random_state=seed
    ).X_train
    n = min(len(larger), len(cohort.X_train))
    if not np.array_equal(larger[:n], cohort.X_train[:n]):
        raise RuntimeError("a larger cohort no longer starts with the same training subjects")
    return larger


def spread(values) -> str:
    v = np.asarray(values, dtype=float)
    return f"{v.min():.3f} / {v.mean():.3f} / {v.max():.3f}"


def write(args, info, rows, elapsed) -> Path:
    methods = list(dict.fromkeys(r["method"] for r in rows))
    seeds = sorted({r["seed"] for r in rows})
    summary = []
    for m in methods:
        # Baselines repeat for every recipe of a seed: one row each counts.
        sel = list({r["seed"]: r for r in rows if r["method"] == m}.values())
        summary.append(
            [m, len({r["seed"] for r in sel})]
            + [spread([r[k] for r in sel]) for k in ("pixel_ap", "slice_auroc", "volume_auroc")]
            + [f"{np.mean([r['fit_s'] for r in sel]):.0f}" if "fit_s" in sel[0] else ""]
        )
    per_seed = [row_cells(r) for r in rows]
    body = "\n\n".join(
        [
            f"Cohort: {cohort_of(args)}. Detector: {SETTINGS}; recipes (batch, steps, overrides): "
            f"{ {k: ALL_RECIPES[k] for k in args.recipes} }; 'mix' is held_out.py's DAG/FPI "
            "mixture.",
            f"### min / mean / max over seeds {', '.join(map(str, seeds))}",
            md_table(
                ["method", "seeds", "pixel AP", "slice AUROC", "volume AUROC", "fit s (mean)"],
                summary,
            ),
            "### per seed",
            md_table(
                ["seed", "method", "pixel AP", *FAMILIES, "slice AUROC", "vol. AUROC", "fit s"],
                per_seed,
            ),
            f"Run time so far: {elapsed:.0f} s. Raw rows: the JSON beside.",
        ]
    )
    return write_results(args.out, "The demo's recipe against its neighbours", info, body, raw=rows)


def cohort_of(args) -> dict:
    """The demo's cohort with the voxel size and contrast of the command line."""
    cohort = {**COHORT, "voxel_size": args.voxel_size, "contrast": args.contrast}
    if args.families:
        cohort["families"] = tuple(args.families)
    return cohort


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--recipes", nargs="+", default=["b64x300", "b16x1200"], choices=[*ALL_RECIPES])
    ap.add_argument("--out", default="benchmarks/results/demo_recipes_cpu.md")
    ap.add_argument("--voxel-size", type=float, default=COHORT["voxel_size"])
    ap.add_argument("--contrast", choices=["t1", "t2", "flair"], default=COHORT["contrast"])
    ap.add_argument(
        "--families", nargs="+", default=None, help="lesion families (default: the cohort's)"
    )
    ap.add_argument(
        "--new-test",
        type=int,
        default=0,
        help="also map this many independent test subjects per seed (0: none)",
    )
    args = ap.parse_args()
    info = {"command": command_line(), "commit": git_commit(), "date": now(), **hardware("cpu")}
    rows: list[dict] = []
    t0 = time.perf_counter()
    for seed in args.seeds:
        for recipe in args.recipes:
            print(f"{recipe}, seed {seed}...", flush=True)
            rows += run(recipe, seed, cohort_of(args), args.new_test)
            path = write(args, info, rows, time.perf_counter() - t0)
    print(Path(path).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
