"""Synthetic validation: does the step it keeps hold up on real lesions, and what does it cost?

    python benchmarks/validation.py [--threads 1] [--seeds 0 1] [--steps 500] [--all-steps]

Part 1, model selection. For each seed, the offline cohort
(``make_brain_cohort(12, 24, voxel_size=4, random_state=seed)``: 12 healthy training
subjects; 24 test subjects, 16 of them with a tumour, stroke, foci or cavity lesion) is
used to train a small ``DISYREDetector`` with synthetic validation every
``--every`` steps on ``validation_fraction=0.2`` of the training subjects (2 subjects,
never trained on). The weights are snapshotted at every validation; each snapshot then
maps the 16 lesioned test volumes. The step kept by synthetic validation (highest mean
synthetic AP) is compared with the last step on the real lesion families: pooled pixel
AP per family, and the paired per-volume AP difference (kept - last) with a bootstrap
95 % interval over the test volumes. "Worse by more than noise" means the whole interval
lies below 0. The table also gives every validation step's synthetic AP; with
``--all-steps`` the real AP of every step too, and their rank correlation across steps.

Part 2, cost at the default settings (reference network, batch 96 of 128×128, 4
severities, stride 32, validation every 1000 steps). A default training step and a
default validation pass take minutes on one CPU thread, so they are assembled from
measured pieces, all through the public API: the training step is timed inside a real
``fit`` by a training callback at batch 4 and 8 and extrapolated linearly to 96 (the
run shows the 8/4 ratio); a validation pass is a real ``fit``'s validation with a
network that returns its input (``network=``), which yields its images, the windows it
feeds the network and the seconds of all but the network, plus those windows times the
measured seconds per window of the default UNet alone. Ratio = one validation pass /
(validation_every × one training step). Two slice geometries: the 2 mm cohort (96×77
slices) and a BraTS-like 240×240 slice (the cohort brain zoomed as in
``benchmarks/speed.py``).

``--parts 2`` runs part 2 alone (into ``benchmarks/results/validation_cost.md``).
Writes ``benchmarks/results/validation.md`` (both parts).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi
from scipy.stats import spearmanr

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import (
    Counting,
    StepClock,
    command_line,
    git_commit,
    hardware,
    md_table,
    now,
    write_results,
)

from disyre_sk import DISYREDetector
from disyre_sk.callbacks import TrainingCallback
from disyre_sk.datasets import make_brain_cohort
from disyre_sk.metrics import per_volume_scores, pixel_metrics
from disyre_sk.nn import UNet

FAMILIES = ("tumour", "stroke", "foci", "cavity")
SMALL = dict(
    patch_size=32,
    widths=(8, 16, 32),
    attention_levels=(),
    stride=16,
    batch_size=16,
    learning_rate=3e-4,
    warmup_steps=50,
    validation_fraction=0.2,
    device="cpu",
)
BRATS_ZOOM = (2.1, 2.1)  # as benchmarks/speed.py: a 1 mm-like in-plane grid
BRATS_SIDE = 240


# --------------------------------------------------------------------------- part 1


class Snapshots(TrainingCallback):
    """Keeps a CPU copy of the weights at every synthetic validation."""

    def __init__(self):
        self.weights: dict[int, dict] = {}

    def on_validation(self, detector, info):
        self.weights[info.step] = {
            k: v.detach().to("cpu", copy=True) for k, v in info.network.state_dict().items()
        }


def train_with_snapshots(cohort, seed: int, n_steps: int, every: int, extra: dict):
    """Fit with validation; return the detector and a weight snapshot per validation."""
    snapshots = Snapshots()
    det = DISYREDetector(
        **SMALL,
        **extra,
        n_steps=n_steps,
        validation_every=every,
        random_state=seed,
        callbacks=[snapshots],
    )
    start = time.perf_counter()
    det.fit(cohort.X_train)
    return det, snapshots.weights, time.perf_counter() - start


def real_scores(det, weights, cohort, lesioned) -> dict:
    """Pooled AP per family and over all lesions, and per-volume AP, of one snapshot."""
    det.network_.load_state_dict(weights)
    maps = det.decision_map(cohort.X_test[lesioned])
    masks = cohort.masks_test[lesioned]
    brain = cohort.brain_masks_test[lesioned]
    families = np.asarray(cohort.families_test)[lesioned]
    out = {"all": pixel_metrics(maps, masks, brain)["average_precision"]}
    for family in FAMILIES:
        sel = families == family
        out[family] = pixel_metrics(maps[sel], masks[sel], brain[sel])["average_precision"]
    out["per_volume"] = per_volume_scores(maps, masks, brain)
    return out


def bootstrap_ci(diff: np.ndarray, rng, n: int = 4000) -> tuple[float, float]:
    """95 % percentile interval of the mean of ``diff`` over resampled volumes."""
    means = diff[rng.integers(0, diff.size, size=(n, diff.size))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def part1(seeds, n_steps: int, every: int, all_steps: bool, extra: dict):
    rows, curve_rows, notes = [], [], []
    verdicts, trivial, raw = [], [], []
    for seed in seeds:
        cohort = make_brain_cohort(12, 24, voxel_size=4.0, random_state=seed)
        lesioned = np.flatnonzero(np.asarray(cohort.families_test) != "healthy")
        det, snapshots, fit_s = train_with_snapshots(cohort, seed, n_steps, every, extra)
        h = det.history_
        kept, last = h["best_step"], h["validation"][-1]["step"]
        if kept == last:
            trivial.append(seed)
        t0 = time.perf_counter()
        steps = sorted(snapshots) if all_steps else sorted({kept, last})
        real = {step: real_scores(det, snapshots[step], cohort, lesioned) for step in steps}
        eval_s = time.perf_counter() - t0
        val_s = sum(r["seconds"] for r in h["validation"])
        notes.append(
            f"seed {seed}: fit {fit_s:.0f} s of which validation {val_s:.0f} s "
            f"({len(h['validation'])} passes of {h['validation_note'].split('; ')[-1]}); "
            f"mapping the lesioned test volumes at {len(steps)} step(s) {eval_s:.0f} s; "
            f"validation note: {h['validation_note']}"
        )
        for r in h["validation"]:
            s = r["step"]
            mark = " (kept)" if s == kept else ""
            cells = [f"{real[s][f]:.3f}" if s in real else None for f in ("all", *FAMILIES)]
            curve_rows.append([seed, f"{s}{mark}", f"{r['mean_average_precision']:.3f}", *cells])
        families = np.asarray(cohort.families_test)[lesioned]
        raw.append(
            {
                "seed": seed,
                "fit_seconds": fit_s,
                "kept_step": kept,
                "last_step": last,
                "validation": h["validation"],
                "validation_note": h["validation_note"],
                "test_families": families.tolist(),
                "real": {
                    str(step): {k: np.asarray(v).tolist() for k, v in r.items()}
                    for step, r in real.items()
                },
            }
        )
        rng = np.random.default_rng(seed)
        diff_all = real[kept]["per_volume"] - real[last]["per_volume"]
        for group in ("all", *FAMILIES):
            sel = np.ones(diff_all.size, bool) if group == "all" else families == group
            diff = diff_all[sel]
            low, high = bootstrap_ci(diff, rng)
            worse = high < 0
            verdicts.append(worse)
            rows.append(
                [
                    seed,
                    group,
                    int(sel.sum()),
                    kept,
                    last,
                    f"{real[kept][group]:.3f}",
                    f"{real[last][group]:.3f}",
                    f"{diff.mean():+.3f}",
                    f"[{low:+.3f}, {high:+.3f}]",
                    "yes" if worse else "no",
                ]
            )
        if len(steps) > 2:
            synthetic = {r["step"]: r["mean_average_precision"] for r in h["validation"]}
            rho = spearmanr([synthetic[s] for s in steps], [real[s]["all"] for s in steps])
            notes.append(
                f"seed {seed}: Spearman correlation across the {len(steps)} validation steps "
                f"between the mean synthetic AP and the pooled real AP: {rho.statistic:.2f}"
            )
    return rows, curve_rows, notes, verdicts, trivial, raw


# --------------------------------------------------------------------------- part 2


def brats_like(volume: np.ndarray) -> np.ndarray:
    """Axial slices of a cohort volume zoomed in plane to a 240×240 grid."""
    vol = ndi.zoom(volume, (1.0, *BRATS_ZOOM), order=1).clip(0, 1)
    pads = [(0, 0)] + [
        ((BRATS_SIDE - s) // 2, BRATS_SIDE - s - (BRATS_SIDE - s) // 2) for s in vol.shape[1:]
    ]
    vol = np.pad(vol, pads)
    vol[vol < 1e-3] = 0
    return vol.astype(np.float32)


# Fits that only train or count: their own closing scoring of the training images
# (offset_) maps one input per slice at one severity, which is cheap.
_CHEAP_SCORING = dict(window_size="slice", severities=(0.5,))


def training_step_seconds(slices: np.ndarray, batch: int) -> float:
    """Median seconds of a default training step at ``batch`` (3 steps, the first a
    warm-up), timed inside a real ``fit`` by a callback."""
    clock = StepClock()
    DISYREDetector(
        n_steps=3,
        batch_size=batch,
        validation_fraction=0.0,
        device="cpu",
        random_state=0,
        callbacks=[clock],
        **_CHEAP_SCORING,
    ).fit(slices)
    return float(np.median(clock.times[1:]))


class PassWindows(TrainingCallback):
    """Reads how many windows the first synthetic validation fed the network."""

    def __init__(self, counting: list):
        self.counting = counting  # filled by the network factory when fit builds it
        self.windows: int | None = None

    def on_train_begin(self, detector, info):
        self.counting[-1].reset()

    def on_validation(self, detector, info):
        if self.windows is None:
            self.windows = self.counting[-1].windows


def dry_validation(volume: np.ndarray) -> dict:
    """One synthetic validation at the default settings, its network returning its input:
    the validation images, the windows the pass feeds the network and the seconds of
    everything but the network (scaling, tiling, fusion, metrics). Trains one real step
    on half of the volume's slices with brain and validates on the other half."""
    slices = volume[(volume > 0).mean(axis=(1, 2)) > 0.02]
    built: list[Counting] = []

    def network(**config):
        built.append(Counting(UNet(**config), dry=True))
        return built[-1]

    watch = PassWindows(built)
    det = DISYREDetector(
        network=network,
        n_steps=1,
        batch_size=1,
        validation_every=1,
        device="cpu",
        random_state=0,
        callbacks=[watch],
    ).fit(slices[::2], X_val=slices[1::2])
    note = det.history_["validation_note"]
    found = re.search(r"(\d+) images \(", note)
    if found is None:
        raise RuntimeError(f"validation did not run: {note}")
    return {
        "images": int(found.group(1)),
        "windows": watch.windows,
        "host_s": det.history_["validation"][0]["seconds"],
    }


