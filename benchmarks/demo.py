"""Run ``disyre demo`` and record its figures and its cost in ``benchmarks/results/``.

    python benchmarks/demo.py [--threads N] [--device cpu] [--out benchmarks/results/demo_cpu.md]

Wall time and the CPU time of the demo process are both recorded: on a shared machine the
CPU time with one thread is the honest measure of what a dedicated core would take.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, git_commit, hardware, md_table, now, write_results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch threads of the demo")
    ap.add_argument("--out", default="benchmarks/results/demo_cpu.md")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="disyre_demo_"))
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    threads = f"torch.set_num_threads({args.threads})" if args.threads else ""
    code = (
        "import sys, torch\n"
        f"{threads}\n"
        "from disyre_sk.cli import main\n"
        f"sys.exit(main(['demo', '--out', {str(work)!r}, '--device', {args.device!r}]))\n"
    )
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        print(proc.stdout[-3000:], proc.stderr[-3000:])
        return proc.returncode
    metrics = json.loads((work / "metrics.json").read_text())
    rows = [
        [
            r["method"],
            f"{r['pixel_ap']:.3f}",
            f"{r['best_dice']:.3f}",
            f"{r['dice_at_1pct_fpr']:.3f}",
            f"{r['volume_auroc']:.3f}",
        ]
        for r in metrics["results"]
    ]
    families = metrics["results"][0]["pixel_ap_per_family"]
    base_families = metrics["results"][1]["pixel_ap_per_family"]
    fam_rows = [[f, f"{families[f]:.3f}", f"{base_families[f]:.3f}"] for f in families]
    disyre_ap, base_ap = (r["pixel_ap"] for r in metrics["results"][:2])
    verdict = "beats" if disyre_ap > base_ap else "does NOT beat"
    body = "\n\n".join(
        [
            f"Demo: {metrics['cohort']}, detector {metrics['settings']}.",
            md_table(["method", "pixel AP", "best Dice", "Dice @1% FPR", "volume AUROC"], rows),
            "Pixel metrics pooled over the foreground voxels of all lesioned test volumes; "
            "the 1 % FPR threshold is fixed on the healthy test volumes.",
            md_table(["lesion family", "DISYRE pixel AP", "intensity pixel AP"], fam_rows),
            f"DISYRE {verdict} the intensity-threshold baseline on pixel AP "
            f"({disyre_ap:.3f} vs {base_ap:.3f}).",
            md_table(
                ["cost", "value"],
                [
                    ["wall time of `disyre demo` (s)", f"{wall:.0f}"],
                    ["CPU time, user + system (s)", f"{usage.ru_utime + usage.ru_stime:.0f}"],
                    ["of which training (wall, s)", f"{metrics['fit_seconds']:.0f}"],
                    [
                        "mapping, per test volume (wall, s)",
                        f"{metrics['map_seconds_per_volume']:.2f}",
                    ],
                    ["peak host memory (GiB)", f"{usage.ru_maxrss / 2**20:.2f}"],
                ],
            ),
        ]
    )
    info = {
        "command": command_line(),
        "commit": git_commit(),
        "date": now(),
        **hardware(args.device),
    }
    path = write_results(args.out, "disyre demo: figures and cost", info, body)
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
