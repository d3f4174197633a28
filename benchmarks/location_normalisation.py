"""Does normalising each location's residual against healthy maps help on an unseen brain?

    python benchmarks/location_normalisation.py [--seeds 0 1 2] [--demo-dirs DIR ...]
        [--work DIR] [--out benchmarks/results/location_normalisation_cpu.md]

For each seed the demo (``disyre demo --seed S``) trains a detector on subjects of two
real brains and maps test subjects of a third (``--demo-dirs`` reuses finished demo
folders). The demo's maps are then post-processed in numpy, with nothing fitted on the
test subjects: each voxel's map value is compared with the maps of the demo's own
*training* subjects (the model's healthy reference, mapped in-sample) at the same
location, ``z = max(m - mean, 0) / (sd + floor)``, where mean and sd are Gaussian-pooled
over neighbouring voxels (sigma 1 or 2 voxels) and the floor is the median sd inside
the brain. This only makes sense for scans on one grid (registered to a template), as
the demo's are. Metrics as in ``held_out.py``: pixel AP pooled over the lesioned test
volumes, per family; slice AUROC (top 5 %); volume AUROC (top 1 %). A JSON of every
figure is written beside the table.
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
from false_positives import run_demo
from held_out import FAMILIES, evaluate

from disyre_sk import DISYREDetector
from disyre_sk.datasets import make_brain_cohort

SIGMAS = (1.0, 2.0)


def location_z(maps, fg, ref, ref_fg, sigma: float) -> np.ndarray:
    """Map values as z-scores against the reference maps at the same (pooled) location."""
    count = ndi.gaussian_filter(ref_fg.sum(0).astype(np.float64), sigma) + 1e-3
    mean = ndi.gaussian_filter(ref.sum(0).astype(np.float64), sigma) / count
    square = ndi.gaussian_filter((ref.astype(np.float64) ** 2).sum(0), sigma) / count
    sd = np.sqrt(np.maximum(square - mean**2, 0.0))
    floor = np.median(sd[ref_fg.any(0)])
    return (np.maximum(maps - mean, 0.0) / (sd + floor) * fg).astype(np.float32)


def analyse(folder: Path) -> list[dict]:
    meta = json.loads((folder / "metrics.json").read_text())
    seed = int(meta["settings"]["random_state"])
    c = meta["cohort"]
    cohort = make_brain_cohort(
        n_healthy=c["n_healthy"],
        n_test=c["n_test"],
        voxel_size=c["voxel_size"],
        contrast=c["contrast"],
        train_bases=tuple(c["train_bases"]),
        test_bases=tuple(c["test_bases"]),
        random_state=seed,
    )
    det = DISYREDetector.load(folder / "model.disyre")
    det.set_params(verbose=False)
    maps = det.decision_map(cohort.X_test)
    ref = det.decision_map(cohort.X_train)
    ref_fg = cohort.X_train > 0
    fg = cohort.brain_masks_test
    variants = {"demo map": maps}
    for s in SIGMAS:
        variants[f"location z, sigma {s:g}"] = location_z(maps, fg, ref, ref_fg, s)
    rows = []
    for name, m in variants.items():
        r = evaluate(m, cohort)
        rows.append({"seed": seed, "variant": name, **{k: r[k] for k in r}})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def fmt(v) -> str:
    return "—" if v is None else f"{v:.3f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--demo-dirs", nargs="*", type=Path, help="finished demo folders")
    ap.add_argument("--work", type=Path, help="where the demos go (default: a temp folder)")
    ap.add_argument(
        "--out",
        default=str(Path(__file__).resolve().parent / "results" / "location_normalisation_cpu.md"),
    )
    args = ap.parse_args()
    info = {"command": command_line(), "commit": git_commit(), "date": now(), **hardware("cpu")}
    start = time.perf_counter()
    work = args.work or Path(tempfile.mkdtemp(prefix="location_norm_"))
    folders = args.demo_dirs or [run_demo(s, work / f"demo_{s}") for s in args.seeds]
    rows = [row for folder in folders for row in analyse(folder)]
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    seeds = sorted({r["seed"] for r in rows})
    summary = []
    for v in variants:
        sel = [r for r in rows if r["variant"] == v]
        summary.append(
            [v]
            + [
                " / ".join(fmt(r[k]) for r in sel)
                for k in ("pixel_ap", "slice_auroc", "volume_auroc")
            ]
        )
    per_family = [[r["seed"], r["variant"], *(fmt(r[f]) for f in FAMILIES)] for r in rows]
    body = "\n\n".join(
        [
            __doc__.split("\n\n", 2)[2].strip(),
            f"### per seed ({', '.join(map(str, seeds))})",
            md_table(["map", "pixel AP", "slice AUROC", "volume AUROC"], summary),
            "### pixel AP per lesion family",
            md_table(["seed", "map", *FAMILIES], per_family),
            f"Whole run: {time.perf_counter() - start:.0f} s.",
        ]
    )
    path = write_results(
        args.out, "Location normalisation of the demo's maps", info, body, raw=rows
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