def part2():
    d = DISYREDetector()
    cohort = make_brain_cohort(2, 0, random_state=0)  # 2 mm, the default cohort grid
    geometries = {
        "2 mm cohort, 96×77 slices": cohort.X_train[1],
        "BraTS-like, 240×240 slices": brats_like(cohort.X_train[1]),
    }
    train_slices = cohort.X_train[0]
    train_slices = train_slices[(train_slices > 0).mean(axis=(1, 2)) > 0.05][::4]
    step_s = {b: training_step_seconds(train_slices, b) for b in (4, 8)}
    step_96 = step_s[8] / 8 * d.batch_size
    # Seconds per window of the network alone: the default UNet on one batch of
    # inference_batch_size windows, no gradient, median of 3 after a warm-up.
    net = UNet(widths=tuple(d.widths), attention_levels=(len(d.widths) - 2,), residual=True)
    x = torch.rand(d.inference_batch_size, 1, d.patch_size, d.patch_size)
    times = []
    with torch.inference_mode():
        for _ in range(4):
            t0 = time.perf_counter()
            net.eval()(x, 0.5)
            times.append(time.perf_counter() - t0)
    per_window = float(np.median(times[1:])) / d.inference_batch_size
    info = {"step_4": step_s[4], "step_8": step_s[8], "step_96": step_96, "per_window": per_window}
    rows = []
    for name, volume in geometries.items():
        dry = dry_validation(volume)
        pass_s = dry["host_s"] + dry["windows"] * per_window
        training_s = d.validation_every * step_96
        rows.append(
            [
                name,
                dry["images"],
                dry["windows"],
                f"{pass_s:.0f}",
                f"{dry['host_s']:.2f}",
                f"{training_s:.0f}",
                f"{100 * pass_s / training_s:.2f} %",
            ]
        )
    return rows, info


