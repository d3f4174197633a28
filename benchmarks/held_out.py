"""What carries to a brain the model never saw: training recipes and map options, compared.

    python benchmarks/held_out.py [--recipes dag32 fpi32 mix32 dag64] [--held-out colin itk]
                                  [--seeds 0] [--n-steps 400] [--contrast t2] [--threads 2]
                                  [--out benchmarks/results/held_out_cpu.md]

The held-out anatomy protocol (``make_brain_cohort(train_bases=..., test_bases=...)``):
training subjects rendered from two of the three real brains shipped with the package,
healthy and lesioned test subjects from the third. For each recipe, fold and seed one
``DISYREDetector`` is fitted with ``map_normalization='intensity'`` (so that it learns the
residual profile) and maps the test subjects with six map options read at predict time
(``set_params``, no refit): the raw residual, ``map_smoothing=1``, the intensity
normalisation, both, and both with ``map_erosion`` of 1 and 2 pixels. Baselines on the
same subjects: intensity thresholding one-sided (the scan) and two-sided
(``|x - brain median|``). Only public API is used.

Metrics (exact, ``disyre_sk.metrics``): pixel AP pooled over the brain voxels of the
lesioned test volumes, per family; slice AUROC (axial slices with >= 2 % brain, score =
mean of the top 5 % map values, positive = holds a lesion voxel); volume AUROC (score =
mean of the top 1 % map values). Every measurement goes to a JSON beside the table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _baselines import intensity_maps, two_sided_intensity_maps
from _common import (
    BRAINS,
    cohort_bases,
    command_line,
    git_commit,
    hardware,
    md_table,
    now,
    write_results,
)

from disyre_sk import DISYREDetector
from disyre_sk.corruption import DAGCorruption, FPICorruption, Mixture
from disyre_sk.datasets import make_brain_cohort
from disyre_sk.metrics import pixel_average_precision, sample_auroc, slice_labels, slice_scores

BASE = dict(
    widths=(16, 32, 64),
    attention_levels=(),
    learning_rate=1e-3,
    window_size="slice",
    severities=(0.25, 0.5),
    inference_batch_size=64,
    map_normalization="intensity",
    validation_fraction=0.0,
)


def DAGFPIMixture() -> Mixture:
    """DAG or FPI, one per sample, equally likely."""
    return Mixture([DAGCorruption(), FPICorruption()])


# name -> (corruption factory, patch size, batch size): equal pixels per step.
RECIPES = {
    "dag32": (DAGCorruption, 32, 64),
    "fpi32": (FPICorruption, 32, 64),
    "mix32": (DAGFPIMixture, 32, 64),
    "dag64": (DAGCorruption, 64, 16),
    "fpi64": (FPICorruption, 64, 16),
}
MAP_OPTIONS = {
    "raw": dict(map_smoothing=0.0, map_normalization=None),
    "smooth 1": dict(map_smoothing=1.0, map_normalization=None),
    "normalised": dict(map_smoothing=0.0, map_normalization="intensity"),
    "normalised + smooth 1": dict(map_smoothing=1.0, map_normalization="intensity"),
    "normalised + smooth 1 + erode 1": dict(
        map_smoothing=1.0, map_normalization="intensity", map_erosion=1
    ),
    "normalised + smooth 1 + erode 2": dict(
        map_smoothing=1.0, map_normalization="intensity", map_erosion=2
    ),
}
FAMILIES = ("tumour", "stroke", "foci", "cavity", "infarct")  # infarct: on request only


def top_count(foreground: np.ndarray) -> int:
    """How many of a volume's foreground values its score averages: 1 %, rounded up as
    the package's top-k fractions are (``slice_scores``), at least one."""
    return max(1, int(np.ceil(0.01 * foreground.sum())))


def volume_scores(maps: np.ndarray, foreground: np.ndarray) -> np.ndarray:
    """Each volume's score: the mean of its top 1 % foreground map values (as the demo)."""
    return slice_scores(maps, axis=0, reduction="topk", k=0.01, foreground=foreground)


def evaluate(maps: np.ndarray, cohort) -> dict:
    fg, masks = cohort.brain_masks_test, cohort.masks_test
    fam = np.array(cohort.families_test)
    les = fam != "healthy"
    out = {"pixel_ap": pixel_average_precision(maps[les], masks[les], fg[les])}
    for f in FAMILIES:
        sel = fam == f
        out[f] = pixel_average_precision(maps[sel], masks[sel], fg[sel]) if sel.any() else None
    keep = fg.mean(axis=(2, 3)) >= 0.02
    s = slice_scores(maps, axis=1, reduction="topk", k=0.05, foreground=fg)
    out["slice_auroc"] = sample_auroc(s[keep], slice_labels(masks, axis=1)[keep])
    out["volume_auroc"] = sample_auroc(volume_scores(maps, fg), les.astype(int))
    return out


