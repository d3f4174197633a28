"""The demo behind ``disyre demo``: train on some brains, map lesions in another one.

Healthy subjects rendered from two real brains train the detector (a DISYRE network
for brightening anomalies, a copy for darkening ones and a small-anomaly network,
combined); healthy and lesioned
test subjects rendered from a third real brain, one the training never saw, are mapped
(the held-out anatomy protocol: a detector trained on some people maps others). NIfTI
maps, the trained model, an overlay figure and a metrics JSON are written, and the
metrics are printed beside two intensity-threshold baselines.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from joblib import cpu_count

from ._combined import CombinedDetector, members_of
from ._device import resolve_device
from ._recipes import CPU_RECIPE, build_model
from .datasets import make_brain_cohort
from .io import save_map
from .metrics import (
    best_dice,
    bootstrap_interval,
    dice_at_fpr,
    pixel_average_precision,
    sample_auroc,
    slice_labels,
    slice_scores,
)

# The held-out anatomy protocol: test subjects come from a brain no training subject
# comes from. Colin27 is a complete, high-quality individual brain; the ITK scan's
# field of view cuts its frontal pole, which would make every test brain odd there.
TRAIN_BASES = ("mni", "itk")
TEST_BASES = ("colin",)

# The CPU recipe (its settings and what chose them: disyre_sk/_recipes.py) on a cohort
# small enough for about five minutes on two CPU cores; '--full' is the GPU setting.
QUICK = dict(cohort=dict(n_healthy=16, n_test=12, voxel_size=3.0), **copy.deepcopy(CPU_RECIPE))
FULL = dict(
    cohort=dict(n_healthy=48, n_test=24, voxel_size=2.0),
    detector=dict(
        patch_size=64,
        n_steps=20_000,
        batch_size=96,
        window_size="slice",
        map_smoothing=1.0,
        map_normalization="intensity",
    ),
)
SLICE_TOP_K = 0.05  # a slice's score: mean of its top 5 % foreground map values
VOLUME_TOP_K = 0.01  # a volume's score: mean of its top 1 % foreground map values
# Intervals of the slice and volume AUROC: healthy and lesioned test volumes resampled
# apart (a dozen volumes give these figures from a few dozen healthy-lesioned pairs).
BOOTSTRAP = dict(n_resamples=1000, confidence=0.95)


def _print_table(rows: list[dict], families, out) -> None:
    w = max(34, 2 + max(len(r["method"]) for r in rows))
    header = (
        f"{'method':<{w}}{'pixel AP':>9}{'best Dice':>10}{'Dice@1%FPR':>11}"
        f"{'slice AUROC':>12}{'vol. AUROC':>11}"
    )
    print(header, file=out)
    print("-" * len(header), file=out)
    for r in rows:
        print(
            f"{r['method']:<{w}}{r['pixel_ap']:>9.3f}{r['best_dice']:>10.3f}"
            f"{r['dice_at_1pct_fpr']:>11.3f}{r['slice_auroc']:>12.3f}{r['volume_auroc']:>11.3f}",
            file=out,
        )
    healthy = sum(f == "healthy" for f in families)
    print(
        f"\n{BOOTSTRAP['confidence']:.0%} intervals over the test volumes (bootstrap, "
        f"{BOOTSTRAP['n_resamples']} resamples;\n{healthy} healthy and "
        f"{len(families) - healthy} lesioned volumes, resampled apart):",
        file=out,
    )
    for r in rows:
        (s0, s1), (v0, v1) = (r["auroc_intervals"][k] for k in ("slice_auroc", "volume_auroc"))
        print(
            f"{r['method']:<{w}}slice AUROC {s0:.3f}-{s1:.3f}   vol. AUROC {v0:.3f}-{v1:.3f}",
            file=out,
        )


def _volume_scores(maps: np.ndarray, foreground: np.ndarray) -> np.ndarray:
    """Mean of the top 1 % foreground map values of each volume (the package's top-k
    rule: a fraction rounds up)."""
    return slice_scores(maps, axis=0, reduction="topk", k=VOLUME_TOP_K, foreground=foreground)


def _slices(maps: np.ndarray, cohort) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Axial slice scores, labels and which slices count (as :func:`evaluate` says), each
    ``(n_volumes, n_slices)``."""
    fg = cohort.brain_masks_test
    scores = slice_scores(maps, axis=1, reduction="topk", k=SLICE_TOP_K, foreground=fg)
    return scores, slice_labels(cohort.masks_test, axis=1), fg.mean(axis=(2, 3)) >= 0.02


def auroc_intervals(maps: np.ndarray, cohort, random_state: int | None = None) -> dict:
    """Bootstrap intervals (:data:`BOOTSTRAP`) of the slice and volume AUROC of
    :func:`evaluate`, resampling whole test volumes, healthy and lesioned apart."""
    lesioned = np.array([f != "healthy" for f in cohort.families_test])
    volume = _volume_scores(maps, cohort.brain_masks_test)
    slice_s, slice_y, keep = _slices(maps, cohort)

    def slice_auroc(i):
        return sample_auroc(slice_s[i][keep[i]], slice_y[i][keep[i]])

    def volume_auroc(i):
        return sample_auroc(volume[i], lesioned[i])

    return {
        name: list(bootstrap_interval(f, lesioned, random_state=random_state, **BOOTSTRAP))
        for name, f in (("slice_auroc", slice_auroc), ("volume_auroc", volume_auroc))
    }


