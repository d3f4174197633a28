"""The demo behind ``disyre demo``: train on the offline cohort, map its lesions, report.

Healthy subjects built from real anatomy train the detector; lesioned and healthy test
subjects are mapped; NIfTI maps, an overlay figure and a metrics JSON are written, and
the metrics are printed beside an intensity-threshold baseline.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from ._detector import DISYREDetector
from .datasets import make_brain_cohort
from .io import save_map
from .metrics import best_dice, dice_at_fpr, pixel_average_precision, sample_auroc

# Small enough for a few minutes on two CPU cores; '--full' is the GPU setting.
QUICK = dict(
    cohort=dict(n_healthy=16, n_test=12, voxel_size=3.0),
    detector=dict(
        patch_size=32,
        widths=(16, 32, 64),
        attention_levels=(),
        n_steps=500,
        batch_size=16,
        learning_rate=1e-3,
        warmup_steps=50,
        stride=16,
        severities=(0.25, 0.5),
        inference_batch_size=256,
    ),
)
FULL = dict(
    cohort=dict(n_healthy=48, n_test=24, voxel_size=2.0),
    detector=dict(patch_size=64, n_steps=20_000, batch_size=96, stride=16),
)


def _print_table(rows: list[dict], out) -> None:
    header = f"{'method':<28}{'pixel AP':>10}{'best Dice':>11}{'Dice@1%FPR':>12}{'vol. AUROC':>12}"
    print(header, file=out)
    print("-" * len(header), file=out)
    for r in rows:
        print(
            f"{r['method']:<28}{r['pixel_ap']:>10.3f}{r['best_dice']:>11.3f}"
            f"{r['dice_at_1pct_fpr']:>12.3f}{r['volume_auroc']:>12.3f}",
            file=out,
        )


def _evaluate(name, maps, scores, cohort) -> dict:
    lesioned = np.array([f != "healthy" for f in cohort.families_test])
    fg = cohort.brain_masks_test
    masks = cohort.masks_test
    dice, _ = best_dice(maps[lesioned], masks[lesioned], fg[lesioned])
    dice_fpr, threshold = dice_at_fpr(
        maps[lesioned],
        masks[lesioned],
        maps[~lesioned],
        fpr=0.01,
        foreground=fg[lesioned],
        healthy_foreground=fg[~lesioned],
    )
    per_family = {}
    for family in sorted(set(cohort.families_test) - {"healthy"}):
        sel = np.array([f == family for f in cohort.families_test])
        per_family[family] = pixel_average_precision(maps[sel], masks[sel], fg[sel])
    return {
        "method": name,
        "pixel_ap": pixel_average_precision(maps[lesioned], masks[lesioned], fg[lesioned]),
        "best_dice": dice,
        "dice_at_1pct_fpr": dice_fpr,
        "threshold_at_1pct_fpr": threshold,
        "volume_auroc": sample_auroc(scores, lesioned.astype(int)),
        "pixel_ap_per_family": per_family,
        "aggregation": "pooled over the foreground voxels of all lesioned test volumes",
    }


def _figure(path: Path, cohort, maps, baseline) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    picks = []
    for family in ("tumour", "stroke", "foci", "cavity"):
        for i, f in enumerate(cohort.families_test):
            if f == family:
                picks.append(i)
                break
    fig, axes = plt.subplots(len(picks), 4, figsize=(10, 2.6 * len(picks)), squeeze=False)
    vmax = np.percentile(maps[cohort.brain_masks_test], 99.9)
    for row, i in zip(axes, picks):
        k = int(np.argmax(cohort.masks_test[i].sum(axis=(1, 2))))
        scan = cohort.X_test[i, k]
        panels = [
            (scan, "gray", f"{cohort.families_test[i]}: scan"),
            (scan, "gray", "ground truth"),
            (maps[i, k], "inferno", "DISYRE map"),
            (baseline[i, k], "inferno", "intensity baseline"),
        ]
        for ax, (img, cmap, title) in zip(row, panels):
            ax.imshow(
                img,
                cmap=cmap,
                origin="lower",
                vmin=0,
                vmax=vmax if cmap == "inferno" and title.startswith("DISYRE") else None,
            )
            ax.set_title(title, fontsize=9)
            ax.axis("off")
        row[1].contour(cohort.masks_test[i, k], levels=[0.5], colors="red", linewidths=0.8)
    fig.suptitle("DISYRE on the offline cohort (axial slice with the largest lesion)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_demo(
    out: str | Path = "disyre_demo",
    *,
    device: str = "auto",
    full: bool = False,
    n_steps: int | None = None,
    random_state: int = 0,
    verbose: bool = True,
    stream=None,
) -> dict:
    """Train on the offline cohort, map its test subjects and report metrics.

    Parameters
    ----------
    out : str or path-like, default='disyre_demo'
        Output folder: ``maps/*.nii.gz`` (scans, maps, lesion masks),
        ``demo_overlay.png`` and ``metrics.json``.
    device : str, default='auto'
        Training and inference device.
    full : bool, default=False
        The GPU setting: reference network, more subjects, 20k steps.
    n_steps : int, optional
        Override the number of training steps.
    random_state : int, default=0
        Seed of the cohort and of the detector.
    verbose : bool, default=True
        Print progress and show progress bars.
    stream : file-like, optional
        Where to print; standard output by default.

    Returns
    -------
    dict
        The metrics written to ``metrics.json``.
    """
    import sys

    stream = stream or sys.stdout
    settings = FULL if full else QUICK
    out = Path(out)
    (out / "maps").mkdir(parents=True, exist_ok=True)
    say = (lambda *a: print(*a, file=stream, flush=True)) if verbose else (lambda *a: None)

    t0 = time.perf_counter()
    say("Building the offline cohort from real anatomy (MNI152 2009a, Colin27)...")
    cohort = make_brain_cohort(**settings["cohort"], contrast="t2", random_state=random_state)
    say(
        f"  {len(cohort.X_train)} healthy training volumes {cohort.X_train.shape[1:]}, "
        f"{len(cohort.X_test)} test volumes ({', '.join(cohort.families_test)})"
    )
    params = dict(settings["detector"], device=device, random_state=random_state, verbose=verbose)
    if n_steps is not None:
        params["n_steps"] = n_steps
    det = DISYREDetector(**params)
    say(f"Training DISYRE ({params['n_steps']} steps, device={device})...")
    t1 = time.perf_counter()
    det.fit(cohort.X_train)
    fit_s = time.perf_counter() - t1
    say(
        f"  trained in {fit_s:.0f} s on {det.device_}; final loss "
        f"{np.mean(det.history_['loss'][-25:]):.4g}"
    )
    say("Mapping the test volumes...")
    t2 = time.perf_counter()
    maps, normality = det._map_and_score(cohort.X_test)
    scores = -normality
    map_s = time.perf_counter() - t2
    baseline = cohort.X_test * cohort.brain_masks_test
    baseline_scores = np.array(
        [
            np.sort(b[m])[-max(1, int(0.01 * m.sum())) :].mean()
            for b, m in zip(baseline, cohort.brain_masks_test)
        ]
    )
    rows = [
        _evaluate("DISYRE (dag, ensemble)", maps, scores, cohort),
        _evaluate("intensity threshold", baseline, baseline_scores, cohort),
    ]

    ras = (2, 1, 0)
    for i, family in enumerate(cohort.families_test):
        stem = f"test_{i:02d}_{family}"
        scan_path = out / "maps" / f"{stem}_scan.nii.gz"
        nib.save(nib.Nifti1Image(np.transpose(cohort.X_test[i], ras), cohort.affine), scan_path)
        save_map(maps[i], scan_path, out / "maps" / f"{stem}_disyre_map.nii.gz")
        save_map(
            cohort.masks_test[i].astype(np.float32),
            scan_path,
            out / "maps" / f"{stem}_lesion_mask.nii.gz",
        )
    _figure(out / "demo_overlay.png", cohort, maps, baseline)
    result = {
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in params.items()},
        "cohort": dict(settings["cohort"], contrast="t2", families=list(cohort.families_test)),
        "device": str(det.device_),
        "fit_seconds": fit_s,
        "map_seconds_per_volume": map_s / len(cohort.X_test),
        "results": rows,
    }
    (out / "metrics.json").write_text(json.dumps(result, indent=2))

    say("")
    _print_table(rows, stream)
    fam = rows[0]["pixel_ap_per_family"]
    say("DISYRE pixel AP per lesion family: " + ", ".join(f"{k} {v:.3f}" for k, v in fam.items()))
    say(
        f"\nWrote {out / 'maps'} (scans, maps, masks as NIfTI), {out / 'demo_overlay.png'}, "
        f"{out / 'metrics.json'}  [{time.perf_counter() - t0:.0f} s in all]"
    )
    return result