def baselines(cohort) -> dict[str, np.ndarray]:
    x, fg = cohort.X_test, cohort.brain_masks_test
    return {
        "intensity (bright)": intensity_maps(x, fg),
        "intensity |x - median|": two_sided_intensity_maps(x, fg),
    }


def run(recipe: str, held: str, seed: int, n_steps: int, cohort_kw: dict) -> list[dict]:
    cohort = make_brain_cohort(**cohort_kw, random_state=seed, **cohort_bases(held))
    make, patch, batch = RECIPES[recipe]
    det = DISYREDetector(
        **BASE,
        corruption=make(),
        patch_size=patch,
        batch_size=batch,
        n_steps=n_steps,
        warmup_steps=n_steps // 10,
        random_state=seed,
    )
    t = time.perf_counter()
    det.fit(cohort.X_train)
    fit_s = time.perf_counter() - t
    rows = []
    for option, params in MAP_OPTIONS.items():
        det.set_params(**params)
        t = time.perf_counter()
        maps = det.decision_map(cohort.X_test)
        rows.append(
            dict(
                recipe=recipe,
                held_out=held,
                seed=seed,
                method=f"DISYRE {recipe}, {option}",
                fit_s=fit_s,
                map_s=time.perf_counter() - t,
                **evaluate(maps, cohort),
            )
        )
    for name, maps in baselines(cohort).items():
        rows.append(
            dict(recipe=recipe, held_out=held, seed=seed, method=name, **evaluate(maps, cohort))
        )
    return rows


def fmt(v) -> str:
    return "—" if v is None else f"{v:.3f}"


def row_cells(r: dict) -> list:
    """Seed, method, pooled and per-family AP, slice and volume AUROC, fit seconds."""
    return [
        r["seed"],
        r["method"],
        fmt(r["pixel_ap"]),
        *(fmt(r[f]) for f in FAMILIES),
        fmt(r["slice_auroc"]),
        fmt(r["volume_auroc"]),
        f"{r['fit_s']:.0f}" if "fit_s" in r else "",
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", nargs="+", default=["dag32", "fpi32", "mix32"], choices=RECIPES)
    ap.add_argument("--held-out", nargs="+", default=["colin", "itk"], choices=BRAINS)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--n-steps", type=int, default=400)
    ap.add_argument("--voxel-size", type=float, default=3.0)
    ap.add_argument("--contrast", default="t2", choices=("t2", "flair", "t1"))
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default="benchmarks/results/held_out_cpu.md")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cohort_kw = dict(n_healthy=16, n_test=12, voxel_size=args.voxel_size, contrast=args.contrast)
    info = {
        "command": command_line(),
        "commit": git_commit(),
        "date": now(),
        **hardware("cpu"),
    }
    rows: list[dict] = []
    t0 = time.perf_counter()
    for held in args.held_out:
        for seed in args.seeds:
            for recipe in args.recipes:
                print(f"{recipe}, held out {held}, seed {seed}...", flush=True)
                rows += run(recipe, held, seed, args.n_steps, cohort_kw)
                write(args, info, rows, cohort_kw, time.perf_counter() - t0)
    print(Path(args.out).read_text())
    return 0


def write(args, info, rows, cohort_kw, elapsed) -> None:
    headers = [
        "held out",
        "seed",
        "method",
        "pixel AP",
        *FAMILIES,
        "slice AUROC",
        "vol. AUROC",
        "fit s",
    ]
    table = [[r["held_out"], *row_cells(r)] for r in rows]
    body = "\n\n".join(
        [
            f"Cohort per fold: {cohort_kw}; training subjects from the two other "
            f"brains. Detector: {dict(BASE)}, {args.n_steps} steps, warm-up a tenth; "
            "recipes (corruption, patch, batch): "
            + "; ".join(
                f"{k} = ({v[0].__name__}, {v[1]}, {v[2]})"
                for k, v in RECIPES.items()
                if k in args.recipes
            )
            + ". Baseline rows repeat per recipe (same cohort).",
            md_table(headers, table),
            f"Run time so far: {elapsed:.0f} s. Raw rows: the JSON file of the same name.",
        ]
    )
    path = write_results(args.out, "Held-out anatomy: recipes and map options", info, body)
    Path(path).with_suffix(".json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    sys.exit(main())