def evaluate(name: str, maps: np.ndarray, cohort) -> dict:
    """Pixel, slice and volume metrics of ``maps`` on a cohort's test subjects.

    Pixel metrics are pooled over the foreground voxels of the lesioned test volumes; the
    1 % FPR threshold is fixed on the healthy test volumes; slices are axial, with at
    least 2 % foreground, positive when they hold a lesion voxel; a volume's score is the
    mean of its top 1 % map values.
    """
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
    slice_s, slice_y, keep = _slices(maps, cohort)
    return {
        "method": name,
        "pixel_ap": pixel_average_precision(maps[lesioned], masks[lesioned], fg[lesioned]),
        "best_dice": dice,
        "dice_at_1pct_fpr": dice_fpr,
        "threshold_at_1pct_fpr": threshold,
        "slice_auroc": sample_auroc(slice_s[keep], slice_y[keep]),
        "volume_auroc": sample_auroc(_volume_scores(maps, fg), lesioned.astype(int)),
        "pixel_ap_per_family": per_family,
        "aggregation": "pooled over the foreground voxels of all lesioned test volumes",
    }


def intensity_baselines(cohort) -> dict[str, np.ndarray]:
    """One-sided (bright) and two-sided (``|x - brain median|``) intensity maps."""
    x, fg = cohort.X_test, cohort.brain_masks_test
    two = np.zeros_like(x)
    for i in range(len(x)):
        if fg[i].any():
            two[i] = np.abs(x[i] - np.median(x[i][fg[i]])) * fg[i]
    return {"intensity threshold (bright)": x * fg, "intensity threshold |x - median|": two}


