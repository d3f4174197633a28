"""Reproduce the published DISYRE figures on your own copy of CamCAN and BraTS 2020 / ATLAS v2.

Trains ``DISYREDetector`` with the authors' reference settings on healthy CamCAN scans
(T2 or T1), maps every BraTS 2020 (or ATLAS v2.0) test scan, and writes our exact metrics
beside the published ones:

- BraTS 2020 T2, the authors' released model (Naval Marimont et al., MICCAI 2024):
  pixel AP 0.808, best Dice 0.747, slice AUROC 0.92, about 3.8 s per volume on a GPU;
- the ISBI 2024 paper (same authors): pixel AP about 0.75 on BraTS T2, Dice about 0.34
  on ATLAS.

The scans must be prepared as the UPD study (Lagogiannis et al., 2023) prepares them:
skull-stripped and registered to one atlas grid (the loaders read the file names its
scripts write; ``--preprocessing official`` reads the names of the official releases).
Intensities are normalised here. Nothing is downloaded, registered or resampled; the
folders and grids are checked from the file headers before anything is trained.

Training saves checkpoints (``DISYREDetector(checkpoint_dir=...)``): stop it with Ctrl-C
and run the same command again to resume. Evaluation streams one volume at a time. The
result is ``benchmarks/results/reproduce_<dataset>_<modality>.md`` (``--out`` to change)
with the command, commit, hardware and date, and a ``.json`` with every number.

Examples::

    python benchmarks/reproduce_papers.py --camcan CamCAN --brats MICCAI_BraTS2020_TrainingData
    python benchmarks/reproduce_papers.py --camcan CamCAN --atlas ATLAS_2 --modality t1
    python benchmarks/reproduce_papers.py --camcan CamCAN --brats BraTS --quick  # smoke run

See ``docs/user_guide/reproducing.rst`` for the data, the layout, time and memory.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    REPO,
    command_line,
    git_commit,
    hardware,
    md_table,
    now,
    resolve_device,
    write_results,
)
from _reproduce_data import check_grid, check_slab, index_cohorts, load_training_slices
from _reproduce_eval import StreamingEvaluation

from disyre_sk import DISYREDetector

FPR = 0.01  # the label-free threshold: 1 % false positives on held-out healthy voxels

# The authors' settings (MICCAI 2024), which are also DISYREDetector's defaults; a test
# keeps the two in step.
REFERENCE = {
    "patch_size": 128,
    "widths": (32, 64, 96, 128, 256, 256),
    "n_res_blocks": 2,
    "corruption": "dag",
    "n_steps": 100_000,
    "batch_size": 96,
    "learning_rate": 1e-4,
    "weight_decay": 1e-6,
    "warmup_steps": 500,
    "grad_clip": 1.0,
    "augment": True,
    "inference": "ensemble",
    "severities": (0.05, 0.25, 0.5, 0.75),
    "stride": 32,
    "score_reduction": "topk",
    "top_k": 0.01,
}
# --quick: a smoke run of minutes on a CPU; its numbers test the plumbing, not the papers.
QUICK = {
    "patch_size": 64,
    "widths": (16, 32, 64),
    "n_res_blocks": 1,
    "n_steps": 200,
    "batch_size": 8,
    "learning_rate": 1e-3,
    "warmup_steps": 20,
    "severities": (0.25, 0.5),
}
QUICK_LIMITS = {"n_train": 8, "n_test": 4, "n_healthy": 2}


@dataclass(frozen=True)
class Published:
    value: float
    approximate: bool = False

    def text(self) -> str:
        return f"≈ {self.value:g}" if self.approximate else f"{self.value:g}"


SOURCES = {
    "miccai": (
        "MICCAI 2024 (released model)",
        "Naval Marimont et al., 'Ensembled Cold-Diffusion Restorations for Unsupervised "
        "Anomaly Detection', MICCAI 2024: the authors' released model on BraTS 2020 T2 "
        "(369 volumes, UPD-study preprocessing)",
    ),
    "isbi": (
        "ISBI 2024",
        "Naval Marimont et al., 'DISYRE: Diffusion-Inspired SYnthetic REstoration for "
        "Unsupervised Anomaly Detection', ISBI 2024 (figures given as approximate)",
    ),
}
PUBLISHED: dict[tuple[str, str], dict[str, dict[str, Published]]] = {
    ("brats", "t2"): {
        "miccai": {
            "pixel_ap_pooled": Published(0.808),
            "best_dice_pooled": Published(0.747),
            "slice_auroc": Published(0.92),
            "seconds_per_volume": Published(3.8, approximate=True),
        },
        "isbi": {"pixel_ap_pooled": Published(0.75, approximate=True)},
    },
    ("atlas", "t1"): {"isbi": {"best_dice_pooled": Published(0.34, approximate=True)}},
}
ROWS = (
    ("pixel_ap_pooled", "pixel AP, pooled over all brain voxels"),
    ("pixel_ap_per_volume", "pixel AP, mean over volumes"),
    ("best_dice_pooled", "best Dice, pooled (one threshold for all volumes)"),
    ("best_dice_per_volume", "best Dice, mean over volumes (each at its own best threshold)"),
    ("dice_at_fpr_pooled", "Dice at 1 % healthy FPR, pooled"),
    ("dice_at_fpr_per_volume", "Dice at 1 % healthy FPR, mean over volumes"),
    ("pixel_auroc_pooled", "pixel AUROC, pooled"),
    ("slice_auroc", "slice AUROC"),
    ("slice_ap", "slice AP"),
    ("volume_auroc", "volume AUROC (test vs held-out healthy volumes)"),
    ("volume_ap", "volume AP (test vs held-out healthy volumes)"),
    ("seconds_per_volume", "inference seconds per test volume (maps only, mean)"),
)


def say(*args) -> None:
    print(*args, flush=True)


# fit scores a few training slices for offset_ (never used here), not all of them: the
# maps are the same, and mapping every training slice can take longer than training.
CALIBRATION_SIZE = 16


# ----------------------------------------------------------------------------- settings


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--camcan", required=True, help="CamCAN folder (healthy training scans)")
    test = p.add_mutually_exclusive_group(required=True)
    test.add_argument("--brats", help="BraTS 2020 training folder (the subject folders)")
    test.add_argument("--atlas", help="ATLAS v2.0 folder (searched recursively)")
    p.add_argument("--modality", choices=("t2", "t1"), default="t2")
    p.add_argument(
        "--preprocessing",
        choices=("upd", "official"),
        default="upd",
        help="file names: 'upd' (written by the UPD study's scripts, the default) or "
        "'official' (the releases' names, for scans you prepared yourself)",
    )
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="results folder")
    p.add_argument(
        "--work-dir",
        help="checkpoints and the trained model (default: <out>/reproduce_<name>_work)",
    )
    p.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda', 'cuda:1', ...")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke run: small network, few scans")
    p.add_argument("--n-steps", type=int, help="training steps (reference: 100000)")
    p.add_argument("--n-train", type=int, help="train on the first N CamCAN scans only")
    p.add_argument("--n-test", type=int, help="evaluate the first N test scans only")
    p.add_argument("--n-healthy", type=int, help="held-out CamCAN scans (default: 5 %%, >= 1)")
    p.add_argument(
        "--slab",
        type=int,
        nargs=2,
        metavar=("START", "STOP"),
        help="use only axial slices START..STOP-1 of the grid (default: all)",
    )
    p.add_argument("--pixel-method", choices=("exact", "histogram"), default="exact")
    p.add_argument("--checkpoint-every", type=int, default=1000)
    p.add_argument("--inference-batch-size", type=int, default=64)
    # Network overrides, for tests and small machines (they leave the reference settings).
    p.add_argument("--widths", type=int, nargs="+")
    p.add_argument("--patch-size", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--stride", type=int)
    p.add_argument("--severities", type=float, nargs="+")
    return p.parse_args(argv)


def detector_settings(args: argparse.Namespace) -> tuple[dict, list[str]]:
    """The detector's settings, and how they differ from the reference ones."""
    settings = dict(REFERENCE)
    if args.quick:
        settings.update(QUICK)
    overrides = {
        "n_steps": args.n_steps,
        "widths": None if args.widths is None else tuple(args.widths),
        "patch_size": args.patch_size,
        "batch_size": args.batch_size,
        "stride": args.stride,
        "severities": None if args.severities is None else tuple(args.severities),
    }
    settings.update({k: v for k, v in overrides.items() if v is not None})
    diffs = [
        f"{k}={settings[k]!r} (reference {v!r})" for k, v in REFERENCE.items() if settings[k] != v
    ]
    return settings, diffs


