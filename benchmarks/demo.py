"""Run ``disyre demo`` for several seeds and record its figures and cost in ``benchmarks/results/``.

    python benchmarks/demo.py [--seeds 0 1 2] [--threads N] [--device cpu]
                              [--out benchmarks/results/demo_cpu.md]

Each seed is one fresh ``disyre demo --seed S`` process (cohort, training, mapping,
figure), exactly what a user runs. Wall time and the CPU time of each demo process are
recorded. The file ends with the demo's targets (pooled pixel AP >= 0.30 and >= 5x the
stronger intensity baseline, ahead of that baseline on every lesion family, volume
AUROC >= 0.90, slice AUROC >= 0.85, <= 300 s) and whether each seed met them; the raw
``metrics.json`` of every seed is written beside the table (``*.json``).
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

TARGETS = {
    "pixel_ap": 0.30,
    "ratio": 5.0,
    "volume_auroc": 0.90,
    "slice_auroc": 0.85,
    "wall_s": 300.0,
}


def run_one(seed: int, device: str, threads: int | None) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"disyre_demo_{seed}_"))
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    setup = f"torch.set_num_threads({threads})" if threads else ""
    code = (
        "import sys, torch\n"
        f"{setup}\n"
        "from disyre_sk.cli import main\n"
        f"sys.exit(main(['demo', '--out', {str(work)!r}, '--device', {device!r}, "
        f"'--seed', '{seed}', '--quiet']))\n"
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise RuntimeError(f"demo seed {seed} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    metrics = json.loads((work / "metrics.json").read_text())
    metrics["wall_s"] = wall
    metrics["cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    metrics["peak_rss_gib"] = after.ru_maxrss / 2**20
    metrics["model_written"] = (work / "model.disyre").is_file()
    return metrics


# metrics.json's "combination" in words.
JOINED = {"max": "voxelwise maximum", "sum": "weighted sum"}


def checks(m: dict) -> dict[str, bool]:
    disyre, *bases = m["results"]
    strongest = max(b["pixel_ap"] for b in bases)
    fams = disyre["pixel_ap_per_family"]
    ahead = all(v > max(b["pixel_ap_per_family"][f] for b in bases) for f, v in fams.items())
    return {
        "AP >= 0.30": disyre["pixel_ap"] >= TARGETS["pixel_ap"],
        "AP >= 5x stronger baseline": disyre["pixel_ap"] >= TARGETS["ratio"] * strongest,
        "ahead on every family": ahead,
        "volume AUROC >= 0.90": disyre["volume_auroc"] >= TARGETS["volume_auroc"],
        "slice AUROC >= 0.85": disyre["slice_auroc"] >= TARGETS["slice_auroc"],
        "<= 300 s": m["wall_s"] <= TARGETS["wall_s"],
    }


KEYS = ("pixel_ap", "best_dice", "dice_at_1pct_fpr", "slice_auroc", "volume_auroc")


def figure(row: dict, key: str) -> str:
    """A row's figure, with the bootstrap interval the demo gives it where it has one."""
    interval = row.get("auroc_intervals", {}).get(key)
    text = f"{row[key]:.3f}"
    return f"{text} ({interval[0]:.3f}-{interval[1]:.3f})" if interval else text


def interval_note(m: dict) -> str:
    """What the per-seed intervals are, from a demo's ``metrics.json`` (empty without)."""
    b = m.get("bootstrap")
    if not b:
        return ""
    return (
        f" Per seed, slice and volume AUROC carry the demo's {b['confidence']:.0%} "
        f"bootstrap interval ({b['n_resamples']} resamples of the {b['resampled']})."
    )


def per_seed_rows(runs: dict) -> list[list]:
    """The per-seed table: every method of every seed, slice and volume AUROC with their
    intervals (``metrics.json`` of a demo that records them)."""
    return [
        [seed, r["method"], *(figure(r, k) for k in KEYS)]
        for seed, m in runs.items()
        for r in m["results"]
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch threads of the demo")
    ap.add_argument("--out", default="benchmarks/results/demo_cpu.md")
    args = ap.parse_args()
    # Commit, date and load are those of the start: the code that runs, not the tree
    # someone may have edited by the time the last seed ends.
    info = {
        "command": command_line(),
        "commit": git_commit(),
        "date": now(),
        **hardware(args.device),
    }

    runs = {}
    for seed in args.seeds:
        print(f"seed {seed}...", flush=True)
        runs[seed] = run_one(seed, args.device, args.threads)
        print(f"  {runs[seed]['results'][0]['pixel_ap']:.3f} in {runs[seed]['wall_s']:.0f} s")

    first = runs[args.seeds[0]]
    methods = [r["method"] for r in first["results"]]
    rows = per_seed_rows(runs)
    mean_rows = []
    for i, name in enumerate(methods):
        vals = {k: [m["results"][i][k] for m in runs.values()] for k in KEYS}
        mean_rows.append(
            [name, *(f"{min(v):.3f} / {sum(v) / len(v):.3f} / {max(v):.3f}" for v in vals.values())]
        )
    fam_rows = []
    for f in first["results"][0]["pixel_ap_per_family"]:
        for seed, m in runs.items():
            fam_rows.append(
                [seed, f, *(f"{r['pixel_ap_per_family'][f]:.3f}" for r in m["results"])]
            )
    check_rows = []
    for seed, m in runs.items():
        c = checks(m)
        check_rows.append([seed, *("yes" if v else "**no**" for v in c.values())])
    cost_rows = [
        [
            seed,
            f"{m['wall_s']:.0f}",
            f"{m['cpu_s']:.0f}",
            f"{m['fit_seconds']:.0f}",
            f"{m['map_seconds_per_volume']:.2f}",
            f"{m['peak_rss_gib']:.2f}",
            "yes" if m["model_written"] else "no",
        ]
        for seed, m in runs.items()
    ]
    header = ["pixel AP", "best Dice", "Dice @1% FPR", "slice AUROC", "volume AUROC"]
    body = "\n\n".join(
        [
            f"Protocol: {first['protocol']}. Cohort {first['cohort']}; detector "
            f"{first['settings']}"
            + "".join(
                f"; {label} {first[key]}"
                for key, label in (
                    ("dark", "dark network"),
                    ("specialist", "small-anomaly network"),
                )
                if first.get(key)
            )
            + (
                f"; maps joined by their {JOINED[first['combination']]}"
                if first.get("combination")
                else ""
            )
            + ".",
            "Pixel metrics pooled over the foreground voxels of all lesioned test volumes; "
            "the 1 % FPR threshold is fixed on the healthy test volumes; slice AUROC over "
            "axial slices with >= 2 % foreground (score: mean of the top 5 % map values); "
            "volume score: mean of the top 1 % map values." + interval_note(first),
            "### min / mean / max over seeds " + ", ".join(map(str, runs)),
            md_table(["method", *header], mean_rows),
            "### per seed",
            md_table(["seed", "method", *header], rows),
            "### pixel AP per lesion family (columns: " + ", ".join(methods) + ")",
            md_table(["seed", "family", *methods], fam_rows),
            "### targets (the stronger baseline is the better of the two intensity "
            "thresholds, per family)",
            md_table(["seed", *checks(first)], check_rows),
            "### cost",
            md_table(
                [
                    "seed",
                    "wall s",
                    "CPU s",
                    "training s",
                    "mapping s/volume",
                    "peak host GiB",
                    "model.disyre",
                ],
                cost_rows,
            ),
        ]
    )
    path = write_results(args.out, "disyre demo: figures and cost", info, body)
    Path(path).with_suffix(".json").write_text(json.dumps(runs, indent=1, default=str))
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