def _figure(path: Path, cohort, maps, baseline) -> None:
    # The object API on the Agg canvas: no pyplot, so a notebook's backend is untouched.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    picks = []
    for family in ("tumour", "stroke", "foci", "cavity"):
        for i, f in enumerate(cohort.families_test):
            if f == family:
                picks.append(i)
                break
    fig = Figure(figsize=(10, 2.6 * max(1, len(picks))))
    FigureCanvasAgg(fig)
    axes = fig.subplots(max(1, len(picks)), 4, squeeze=False)
    vmax = float(np.percentile(maps[cohort.brain_masks_test], 99.9)) or None
    for row, i in zip(axes, picks):
        k = int(np.argmax(cohort.masks_test[i].sum(axis=(1, 2))))
        scan = cohort.X_test[i, k]
        panels = [
            (scan, "gray", None, f"{cohort.families_test[i]}: scan"),
            (scan, "gray", None, "ground truth"),
            (maps[i, k], "inferno", vmax, "DISYRE map"),
            (baseline[i, k], "inferno", None, "|x - median| baseline"),
        ]
        for ax, (img, cmap, top, title) in zip(row, panels):
            ax.imshow(img, cmap=cmap, origin="lower", vmin=0, vmax=top)
            ax.set_title(title, fontsize=9)
            ax.axis("off")
        row[1].contour(cohort.masks_test[i, k], levels=[0.5], colors="red", linewidths=0.8)
    fig.suptitle("DISYRE on a brain it never trained on (axial slice with the largest lesion)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _member_settings(det, name: str) -> dict | None:
    """What metrics.json records of an added network (``dark`` or ``foci``), or None."""
    if not isinstance(det, CombinedDetector) or name not in det.named_detectors_:
        return None
    names = [n for n, _ in det.detectors_]
    member = det.named_detectors_[name]
    return {
        "weight": float(det.weights_[names.index(name)]),
        "patch_size": member.patch_size,
        "n_steps": member.n_steps,
        "corruption": repr(member.corruption),
    }


def _settings_of(params: dict, det) -> dict:
    """What metrics.json records of the first network: ``params`` as JSON, with the
    corruption it trained on (the bright network's, when the model splits by sign)."""
    first = det.detectors_[0][1] if isinstance(det, CombinedDetector) else det
    settings = {k: (list(v) if isinstance(v, tuple) else v) for k, v in params.items()}
    if not isinstance(first.corruption, str):
        settings["corruption"] = repr(first.corruption)
    return settings


def model_name(det) -> str:
    """The demo's name of a model in its tables."""
    if not isinstance(det, CombinedDetector):
        return "DISYRE (dag)"
    names = [n for n, _ in det.detectors_]
    first = "bright + dark dag" if "dark" in names else "dag"
    rest = " + small-anomaly network" if "foci" in names else ""
    return f"DISYRE ({first}{rest}" + (", max)" if det.combination == "max" else ")")


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
    """Train on two real brains' subjects, map a third brain's, and report metrics.

    Parameters
    ----------
    out : str or path-like, default='disyre_demo'
        Output folder: ``maps/*.nii.gz`` (scans, maps, lesion masks), ``model.disyre``
        (the trained model, a :class:`~disyre_sk.CombinedDetector` of the two signed
        DISYRE networks and the small-anomaly network, their maps joined by their
        voxelwise maximum, for ``disyre detect``),
        ``demo_overlay.png`` and
        ``metrics.json``.
    device : str, default='auto'
        Training and inference device.
    full : bool, default=False
        The GPU setting: reference network, more subjects, 20k steps (one network: the
        networks per sign and the small-anomaly network are measured on the CPU setting
        only).
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
    say(
        "Building the offline cohort: training subjects from two real brains (MNI152, ITK "
        "example T1), test subjects from a third one the model never sees (Colin27)..."
    )
    cohort = make_brain_cohort(
        **settings["cohort"],
        contrast="t2",
        train_bases=TRAIN_BASES,
        test_bases=TEST_BASES,
        random_state=random_state,
    )
    say(
        f"  {len(cohort.X_train)} healthy training volumes {cohort.X_train.shape[1:]}, "
        f"{len(cohort.X_test)} test volumes ({', '.join(cohort.families_test)})"
    )
    params = dict(settings["detector"], device=device, random_state=random_state, verbose=verbose)
    if n_steps is not None:
        params["n_steps"] = n_steps
        params["warmup_steps"] = min(params.get("warmup_steps", 500), n_steps // 10)
    det, steps = build_model(
        params,
        settings.get("dark"),
        settings.get("specialist"),
        combination=settings.get("combination", "sum"),
    )
    jobs = min(len(det.detectors), cpu_count()) if isinstance(det, CombinedDetector) else 1
    if jobs > 1 and resolve_device(device).type == "cpu":
        # Side by side, one thread each on two cores: these small networks use a second
        # thread poorly, so the three fits end sooner (benchmarks/results/parallel_fit_cpu.md).
        det.set_params(n_jobs=jobs)
        if verbose:  # one progress bar per process would overwrite each other's line
            for _, member in det.detectors:
                member.set_params(verbose=False)
        say(f"Training DISYRE ({steps}, device={device}, {jobs} networks at a time)...")
    else:
        say(f"Training DISYRE ({steps}, device={device})...")
    t1 = time.perf_counter()
    det.fit(cohort.X_train)
    fit_s = time.perf_counter() - t1
    losses = [np.mean(d.history_["loss"][-25:]) for _, d in members_of(det)]
    say(
        f"  trained in {fit_s:.0f} s on {det.device_}; final loss "
        + " / ".join(f"{v:.4g}" for v in losses)
    )
    model_path = det.save(out / "model.disyre")
    say("Mapping the test volumes...")
    t2 = time.perf_counter()
    maps = det.decision_map(cohort.X_test)
    map_s = time.perf_counter() - t2
    baselines = intensity_baselines(cohort)
    rows = [
        dict(evaluate(name, m, cohort), auroc_intervals=auroc_intervals(m, cohort, random_state))
        for name, m in {model_name(det): maps, **baselines}.items()
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
    _figure(out / "demo_overlay.png", cohort, maps, baselines["intensity threshold |x - median|"])
    stronger = {
        f: max(r["pixel_ap_per_family"][f] for r in rows[1:])
        for f in rows[0]["pixel_ap_per_family"]
    }
    best_base = max(r["pixel_ap"] for r in rows[1:])
    result = {
        "settings": _settings_of(params, det),
        "dark": _member_settings(det, "dark"),
        "specialist": _member_settings(det, "foci"),
        "combination": det.combination if isinstance(det, CombinedDetector) else None,
        "cohort": dict(
            settings["cohort"],
            contrast="t2",
            train_bases=list(TRAIN_BASES),
            test_bases=list(TEST_BASES),
            families=list(cohort.families_test),
        ),
        "protocol": "held-out anatomy: test subjects from a real brain no training subject "
        "comes from",
        "device": str(det.device_),
        "fit_seconds": fit_s,
        "map_seconds_per_volume": map_s / len(cohort.X_test),
        "model": str(model_path),
        "results": rows,
        "bootstrap": dict(BOOTSTRAP, resampled="test volumes, healthy and lesioned apart"),
        "ap_ratio_to_stronger_baseline": rows[0]["pixel_ap"] / max(best_base, 1e-12),
        "families_ahead_of_stronger_baseline": [
            f for f, v in rows[0]["pixel_ap_per_family"].items() if v > stronger[f]
        ],
    }
    (out / "metrics.json").write_text(json.dumps(result, indent=2))

    say("")
    _print_table(rows, cohort.families_test, stream)
    say("\nPixel AP per lesion family (DISYRE / stronger intensity baseline):")
    for f, v in rows[0]["pixel_ap_per_family"].items():
        say(f"  {f:<8} {v:.3f} / {stronger[f]:.3f}")
    say(
        f"\nWrote {out / 'maps'} (scans, maps, masks as NIfTI), {model_path}, "
        f"{out / 'demo_overlay.png'}, {out / 'metrics.json'}  "
        f"[{time.perf_counter() - t0:.0f} s in all]"
    )
    say(f"Next: disyre detect {model_path} my_scans/ -o maps/")
    return result