# ----------------------------------------------------------------------------- report


def fmt(value, key: str = "") -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if key.startswith("seconds"):
        return f"{value:.3g}"
    return f"{value:.3f}"


def results_table(metrics: dict, dataset: str, modality: str) -> str:
    published = PUBLISHED.get((dataset, modality), {})
    columns = [k for k in SOURCES if k in published]
    headers = ["metric", "ours"] + [SOURCES[k][0] for k in columns]
    rows = []
    for key, title in ROWS:
        row = [title, fmt(metrics.get(key), key)]
        for source in columns:
            figure = published[source].get(key)
            row.append(None if figure is None else figure.text())
        rows.append(row)
    return md_table(headers, rows)


def deviations(record: dict) -> list[str]:
    m, d = record["metrics"], record["data"]
    start, stop = d["slab"]
    y0, y1, x0, x1 = d["box"]
    slab = "all slices" if (start, stop) == (0, d["grid"][0]) else f"slices {start}–{stop - 1}"
    notes = [
        "Metrics are exact, over every brain voxel of every evaluated slice. The authors' "
        "evaluator subsamples 10,000 pixels per volume, which weights the volumes equally: "
        "closest to our pooled figures, which weight them by brain size, but not the same.",
        f"Slices: {slab} of the {d['grid'][0]}-slice axial grid; a slice counts when it holds "
        "at least one brain voxel (the rule of the UPD study's public data loader). The "
        "slice selection behind the published figures is not known to us in detail: if it "
        "was a central slab, rerun with --slab START STOP to match it.",
        "Brain mask: the non-zero voxels of each prepared scan. Lesion: mask label > 0 "
        f"inside it ({m['lesion_voxels_outside_brain']} lesion voxels lay outside the brain "
        "mask and were ignored).",
        "Intensities: this package's normalisation (each scan's brain 0th–98th percentile to "
        "[0, 1], then the detector's range learned on the training brains), which may "
        "differ from the authors'.",
        f"Label-free threshold (Dice at 1 % healthy FPR) and the negatives of the volume "
        f"metrics: {d['n_healthy']} held-out CamCAN scans, never trained on. Volume AUROC/AP "
        f"compare {d['dataset_name']} with CamCAN volumes: scanner and site differences can "
        "separate them as well as lesions do, so read them with care.",
        f"Model: this package's implementation of DISYRE, trained here from scratch (seed "
        f"{record['seed']}); the MICCAI 2024 figures are those of the authors' released model.",
        f"In-plane crop: trained and mapped on the training scans' common brain box (rows "
        f"{y0}–{y1 - 1}, columns {x0}–{x1 - 1} of the grid); {m['brain_voxels_outside_box']} "
        f"brain voxels ({m['lesion_voxels_outside_box']} lesion voxels) of the evaluated "
        "scans lay outside it and got the map value 0.",
    ]
    if m["test_volumes_without_lesion"]:
        notes.append(
            f"{m['test_volumes_without_lesion']} test volumes have no lesion voxel inside the "
            "brain: they count as negatives at volume level and add only negatives to the "
            "pixel metrics."
        )
    if record["subset"]:
        notes.append("Subset of the data (at most): " + "; ".join(record["subset"]) + ".")
    if m["n_out_of_range"]:
        notes.append(
            f"Histogram method: {m['n_out_of_range']} map values outside [0, 1] were binned at "
            "the edges."
        )
    notes += m["notes"]
    return notes


