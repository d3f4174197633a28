"""Which slices a slice score can find: slice AUROC split by how much lesion a slice holds.

    python benchmarks/slice_detection.py [--seeds 0 1 2] [--demo-dirs DIR ...] [--n-test 36]
                                         [--small 10]
                                         [--out benchmarks/results/slice_detection_cpu.md]

A slice counts as positive when it holds one lesion voxel, so a lesion's first and last
slices and every slice of a few small foci are positives with a handful of lesion voxels.
The demo's slice AUROC mixes them with slices a lesion crosses in full. Each demo model
(``disyre demo --seed S``, or a folder it wrote, given with ``--demo-dirs``) maps the
demo's 12 test subjects of the unseen brain and ``demo_test_size.py``'s independent 36;
the two intensity thresholds are scored beside it. Slices and scores as in the demo:
axial slices with >= 2 % brain, score the mean of the top 5 % brain map values; DISYRE's
map is also scored by the top 1 %, the top 3 voxels and the maximum, which tells a map
that is flat on a slice from a score that dilutes a small lesion.

Per seed, test set and method: the positives and how many hold at most ``--small``
lesion voxels; slice AUROC over all slices, over the negatives and the larger positives
only, and over the negatives and the small positives only; and the *ceiling with small
slices at chance*: the slice AUROC of a map that ranks every larger positive above every
negative and the small ones at chance, ``(n_large + n_small / 2) / n_positive``, which
says how far the target moves without finding the small ones. The same for volumes:
the volume AUROC of the healthy test volumes against all lesioned ones and against
each family's alone (a volume's score: the mean of its top 1 % brain map values, as in
the demo), which shows the family that holds the volume AUROC down.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import md_table
from _demo_models import demo_model_parser, load_demo, run_on_demo_models
from false_positives import fmt
from held_out import baselines, volume_scores
from map_median import evaluation_sets

from disyre_sk.metrics import sample_auroc, slice_labels, slice_scores

MIN_BRAIN = 0.02  # a slice is scored when at least this share of it is brain
TOP_K = 0.05  # a slice's score: mean of its top 5 % brain map values
VOLUME_FAMILIES = ("tumour", "stroke", "foci", "cavity")
# Other slice scores of DISYRE's map, to tell a flat map from a diluting score.
OTHER_SCORES = {"top 1 %": ("topk", 0.01), "top 3 voxels": ("topk", 3), "max": ("max", None)}
COLUMNS = (
    ("positives", "positive slices", "d"),
    ("small", "of them small", "d"),
    ("negatives", "negative slices", "d"),
    ("auroc_all", "slice AUROC", ".3f"),
    ("auroc_large", "AUROC, larger positives", ".3f"),
    ("auroc_small", "AUROC, small positives", ".3f"),
    ("ceiling", "ceiling, small at chance", ".3f"),
)


def _auroc(scores: np.ndarray, positive: np.ndarray, negative: np.ndarray) -> float | None:
    if not positive.any() or not negative.any():
        return None
    y = np.r_[np.ones(positive.sum()), np.zeros(negative.sum())]
    return sample_auroc(np.r_[scores[positive], scores[negative]], y)


def slice_row(
    maps: np.ndarray,
    foreground: np.ndarray,
    masks: np.ndarray,
    small: int,
    reduction: str = "topk",
    k: float | int | None = TOP_K,
) -> dict:
    """Slice AUROC of ``maps`` (``(n, depth, H, W)``) split by lesion voxels per slice.

    Slices are indexed along axis 1; a slice is scored when at least ``MIN_BRAIN`` of it
    is foreground, by ``reduction`` (and ``k``) of its foreground map values; positives
    with at most ``small`` lesion voxels are the small ones.
    """
    keep = foreground.mean(axis=(2, 3)) >= MIN_BRAIN
    kw = {} if k is None else {"k": k}
    scores = slice_scores(maps, axis=1, reduction=reduction, foreground=foreground, **kw)
    labels = slice_labels(masks, axis=1).astype(bool)
    voxels = masks.sum(axis=(2, 3))
    pos, neg = keep & labels, keep & ~labels
    if not pos.any() or not neg.any():
        raise ValueError("slice_row needs positive and negative slices among the scored ones")
    is_small = pos & (voxels <= small)
    n_pos, n_small = int(pos.sum()), int(is_small.sum())
    return {
        "positives": n_pos,
        "small": n_small,
        "negatives": int(neg.sum()),
        "auroc_all": _auroc(scores, pos, neg),
        "auroc_large": _auroc(scores, pos & ~is_small, neg),
        "auroc_small": _auroc(scores, is_small, neg),
        "ceiling": (n_pos - n_small + 0.5 * n_small) / n_pos,
    }


def volume_row(maps: np.ndarray, foreground: np.ndarray, families) -> dict:
    """Volume AUROC of ``maps`` against the healthy volumes: all lesioned, then per family.

    A volume's score is the mean of its top 1 % foreground map values
    (``held_out.volume_scores``, as in the demo); a family absent from ``families`` gets ``None``.
    """
    fam = np.asarray(families)
    healthy = fam == "healthy"
    if not healthy.any() or healthy.all():
        raise ValueError("volume_row needs healthy and lesioned volumes")
    scores = volume_scores(maps, foreground)
    row = {"volume_auroc": _auroc(scores, ~healthy, healthy)}
    for family in VOLUME_FAMILIES:
        row[f"volume_{family}"] = _auroc(scores, fam == family, healthy)
    return row


def rows_of(folder: Path, n_test: int, small: int) -> list[dict]:
    meta, seed, det = load_demo(folder, whole=True)
    rows = []
    for name, cohort in evaluation_sets(meta, n_test).items():
        maps = {"DISYRE": det.decision_map(cohort.X_test), **baselines(cohort)}
        for method, m in maps.items():
            row = slice_row(m, cohort.brain_masks_test, cohort.masks_test, small)
            row.update(volume_row(m, cohort.brain_masks_test, cohort.families_test))
            rows.append({"seed": seed, "test set": name, "method": method, **row})
        for label, (reduction, k) in OTHER_SCORES.items():
            row = slice_row(
                maps["DISYRE"], cohort.brain_masks_test, cohort.masks_test, small, reduction, k
            )
            rows.append({"seed": seed, "test set": name, "method": f"DISYRE, {label}", **row})
    return rows


def report(rows: list[dict], small: int) -> str:
    table = [
        [r["seed"], r["test set"], r["method"], *(fmt(r[k], spec) for k, _, spec in COLUMNS)]
        for r in sorted(rows, key=lambda r: (r["test set"], r["seed"]))
    ]
    return (
        f"Small positive slices hold at most {small} lesion voxels. Scored slices: axial, "
        f">= {MIN_BRAIN:.0%} brain; a slice's score is the mean of its top {TOP_K:.0%} brain "
        "map values (as in the demo). *AUROC, larger positives*: the negatives against the "
        "positives that are not small; *AUROC, small positives*: the negatives against the "
        "small ones; *ceiling*: the slice AUROC of a map that ranks every larger positive "
        "above every negative and the small ones at chance. *DISYRE, top 1 %* and the rows "
        "after it score the same map's slices otherwise.\n\n"
        + md_table(["seed", "test set", "method", *(h for _, h, _ in COLUMNS)], table)
        + "\n\n### Volumes\n\nVolume AUROC of the healthy test volumes against all lesioned "
        "ones, then against each family's alone (a volume's score: the mean of its top "
        "1% brain map values, as in the demo). A family the map cannot tell "
        "from healthy volumes caps the first column near (1 - its share of the lesioned "
        "volumes / 2).\n\n"
        + md_table(
            ["seed", "test set", "method", "volume AUROC", *VOLUME_FAMILIES],
            [
                [r["seed"], r["test set"], r["method"], fmt(r["volume_auroc"], ".3f")]
                + [fmt(r[f"volume_{f}"], ".3f") for f in VOLUME_FAMILIES]
                for r in sorted(rows, key=lambda r: (r["test set"], r["seed"]))
                if "volume_auroc" in r
            ],
        )
    )


def main() -> int:
    ap = demo_model_parser(__doc__, "benchmarks/results/slice_detection_cpu.md")
    ap.add_argument("--small", type=int, default=10, help="lesion voxels of a small slice")
    args = ap.parse_args()
    return run_on_demo_models(
        args,
        "Which slices a slice score can find",
        lambda folder: rows_of(folder, args.n_test, args.small),
        lambda rows: report(rows, args.small),
    )


if __name__ == "__main__":
    sys.exit(main())
