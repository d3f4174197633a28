"""The ``disyre`` command: demo, fit, calibrate, detect, evaluate.

Input scans must be skull-stripped (zero background), registered to one template (so
they share a grid) and of one contrast (e.g. all T2). Intensities are normalised per
scan (0th–98th percentile of the brain to [0, 1]) on reading.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
import tempfile
import time
from pathlib import Path

_INPUT_HELP = (
    "Scans must be skull-stripped (background exactly 0), registered to one template so "
    "that they share one voxel grid (e.g. MNI152 or SRI24), and of one contrast. Each scan "
    "is reoriented to RAS and normalised (0th-98th foreground percentile to [0, 1])."
)


def _expand(items: list[str]) -> list[Path]:
    """Files, folders (their *.nii / *.nii.gz) and glob patterns, in a stable order."""
    found: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            hits = sorted([*path.glob("*.nii"), *path.glob("*.nii.gz")])
        elif any(c in item for c in "*?["):
            hits = sorted(Path(p) for p in glob.glob(item, recursive=True))
        else:
            hits = [path]
        if not hits:
            raise FileNotFoundError(f"no NIfTI file found for {item!r}.")
        found.extend(hits)
    missing = [str(p) for p in found if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"file(s) not found: {', '.join(missing[:5])}")
    return found


def _output_file(path: str, flag: str) -> Path:
    """Check, before any work, that a file can be written at ``path``."""
    from ._files import check_writable

    out = Path(path)
    if out.is_dir():
        raise IsADirectoryError(
            f"{flag} {path!r} is a folder; give a file name, e.g. {str(out / 'model.disyre')!r}"
        )
    check_writable(out.parent, flag)
    return out


def _output_folder(path: str, flag: str) -> Path:
    from ._files import check_writable

    return check_writable(path, flag)


def _cmd_demo(args) -> int:
    from ._demo import run_demo

    _output_folder(args.out, "--out")
    run_demo(
        args.out,
        device=args.device,
        full=args.full,
        n_steps=args.steps,
        random_state=args.seed,
        verbose=not args.quiet,
    )
    return 0


# Where a flag is left out, the recipe's value, else the detector's default.
_FIT_FLAGS = {
    "patch_size": "patch_size",
    "steps": "n_steps",
    "batch_size": "batch_size",
    "learning_rate": "learning_rate",
    "warmup_steps": "warmup_steps",
    "corruption": "corruption",
    "inference": "inference",
    "severities": "severities",
    "map_smoothing": "map_smoothing",
    "map_smoothing_across": "map_smoothing_across",
    "map_erosion": "map_erosion",
    "map_median": "map_median",
    "map_flip": "map_flip",
    "map_symmetry": "map_symmetry",
    "reference_fraction": "reference_fraction",
}


def _reference_fraction(text: str) -> float | str:
    """``--reference-fraction``: a fraction, or 'none' (references on the training scans)."""
    if text.lower() == "none":
        return "none"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a fraction; give a number between 0 and 1, or 'none'"
        ) from None


def _fit_model(args, verbose: bool):
    """The unfitted model ``disyre fit`` trains, and its training steps in words.

    Settings come from ``--recipe`` (none: the detector's defaults), then from the flags
    given explicitly; ``--small-anomaly-network`` wraps the detector and its small-anomaly
    network in a :class:`~disyre_sk.CombinedDetector`.
    """
    from . import DISYREDetector
    from ._recipes import CPU_RECIPE, build_model, specialist_steps, specialist_weight

    params: dict = {}
    dark = specialist = None
    if args.recipe == "cpu":
        params.update(CPU_RECIPE["detector"])
        dark, specialist = dict(CPU_RECIPE["dark"]), dict(CPU_RECIPE["specialist"])
    for flag, name in _FIT_FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            params[name] = tuple(value) if isinstance(value, list) else value
    if params.get("reference_fraction") == "none":
        params["reference_fraction"] = None
    if args.p_bright is not None:
        corruption = params.get("corruption", "dag")
        if corruption != "dag":
            raise ValueError(
                f"--p-bright sets the sign of DAG's intensity bias; --corruption {corruption} "
                "has none: use --corruption dag (the default)."
            )
        from .corruption import DAGCorruption

        params["corruption"] = DAGCorruption(p_bright=args.p_bright)
    if args.widths:
        params["widths"] = tuple(args.widths)
    if args.window_size is not None:
        params["window_size"] = _window_size(args.window_size)
    for flag in ("map_normalization", "map_standardization"):
        value = getattr(args, flag)
        if value is not None:
            params[flag] = None if value == "none" else value
    params.update(
        device=args.device,
        random_state=args.seed,
        verbose=verbose,
        checkpoint_every=args.checkpoint_every,
        validation_fraction=args.validation_fraction,
        validation_every=args.validation_every,
        early_stopping=args.early_stopping,
        n_iter_no_change=args.n_iter_no_change,
        validation_tol=args.validation_tol,
        checkpoint_dir=args.checkpoint_dir,
    )
    if args.dark_network is not None:
        dark = dict(CPU_RECIPE["dark"]) if args.dark_network else None
    if args.small_anomaly_network is not None:
        specialist = dict(CPU_RECIPE["specialist"]) if args.small_anomaly_network else None
    off = {"dark": (dark, "--dark-network"), "small": (specialist, "--small-anomaly-network")}
    for flag in ("dark_steps", "dark_weight", *_SMALL_FLAGS):
        part, switch = off[flag.split("_")[0]]
        if part is None and getattr(args, flag) is not None:
            raise ValueError(
                f"--{flag.replace('_', '-')} sets a network that is off: add {switch} "
                "(or --recipe cpu)."
            )
    corruption = params.get("corruption", "dag")
    if dark is not None and not (corruption == "dag" or args.p_bright is not None):
        raise ValueError(
            f"the dark network learns darkening DAG anomalies; --corruption {corruption} has "
            "no sign: use --corruption dag, or --no-dark-network."
        )
    main_steps = params.get("n_steps", DISYREDetector().n_steps)
    if dark is None and specialist is None:
        if args.combination is not None:
            raise ValueError(
                "--combination joins several networks' maps; this model has one: add "
                "--dark-network or --small-anomaly-network (or --recipe cpu)."
            )
        if args.n_jobs is not None:
            raise ValueError(
                "--n-jobs trains several networks side by side; this model has one: add "
                "--dark-network or --small-anomaly-network (or --recipe cpu)."
            )
        det = DISYREDetector(**params)
        return det, f"{det.n_steps} steps"
    if params.get("map_standardization") != "location":
        raise ValueError(
            "--dark-network and --small-anomaly-network add the networks' maps as z-scores "
            "against the healthy training maps: add --map-standardization location "
            "(--recipe cpu sets it)."
        )
    if dark is not None:
        dark["n_steps"] = _given(args.dark_steps, specialist_steps(dark, main_steps))
        dark["weight"] = _given(args.dark_weight, dark["weight"])
    combination = _given(args.combination, CPU_RECIPE["combination"])
    if specialist is not None:
        specialist["n_steps"] = _given(args.small_steps, specialist_steps(specialist, main_steps))
        specialist["patch_size"] = _given(args.small_patch_size, specialist["patch_size"])
        specialist["weight"] = _given(args.small_weight, specialist_weight(combination))
        if args.small_p_bright is not None:
            specialist["p_bright"] = args.small_p_bright
    model, steps = build_model(params, dark, specialist, scale_steps=False, combination=combination)
    model.set_params(n_jobs=args.n_jobs)
    if args.n_jobs not in (None, 1):  # one progress bar per process would share one line
        for _, member in model.detectors:
            member.set_params(verbose=False)
    if args.checkpoint_dir is not None:
        # One folder each: a member resumes its own training, never another's.
        for name, member in model.detectors:
            member.set_params(checkpoint_dir=str(Path(args.checkpoint_dir) / name))
    return model, steps


# Coverage of the intervals ``disyre evaluate`` gives, and the share of a scan's top map
# values its score averages (DISYREDetector's default top_k).
_CONFIDENCE = 0.95
_SCAN_TOP_K = 0.01
_SMALL_FLAGS = ("small_patch_size", "small_steps", "small_weight", "small_p_bright")


def _given(value, default):
    return default if value is None else value


def _window_size(value: str):
    if value == "slice":
        return "slice"
    try:
        return int(value)
    except ValueError:
        raise ValueError(
            f"--window-size must be 'slice' or a whole number of pixels, got {value!r}."
        ) from None


def _fitted_members(model) -> list:
    """``(' (name)', detector)`` of a fitted model's networks; ``''`` for a single one."""
    from ._combined import members_of

    members = members_of(model)
    if len(members) == 1:
        return [("", members[0][1])]
    return [(f" ({name})", det) for name, det in members]


def _cmd_fit(args) -> int:
    from ._engine.distributed import launch_rank, shutdown
    from .io import NiftiLoader

    # Under torchrun every process trains; rank 0 alone reports and writes the model.
    main_rank = launch_rank() == 0
    say = print if main_rank else (lambda *a, **k: None)
    if main_rank:  # refused now, not after the last training step
        _output_file(args.output, "-o/--output")
        if args.report:
            _output_folder(args.report, "--report")
    det, steps = _fit_model(args, verbose=main_rank)
    det._check_params_now()  # refused now, not after reading the scans or training
    paths = _expand(args.healthy)
    say(f"Reading {len(paths)} healthy scans...", flush=True)
    loader = NiftiLoader(target_shape=tuple(args.shape) if args.shape else None)
    X = loader.fit_transform([str(p) for p in paths])
    X_val = None
    if args.validation_scans:
        X_val = loader.transform([str(p) for p in _expand(args.validation_scans)])
    say(f"Training on {X.shape[0]} volumes of shape {X.shape[1:]} ({steps})...", flush=True)
    try:
        det.fit(X, X_val=X_val)
    finally:
        shutdown()
    if main_rank:
        for name, member in _fitted_members(det):
            say(f"Validation{name}: {member.history_['validation_note']}")
        try:
            saved = det.save(args.output)
        except OSError as exc:
            # Hours of training are not lost to a full disk or a vanished folder.
            rescue = Path(tempfile.gettempdir()) / (
                f"disyre-rescued-{time.strftime('%Y%m%d-%H%M%S')}-{Path(args.output).name}"
            )
            det.save(rescue)
            print(
                f"disyre fit: error: could not write {args.output!r} ({exc}). The trained "
                f"model was saved to {str(rescue)!r} instead: move it where you want it.",
                file=sys.stderr,
            )
            return 2
        say(f"Saved the model to {saved}")
        if args.report:
            from .report import write_training_report

            for name, member in _fitted_members(det):
                folder = Path(args.report) / name.strip(" ()") if name else args.report
                write_training_report(member, folder)
                say(f"Wrote the training report{name} to {folder}")
    return 0


def _cmd_calibrate(args) -> int:
    from . import load_model
    from ._combined import layout_of
    from .io import NiftiLoader

    if not Path(args.model).is_file():
        raise FileNotFoundError(f"no model file at {args.model!r}.")
    _output_file(args.output, "-o/--output")
    model = load_model(args.model, device=args.device)
    shape = tuple(layout_of(model).image_shape)
    paths = _expand(args.healthy)
    print(f"Reading {len(paths)} healthy scans...", flush=True)
    loader = NiftiLoader(target_shape=shape if args.crop else None)
    X = loader.fit_transform([str(p) for p in paths])
    if tuple(X.shape[1:]) != shape:
        raise ValueError(
            f"the scans have shape {tuple(X.shape[1:])} (Z, Y, X) and the model "
            f"{shape}; register them to the training grid, or pass --crop to "
            "centre-crop/pad them."
        )
    before = model.offset_
    model.calibrate(X)
    saved = model.save(args.output)
    print(
        f"Calibrated on {len(X)} healthy scans (offset_ {before:.4g} -> "
        f"{model.offset_:.4g}); saved the model to {saved}"
    )
    return 0


def _cmd_detect(args) -> int:
    from ._stream import stream_detect

    if not Path(args.model).is_file():
        raise FileNotFoundError(f"no model file at {args.model!r}.")
    _output_folder(args.output, "-o/--output")
    devices = [*(args.device or []), *([args.devices] if args.devices else [])]
    try:
        summary = stream_detect(
            args.model,
            _expand(args.scans),
            args.output,
            devices=devices,
            crop=args.crop,
            overwrite=args.overwrite,
            overlay=_overlay_png if args.png else None,
            prefetch=args.prefetch,
            readers=args.readers,
            writers=args.writers,
            verbose=True,
        )
    except KeyboardInterrupt:
        print(
            "disyre detect: interrupted; the maps written are complete. Rerun the same "
            "command to continue (existing maps are skipped).",
            file=sys.stderr,
        )
        return 130
    text = summary.report().splitlines()
    print(f"disyre detect: {text[0]} Maps and scores.json in {args.output}")
    for line in text[1:]:
        print(f"disyre detect: {line}", file=sys.stderr)
    if summary.failed:
        print(
            "disyre detect: the other scans are done; fix or remove the failed ones and "
            "rerun (existing maps are skipped).",
            file=sys.stderr,
        )
        return 2  # the status of every other error of the command
    return 0


def _overlay_png(volume, anomaly_map, path: Path) -> None:
    # matplotlib's object API on the Agg canvas: no pyplot, no global backend switch.
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    centre = np.unravel_index(np.argmax(anomaly_map), anomaly_map.shape)
    views = [
        (volume[centre[0]], anomaly_map[centre[0]], "axial"),
        (volume[:, centre[1]], anomaly_map[:, centre[1]], "coronal"),
        (volume[:, :, centre[2]], anomaly_map[:, :, centre[2]], "sagittal"),
    ]
    vmax = float(np.percentile(anomaly_map[anomaly_map > 0], 99.5)) if np.any(anomaly_map) else 1
    fig = Figure(figsize=(10, 3.6))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    for ax, (img, amap, title) in zip(axes, views):
        ax.imshow(img, cmap="gray", origin="lower")
        ax.imshow(
            np.ma.masked_less_equal(amap, 0),
            cmap="inferno",
            alpha=0.6,
            vmin=0,
            vmax=vmax,
            origin="lower",
        )
        ax.set_title(f"{title} through the map's maximum", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _cmd_evaluate(args) -> int:
    import numpy as np

    from ._data import reduce_scores
    from .io import load_nifti
    from .metrics import PixelMetricAccumulator

    if args.json:
        _output_file(args.json, "--json")
    maps = _expand(args.maps)
    masks = _expand(args.masks)
    if len(maps) != len(masks):
        raise ValueError(
            f"{len(maps)} map(s) but {len(masks)} mask(s); give one mask per map, "
            "in the same order."
        )
    if args.resamples < 0:
        raise ValueError(f"--resamples must be >= 0 (0: no intervals), got {args.resamples}.")
    acc = PixelMetricAccumulator()
    healthy = PixelMetricAccumulator()
    # Each scan's score as score_samples' default: the mean of its top 1 % foreground values.
    scan_scores, scan_lesioned = [], []

    def scan_score(m, fg) -> float:
        return float(reduce_scores(m[None], fg[None], "topk", _SCAN_TOP_K)[0])

    for map_path, mask_path in zip(maps, masks):
        m = load_nifti(map_path)
        y = load_nifti(mask_path) > 0.5
        if m.shape != y.shape:
            raise ValueError(
                f"{map_path} has shape {m.shape} but its mask {mask_path} has {y.shape}; "
                "give masks on the maps' grid"
            )
        fg = m != 0 if args.foreground == "nonzero" else np.ones(m.shape, bool)
        fg |= y
        acc.update(m, y, fg)
        scan_scores.append(scan_score(m, fg))
        scan_lesioned.append(bool(y[fg].any()))
    result = {"aggregation": "pooled over all foreground voxels", **acc.result("pooled")}
    if args.healthy_maps:
        for path in _expand(args.healthy_maps):
            m = load_nifti(path)
            healthy.update(m, None, m != 0)
            scan_scores.append(scan_score(m, m != 0))
            scan_lesioned.append(False)
        threshold = healthy.threshold_at_fpr(args.fpr)
        result[f"threshold_at_{args.fpr:g}_fpr"] = threshold
        result[f"dice_at_{args.fpr:g}_fpr"] = acc.dice_at_threshold(threshold, "pooled")
    per_volume = acc.result("per_volume")
    result["per_volume"] = {"aggregation": "mean over volumes with lesions", **per_volume}
    result.update(_scan_level(np.array(scan_scores), np.array(scan_lesioned), args.resamples))
    if args.resamples:
        result["per_volume"].update(_per_volume_intervals(acc, args.resamples))
    from ._files import jsonable

    text = json.dumps(jsonable(result), indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    return 0


def _scan_level(scores, lesioned, resamples: int) -> dict:
    """Scan-level AUROC of the maps' scores (lesioned scans against healthy ones) and its
    bootstrap interval; empty unless both kinds of scan were given."""
    from .metrics import bootstrap_interval, sample_auroc

    if lesioned.all() or not lesioned.any():
        return {}
    out = {
        "scan_score": "mean of the top 1 % foreground map values",
        "n_scans": {"lesioned": int(lesioned.sum()), "healthy": int((~lesioned).sum())},
        "scan_auroc": sample_auroc(scores, lesioned),
    }
    if resamples:
        out[f"scan_auroc_interval_{round(_CONFIDENCE * 100)}"] = list(
            bootstrap_interval(
                lambda i: sample_auroc(scores[i], lesioned[i]),
                lesioned,
                n_resamples=resamples,
                confidence=_CONFIDENCE,
                random_state=0,
            )
        )
    return out


def _per_volume_intervals(acc, resamples: int) -> dict:
    """Bootstrap intervals of the per-volume means (volumes with lesions resampled)."""
    import numpy as np

    from .metrics import bootstrap_interval

    scores = acc.per_volume_scores()
    keep = scores["n_positive"] > 0
    out = {}
    for key in ("average_precision", "best_dice", "auroc"):
        # A volume's AUROC is undefined without a healthy voxel: left out, as the mean does.
        values = scores[key][keep]
        values = values[np.isfinite(values)]
        if values.size < 2:
            continue
        out[key] = list(
            bootstrap_interval(
                lambda i, v=values: float(v[i].mean()),
                np.zeros(values.size),
                n_resamples=resamples,
                confidence=_CONFIDENCE,
                random_state=0,
            )
        )
    return {f"interval_{round(_CONFIDENCE * 100)}": out} if out else {}


def build_parser() -> argparse.ArgumentParser:
    """The ``disyre`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="disyre",
        description="Unsupervised anomaly detection in brain MRI by diffusion-inspired "
        "synthetic restoration (DISYRE). Train on healthy scans only; get voxel-wise "
        "anomaly maps. " + _INPUT_HELP,
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"disyre_sk {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", help="on an error, show the full Python traceback"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo",
        parents=[common],
        help="train on the offline brain cohort and map its lesions",
        description="Build the offline cohort (healthy subjects from real anatomy, test "
        "subjects with inserted lesions), train DISYRE on the healthy ones, write NIfTI "
        "maps, an overlay PNG and metrics.json, and print pixel AP and Dice beside an "
        "intensity-threshold baseline. A few minutes on a CPU; --full for a GPU.",
    )
    demo.add_argument("--out", default="disyre_demo", help="output folder (default: %(default)s)")
    demo.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda' (default: auto)")
    demo.add_argument(
        "--full",
        action="store_true",
        help="GPU setting: reference network, more subjects, 20k steps",
    )
    demo.add_argument("--steps", type=int, default=None, help="override training steps")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    demo.add_argument("--quiet", action="store_true", help="no progress output")
    demo.set_defaults(func=_cmd_demo)

    fit = sub.add_parser(
        "fit",
        parents=[common],
        help="train a model on healthy NIfTI scans",
        description="Train DISYRE on healthy scans and save a safe model file (loads "
        "without unpickling). " + _INPUT_HELP,
    )
    fit.add_argument("healthy", nargs="+", help="healthy scans: files, folders or globs")
    fit.add_argument("-o", "--output", required=True, help="model file to write (*.disyre)")
    fit.add_argument(
        "--shape",
        type=int,
        nargs=3,
        metavar=("Z", "Y", "X"),
        help="centre-crop/pad every scan to this shape",
    )
    fit.add_argument(
        "--recipe",
        choices=["cpu"],
        help="start from a tested recipe; flags given explicitly override it. 'cpu': the "
        "demo's (32-px patches, 1000 steps of 16, whole-slice maps, location-standardised, "
        "one network per sign and the small-anomaly network, their maps' voxelwise "
        "maximum), which trains in minutes on a CPU",
    )
    fit.add_argument("--patch-size", type=int, help="training patch side (default: 128)")
    fit.add_argument("--widths", type=int, nargs="+", help="UNet widths per level")
    fit.add_argument("--steps", type=int, help="training steps (default: 100000)")
    fit.add_argument("--batch-size", type=int, help="patches per step (default: 96)")
    fit.add_argument("--learning-rate", type=float, help="peak learning rate (default: 1e-4)")
    fit.add_argument("--warmup-steps", type=int, help="learning-rate warm-up (default: 500)")
    fit.add_argument("--corruption", choices=["dag", "fpi", "gaussian"], help="(default: dag)")
    fit.add_argument(
        "--p-bright",
        type=float,
        help="probability that a DAG anomaly of the first network brightens the tissue "
        "(default: 0.5, or 1 with the dark network; 0 for dark ones only, as lesions are "
        "on T1)",
    )
    fit.add_argument("--inference", choices=["ensemble", "multistep"], help="(default: ensemble)")
    fit.add_argument(
        "--severities",
        type=float,
        nargs="+",
        help="restoration severities (default: 0.05 0.25 0.5 0.75)",
    )
    maps = fit.add_argument_group(
        "maps", "How the model turns restorations into maps; stored in the model file."
    )
    maps.add_argument(
        "--window-size",
        help="'slice' maps each slice in one pass; a number: windows of that side "
        "(default: the patch size)",
    )
    maps.add_argument(
        "--map-smoothing", type=float, help="in-plane Gaussian sigma, px (default: 1)"
    )
    maps.add_argument(
        "--map-smoothing-across", type=float, help="Gaussian sigma across slices (default: 0)"
    )
    maps.add_argument(
        "--map-normalization",
        choices=["none", "intensity"],
        help="'intensity': divide each residual by the healthy residual of its intensity",
    )
    maps.add_argument(
        "--map-standardization",
        choices=["none", "location"],
        help="'location': z-score each voxel against the healthy training maps there",
    )
    maps.add_argument("--map-erosion", type=int, help="pixels of the brain's rim set to 0")
    maps.add_argument("--map-median", type=int, help="median filter size of the map, voxels")
    maps.add_argument(
        "--map-flip",
        action=argparse.BooleanOptionalAction,
        help="average each restoration with that of the mirrored slice (default: off)",
    )
    maps.add_argument(
        "--map-symmetry",
        type=float,
        help="weight in [0, 1] of the left-right symmetry prior: lower the map where the "
        "scan mirrors itself (default: 0, off)",
    )
    darkg = fit.add_argument_group(
        "dark network",
        "A copy of the first network that learns darkening DAG anomalies only, the first "
        "one then brightening ones only (unless --p-bright says otherwise), their maps "
        "joined as --combination says (needs --corruption dag and --map-standardization "
        "location).",
    )
    darkg.add_argument(
        "--dark-network",
        action=argparse.BooleanOptionalAction,
        help="train it too (on with --recipe cpu)",
    )
    darkg.add_argument(
        "--dark-steps", type=int, help="its training steps (default: half of --steps)"
    )
    darkg.add_argument("--dark-weight", type=float, help="weight of its map (default: 1)")
    small = fit.add_argument_group(
        "small-anomaly network",
        "A network trained on small, sharp, bright anomalies only, its map joined with the "
        "others' as --combination says (needs --map-standardization location).",
    )
    small.add_argument(
        "--small-anomaly-network",
        action=argparse.BooleanOptionalAction,
        help="train it too (on with --recipe cpu)",
    )
    small.add_argument("--small-patch-size", type=int, help="its patch side (default: 16)")
    small.add_argument(
        "--small-steps", type=int, help="its training steps (default: half of --steps)"
    )
    small.add_argument(
        "--small-weight",
        type=float,
        help="weight of its map (default: 1 with --combination max, 0.5 with sum)",
    )
    small.add_argument(
        "--small-p-bright",
        type=float,
        help="probability that one of its anomalies brightens (default: 1, bright only; "
        "0.5 for either sign, 0 for dark only)",
    )
    fit.add_argument(
        "--combination",
        choices=("sum", "max"),
        help="how several networks' maps make one: the largest weighted map at each voxel "
        "(default: max, as the recipe) or their weighted sum",
    )
    fit.add_argument(
        "--n-jobs",
        type=int,
        help="with several networks: how many train at once, each in its own process on "
        "its share of the CPU threads (-1: one per processor; default: one after the "
        "other). On a CPU, 2 on two cores finish the recipe's networks sooner",
    )
    fit.add_argument("--device", default="auto")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument(
        "--checkpoint-dir",
        help="folder for checkpoints: a rerun with the same arguments resumes there",
    )
    fit.add_argument("--checkpoint-every", type=int, default=1000, metavar="STEPS")
    fit.add_argument(
        "--validation-fraction",
        type=float,
        default=0.1,
        help="fraction of the healthy scans held out for synthetic validation "
        "(default: %(default)s; 0 turns it off)",
    )
    fit.add_argument(
        "--reference-fraction",
        type=_reference_fraction,
        metavar="FRACTION",
        help="fraction of the healthy scans held out of training to learn the maps' "
        "healthy references and the threshold on ('none': on the training scans; "
        "default: the recipe's, else none)",
    )
    fit.add_argument(
        "--validation-scans",
        nargs="+",
        help="healthy scans to validate on instead (files, folders or globs)",
    )
    fit.add_argument("--validation-every", type=int, default=1000, help="steps between validations")
    fit.add_argument(
        "--early-stopping",
        action="store_true",
        help="stop when --n-iter-no-change validations in a row bring no improvement",
    )
    fit.add_argument("--n-iter-no-change", type=int, default=10)
    fit.add_argument(
        "--validation-tol",
        type=float,
        default=0.01,
        help="noise margin of the validation AP: the latest step within it of the best is "
        "kept (default: %(default)s)",
    )
    fit.add_argument(
        "--report",
        metavar="DIR",
        help="write a training report (loss and validation curves, validation examples, "
        "report.json) to this folder",
    )
    fit.set_defaults(func=_cmd_fit)

    calibrate = sub.add_parser(
        "calibrate",
        parents=[common],
        help="learn a model's healthy references again from this site's healthy scans",
        description="Learn again, from healthy scans of your site (kept out of any "
        "evaluation), what 'disyre fit' learns after training: the healthy maps the "
        "model's maps are compared with and its threshold. The network is kept; the "
        "calibrated model is written to -o. " + _INPUT_HELP,
    )
    calibrate.add_argument("model", help="model file written by 'disyre fit'")
    calibrate.add_argument("healthy", nargs="+", help="healthy scans: files, folders or globs")
    calibrate.add_argument("-o", "--output", required=True, help="calibrated model file to write")
    calibrate.add_argument(
        "--crop", action="store_true", help="centre-crop/pad scans to the model's shape"
    )
    calibrate.add_argument("--device", default="auto")
    calibrate.set_defaults(func=_cmd_calibrate)

    detect = sub.add_parser(
        "detect",
        parents=[common],
        help="write anomaly maps for scans with a trained model",
        description="Map scans with a model written by 'disyre fit'. Each map is written "
        "as NIfTI on its scan's grid (same shape, affine and header), with scores.json. "
        "Scans are streamed: the next ones are read while the current ones are mapped and "
        "the last ones written; with several devices, each maps its share. Maps already "
        "present are skipped unless --overwrite, so an interrupted run resumes; a scan "
        "that fails is reported and the others go on. " + _INPUT_HELP,
    )
    detect.add_argument("model", help="model file written by 'disyre fit'")
    detect.add_argument("scans", nargs="+", help="scans: files, folders or globs")
    detect.add_argument("-o", "--output", required=True, help="output folder")
    detect.add_argument("--png", action="store_true", help="also write overlay PNGs")
    detect.add_argument(
        "--crop",
        action="store_true",
        help="centre-crop/pad scans whose shape differs from the model's",
    )
    detect.add_argument("--overwrite", action="store_true")
    detect.add_argument(
        "--device",
        action="append",
        help="device to map on (default: auto); repeat it for several GPUs, one model copy "
        "each: --device cuda:0 --device cuda:1",
    )
    detect.add_argument("--devices", help="comma-separated devices, or 'all' for every visible GPU")
    detect.add_argument(
        "--prefetch", type=int, default=2, help="scans queued per device (default: 2)"
    )
    detect.add_argument("--readers", type=int, default=1, help="reader threads (default: 1)")
    detect.add_argument("--writers", type=int, default=1, help="writer threads (default: 1)")
    detect.set_defaults(func=_cmd_detect)

    evaluate = sub.add_parser(
        "evaluate",
        parents=[common],
        help="exact pixel metrics of maps against lesion masks",
        description="Pixel AP, best Dice, AUROC (pooled and per volume) of NIfTI maps "
        "against binary lesion masks, over the maps' foreground (non-zero voxels); with "
        "--healthy-maps, Dice at a threshold fixed on healthy scans and the scan-level "
        "AUROC (each scan scored by the mean of its top 1% map values). The per-volume "
        "means and the scan-level AUROC get 95% bootstrap intervals (whole scans "
        "resampled, lesioned and healthy apart).",
    )
    evaluate.add_argument("maps", nargs="+", help="anomaly maps: files, folders or globs")
    evaluate.add_argument("--masks", nargs="+", required=True, help="lesion masks, same order")
    evaluate.add_argument("--healthy-maps", nargs="+", help="maps of healthy scans")
    evaluate.add_argument("--fpr", type=float, default=0.01)
    evaluate.add_argument("--foreground", choices=["nonzero", "all"], default="nonzero")
    evaluate.add_argument("--json", help="also write the results to this file")
    evaluate.add_argument(
        "--resamples",
        type=int,
        default=1000,
        help="bootstrap resamples of the scans for the 95%% intervals of the per-volume "
        "means and of the scan-level AUROC (default: 1000, seeded; 0: no intervals)",
    )
    evaluate.set_defaults(func=_cmd_evaluate)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``disyre`` command.

    Parameters
    ----------
    argv : list of str, optional
        Arguments; ``sys.argv[1:]`` by default.

    Returns
    -------
    int
        Exit status: 0 on success, 2 for a user error (bad input, unreadable or
        damaged file, unwritable output; the message names it), 1 for an internal
        error, 130 when interrupted. ``--debug`` shows the traceback instead.

    Examples
    --------
    >>> from disyre_sk.cli import build_parser
    >>> build_parser().parse_args(["demo", "--steps", "10"]).steps
    10
    """
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"disyre {args.command}: interrupted.", file=sys.stderr)
        return 130
    except _USER_ERRORS as exc:
        if args.debug:
            raise
        print(f"disyre {args.command}: error: {_message(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:
        if args.debug:
            raise
        print(
            f"disyre {args.command}: internal error ({type(exc).__name__}: {exc}). Rerun "
            "with --debug to see the traceback, and please report it.",
            file=sys.stderr,
        )
        return 1


# What bad input, bad files, full disks and too-small devices raise: a message, exit 2.
_USER_ERRORS = (ValueError, OSError, EOFError, FloatingPointError, MemoryError)


def _message(exc: BaseException) -> str:
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return f"out of device memory ({exc}); lower the batch size or patch size."
    if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in str(exc):
        return f"{exc} ({exc.filename})"
    return str(exc)


if __name__ == "__main__":
    sys.exit(main())