def report_body(record: dict) -> str:
    dataset, modality = record["dataset"], record["modality"]
    parts = ["## Results", ""]
    if record["settings_differ"]:
        parts += [
            "**Not the reference settings** ("
            + "; ".join(record["settings_differ"])
            + "): these numbers check that the pipeline runs; they do not test the "
            "published claims.",
            "",
        ]
    parts += [results_table(record["metrics"], dataset, modality), ""]
    published = PUBLISHED.get((dataset, modality))
    if published:
        parts += [f"- {SOURCES[k][0]}: {SOURCES[k][1]}." for k in SOURCES if k in published]
        parts.append(
            "- The published figures are quoted as the papers give them; where one is placed "
            "beside a pooled row, the authors' subsampled evaluation is the closest match."
        )
    else:
        parts.append(
            f"- No published figure for {record['data']['dataset_name']}-"
            f"{modality.upper()} among the ones this script quotes: only our numbers are given."
        )
    parts += ["", "## How these numbers were computed", ""]
    parts += [f"- {n}" for n in deviations(record)]
    d, m = record["data"], record["metrics"]
    parts += [
        "",
        "## Data",
        "",
        f"- Training: {d['n_train']} CamCAN {modality.upper()} scans, {d['n_train_slices']} "
        f"axial slices of {d['slice_shape'][0]}×{d['slice_shape'][1]} px.",
        f"- Held-out healthy: {d['n_healthy']} CamCAN scans ({', '.join(d['healthy_subjects'][:5])}"
        + (" ..." if d["n_healthy"] > 5 else "")
        + ").",
        f"- Test: {d['n_test']} {d['dataset_name']} scans, {m['n_slices']} slices "
        f"({m['n_slices_lesioned']} with lesion), {m['n_brain_voxels']:,} brain voxels "
        f"({m['n_lesion_voxels']:,} lesion voxels).",
        f"- Grid (Z, Y, X) after reorientation to RAS: {tuple(d['grid'])}; file names: "
        f"{record['preprocessing']}.",
        "",
        "## Settings",
        "",
        md_table(
            ["parameter", "value", "reference"],
            [[k, repr(record["settings"][k]), repr(v)] for k, v in REFERENCE.items()]
            + [
                [
                    "device / precision",
                    f"{record['device']} / {record['precision']}",
                    "one GPU, bf16",
                ]
            ],
        ),
        "",
        "## Timing",
        "",
        f"- Reading the training scans: {record['timing']['load_s']:.0f} s.",
        f"- Training: {record['timing']['fit_s']:.0f} s in this run for {record['steps']} steps "
        f"in all (a resumed run counts only the time since it resumed); mean loss of the "
        f"last 100 steps {fmt(record['final_loss'])}.",
        f"- Evaluation: {record['timing']['eval_s']:.0f} s for {d['n_healthy'] + d['n_test']} "
        f"scans; maps {fmt(m['seconds_per_volume'], 'seconds')} s per test volume (mean), "
        f"{fmt(m['seconds_per_volume_median'], 'seconds')} s (median).",
        f"- Trained model (offset_ at 1 % FPR of the held-out healthy slices): "
        f"`{record['model_path']}`.",
    ]
    return "\n".join(parts)


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Published):
        return {"value": value.value, "approximate": value.approximate}
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Path):
        return str(value)
    return value


