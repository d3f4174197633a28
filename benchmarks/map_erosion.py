"""How much of the brain's rim to erase (``map_erosion``), on the demo's models.

    python benchmarks/map_erosion.py [--seeds 0 1 2] [--demo-dirs DIR ...] [--sizes 2 0 1 3]
                                     [--n-test 36] [--out benchmarks/results/map_erosion_cpu.md]

``map_erosion=k`` sets the map to 0 on the outermost ``k`` pixels of each slice's brain.
The rim is where a new brain's healthy anatomy lights up, and where cortical lesions
lie. Each demo model (``disyre demo --seed S``, or a folder it wrote, given with
``--demo-dirs``) maps the demo's 12 test subjects of the unseen brain and
``demo_test_size.py``'s independent larger set (``--n-test`` subjects,
``random_state = seed + 2000``) with ``map_erosion`` set to each of ``--sizes`` (the
first is the reference of the "up" counts; the demo uses 2). The healthy references
that the map settings learn after training (residual per intensity, per-voxel healthy
maps, healthy asymmetry) depend on the erosion, so each setting is set on every network
and calibrated again (``calibrate``) on the demo's own 16 training scans, as ``fit``
learned them (``map_flip.py``'s arms). The reference row is calibrated the same way, so
its figures differ from the demo's by a few thousandths (the residual per intensity is
learned from a random draw of patches). Nothing is retrained. Scored with
``held_out.py``'s metrics (pixel AP pooled over the lesioned volumes and per family,
slice AUROC, volume AUROC), with each arm's seconds and the mean pixel AP of each lesion
family over the seeds. Only public API is used.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import md_table
from _demo_models import demo_model_parser, run_on_demo_models
from held_out import FAMILIES
from map_flip import seconds, setting_rows
from map_median import report

SIZES = (2, 0, 1, 3)


def rows_of(folder: Path, n_test: int, sizes=SIZES) -> list[dict]:
    return setting_rows(folder, n_test, "map_erosion", sizes)


def family_table(rows: list[dict], sizes) -> str:
    """Mean pixel AP of each lesion family over the seeds, per test set and erosion."""
    families = [f for f in FAMILIES if any(r.get(f) is not None for r in rows)]
    body = []
    for s in dict.fromkeys(r["test set"] for r in rows):
        for size in sizes:
            sel = [r for r in rows if r["test set"] == s and r["map_erosion"] == size]
            cells = []
            for f in families:
                values = [r[f] for r in sel if r.get(f) is not None]
                cells.append(f"{np.mean(values):.3f}" if values else "—")
            body.append([s, size, *cells])
    return md_table(["test set", "map_erosion", *families], body)


def main() -> int:
    ap = demo_model_parser(__doc__, "benchmarks/results/map_erosion_cpu.md")
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    args = ap.parse_args()
    return run_on_demo_models(
        args,
        "How much of the brain's rim to erase",
        lambda folder: rows_of(folder, args.n_test, args.sizes),
        lambda rows: (
            report(rows, args.sizes, key="map_erosion")
            + "\n\n### pixel AP per family, mean over the seeds\n\n"
            + family_table(rows, args.sizes)
            + "\n\nSeconds per arm (calibration and both sets' maps): "
            + seconds(rows, key="map_erosion")
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