# --------------------------------------------------------------------------- main


def part1_body(args, extra, rows, curve_rows, notes, verdicts, trivial) -> list[str]:
    settings = ", ".join(f"{k}={v!r}" for k, v in {**SMALL, **extra}.items())
    return [
        "## 1. The kept step against the last step, on real lesions",
        "",
        f"`DISYREDetector({settings}, n_steps={args.steps}, validation_every={args.every}, "
        f"random_state=seed)` on `make_brain_cohort(12, 24, voxel_size=4.0, "
        "random_state=seed)` (12 healthy training subjects, of which 2 held out for "
        "validation; 16 lesioned test volumes, 4 per family). Validation images: as each "
        "fit's note below says (the default number per family). Real AP: pooled over the "
        "brain-mask voxels of the lesioned test volumes of each family. Δ: mean over volumes "
        "of the per-volume AP difference kept − last, with a 95 % bootstrap interval over "
        "volumes (4,000 resamples). *Worse by more than noise* = the whole interval below 0.",
        "",
        md_table(
            [
                "seed",
                "lesions",
                "volumes",
                "kept step",
                "last step",
                "real AP, kept",
                "real AP, last",
                "Δ per-volume AP",
                "95 % interval",
                "worse by more than noise",
            ],
            rows,
        ),
        "",
        f"**Result**: the kept step is worse than the last by more than noise in "
        f"{sum(verdicts)} of {len(verdicts)} comparisons. The kept step was the last step "
        f"(Δ = 0 by construction) for seed(s) {trivial or 'none'}; for the others, the "
        "comparison above is the test.",
        "",
        "Every validation step (synthetic = mean synthetic AP over the three held-out "
        "families; the other columns are pooled real AP, computed for the kept and the "
        "last step, or every step with `--all-steps`):",
        "",
        md_table(["seed", "step", "synthetic", "all lesions", *FAMILIES], curve_rows),
        "",
        *[f"- {n}" for n in notes],
        "",
    ]