# ----------------------------------------------------------------------------- main


def main(argv=None) -> dict:
    """Run the whole reproduction; return the record also written to the JSON file."""
    args = parse_args(argv)
    dataset = "brats" if args.brats else "atlas"
    name = f"{dataset}_{args.modality}"
    settings, differ = detector_settings(args)
    resolve_device(args.device)  # a bad --device fails now, not after loading the data
    out_dir = Path(args.out)
    md_path = out_dir / f"reproduce_{name}.md"
    work = Path(args.work_dir) if args.work_dir else out_dir / f"reproduce_{name}_work"
    limits = dict(QUICK_LIMITS) if args.quick else {}
    limits.update(
        {
            k: getattr(args, k)
            for k in ("n_train", "n_test", "n_healthy")
            if getattr(args, k) is not None
        }
    )
    subset = [f"--{k.replace('_', '-')} {v}" for k, v in limits.items() if k != "n_healthy"]

    cohorts = index_cohorts(
        args.camcan,
        args.brats or args.atlas,
        dataset,
        args.modality,
        preprocessing=None if args.preprocessing == "official" else "upd",
        n_train=limits.get("n_train"),
        n_test=limits.get("n_test"),
        n_healthy=limits.get("n_healthy"),
        seed=args.seed,
    )
    grid = check_grid(cohorts)
    slab = check_slab(args.slab, grid)
    say(
        f"{len(cohorts.train)} CamCAN scans to train on, {len(cohorts.healthy)} held out, "
        f"{len(cohorts.test)} {dataset} test scans; grid (Z, Y, X) {grid}, slices {slab}"
    )

    start = time.perf_counter()
    train, box, n_used = load_training_slices(
        cohorts.train, grid, slab, settings["patch_size"], say
    )
    load_s = time.perf_counter() - start
    say(
        f"training array {train.shape} float32 ({train.nbytes / 2**30:.2f} GiB), in-plane box {box}"
    )
    detector = DISYREDetector(
        **settings,
        calibration_size=CALIBRATION_SIZE,
        inference_batch_size=args.inference_batch_size,
        device=args.device,
        random_state=args.seed,
        verbose=True,
        checkpoint_dir=work / "checkpoints",
        checkpoint_every=args.checkpoint_every,
    )
    start = time.perf_counter()
    try:
        detector.fit(train)
    except KeyboardInterrupt:
        say(
            f"\nInterrupted. The training state is in {work / 'checkpoints'}: run the same "
            "command again to resume where it stopped."
        )
        raise SystemExit(130) from None
    fit_s = time.perf_counter() - start
    n_train_slices, slice_shape = train.shape[0], train.shape[1:]
    del train
    detector.set_params(verbose=False)

    start = time.perf_counter()
    evaluation = StreamingEvaluation(detector, grid, box, slab, method=args.pixel_method, fpr=FPR)
    for subject, path in cohorts.healthy:
        evaluation.add_healthy(subject, path)
    for i, (subject, path, mask) in enumerate(cohorts.test):
        evaluation.add_test(subject, path, mask)
        if (i + 1) % 10 == 0 or i + 1 == len(cohorts.test):
            say(f"  evaluated {i + 1}/{len(cohorts.test)} test scans")
    metrics = evaluation.result()
    eval_s = time.perf_counter() - start
    # A saved model should threshold like one fitted by DISYREDetector.fit: 1 % of healthy
    # scans flagged, here on slices the network never trained on.
    if evaluation.healthy_slice_scores:
        detector.offset_ = float(np.percentile(-np.asarray(evaluation.healthy_slice_scores), 1.0))
    model_path = detector.save(work / "model.disyre")

    losses = np.asarray(detector.history_.get("loss", []), dtype=float)
    dataset_name = "BraTS" if dataset == "brats" else "ATLAS"
    record = {
        "title": f"DISYRE on {dataset_name}-{args.modality.upper()}: our exact metrics "
        "beside the published ones",
        # main(argv) from Python records argv, not the caller's command line
        "command": command_line()
        if argv is None
        else "python benchmarks/reproduce_papers.py " + shlex.join(argv),
        "git_commit": git_commit(),
        "date_utc": now(),
        "hardware": hardware(detector.device_.type),
        "dataset": dataset,
        "modality": args.modality,
        "preprocessing": args.preprocessing,
        "seed": args.seed,
        "quick": args.quick,
        "device": str(detector.device_),
        "precision": detector.precision_,
        "settings": settings,
        "settings_differ": differ,
        "subset": subset,
        "steps": int(losses.size),
        "final_loss": float(losses[-100:].mean()) if losses.size else None,
        "data": {
            "dataset_name": dataset_name,
            "camcan": str(args.camcan),
            "test_root": str(args.brats or args.atlas),
            "grid": grid,
            "slab": slab,
            "box": box,
            "n_train": n_used,
            "n_train_slices": int(n_train_slices),
            "slice_shape": tuple(int(s) for s in slice_shape),
            "n_healthy": len(cohorts.healthy),
            "healthy_subjects": [s for s, _ in cohorts.healthy],
            "n_test": len(cohorts.test),
        },
        "metrics": metrics,
        "published": {
            SOURCES[k][1]: v for k, v in PUBLISHED.get((dataset, args.modality), {}).items()
        },
        "per_volume": evaluation.per_volume,
        "timing": {"load_s": load_s, "fit_s": fit_s, "eval_s": eval_s},
        "model_path": str(model_path),
    }
    provenance = {
        "command": f"`{record['command']}`",
        "git commit": record["git_commit"],
        "date (UTC)": record["date_utc"],
        **record["hardware"],
        "device": f"{record['device']} ({record['precision']})",
    }
    write_results(md_path, record["title"], provenance, report_body(record))
    json_path = md_path.with_suffix(".json")
    json_path.write_text(json.dumps(_jsonable(record), indent=1) + "\n")
    say("\n" + results_table(metrics, dataset, args.modality))
    say(f"\nwrote {md_path} and {json_path}")
    return record


if __name__ == "__main__":
    main()
