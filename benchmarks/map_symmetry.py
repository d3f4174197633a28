"""The left-right symmetry prior of the map (``map_symmetry``) on the demo's models.

    python benchmarks/map_symmetry.py [--seeds 0 1 2] [--demo-dirs DIR ...] [--n-test 36]
                                      [--weights 0 0.5 1]
                                      [--out benchmarks/results/map_symmetry_cpu.md]

``map_symmetry=w`` multiplies each finished map by ``1 - w * s``, ``s`` the share of
healthy voxels at least as asymmetric as the scan is at that voxel (the scan against its
own mirror image across its midline). Each demo model (``disyre demo --seed S``, or a
folder it wrote, given with ``--demo-dirs``; the model as the demo reports it, all its
networks) is set to each weight on every network and calibrated on the demo's own
training scans (``calibrate``: every arm learns its healthy references, the healthy
asymmetry and its threshold from the same scans; nothing is retrained). It then maps the
demo's 12 test subjects and ``demo_test_size.py``'s independent larger set (``--n-test``
subjects, ``random_state = seed + 2000``), scored with ``held_out.py``'s metrics (pixel
AP pooled over the lesioned volumes and per family, slice AUROC, volume AUROC), with the
seconds each arm took (calibration and both sets' maps). Only public API is used.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _demo_models import demo_model_parser, run_on_demo_models
from map_flip import seconds, setting_rows
from map_median import report

WEIGHTS = (0.0, 0.5, 1.0)


def rows_of(folder: Path, n_test: int, weights=WEIGHTS) -> list[dict]:
    return setting_rows(folder, n_test, "map_symmetry", weights)


def main() -> int:
    ap = demo_model_parser(__doc__, "benchmarks/results/map_symmetry_cpu.md")
    ap.add_argument("--weights", type=float, nargs="+", default=list(WEIGHTS))
    args = ap.parse_args()
    return run_on_demo_models(
        args,
        "A left-right symmetry prior on the map",
        lambda folder: rows_of(folder, args.n_test, args.weights),
        lambda rows: (
            report(rows, list(args.weights), key="map_symmetry")
            + "\n\nSeconds per arm (calibration and both sets' maps): "
            + seconds(rows, key="map_symmetry")
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
