"""Which lesions the network answers: each family's voxels before and after the map's last steps.

    python benchmarks/lesion_response.py [--seeds 0 1 2] [--demo-dirs DIR ...] [--n-test 36]
                                         [--out benchmarks/results/lesion_response_cpu.md]

A lesion can be missed at three places: the network leaves it as it is (its residual is
no higher than healthy tissue's), the rim erosion drops it (``map_erosion`` zeroes the
brain's outer voxels), or the last steps hide it (location standardisation counts only
excess over the healthy training maps at that voxel, then the median filter). Each demo
model (``disyre demo --seed S``, or a folder it wrote, given with ``--demo-dirs``) maps
the demo's 12 test subjects of the unseen brain and ``demo_test_size.py``'s independent
36 twice, with the public API only:

- *plain*: ``map_standardization=None, map_median=0`` set at predict time, every other
  setting the demo's (intensity normalisation, smoothing, erosion): the network's
  residual as the map sees it before its last steps;
- *final*: the demo's map as it is.

Per lesion family, pooled over that family's volumes: the share of lesion voxels in the
eroded rim (plain map exactly 0 there), the share above the 99th percentile of the
healthy test volumes' foreground values of the same map (plain, then final: the 1 %
false-positive threshold), the share the final map sets to 0 although the plain map is
not (at or below the healthy reference there, or removed by the median filter), and the
median plain value inside the lesion over the healthy median (1: the network sees
nothing).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import md_table
from _demo_models import demo_model_parser, load_demo, run_on_demo_models
from false_positives import fmt
from held_out import FAMILIES
from map_median import evaluation_sets

from disyre_sk.metrics import pixel_average_precision

PLAIN = {"map_standardization": None, "map_median": 0}
COLUMNS = (
    ("volumes", "volumes", "d"),
    ("lesion_voxels", "lesion voxels", "d"),
    ("rim", "in eroded rim", ".0%"),
    ("plain_hot", "plain > healthy q99", ".0%"),
    ("final_hot", "final > healthy q99", ".0%"),
    ("hidden", "final 0, plain > 0", ".0%"),
    ("plain_ratio", "plain median / healthy median", ".2f"),
    ("pixel_ap", "final pixel AP", ".3f"),
)


def family_rows(
    plain: np.ndarray,
    final: np.ndarray,
    foreground: np.ndarray,
    masks: np.ndarray,
    families,
) -> list[dict]:
    """One row per lesion family present: where its voxels stand in the two maps.

    ``plain`` and ``final`` are maps of the same volumes ``(n, ...)``; ``foreground`` the
    brain masks, ``masks`` the lesion masks and ``families`` one label per volume
    (``'healthy'`` for the volumes that set the thresholds).
    """
    families = np.asarray(families)
    healthy = families == "healthy"
    if not healthy.any():
        raise ValueError("the thresholds need healthy volumes; the set holds none")
    h_plain = plain[healthy][foreground[healthy]]
    h_final = final[healthy][foreground[healthy]]
    q_plain, q_final = np.percentile(h_plain, 99), np.percentile(h_final, 99)
    med_plain = float(np.median(h_plain))
    rows = []
    for family in FAMILIES:
        sel = families == family
        if not sel.any():
            continue
        les = masks[sel] & foreground[sel]
        p, f = plain[sel][les], final[sel][les]
        rows.append(
            {
                "family": family,
                "volumes": int(sel.sum()),
                "lesion_voxels": int(les.sum()),
                "rim": float(np.mean(p == 0)),
                "plain_hot": float(np.mean(p > q_plain)),
                "final_hot": float(np.mean(f > q_final)),
                "hidden": float(np.mean((f == 0) & (p > 0))),
                "plain_ratio": float(np.median(p) / med_plain) if med_plain > 0 else None,
                "pixel_ap": pixel_average_precision(final[sel], masks[sel], foreground[sel]),
            }
        )
    return rows


def rows_of(folder: Path, n_test: int) -> list[dict]:
    meta, seed, det = load_demo(folder)
    demo_params = {k: det.get_params()[k] for k in PLAIN}
    rows = []
    for name, cohort in evaluation_sets(meta, n_test).items():
        final = det.set_params(**demo_params).decision_map(cohort.X_test)
        plain = det.set_params(**PLAIN).decision_map(cohort.X_test)
        for r in family_rows(
            plain, final, cohort.brain_masks_test, cohort.masks_test, cohort.families_test
        ):
            rows.append({"seed": seed, "test set": name, **r})
    return rows


def report(rows: list[dict]) -> str:
    seeds = sorted({r["seed"] for r in rows})
    table = [
        [r["seed"], r["test set"], r["family"], *(fmt(r[k], spec) for k, _, spec in COLUMNS)]
        for r in sorted(rows, key=lambda r: (FAMILIES.index(r["family"]), r["test set"], r["seed"]))
    ]
    return (
        f"Seeds {seeds}. Shares are of each family's lesion voxels (inside the brain mask), "
        "pooled over its volumes; q99: the 99th percentile of the healthy test volumes' "
        "foreground values of the same map and set. *plain*: the map before location "
        "standardisation and the median filter; *final*: the demo's map.\n\n"
        + md_table(["seed", "test set", "family", *(h for _, h, _ in COLUMNS)], table)
    )


def main() -> int:
    args = demo_model_parser(__doc__, "benchmarks/results/lesion_response_cpu.md").parse_args()
    return run_on_demo_models(
        args,
        "Which lesions the network answers",
        lambda folder: rows_of(folder, args.n_test),
        report,
    )


if __name__ == "__main__":
    sys.exit(main())
