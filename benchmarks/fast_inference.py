"""Fast inference without losing accuracy: every inference setting on trained models.

``speed.py`` times inference variants with untrained weights, which says nothing about
accuracy. This script trains two detectors on the offline cohort
(:func:`disyre_sk.datasets.make_brain_cohort`) with the same training compute: the
*patch model* on patches of the reference size, and the *slice model* on patches that
hold the brain's whole in-plane box (the batch scaled to the same pixels per step). It
then maps the same lesioned test volumes with the reference way (the published method: the patch
model, 4 severities, windows of the patch size at stride patch/4, fp32) and with each
faster setting (whole slices, fewer severities, bf16, ``map_smoothing``, the slice
model), all through the public ``DISYREDetector.decision_map``, and reports for each:
seconds per volume, the speed-up over the reference way measured in the same run, pixel
AP, best Dice, and how far the map moved.

With ``--device cuda`` the cohort is resampled to a BraTS-like grid (155 axial slices,
about 0.95 mm in-plane: the brain's box is about 200 x 160 px) and the reference
network is trained (widths (32, 64, 96, 128, 256, 256), patches of 128, batch 96). With
``--device cpu`` a small network on the demo's 3 mm cohort, batch 64 for 2000 steps.
On two cores the slice model alone trains for about an hour: the recorded CPU run
trains the patch model only (17 to 23 minutes in all).

    python benchmarks/fast_inference.py --device cuda
    python benchmarks/fast_inference.py --device cpu --threads 2 --n-steps 1500 --models patch

Results go to ``benchmarks/results/fast_inference_<device>.md``, rewritten after each
row, so a run stopped by an outer time limit keeps every finished row.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    REPO,
    Budget,
    Counting,
    Report,
    command_line,
    failure,
    fmt_gib,
    fmt_ratio,
    fmt_s,
    free,
    git_commit,
    hardware,
    now,
    peak_memory,
    sync,
)

from disyre_sk import DISYREDetector
from disyre_sk.corruption import DAGCorruption
from disyre_sk.datasets import make_brain_cohort
from disyre_sk.metrics import pixel_metrics

REFERENCE_SEVERITIES = (0.05, 0.25, 0.5, 0.75)


@dataclass(frozen=True)
class Setting:
    widths: tuple[int, ...]
    patch: int
    batch: int
    n_steps: int
    learning_rate: float
    n_train: int
    n_test: int
    zoom: bool  # resample the 2 mm cohort to the BraTS-like grid
    voxel_size: float = 2.0


def settings(args) -> Setting:
    if args.device == "cuda":
        s = Setting((32, 64, 96, 128, 256, 256), 128, 96, 1500, 3e-4, 6, 8, True)
    else:
        # The demo's 3 mm cohort, 32-px patches, a small network, trained long enough
        # (batch 64, 2000 steps) to rank settings: the earlier setting (4 mm, batch 16,
        # 300 steps) gave pixel APs of 0.02-0.06 (fast_inference_cpu.md at 303b258).
        s = Setting((16, 32, 64), 32, 64, 2000, 1e-3, 16, 8, False, 3.0)
    if args.n_steps is not None:
        s = Setting(**{**s.__dict__, "n_steps": args.n_steps})
    return s


@dataclass(frozen=True)
class Variant:
    name: str
    precision: str = "bf16"
    params: dict = field(default_factory=dict)
    compile: bool = False
    cuda_only: bool = False
    need_s: float = 30.0  # run only with this much of the budget left
    model: str = "patch"  # which trained detector: 'patch' or 'slice' (see main)
    union_box: bool = False  # whole slice with one box for every slice (union_box_maps)


def variants(patch: int) -> list[Variant]:
    """The settings, most telling first: a time budget skips from the end."""
    ref = {"window_size": None, "stride": patch // 4, "severities": REFERENCE_SEVERITIES}
    one_win = {**ref, "severities": (0.5,)}
    whole = {"window_size": "slice", "severities": REFERENCE_SEVERITIES}
    smooth = {"map_smoothing": 1.0}
    return [
        Variant("reference: windows P, stride P/4, 4 severities, fp32", "fp32", ref),
        Variant("windows P/4, 1 severity (0.5), fp32", "fp32", one_win),
        Variant("windows P/4, 1 severity, map_smoothing 1", "fp32", {**one_win, **smooth}),
        Variant("windows P/4, 1 severity, bf16", "bf16", one_win, cuda_only=True),
        # The detector trained on whole slices (patch = the brain's box, same pixels per
        # step, anomalies of the same size in pixels): whole-slice inference is then
        # what it was trained for.
        Variant("slice-trained: whole slice, 4 severities, fp32", "fp32", whole, model="slice"),
        Variant("whole slice, 4 severities, fp32", "fp32", whole),
        Variant(
            "whole slice, one box for all slices (the earlier way), 4 severities, fp32",
            "fp32",
            whole,
            union_box=True,
        ),
        # The candidate for the GPU target (<= 0.15 s per volume at the reference AP).
        Variant(
            "whole slice, 1 severity (0.25), bf16, map_smoothing 1",
            "bf16",
            {**whole, **smooth, "severities": (0.25,)},
        ),
        Variant("reference, map_smoothing 1", "fp32", {**ref, **smooth}),
        Variant(
            "windows P/4, 2 severities (0.25, 0.5), fp32",
            "fp32",
            {**ref, "severities": (0.25, 0.5)},
        ),
        Variant(
            "stride P/2, 1 severity, map_smoothing 1",
            "fp32",
            {**one_win, **smooth, "stride": patch // 2},
        ),
        Variant(
            "slice-trained: whole slice, map_smoothing 1",
            "fp32",
            {**whole, **smooth},
            model="slice",
        ),
        Variant(
            "slice-trained: whole slice, 1 severity (0.25), bf16, map_smoothing 1",
            "bf16",
            {**whole, **smooth, "severities": (0.25,)},
            model="slice",
        ),
        Variant("bf16 (precision='bf16')", "bf16", ref, cuda_only=True),
        Variant("fp32, stride P/2", "fp32", {**ref, "stride": patch // 2}),
        Variant(
            "windows P/4, 1 severity, bf16, torch.compile",
            "bf16",
            one_win,
            compile=True,
            cuda_only=True,
            need_s=100.0,
        ),
    ]


_OUTSIDE = -1.0  # marks what lies outside the union box, as the detector's background


def union_box_maps(det, volumes: np.ndarray) -> np.ndarray:
    """Whole-slice maps with one box for every slice, the union of all slices' brains.

    What the package did before each slice got its own box: a slice's input then holds
    the background that other slices' brains need, and its map depends on them. Built
    with public parameters alone: outside the union box (and in slices without brain)
    voxels are set to a value that ``background`` then names, so inside the box every
    voxel, brain or not, is foreground and each slice's own box is the union box; the
    map is then masked to the brain, as the package masks its maps.
    """
    brain = volumes != 0
    outside = np.ones(volumes.shape, dtype=bool)
    for i, vol in enumerate(brain):
        ys, xs = np.nonzero(vol.any(axis=0))
        has_brain = vol.any(axis=(1, 2))
        outside[i][
            np.ix_(has_brain, np.arange(ys[0], ys[-1] + 1), np.arange(xs[0], xs[-1] + 1))
        ] = False
    marked = np.where(outside, _OUTSIDE, volumes).astype(np.float32)
    background = det.background
    det.set_params(background=_OUTSIDE)
    try:
        return det.decision_map(marked) * brain
    finally:
        det.set_params(background=background)


def slice_patch(x_train: np.ndarray, multiple: int) -> int:
    """Smallest patch side, a multiple of ``multiple``, that holds the in-plane brain box."""
    ys, xs = np.nonzero((x_train > 0).any(axis=(0, 1)))
    side = max(np.ptp(ys) + 1, np.ptp(xs) + 1)
    return int(multiple * np.ceil(side / multiple))


def load_data(s: Setting, seed: int):
    t0 = time.perf_counter()
    cohort = make_brain_cohort(
        s.n_train,
        s.n_test,
        voxel_size=s.voxel_size,
        healthy_test_fraction=0.25,
        random_state=seed,
    )
    x_train, x_test, masks = cohort.X_train, cohort.X_test, cohort.masks_test
    if s.zoom:
        # BraTS-like grid: 155 slices, in-plane 2 mm -> about 0.95 mm.
        factors = (155 / x_train.shape[1], 2.1, 2.1)

        def zoom(vols, order):
            return np.stack([ndi.zoom(v, factors, order=order) for v in vols])

        x_train = zoom(x_train, 1).clip(0, 1)
        x_test = zoom(x_test, 1).clip(0, 1)
        masks = zoom(masks.astype(np.uint8), 0).astype(bool)
    fg = x_test > 0
    masks &= fg
    ys, xs = np.nonzero(fg.any(axis=(0, 1)))
    what = (
        f"{s.n_train} healthy training subjects, {s.n_test} test subjects "
        f"({', '.join(cohort.families_test)}), grid {'×'.join(map(str, x_test.shape[1:]))} "
        f"(Z×Y×X), in-plane foreground box {np.ptp(ys) + 1}×{np.ptp(xs) + 1} px"
        + (
            ", the 2 mm cohort resampled to a BraTS-like grid"
            if s.zoom
            else f", {s.voxel_size:g} mm cohort"
        )
    )
    return x_train, x_test, masks, fg, what, time.perf_counter() - t0


def profile_fastest(det, x_test, dev, report, budget) -> None:
    """Where the time of a whole-slice bf16 ``decision_map`` goes: host or network.

    The same call with the network swapped for a dry :class:`_common.Counting` (it
    returns its input) costs everything but the network.
    """
    if dev.type != "cuda" or budget.left() < 15:
        return
    network = det.network_
    try:
        det.set_params(window_size="slice", severities=REFERENCE_SEVERITIES)
        det.set_params(inference_batch_size=64)
        det.set_params(precision="bf16")  # 'auto' maps in fp32
        vol = x_test[:1]
        times = {"network": [], "host": []}
        for kind, net in (("network", network), ("host", Counting(network, dry=True))) * 6:
            det.network_ = net
            t0 = time.perf_counter()
            det.decision_map(vol)
            sync(dev)
            times[kind].append(time.perf_counter() - t0)
        all_s = statistics.median(times["network"][1:])  # the first of each: a warm-up
        host_s = statistics.median(times["host"][1:])
        report.note(
            "infer",
            f"Profile of 'whole slice, bf16' on one volume (median of 5): the whole "
            f"decision_map {fmt_s(all_s)} s; with a pass-through network in place of the "
            f"UNet {fmt_s(host_s)} s, so {100 * host_s / all_s:.0f} % of the time is "
            "host-side work (validation, intensity scaling, foreground, tiling, copies).",
        )
    except Exception as exc:
        report.note("infer", f"profile {failure(exc)}")
    finally:
        det.network_ = network


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--n-steps", type=int, default=None, help="training steps")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--budget-s",
        type=float,
        default=600.0,
        help="skip variants after this, counted from the end of training",
    )
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument(
        "--models",
        nargs="+",
        choices=("patch", "slice"),
        default=("patch", "slice"),
        help="which detectors to train (default: both); variants of the others are left out",
    )
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    clock = Budget(0)
    s = settings(args)
    out = args.out or REPO / "benchmarks" / "results" / f"fast_inference_{dev.type}.md"
    prov = {
        "command": command_line(),
        "git commit": git_commit(),
        "date (UTC)": now(),
        **hardware(dev.type),
    }
    report = Report(out, f"disyre_sk fast inference on a trained model — {dev.type}", prov)

    x_train, x_test, masks, fg, what, t_data = load_data(s, args.seed)
    multiple = 2 ** (len(s.widths) - 1)
    slice_side = slice_patch(x_train, multiple)
    # Same pixels per step as the patch model: the same training compute.
    slice_batch = max(1, round(s.batch * s.patch**2 / slice_side**2))
    models = {"patch": (s.patch, s.batch), "slice": (slice_side, slice_batch)}
    models = {k: v for k, v in models.items() if k in args.models}
    about = {
        "patch": f"the *patch model* on patches of the reference size P = {s.patch}",
        "slice": f"the *slice model* on patches of {slice_side} px, the brain's in-plane "
        "box, with the batch scaled to the patch model's pixels per step and the DAG "
        "shapes' box scaled to the same anomaly size in pixels",
    }
    trained = [about[k] for k in models]
    report.section(
        "train",
        "1. Training (DISYREDetector.fit, end to end)",
        f"Data: {what} (made in {t_data:.0f} s). UNet widths {s.widths}, {s.n_steps} "
        f"steps, learning rate {s.learning_rate:g}, DAG corruption, the package's defaults "
        f"otherwise. Trained: {' and '.join(trained)}. fit scores one training scan for "
        "`offset_` (`calibration_size=1`: the threshold is not used here), so its time is "
        "the training's, end to end, plus that one mapping.",
        [
            "model",
            "patch",
            "batch",
            "fit s",
            "steps/s",
            "patches/s",
            "Mpixels/s",
            "precision",
            "final loss (last 50)",
            "peak GPU GiB",
        ],
    )
    detectors = {}
    for key, (patch, batch) in models.items():
        # Nothing here calls predict: fit scores one training scan for offset_, not all.
        det = DISYREDetector(
            calibration_size=1,
            patch_size=patch,
            # Anomalies of the same size in pixels for both models.
            corruption=DAGCorruption(box_fraction=0.5 * s.patch / patch),
            widths=s.widths,
            n_steps=s.n_steps,
            batch_size=batch,
            learning_rate=s.learning_rate,
            severities=REFERENCE_SEVERITIES,
            device=args.device,
            random_state=args.seed,
        )
        with peak_memory(dev) as mem:
            t0 = time.perf_counter()
            det.fit(x_train)
            sync(dev)
            t_train = time.perf_counter() - t0
        loss = det.history_["loss"]
        report.row(
            "train",
            [
                key,
                patch,
                batch,
                fmt_s(t_train),
                f"{s.n_steps / t_train:.3g}",
                f"{s.n_steps * batch / t_train:,.0f}",
                f"{s.n_steps * batch * patch**2 / t_train / 1e6:.3g}",
                det.precision_,
                f"{np.mean(loss[-50:]):.4g}",
                fmt_gib(mem["gpu"]),
            ],
        )
        report.write()
        detectors[key] = (det, det.network_)
        free(dev)

    headers = [
        "variant",
        "s/volume",
        "× vs reference",
        "pixel AP",
        "Δ AP vs reference",
        "best Dice",
        "Δ map vs reference",
        "peak GPU GiB",
    ]
    report.section(
        "infer",
        "2. Inference settings on the trained model (DISYREDetector.decision_map)",
        f"{len(x_test)} test volumes of {'×'.join(map(str, x_test.shape[1:]))}. s/volume: "
        "median over the test volumes of one `decision_map` call each (numpy volume in, "
        "numpy map out, intensity scaling and transfers included), after one warm-up "
        "volume. Pixel AP and best Dice pooled over the foreground of all test volumes "
        "(exact, disyre_sk.metrics). Δ map = mean |map − reference map| / mean reference "
        "map over the foreground. 'P' = the patch model's training patch; rows that start "
        "with 'slice-trained' use the slice model, the others the patch model; fp32 "
        "convolutions use TF32 where torch allows it (see the TF32 line above); on a CPU "
        "every variant runs in fp32.",
        headers,
    )
    # The budget is for the inference variants: training is not cut short.
    budget = Budget(args.budget_s)
    ref_s = ref_ap = ref_map = None
    for v in variants(s.patch):
        if (v.cuda_only and dev.type != "cuda") or v.model not in detectors:
            continue
        if budget.left() < v.need_s:
            report.row("infer", [v.name, "skipped (time budget)", *[None] * 6])
            continue
        det, network = detectors[v.model]
        try:
            det.set_params(**{"inference_batch_size": 64, "map_smoothing": 0.0, **v.params})
            # The mapping precision is a parameter ('auto' maps in fp32); bf16 autocast is
            # a GPU lever, so on a CPU every variant runs in fp32.
            det.set_params(precision=v.precision if dev.type == "cuda" else "fp32")
            det.network_ = torch.compile(network) if v.compile else network
            mapper = functools.partial(union_box_maps, det) if v.union_box else det.decision_map
            with peak_memory(dev) as mem:
                mapper(x_test[:1])  # warm-up (and compilation)
                sync(dev)
                maps, times = [], []
                for i in range(len(x_test)):
                    t0 = time.perf_counter()
                    maps.append(mapper(x_test[i : i + 1])[0])
                    sync(dev)
                    times.append(time.perf_counter() - t0)
            maps = np.stack(maps)
            sec = statistics.median(times)
            # One exact sort gives both (AP and best Dice).
            metrics = pixel_metrics(maps, masks, fg)
            ap_, dice = metrics["average_precision"], metrics["best_dice"]
            if ref_s is None:
                ref_s, ref_ap, ref_map = sec, ap_, maps
                delta_map = None
            else:
                delta_map = float(np.abs(maps[fg] - ref_map[fg]).mean() / ref_map[fg].mean())
            report.row(
                "infer",
                [
                    v.name,
                    fmt_s(sec),
                    fmt_ratio(ref_s / sec),
                    f"{ap_:.4f}",
                    None if maps is ref_map else f"{ap_ - ref_ap:+.4f}",
                    f"{dice:.4f}",
                    None if delta_map is None else f"{delta_map:.3g}",
                    fmt_gib(mem["gpu"]),
                ],
            )
        except Exception as exc:
            report.row("infer", [v.name, failure(exc), *[None] * 6])
        finally:
            det.network_ = network
            free(dev)
    profile_fastest(next(iter(detectors.values()))[0], x_test, dev, report, budget)
    report.footer.append(f"Run finished in {clock.elapsed():.0f} s.")
    report.write()
    report.print_tables()
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