def part2_body(cost_rows, cost) -> list[str]:
    return [
        "## 2. Cost of validation at the default settings",
        "",
        "Reference network (`DISYREDetector()` defaults: widths (32, 64, 96, 128, 256, 256), "
        "batch 96 of 128×128, fp32 on the CPU), validation every 1000 steps, 4 severities, "
        "128-px windows at stride 32. One training step, timed inside a real `fit` by a "
        f"training callback (sampling, augmentation, DAG corruption, forward, backward, "
        f"AdamW): batch 4 {cost['step_4']:.1f} s, batch 8 {cost['step_8']:.1f} s (ratio "
        f"{cost['step_8'] / cost['step_4']:.2f}); batch 96 extrapolated linearly from batch "
        f"8: {cost['step_96']:.0f} s. A pass is measured in two parts: a real `fit` "
        "validates once with a network that returns its input (passed as `network=`), "
        "which gives the validation images, the windows the pass feeds the network "
        "(windows without brain are skipped, as always) and the seconds of everything else "
        "(scaling, tiling, fusion, metrics); the network's own cost is those windows × "
        f"{cost['per_window']:.3f} s per window, the default UNet timed alone on batches of "
        "64 windows.",
        "",
        md_table(
            [
                "slices",
                "validation images",
                "windows per pass",
                "s per pass",
                "of which not the network (s)",
                "s per 1000 training steps",
                "validation / training",
            ],
            cost_rows,
        ),
        "",
    ]


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument(
        "--all-steps",
        action="store_true",
        help="map the real lesions at every validation step, not only the kept and last",
    )
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument(
        "--validation-tol",
        type=float,
        default=None,
        help="the detector's validation_tol (default: its own default); 0 keeps the "
        "validation maximum with no noise margin",
    )
    ap.add_argument(
        "--parts", type=int, nargs="+", choices=[1, 2], default=[1, 2], help="parts to run"
    )
    ap.add_argument(
        "--out",
        default=None,
        help="default: results/validation.md, or results/validation_cost.md for part 2 alone",
    )
    args = ap.parse_args()
    if args.out is None:
        name = "validation_cost.md" if args.parts == [2] else "validation.md"
        args.out = str(HERE / "results" / name)
    if args.threads:
        torch.set_num_threads(args.threads)
    info = {"command": command_line(), "commit": git_commit(), "date": now(), **hardware("cpu")}
    start = time.perf_counter()
    extra = {} if args.validation_tol is None else {"validation_tol": args.validation_tol}
    body, raw = [], {}
    times = []
    if 1 in args.parts:
        t0 = time.perf_counter()
        rows, curve_rows, notes, verdicts, trivial, raw["part1"] = part1(
            args.seeds, args.steps, args.every, args.all_steps, extra
        )
        body += part1_body(args, extra, rows, curve_rows, notes, verdicts, trivial)
        times.append(f"part 1 took {time.perf_counter() - t0:.0f} s")
    if 2 in args.parts:
        t0 = time.perf_counter()
        cost_rows, cost = part2()
        raw["part2"] = {"rows": cost_rows, **cost}
        body += part2_body(cost_rows, cost)
        times.append(f"part 2 {time.perf_counter() - t0:.0f} s")
    body.append(f"- {', '.join(times)}; the whole run {time.perf_counter() - start:.0f} s.")
    title = "Synthetic validation: " + " and ".join(
        {1: "model selection", 2: "cost"}[p] for p in sorted(set(args.parts))
    )
    path = write_results(args.out, title, info, "\n".join(body), raw=raw)
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
