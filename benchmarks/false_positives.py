"""Where healthy tissue lights up: the demo's false positives, located.

    python benchmarks/false_positives.py [--seeds 0 1 2] [--demo-dirs DIR ...] [--work DIR]
                                         [--out benchmarks/results/false_positives_cpu.md]

For each seed the demo (``disyre demo --seed S``) trains a detector on subjects of two
real brains and writes ``model.disyre`` and ``metrics.json``; ``--demo-dirs`` reuses
folders a demo already wrote (their seed is read from ``metrics.json``). The model then
maps, with its own settings and the public API only:

- the healthy test subjects of the brain it never saw (the demo's test anatomy);
- as many new healthy subjects of the brains it was trained on (same generator, another
  seed): the part of the false positives that a *new anatomy* causes is the difference.

A voxel is *hot* when its map value exceeds the 99th percentile of all healthy
foreground values of the unseen anatomy (the demo's 1 % false-positive threshold). Each
hot voxel is attributed to where it lies: the axial fifth of the brain, the in-plane
distance to the brain's edge, the intensity band of the scaled scan, and whether its
slice is one of the brain's outer three. Enrichment is the share of hot voxels in a
category divided by the share of foreground voxels there: 1 is no preference, 5 means
false positives are five times denser there than on average.

The slice-level part says what limits slice AUROC: the axial profile of healthy slice
scores (top 5 % mean, as the demo), and the fraction of lesion slices that score above
95 % of healthy slices, by lesion area in the slice.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, git_commit, hardware, md_table, now, write_results
from _demo_models import demo_cohort, demo_folders, first_network, load_demo

from disyre_sk.datasets import make_brain_cohort
from disyre_sk.metrics import sample_auroc, slice_labels, slice_scores

SLICE_TOP_K = 0.05
RIM_BINS = ((1, 2), (3, 4), (5, 8), (9, 10_000))
INTENSITY_BINS = ((0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 0.95), (0.95, 1.01))
AREA_BINS = ((1, 9), (10, 49), (50, 10**9))


def rim_distance(foreground: np.ndarray) -> np.ndarray:
    """In-plane city-block distance of each foreground voxel to the background."""
    out = np.zeros(foreground.shape, dtype=np.int32)
    for z in range(foreground.shape[0]):
        if foreground[z].any():
            out[z] = ndi.distance_transform_cdt(np.pad(foreground[z], 1), metric="taxicab")[
                1:-1, 1:-1
            ]
    return out


def categories(scan: np.ndarray, fg: np.ndarray, intensity_range) -> dict[str, np.ndarray]:
    """Boolean masks, one per location category, over one volume ``(D, H, W)``."""
    low, high = intensity_range
    x = np.clip((scan - low) / (high - low), 0.0, 1.0)
    zs = np.flatnonzero(fg.any(axis=(1, 2)))
    z0, z1 = zs.min(), zs.max()
    z = np.arange(fg.shape[0])[:, None, None] * np.ones_like(fg)
    fifth = np.clip(((z - z0) * 5) // max(1, z1 - z0 + 1), 0, 4)
    rim = rim_distance(fg)
    cats: dict[str, np.ndarray] = {}
    names = ("inferior", "lower", "middle", "upper", "superior")
    for k, name in enumerate(names):
        cats[f"axial: {name} fifth"] = fg & (fifth == k)
    cats["axial: brain's outer 3 slices"] = fg & ((z < z0 + 3) | (z > z1 - 3))
    for lo, hi in RIM_BINS:
        label = f"{lo}-{hi} px" if hi < 10_000 else f">= {lo} px"
        cats[f"edge distance: {label}"] = fg & (rim >= lo) & (rim <= hi)
    for lo, hi in INTENSITY_BINS:
        label = f"{lo:.2f}-{min(hi, 1.0):.2f}" if hi <= 1 else f">= {lo:.2f}"
        cats[f"scaled intensity: {label}"] = fg & (x >= lo) & (x < hi)
    return cats


def enrichment(maps, scans, fgs, threshold, intensity_range) -> dict[str, dict]:
    """Hot-voxel share, foreground share and their ratio per category, pooled."""
    hot_counts: dict[str, int] = {}
    fg_counts: dict[str, int] = {}
    n_hot = n_fg = 0
    for m, x, fg in zip(maps, scans, fgs):
        hot = fg & (m > threshold)
        n_hot += int(hot.sum())
        n_fg += int(fg.sum())
        for name, mask in categories(x, fg, intensity_range).items():
            hot_counts[name] = hot_counts.get(name, 0) + int((hot & mask).sum())
            fg_counts[name] = fg_counts.get(name, 0) + int(mask.sum())
    out = {}
    for name in fg_counts:
        hs = hot_counts[name] / max(n_hot, 1)
        fs = fg_counts[name] / max(n_fg, 1)
        out[name] = {"hot_share": hs, "fg_share": fs, "enrichment": hs / fs if fs else None}
    out["_hot_fraction"] = {"hot_share": n_hot / max(n_fg, 1), "fg_share": 1.0, "enrichment": None}
    return out


def slice_analysis(maps, masks, fgs, healthy) -> dict:
    """Slice-score profile of healthy slices and detection of lesion slices by area."""
    scores = slice_scores(maps, axis=1, reduction="topk", k=SLICE_TOP_K, foreground=fgs)
    keep = fgs.mean(axis=(2, 3)) >= 0.02
    labels = slice_labels(masks, axis=1)
    area = masks.sum(axis=(2, 3))
    neg = scores[keep & (labels == 0)]
    cut = float(np.percentile(neg, 95))
    by_area = {}
    for lo, hi in AREA_BINS:
        sel = keep & (labels == 1) & (area >= lo) & (area <= hi)
        both = sel | (keep & (labels == 0))
        by_area[f"{lo}-{hi if hi < 10**9 else 'max'} px"] = {
            "n_slices": int(sel.sum()),
            "above_95pct_of_healthy": float((scores[sel] > cut).mean()) if sel.any() else None,
            "slice_auroc": sample_auroc(scores[both], labels[both]) if sel.any() else None,
        }
    # Healthy slice scores along the axial axis, in fifths of the brain's extent.
    profile = []
    hs = scores[healthy]
    hk = keep[healthy]
    for k in range(5):
        vals = []
        for s, kp in zip(hs, hk):
            zs = np.flatnonzero(kp)
            if zs.size:
                part = zs[(zs - zs.min()) * 5 // (zs.max() - zs.min() + 1) == k]
                vals.extend(s[part].tolist())
        profile.append(float(np.mean(vals)) if vals else None)
    return {
        "slice_auroc": sample_auroc(scores[keep], labels[keep]),
        "by_lesion_area": by_area,
        "healthy_slice_score_by_axial_fifth": profile,
        "healthy_slice_score_95pct": cut,
    }


def analyse(folder: Path) -> dict:
    meta, seed, det = load_demo(folder, whole=True)
    scale = first_network(det).intensity_range_
    c = meta["cohort"]
    kw = dict(n_healthy=c["n_healthy"], voxel_size=c["voxel_size"], contrast=c["contrast"])
    unseen = demo_cohort(meta)
    healthy = np.array([f == "healthy" for f in unseen.families_test])
    maps = det.decision_map(unseen.X_test)
    # New healthy subjects of the training brains: same generator, another seed.
    seen = make_brain_cohort(
        **kw,
        n_test=int(healthy.sum()),
        healthy_test_fraction=1.0,
        train_bases=tuple(c["train_bases"]),
        random_state=seed + 1000,
    )
    seen_maps = det.decision_map(seen.X_test)
    fg_u = unseen.brain_masks_test[healthy]
    threshold = float(np.percentile(maps[healthy][fg_u], 99))
    fg_s = seen.brain_masks_test
    return {
        "seed": seed,
        "folder": str(folder),
        "threshold": threshold,
        "unseen": enrichment(
            maps[healthy],
            unseen.X_test[healthy],
            fg_u,
            threshold,
            scale,
        ),
        "seen": enrichment(seen_maps, seen.X_test, fg_s, threshold, scale),
        "healthy_volume_score_unseen": [
            float(v) for v in det.score_samples(unseen.X_test[healthy])
        ],
        "healthy_volume_score_seen": [float(v) for v in det.score_samples(seen.X_test)],
        "slices": slice_analysis(maps, unseen.masks_test, unseen.brain_masks_test, healthy),
    }


def fmt(v, spec=".2f") -> str:
    return "—" if v is None else format(v, spec)


def report(runs: list[dict]) -> str:
    seeds = [r["seed"] for r in runs]
    names = [k for k in runs[0]["unseen"] if not k.startswith("_")]
    rows = []
    for name in names:
        row = [name, f"{100 * np.mean([r['unseen'][name]['fg_share'] for r in runs]):.1f}"]
        for which in ("unseen", "seen"):
            en = [r[which][name]["enrichment"] for r in runs]
            row.append(" / ".join(fmt(e) for e in en))
        rows.append(row)
    hot = [
        "hot voxels (share of healthy foreground)",
        "",
        " / ".join(f"{100 * r['unseen']['_hot_fraction']['hot_share']:.2f} %" for r in runs),
        " / ".join(f"{100 * r['seen']['_hot_fraction']['hot_share']:.2f} %" for r in runs),
    ]
    enrich = md_table(
        ["category", "% of foreground", "enrichment, unseen brain", "enrichment, training brains"],
        [hot, *rows],
    )
    prof = md_table(
        ["seed", *[f"fifth {k + 1}" for k in range(5)], "95th pct of healthy slices"],
        [
            [
                r["seed"],
                *(fmt(v) for v in r["slices"]["healthy_slice_score_by_axial_fifth"]),
                fmt(r["slices"]["healthy_slice_score_95pct"]),
            ]
            for r in runs
        ],
    )
    area_rows = []
    for r in runs:
        for bin_, v in r["slices"]["by_lesion_area"].items():
            area_rows.append(
                [
                    r["seed"],
                    bin_,
                    v["n_slices"],
                    fmt(v["above_95pct_of_healthy"]),
                    fmt(v["slice_auroc"], ".3f"),
                ]
            )
    area = md_table(
        [
            "seed",
            "lesion area in slice",
            "slices",
            "share above 95 % of healthy slices",
            "slice AUROC (these vs all negatives)",
        ],
        area_rows,
    )
    vol = md_table(
        ["seed", "healthy scan scores, unseen brain", "healthy scan scores, training brains"],
        [
            [
                r["seed"],
                " ".join(f"{v:.2f}" for v in r["healthy_volume_score_unseen"]),
                " ".join(f"{v:.2f}" for v in r["healthy_volume_score_seen"]),
            ]
            for r in runs
        ],
    )
    return "\n\n".join(
        [
            f"Seeds {seeds}; each row gives one value per seed. Hot: above the 99th "
            "percentile of the unseen brain's healthy foreground map values (the demo's 1 % "
            "false-positive threshold); the same threshold is applied to the new subjects of "
            "the training brains. Enrichment = share of hot voxels in the category / share "
            "of foreground voxels in it (1 = no preference). The demo erodes a 2-px rim, so "
            "the first edge bin is empty by construction.",
            "### Where the hot voxels lie",
            enrich,
            "### Healthy slice scores along the axial axis (mean of the top 5 % per slice, "
            "unseen brain, inferior to superior)",
            prof,
            "### Lesion slices by lesion area: detected above 95 % of healthy slices?",
            area,
            "### Scan scores (score_samples, higher = more normal)",
            vol,
        ]
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--demo-dirs", nargs="+", default=None, help="reuse demo output folders")
    ap.add_argument("--work", default=None, help="keep the demo folders here (default: temporary)")
    ap.add_argument("--out", default="benchmarks/results/false_positives_cpu.md")
    args = ap.parse_args()
    info = {"command": command_line(), "commit": git_commit(), "date": now(), **hardware("cpu")}
    t0 = time.perf_counter()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        for folder in demo_folders(args.demo_dirs, args.seeds, work):
            print(f"analysing {folder}...", flush=True)
            runs.append(analyse(folder))
    body = report(runs) + f"\n\nRun time: {time.perf_counter() - t0:.0f} s. Raw: the JSON beside."
    path = write_results(args.out, "Where healthy tissue lights up", info, body)
    Path(path).with_suffix(".json").write_text(json.dumps(runs, indent=1))
    print(Path(path).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
